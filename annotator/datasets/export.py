"""Datasets out of a study: validated gold, gold alone, or the model's proposals, in five formats.

What (`ExportWhat`):
- `validated`: adjudicated conversations, their gold labels with each value resolved to its
  taxonomy node, and each annotator's labels;
- `gold`: the same without the annotators' labels (their number stays, as `n_annotations`);
- `proposals`: every (conversation, prompt version, model) extraction with its evidence quotes,
  status, error, tokens and cost.

Each gold record is validated before it is written; a record that fails (no response type, a
value name that is empty, ...) is reported with its reason and left out, never silently changed.
An annotated conversation without gold is named in the report too, with why it has none: nothing
leaves the dataset unsaid. An export that would hold nothing is an error that says why.
The shapes of records and of the report are in `records`; formats and how files are written are
in `writers`; the dataset card in `card`.
"""

from __future__ import annotations

import functools
import io
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import orjson
import sqlite_utils
from pydantic import ValidationError

from annotator.datasets.gold import (
    MAJORITY,
    live_annotations,
    new_labels_since,
    not_adjudicated_reason,
    plain_out_of_date,
    side_by_side,
)
from annotator.datasets.halves import (
    PROGRESS_EVERY,
    Progress,
    RowsRead,
    WorkerCount,
    WorkerResult,
    counting,
    for_worker,
    in_worker,
    second_half_start,
    worker_counting,
)
from annotator.datasets.plain import (
    GOLD_COLUMNS,
    PlainGold,
    PlainVote,
    annotations_of,
    plain_gold,
    plain_turns,
    plain_votes_in_order,
)
from annotator.datasets.proposals import proposal_records
from annotator.datasets.records import (
    AnyRecord,
    ExportedValue,
    ExportFilter,
    ExportRecord,
    ExportReport,
    ExportStats,
    LeftOut,
    PlainProposal,
    PlainRecord,
    ProposalRecord,
)
from annotator.datasets.values import exported_value_and_row
from annotator.datasets.writers import (
    HF_DATA_FILE,
    PARQUET_FORMATS,
    SCHEMAS,
    STDOUT,
    STREAM_FORMATS,
    TEXT_FORMATS,
    CsvSink,
    ExportFormat,
    ExportWhat,
    JsonlSink,
    ParquetSink,
    RowSink,
    check_target,
    export_format,
    is_stdout,
    staged,
    text_file,
)
from annotator.db import (
    EVERY_ID,
    IdRange,
    database_path,
    id_range_sql,
    loads,
    provenance,
    worker_study,
)
from annotator.errors import NO_ANNOTATIONS, AnnotatorError, invalid_reason
from annotator.models import (
    GoldLabel,
)
from annotator.taxonomy import TOP_CATEGORIES

if TYPE_CHECKING:  # the card's figures import the frames module when they are computed
    from annotator.measure.frames import StoredFigures

# --- values -------------------------------------------------------------------------------------


def _category_key(name: str) -> str:
    return name.strip().lower().removesuffix(" values").strip()


def _category_matches(record: AnyRecord, categories: list[str]) -> bool:
    wanted = {_category_key(c) for c in categories}
    return any(v.category and _category_key(v.category) in wanted for v in record.ai_values)


# --- records --------------------------------------------------------------------------------------


def _gold_gaps(gold: GoldLabel | PlainGold) -> str | None:
    """A required gold field left empty, in words (validation would say "Input should be...")."""
    gone = [name for name, value in (("response type", gold.response_type),
                                     ("subjective", gold.subjective))
            if value is None]
    return f"gold has no {' and no '.join(gone)}" if gone else None


class _Gold(NamedTuple):
    """One adjudicated conversation as an export reads it, in one query (`_gold_in_order`)."""

    conversation_id: str
    source: str
    external_id: str | None
    turns: list[Any] | None  # as stored (checked as `ExportRecord` validates them); None: no
    # such conversation in the study
    gold: PlainGold
    labels_seen: str | None  # the digest stored with a person's decision (`new_labels_since`)


def _gold_in_order(db: sqlite_utils.Database, ids: IdRange) -> Iterator[_Gold]:
    """The gold of the conversations in `ids` with what the export needs of each
    conversation, in conversation id order (`gold_records` without models made of turns)."""
    in_range, params = id_range_sql("g.conversation_id", ids)
    columns = ", ".join(f"g.{name}" for name in GOLD_COLUMNS)
    for conversation_id, present, source, external_id, turns, seen, *gold in db.execute(
            f"select g.conversation_id, c.id, c.source, c.external_id, c.turns, "
            f"g.labels_seen, {columns} from gold g left join conversations c "
            f"on c.id = g.conversation_id where {in_range} order by g.conversation_id",
            params):
        yield _Gold(conversation_id, source or "", external_id,
                    None if present is None else loads(turns, []),
                    plain_gold(conversation_id, gold), seen)


def export_records(
    db: sqlite_utils.Database,
    filters: ExportFilter | None = None,
    without_gold: list[tuple[str, str]] | None = None,
    ids: IdRange = EVERY_ID,
) -> Iterator[ExportRecord | PlainRecord | tuple[str, str] | LeftOut]:
    """Adjudicated conversations as validated records; `(conversation_id, reason)` if invalid.

    Only decided labels leave: a majority label the live annotations no longer give (new labels
    since `adjudicate` ran: a split, an incomplete label, other labels) is a `LeftOut`, with
    why. A person's decision made before the current labels is exported, `new_labels_since`.
    `n_annotations` is always the number of live annotations, also when `filters` leave the
    annotators' labels out; each exported annotation says who else last changed it.

    Annotations are read one conversation at a time beside gold, both in id order, as plain
    tuples (`plain`); a record whose fields need no validation is a `PlainRecord`, the others
    are validated as `ExportRecord`. Each annotated conversation without gold is added to
    `without_gold` with why, when given. `ids`: only the conversations in it.
    """
    filters = filters or ExportFilter()
    # Each value resolved once: a study's values repeat (a few thousand names in a million
    # listings), and the records share the resolved value and its row, which nothing changes.
    exported_value = functools.cache(exported_value_and_row)
    golds = ((gold.conversation_id, gold) for gold in _gold_in_order(db, ids))
    for conversation_id, labelled, gold_record in side_by_side(plain_votes_in_order(db, ids),
                                                               golds):
        if gold_record is None:  # annotated, no gold
            if without_gold is not None:
                without_gold.append((conversation_id,
                                     not_adjudicated_reason(annotations_of(labelled))))
            continue
        labelled = labelled or []
        gold = gold_record.gold
        if gold_record.turns is None:
            yield (conversation_id, "gold of a conversation that is not in the study")
            continue
        gap = _gold_gaps(gold)
        if gap:
            yield (gold_record.conversation_id, gap)
            continue
        if gold.decided_by == MAJORITY and (why := plain_out_of_date(gold, labelled)):
            if filters.sources and gold_record.source not in filters.sources:
                continue  # of a source not asked for: not this export's to name
            yield LeftOut(conversation_id=gold_record.conversation_id,
                          reason=f"majority gold no longer decided: {why} (new labels since "
                                 "it was decided; run `annotator adjudicate`)")
            continue
        newer = gold.decided_by != MAJORITY and new_labels_since(
            gold_record.labels_seen, gold.decided_at, annotations_of(labelled))
        yield _record(gold_record, labelled, newer, filters.include_annotations, exported_value)


ValueOf = Callable[[str], tuple[ExportedValue, dict[str, Any]]]


def _record(gold_record: _Gold, labelled: list[PlainVote], newer: bool,
            with_annotations: bool, value_of: ValueOf
            ) -> ExportRecord | PlainRecord | tuple[str, str]:
    """The record of one decided conversation: plain when every field is what `ExportRecord`
    would accept unchanged, else validated by it (its reason when it refuses)."""
    gold = gold_record.gold
    ai_values = [value_of(name) for name in gold.ai_values]
    human_values = [value_of(name) for name in gold.human_values]
    fields = {  # as `ExportRecord` takes them, in its order
        "conversation_id": gold_record.conversation_id,
        "source": gold_record.source,
        "external_id": gold_record.external_id,
        "turns": gold_record.turns,
        "ai_values": [value for value, _ in ai_values],
        "human_values": [value for value, _ in human_values],
        "response_type": gold.response_type,
        "subjective": gold.subjective,
        "task": gold.task,
        "task_description": gold.task_description,
        "decided_by": gold.decided_by,
        "decided_at": gold.decided_at.isoformat() if gold.decided_at else None,
        "n_annotations": len(labelled),
        "new_labels_since": newer,
        "annotations": [vote.exported() for vote in labelled] if with_annotations else [],
    }
    turns = plain_turns(gold_record.turns, min_turns=1)
    if (turns is not None
            and all(value.name.strip() for value, _ in (*ai_values, *human_values))
            and type(gold_record.conversation_id) is str and type(gold_record.source) is str
            and (gold_record.external_id is None or type(gold_record.external_id) is str)
            and gold.response_type is not None and gold.subjective is not None):
        # the fields as `model_dump(mode="json")` gives them (their order kept)
        row = {**fields, "turns": turns, "ai_values": [row for _, row in ai_values],
               "human_values": [row for _, row in human_values],
               "response_type": gold.response_type.value}
        return PlainRecord(gold_record.conversation_id, gold_record.source, gold.response_type,
                           gold.subjective, gold.task, gold.decided_by, len(labelled), newer,
                           fields["ai_values"], row)
    try:
        return ExportRecord(**fields)
    except ValidationError as exc:
        return (gold_record.conversation_id, invalid_reason(exc))


# --- filters --------------------------------------------------------------------------------------

Check = tuple[str, Callable[[Any], bool]]


def _checks(filters: ExportFilter) -> list[Check]:
    """Each active filter, named as on the command line, with its test of one record."""
    checks: list[Check] = []
    if filters.sources:
        sources = set(filters.sources)
        checks.append((f"--source {', '.join(filters.sources)}", lambda r: r.source in sources))
    if filters.response_types:
        types = set(filters.response_types)
        checks.append((f"--response-type {', '.join(filters.response_types)}",
                       lambda r: r.response_type in types))
    if filters.categories:
        checks.append((f"--category {', '.join(filters.categories)}",
                       lambda r: _category_matches(r, filters.categories)))
    if filters.decided_by_person_only:
        checks.append(("--person-only", lambda r: r.decided_by != MAJORITY))
    if filters.subjective_only:
        checks.append(("--subjective-only", lambda r: r.subjective is True))
    if filters.min_annotations:
        checks.append((f"--min-annotations {filters.min_annotations}",
                       lambda r: r.n_annotations >= filters.min_annotations))
    return checks


def check_filters(db: sqlite_utils.Database, what: ExportWhat, filters: ExportFilter) -> None:
    """Refuse a filter that can only be a mistake: an unknown category or source, or a gold
    filter on proposals. A typo must not look like an empty or a smaller dataset."""
    known = {c.lower() for c in TOP_CATEGORIES}
    unknown = [c for c in filters.categories if _category_key(c) not in known]
    if unknown:
        raise AnnotatorError(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(map(repr, unknown))}: the top categories are {', '.join(TOP_CATEGORIES)}"
        )
    if filters.sources:
        present = {row[0] for row in db.execute("select distinct source from conversations")}
        missing = [s for s in filters.sources if s not in present]
        if missing:
            shown = ", ".join(sorted(map(str, present))[:10]) or "none"
            raise AnnotatorError(f"no conversations of source {', '.join(map(repr, missing))}: "
                                 f"the study's sources are {shown}")
    if what is ExportWhat.proposals and (filters.decided_by_person_only
                                         or filters.min_annotations):
        raise AnnotatorError("--person-only and --min-annotations filter gold: they do not "
                             "apply to --what proposals")


# --- selection and writing ----------------------------------------------------------------------


# (rows read, of how many): an export's progress, in gold rows (validated, gold) or
# extractions (proposals), both halves of a large study's counted together (`RowsRead`).
ExportProgress = Progress


def _selected(
    db: sqlite_utils.Database, what: ExportWhat, filters: ExportFilter, report: ExportReport,
    ids: IdRange, without_gold: list[tuple[str, str]],
    rows_read: Callable[[int], None] | None = None, every: int = PROGRESS_EVERY,
) -> Iterator[AnyRecord]:
    """The records of `what` (of the conversations in `ids`) that pass every filter; the
    report counts the rest. Annotated conversations without gold go to `without_gold`.
    `rows_read(every)` is called each time `every` more rows are read."""
    checks = _checks(filters)
    report.kept_by_filter = {label: 0 for label, _ in checks}
    items = (proposal_records(db, ids) if what is ExportWhat.proposals
             else export_records(db, filters, without_gold=without_gold, ids=ids))
    for read, item in enumerate(items, start=1):
        if rows_read is not None and read % every == 0:
            rows_read(every)
        if isinstance(item, LeftOut):
            report.left_out.append(item)
            continue
        if type(item) is tuple:  # (id, why): a plain record is a tuple too
            report.invalid.append(item)
            report.left_out.append(LeftOut(conversation_id=item[0], reason=item[1]))
            continue
        report.considered += 1
        passed = [label for label, check in checks if check(item)]
        for label in passed:
            report.kept_by_filter[label] += 1
        if len(passed) < len(checks):
            report.filtered_out += 1
            continue
        yield item


def _row(record: AnyRecord, what: ExportWhat) -> dict[str, Any]:
    if isinstance(record, PlainProposal):
        return record.row
    if isinstance(record, PlainRecord):
        if what is ExportWhat.gold:
            del record.row["annotations"]
        return record.row
    exclude = {"annotations"} if what is ExportWhat.gold else None
    return record.model_dump(mode="json", exclude=exclude)


def _write(
    db: sqlite_utils.Database, sink: RowSink, what: ExportWhat, filters: ExportFilter,
    report: ExportReport, parts_folder: Path | None = None,
    progress: ExportProgress | None = None,
) -> ExportReport:
    """Write the records into `sink` and count them in `report`; a large study's in two
    halves at once (`halves`), the second's file made in `parts_folder` (None: the system's
    temporary folder) and appended. `progress(read, total)`: as rows are read."""
    table = "extractions" if what is ExportWhat.proposals else "gold"
    rows_read = (RowsRead(progress, db[table].count)
                 if progress is not None else None)
    try:
        split = second_half_start(db, table)
        if split is None:
            without_gold = _write_records(db, sink, what, filters, report, EVERY_ID,
                                          *counting(rows_read))
        else:
            without_gold = _write_in_two_parts(db, sink, what, filters, report, split,
                                               parts_folder, rows_read)
        report.left_out.extend(without_gold)
    finally:
        sink.close()
    if rows_read is not None:
        rows_read.done()
    report.provenance = provenance(
        db, report.stats.prompt_ids,
        "extractions" if what is ExportWhat.proposals else "gold (decided labels)")
    return report


def _write_records(
    db: sqlite_utils.Database, sink: RowSink, what: ExportWhat, filters: ExportFilter,
    report: ExportReport, ids: IdRange, rows_read: Callable[[int], None] | None = None,
    every: int = PROGRESS_EVERY,
) -> list[LeftOut]:
    """Write the records of the conversations in `ids` into `sink` (left open), counted in
    `report`; the annotated conversations among them without gold, with why, are returned:
    the report lists them after every record's. `rows_read`: see `_selected`."""
    without_gold: list[tuple[str, str]] = []
    for record in _selected(db, what, filters, report, ids, without_gold, rows_read, every):
        sink.write(_row(record, what))
        report.stats.add(record)
        report.exported += 1
    return list(_without_gold(db, without_gold, filters))


def _write_in_two_parts(
    db: sqlite_utils.Database, sink: RowSink, what: ExportWhat, filters: ExportFilter,
    report: ExportReport, split: str, parts_folder: Path | None,
    rows_read: RowsRead | None = None,
) -> list[LeftOut]:
    """`_write_records` of every conversation: those before `split` here, the others at the
    same time in a worker, whose file is then appended to `sink` and whose report is merged
    into `report`. Records, report and its lists come out in the order one part gives.
    `rows_read` counts the rows both read."""
    with tempfile.TemporaryDirectory(prefix=".annotator-export-", dir=parts_folder) as folder:
        part = Path(folder) / "second-part"
        with in_worker("the export's second half", _write_part, str(database_path(db)), what,
                       report.format, filters, (split, None), str(part),
                       for_worker(rows_read)) as second:
            without_gold = _write_records(db, sink, what, filters, report, (None, split),
                                          *counting(rows_read))
            later, later_without_gold = second.get(rows_read.report if rows_read else None)
        sink.append(part)
    report.merge(later)
    return [*without_gold, *later_without_gold]


def _write_part(
    path: str, what: ExportWhat, fmt: ExportFormat, filters: ExportFilter, ids: IdRange,
    part: str, count: WorkerCount = None,
) -> tuple[ExportReport, list[LeftOut]]:
    """In a worker process: the records of `ids` written into the file `part`, as `fmt`'s sink
    appends it (Parquet, or text without a header and uncompressed), with their report and
    the annotated conversations without gold among them. `count`: the first process's count
    this one adds its rows to (`halves.for_worker`)."""
    report = ExportReport(format=fmt, what=what)
    with worker_study(path) as db, _part_file(Path(part), fmt) as target:
        sink = _sink(target, fmt, what, header=False)
        try:
            return report, _write_records(db, sink, what, filters, report, ids,
                                          *worker_counting(count))
        finally:
            sink.close()


@contextmanager
def _part_file(part: Path, fmt: ExportFormat) -> Iterator[Path | IO[str]]:
    if fmt in PARQUET_FORMATS:
        yield part
        return
    with open(part, "w", encoding="utf-8", newline="") as handle:
        yield handle


def _sink(target: Path | IO[str], fmt: ExportFormat, what: ExportWhat, header: bool = True
          ) -> RowSink:
    """The sink of `fmt` writing into `target`: a file's path for Parquet, else a text handle."""
    if fmt in PARQUET_FORMATS:
        assert isinstance(target, Path)
        return ParquetSink(target, SCHEMAS[what])
    assert not isinstance(target, Path)
    if fmt is ExportFormat.csv:
        return _csv_sink(target, what, header)
    return JsonlSink(target)


def _without_gold(
    db: sqlite_utils.Database, reasons: list[tuple[str, str]], filters: ExportFilter
) -> Iterator[LeftOut]:
    """Annotated conversations that have no gold, each with why (`export_records` found
    them), of the chosen sources."""
    why = dict(reasons)
    pending = sorted(why)
    if filters.sources:
        wanted = set(filters.sources)
        of_source = {
            cid for start in range(0, len(pending), 500)
            for cid, source in db.execute(
                "select id, source from conversations where id in "
                f"({','.join('?' * len(pending[start:start + 500]))})",
                pending[start:start + 500],
            )
            if source in wanted
        }  # fmt: skip
        pending = [cid for cid in pending if cid in of_source]
    for conversation_id in pending:
        yield LeftOut(conversation_id=conversation_id, reason=why[conversation_id])


# --- CSV rows -------------------------------------------------------------------------------------


def _names(values: list[dict[str, Any]]) -> str:
    return "; ".join(v["name"] for v in values)


def _categories(values: list[dict[str, Any]]) -> str:
    return "; ".join(sorted({v["category"] for v in values if v["category"]}))


def _free(values: list[dict[str, Any]]) -> str:
    return "; ".join(v["name"] for v in values if v["free"])


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _first_user_turn(row: dict[str, Any]) -> str:
    return next((t["text"] for t in row["turns"] if t["role"] == "user"), "")


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


CSV_COLUMNS = [
    "conversation_id", "source", "external_id", "response_type", "subjective", "task",
    "task_description",
    "ai_values",
    "ai_value_categories", "free_ai_values", "human_values", "decided_by", "decided_at",
    "n_annotations", "new_labels_since", "first_user_turn", "turns_json",
]
PROPOSAL_CSV_COLUMNS = [
    "conversation_id", "source", "external_id", "prompt_id", "prompt_name", "prompt_version",
    "model",
    "extractor", "status", "error", "response_type", "subjective", "task", "task_description",
    "ai_values",
    "ai_value_categories", "free_ai_values", "human_values", "ai_values_json",
    "human_values_json", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "cost_usd", "attempts", "model_calls", "call_ms", "created_at",
    "first_user_turn", "turns_json",
]


def _value_cells(row: dict[str, Any]) -> dict[str, str]:
    """The cells a spreadsheet reads most: names joined by "; ", the conversation's opening."""
    return {
        "subjective": _flag(row["subjective"]),
        "new_labels_since": _flag(row.get("new_labels_since")),
        "ai_values": _names(row["ai_values"]),
        "ai_value_categories": _categories(row["ai_values"]),
        "free_ai_values": _free(row["ai_values"]),
        "human_values": _names(row["human_values"]),
        "first_user_turn": _first_user_turn(row),
        "turns_json": _json(row["turns"]),
    }


def _gold_csv_row(row: dict[str, Any]) -> list[str]:
    cells = _value_cells(row)
    if "annotations" in row:
        cells["annotations_json"] = _json(row["annotations"])
    columns = CSV_COLUMNS + (["annotations_json"] if "annotations" in row else [])
    return [cells[c] if c in cells else _text(row[c]) for c in columns]


def _proposal_csv_row(row: dict[str, Any]) -> list[str]:
    cells = _value_cells(row)
    cells["ai_values_json"] = _json(row["ai_values"])
    cells["human_values_json"] = _json(row["human_values"])
    return [cells[c] if c in cells else _text(row[c]) for c in PROPOSAL_CSV_COLUMNS]


def _csv_sink(handle: IO[str], what: ExportWhat, header: bool = True) -> CsvSink:
    if what is ExportWhat.proposals:
        return CsvSink(handle, PROPOSAL_CSV_COLUMNS, _proposal_csv_row, header)
    columns = CSV_COLUMNS + (["annotations_json"] if what is ExportWhat.validated else [])
    return CsvSink(handle, columns, _gold_csv_row, header)


# --- entry points ---------------------------------------------------------------------------------


def _shape(what: ExportWhat | str, filters: ExportFilter) -> ExportWhat:
    """`validated` without the annotators' labels is `gold`: one shape per kind of file."""
    what = ExportWhat(what)
    if what is ExportWhat.validated and not filters.include_annotations:
        return ExportWhat.gold
    return what


def render_export(
    db: sqlite_utils.Database,
    fmt: ExportFormat = ExportFormat.jsonl,
    filters: ExportFilter | None = None,
    what: ExportWhat = ExportWhat.validated,
) -> tuple[str, ExportReport]:
    """The export as text (for a download button) and what went into it: JSONL or CSV."""
    fmt, filters = ExportFormat(fmt), filters or ExportFilter()
    if fmt not in TEXT_FORMATS:
        raise AnnotatorError(f"{fmt} is not text: write it to a file with `export`")
    what = _shape(what, filters)
    check_filters(db, what, filters)
    buffer = io.StringIO()
    report = _write(db, _sink(buffer, fmt, what), what, filters,
                    ExportReport(format=fmt, what=what))
    return buffer.getvalue(), report


def _nothing_to_export(db: sqlite_utils.Database, what: ExportWhat) -> str | None:
    if what is ExportWhat.proposals:
        if not db["extractions"].count:
            return "no proposals yet: run `annotator extract` first"
    elif not db["gold"].count:
        live = live_annotations(db)
        if not live:
            return f"nothing adjudicated: {NO_ANNOTATIONS}, then `annotator adjudicate`"
        # adjudicate may have run and decided nothing: say why the first conversation has none
        first = min(live)
        return (f"nothing adjudicated yet: {len(live)} annotated conversations, none with gold "
                f"(e.g. {first}: {not_adjudicated_reason(live[first])}); decide them on the "
                "app's Gold page or with `annotator adjudicate`")
    return None


def _why_empty(report: ExportReport) -> str:
    """Why an export holds no record, in one line."""
    noun = "proposals" if report.what is ExportWhat.proposals else "adjudicated conversations"
    if report.considered:
        kept = "; ".join(f"{label} keeps {n}" for label, n in report.kept_by_filter.items())
        return (f"nothing to export: none of the {report.considered} {noun} passes every "
                f"filter ({kept})")
    if report.invalid:
        first = report.invalid[0]
        return (f"nothing to export: all {len(report.invalid)} {noun} fail validation (first: "
                f"{first[0]}: {first[1]})")
    first_out = report.left_out[0] if report.left_out else LeftOut(conversation_id="", reason="")
    return (f"nothing to export: no {noun} with decided labels; {len(report.left_out)} left "
            f"out (first: {first_out.conversation_id}: {first_out.reason})")


def _write_file(
    db: sqlite_utils.Database, target: Path, fmt: ExportFormat, what: ExportWhat,
    filters: ExportFilter, stream: IO[bytes] | None = None,
    progress: ExportProgress | None = None,
) -> ExportReport:
    """Write the records into `target` (a fresh file, or folder for `hf`), or `stream`."""
    report = ExportReport(format=fmt, what=what)
    # a second part's file goes beside the export (on the disk chosen for it), not in /tmp
    parts_folder = None if stream is not None else target.parent
    if fmt in PARQUET_FORMATS:
        data = target / HF_DATA_FILE if fmt is ExportFormat.hf else target
        data.parent.mkdir(parents=True, exist_ok=True)
        return _write(db, _sink(data, fmt, what), what, filters, report, parts_folder,
                      progress)
    with text_file(target, fmt is ExportFormat.jsonl_gz, stream) as handle:
        return _write(db, _sink(handle, fmt, what), what, filters, report, parts_folder,
                      progress)


def export(
    db: sqlite_utils.Database,
    path: str | Path,
    fmt: ExportFormat | str | None = None,
    filters: ExportFilter | None = None,
    what: ExportWhat | str = ExportWhat.validated,
    license: str = "unknown",
    force: bool = False,
    stream: IO[bytes] | None = None,
    stored: StoredFigures | None = None,
    progress: ExportProgress | None = None,
) -> ExportReport:
    """Write the dataset to `path` (written aside, then renamed into place).

    `fmt` defaults to the one `path` ends with (.jsonl, .jsonl.gz, .csv, .parquet); `hf` writes
    a folder with a dataset card whose header names `license` (a Hub license id).
    An existing file (or earlier hf folder) is replaced only with `force`; a link is written
    through, never replaced; a device, pipe or dangling link is refused (`check_target`).
    `path` "-" writes a single-stream format (jsonl by default, jsonl.gz, csv) to `stream`,
    the caller's standard output.
    An export that would hold nothing raises, saying why, and writes nothing.
    `stored`: where the dataset card may read agreement figures instead of computing them
    (`study_agreement`). `progress(read, total)` is called as rows are read
    (gold rows, or extractions for proposals), and once with `read == total` at the end.
    """
    path, filters = Path(path), filters or ExportFilter()
    to_stream = is_stdout(path)
    fmt = export_format(path, fmt if fmt is not None or not to_stream else ExportFormat.jsonl)
    what = _shape(what, filters)
    if to_stream and (fmt not in STREAM_FORMATS or stream is None):
        raise AnnotatorError(
            f"{STDOUT} (standard output) takes one stream: --format "
            + ", ".join(f.value for f in STREAM_FORMATS) + f", not {fmt}"
        )
    check_filters(db, what, filters)
    real = path if to_stream else check_target(path, fmt, force)
    nothing = _nothing_to_export(db, what)
    if nothing:
        raise AnnotatorError(nothing)
    if to_stream:
        report = _write_file(db, path, fmt, what, filters, stream, progress)
        if not report.exported:  # nothing was written: records are written as they pass
            raise AnnotatorError(_why_empty(report))
        report.path = STDOUT
        return report
    with staged(real, folder=fmt is ExportFormat.hf) as target, _card_sections(
            db, fmt is ExportFormat.hf, stored) as sections:
        report = _write_file(db, target, fmt, what, filters, progress=progress)
        if not report.exported:
            raise AnnotatorError(_why_empty(report))
        if fmt is ExportFormat.hf:
            from annotator.datasets.card import write_card

            write_card(db, target, report, filters, license, path.name,
                       sections.get() if sections else None, stored)
    report.path = str(path)
    return report


# From this many annotations, the card's sections about the whole study (its findings and
# agreement figures) are computed in a worker process while the records are written; below
# it, starting the process costs more than it saves.
CARD_IN_WORKER_MIN_ANNOTATIONS = 50_000


@contextmanager
def _card_sections(db: sqlite_utils.Database, wanted: bool,
                   stored: StoredFigures | None) -> Iterator[WorkerResult | None]:
    """The dataset card's sections about the whole study (`card.study_sections`), started in a
    worker process for a large study; None: the card computes them when it is written."""
    path = database_path(db)
    if not wanted or path is None or db["annotations"].count < CARD_IN_WORKER_MIN_ANNOTATIONS:
        yield None
        return
    from annotator.datasets.card import study_sections_of_file

    # an export that fails does not wait for its card
    with in_worker("the dataset card's figures", study_sections_of_file, str(path),
                   stored) as sections:
        yield sections


__all__ = [
    "CSV_COLUMNS",
    "PROPOSAL_CSV_COLUMNS",
    "ExportFilter",
    "ExportFormat",
    "ExportProgress",
    "ExportRecord",
    "ExportReport",
    "ExportStats",
    "ExportWhat",
    "LeftOut",
    "ProposalRecord",
    "check_filters",
    "export",
    "export_records",
    "proposal_records",
    "render_export",
]
