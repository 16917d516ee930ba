"""Read-only queries over the study database, as plain rows and DataFrames.

The CLI, the Streamlit app and `bench/` read the study through these functions (the app's own
queries, beside these frames, are in `annotator.app.queries`). Value lists come back as tuples
of names (hashable, what `agreement` takes); the taxonomy node of each name is resolved by the
caller through `taxonomy`, so this module stays a plain reader of the database. The frames of
the annotations, gold and each prompt version's extractions are kept beside the study while
their table is unchanged (`stored_frames`, `frame_store`): building one parses every row's JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from sys import intern
from typing import Any, NamedTuple

import orjson
import pandas as pd
import pyarrow as pa
import sqlite_utils

from annotator.db import (
    FLAGGED_INSTEAD,
    authors_own,
    collect_garbage_rarely,
    database_path,
    id_range_sql,
    optional_bool,
    stored_turns,
    worker_study,
)
from annotator.errors import (
    UNREADABLE_ROW,
    annotation_row,
    conversation_row,
    extraction_row,
    gold_row,
    reading_row,
    unreadable_row,
)
from annotator.extract.ledger import call_ledger
from annotator.extract.prompts import NOT_SCRUB, few_shot_map, resolve_used_ids
from annotator.measure import frame_patch
from annotator.measure.agreement import (
    AgreementReport,
    agreement_report,
    inter_annotator_part,
    joined,
    settings_cover,
)
from annotator.measure.anchoring import MIN_BLIND_CONVERSATIONS, AnchoringReport, anchoring
from annotator.measure.frame_store import (
    has_frame,
    is_frame_table,
    read_frame,
    snapshot,
    store_table,
    stored_frame,
    table_signature,
    write_part,
)
from annotator.measure.shapes import KnownScores
from annotator.models import SET_ASIDE_WHY
from annotator.worker_pool import spawned_pool

ANNOTATION_COLUMNS = [
    "annotation_id",
    "conversation_id",
    "annotator",
    "response_type",
    "ai_values",
    "human_values",
    "subjective",
    "lead_time",
    "cancelled",
    "updated_at",
    "task",
]
GOLD_COLUMNS = [
    "conversation_id",
    "response_type",
    "ai_values",
    "human_values",
    "subjective",
    "decided_by",
    "decided_at",
    "task",
]
EXTRACTION_COLUMNS = [
    "conversation_id",
    "prompt_id",
    "model",
    "extractor",
    "status",
    "response_type",
    "ai_values",
    "human_values",
    "subjective",
    "error",
    "cost_usd",
    "created_at",
    "task",
]


def scalar(db: sqlite_utils.Database, sql: str) -> int:
    """The one number a `select count(...)` query returns."""
    return int(db.execute(sql).fetchone()[0])


def study_summary(db: sqlite_utils.Database) -> dict[str, int | float]:
    """How many conversations stand at each stage of the study, and what its model calls cost:
    recorded from replies, and estimated for calls sent without a recorded reply (possibly
    paid: a run died, or the reply never came or could not be read)."""
    calls = call_ledger(db.conn)
    return {
        "conversations": scalar(db, "select count(*) from conversations"),
        "scrubbed": scalar(db, "select count(*) from conversations where scrubbed = 1"),
        "cleared by the model privacy pass": scalar(
            db, "select count(distinct conversation_id) from scrub_passes"),
        "extracted (ok)": scalar(
            db, f"select count(*) from extractions where status = 'ok' and {NOT_SCRUB}"),
        "extraction errors": scalar(
            db, f"select count(*) from extractions where status = 'error' and {NOT_SCRUB}"),
        "prompt versions used": scalar(
            db, f"select count(distinct prompt_id) from extractions where {NOT_SCRUB}"),
        "pushed to Label Studio": scalar(db, "select count(distinct conversation_id) from tasks"),
        "annotations": scalar(db, "select count(*) from annotations where deleted = 0"),
        "annotated conversations": scalar(
            db, "select count(distinct conversation_id) from annotations where deleted = 0"
        ),
        "adjudicated (gold)": scalar(db, "select count(*) from gold"),
        "model calls": calls.calls,
        "model calls in flight": calls.in_flight_calls,
        "model calls possibly paid": calls.possibly_paid_calls,
        "cost recorded (USD)": round(calls.cost_usd, 4),
        "cost possibly paid (USD, estimate)": round(calls.possibly_paid_usd_estimate, 4),
    }


def _names(values: list[Any]) -> tuple[str, ...]:
    """Value names from a JSON list of names or of ValueRef objects, in stored order.

    Each name is interned: a study names a few thousand values a million times, and one
    string object per name (not one per mention) keeps a frame several times smaller."""
    if not values:
        return ()
    if type(values) is not list:  # a text or an object would be read as its characters or
        # keys, values no one gave: refused, as the models refuse it (`UNREADABLE_ROW`)
        raise TypeError(f"value names are a list, not {type(values).__name__}")
    return tuple([intern(v["name"]) if type(v) is dict else intern(str(v)) for v in values])


def _names_of(text: str | None) -> tuple[str, ...]:
    """`_names` of a JSON text column; an empty list is not parsed (most `human_values`)."""
    if not text or text == "[]":
        return ()
    return _names(orjson.loads(text))


# rowids from the first (included) to before the second; None leaves that end open
RowidRange = tuple[int | None, int | None]
# Which annotations the frame holds: live, their author's, no flag raised instead of labels.
IN_ANNOTATIONS_FRAME = f"deleted = 0 and {authors_own()} and not {FLAGGED_INSTEAD}"
IN_FRAME = f"{IN_ANNOTATIONS_FRAME} and cancelled = 0"  # of the frame kept (`table_frame`)


def annotations_frame(db: sqlite_utils.Database, include_cancelled: bool = False,
                      rowids: RowidRange | list[int] = (None, None)) -> pd.DataFrame:
    """One row per live annotation: who labelled which conversation how. An annotation last
    changed by someone other than its author is left out: its labels are not its author's
    (`set_aside_count` says how many). A flag raised instead of labels (`db.FLAGGED_INSTEAD`)
    is no rating: left out, as adjudication leaves it. Rows in the table's order (rowid);
    `rowids`: only those rows, as a part of the frame (a range: `table_halves`; a list:
    `frame_patch`)."""
    sql = ("select id, conversation_id, annotator, labels, lead_time, cancelled, updated_at "
           f"from annotations where {IN_ANNOTATIONS_FRAME}")
    if not include_cancelled:
        sql += " and cancelled = 0"
    if isinstance(rowids, list):
        sql += " and rowid in (select value from json_each(?)) order by rowid"
        params: list[Any] = [orjson.dumps(rowids).decode()]
    else:
        in_range, params = id_range_sql("rowid", rowids)
        sql += f" and {in_range}"
    rows = []
    try:  # the row that fails is the one the loop stopped at: named, at no cost per row
        for ident, conv, annotator, labels, lead, cancelled, updated in db.execute(sql, params):
            data = orjson.loads(labels)
            rows.append(
                (
                    ident,
                    conv,
                    annotator,
                    data.get("response_type"),
                    _names(data.get("ai_values") or []),
                    _names(data.get("human_values") or []),
                    data.get("subjective"),
                    lead,
                    bool(cancelled),
                    updated,
                    data.get("task"),
                )
            )
    except UNREADABLE_ROW as exc:
        raise unreadable_row(annotation_row(ident, conv), exc) from exc
    return pd.DataFrame.from_records(rows, columns=ANNOTATION_COLUMNS)


def set_aside_count(db: sqlite_utils.Database) -> int:
    """Live annotations left out of every frame here as not their author's (`annotations_frame`)."""
    return scalar(db, f"select count(*) from annotations where deleted = 0 and cancelled = 0 "
                      f"and not {authors_own()}")


def gold_frame(db: sqlite_utils.Database, rowids: RowidRange = (None, None)) -> pd.DataFrame:
    """One row per adjudicated conversation; `rowids`: only those rows, as a part of the frame
    (`table_halves`)."""
    in_range, params = id_range_sql("rowid", rowids)
    rows = []
    try:
        for conv, response_type, ai, human, subjective, decided_by, decided_at, task in db.execute(
            "select conversation_id, response_type, ai_values, human_values, subjective, "
            f"decided_by, decided_at, task from gold where {in_range}", params
        ):
            rows.append((conv, response_type, _names_of(ai), _names_of(human),
                         optional_bool(subjective), decided_by, decided_at, task))
    except UNREADABLE_ROW as exc:
        raise unreadable_row(gold_row(conv), exc) from exc
    return pd.DataFrame.from_records(rows, columns=GOLD_COLUMNS)


def extractions_frame(
    db: sqlite_utils.Database, prompt_id: str | None = None, include_errors: bool = False,
    pushed_only: bool = False,
) -> pd.DataFrame:
    """One row per extraction (conversation x prompt version x model); `pushed_only`: only of
    conversations pushed to Label Studio (a few thousand of a study's 300,000)."""
    sql = (
        "select conversation_id, prompt_id, model, extractor, status, response_type, ai_values, "
        "human_values, subjective, error, cost_usd, created_at, task from extractions "
        f"where {NOT_SCRUB}"  # a scrub pass proposes no labels: nothing to score
    )
    if pushed_only:
        sql += " and conversation_id in (select conversation_id from tasks)"
    params: list[Any] = []
    if prompt_id is not None:
        sql += " and prompt_id = ?"
        params.append(prompt_id)
    if not include_errors:
        sql += " and status = 'ok'"
    rows = []
    try:
        for (conv, prompt, model, extractor, status, response_type, ai, human, subjective, error,
             cost, created, task) in db.execute(sql, params):
            rows.append((conv, prompt, model, extractor, status, response_type, _names_of(ai),
                         _names_of(human), optional_bool(subjective), error, cost, created,
                         task))
    except UNREADABLE_ROW as exc:
        raise unreadable_row(extraction_row(conv, prompt), exc) from exc
    return pd.DataFrame.from_records(rows, columns=EXTRACTION_COLUMNS)


def table_frame(db: sqlite_utils.Database, table: str) -> pd.DataFrame:
    """The frame of `annotations`, `gold` or `extractions:<prompt id>` (every status 'ok'
    extraction of that version, few-shot examples included), as `frame_store` keeps it."""
    if not is_frame_table(table):
        raise ValueError(f"no frame of table {table!r}")
    if table == "annotations":
        return annotations_frame(db)
    if table == "gold":
        return gold_frame(db)
    return extractions_frame(db, prompt_id=table.removeprefix("extractions:"))


def built_frame(db: sqlite_utils.Database, table: str
                ) -> tuple[pd.DataFrame | pa.Table, str]:
    """`table_frame` and the signature of the rows it read, both of one snapshot. The
    annotations frame of a study on disk is made from the one stored before it and the rows
    changed since, when it can be (`frame_patch`: then as the Arrow table it is stored as),
    and its row index is kept for the next."""
    path = database_path(db)
    with snapshot(db):
        signature = table_signature(db, table)
        if table != "annotations" or path is None:
            return table_frame(db, table), signature
        patched = frame_patch.patched_frame(db, str(path), IN_FRAME, _annotation_rows(db))
        frame, facts, change, logged_at = patched or (
            table_frame(db, table), frame_patch.row_facts(db, IN_FRAME), None,
            frame_patch.log_position(db))
    frame_patch.store_row_index(str(path), signature, facts, change, logged_at)
    return frame, signature


def _annotation_rows(db: sqlite_utils.Database) -> Callable[[list[int]], pd.DataFrame]:
    return lambda rowids: annotations_frame(db, rowids=rowids)


def store_patched_annotations(path: str, signature: str) -> bool:
    """In a worker process: the annotations frame at `signature` stored, made from the one
    stored before it (`frame_patch`); False when it is to be built whole (the table changed
    since `signature`, or no frame to start from)."""
    with worker_study(path) as db, snapshot(db):
        if table_signature(db, "annotations") != signature:
            return False
        patched = frame_patch.patched_frame(db, path, IN_FRAME, _annotation_rows(db))
    if patched is None:
        return False
    frame_patch.store_row_index(path, signature, patched.facts, patched.change,
                                patched.logged_at)
    store_table(path, "annotations", signature, patched.frame)
    return True


def stored_frames(
    db: sqlite_utils.Database, tables: list[str], signatures: dict[str, str] | None = None,
    worker: Executor | None = None,
) -> dict[str, pd.DataFrame]:
    """`table_frame` of each table, read from the study's frame store when the table has not
    changed since it was stored (`frame_store`), else built and stored. `signatures`: the
    tables' signatures, when the caller read them in its own snapshot. `worker`: a process
    that builds the annotations frame, the largest, while this one builds the others."""
    path = database_path(db)
    if path is None:  # a database in memory has no folder to keep frames in
        return {table: table_frame(db, table) for table in tables}
    with snapshot(db):
        if signatures is None:
            signatures = {table: table_signature(db, table) for table in tables}
        building = None
        if (worker is not None and "annotations" in tables and len(tables) > 1
                and not has_frame(path, "annotations", signatures["annotations"])):
            building = worker.submit(_store_frame_of_file, str(path), "annotations")
        found = {table: stored_frame(path, table, signatures[table],
                                     lambda table=table: built_frame(db, table))
                 for table in tables if building is None or table != "annotations"}
        if building is not None:
            building.result()
            # read back; built here after all if the table changed before the worker read it
            found["annotations"] = stored_frame(path, "annotations", signatures["annotations"],
                                                lambda: built_frame(db, "annotations"))
        return {table: found[table] for table in tables}


# The frames built in parts, each part's rows read by rowid range (`table_halves`).
PART_FRAMES: dict[str, Callable[..., pd.DataFrame]] = {"annotations": annotations_frame,
                                                       "gold": gold_frame}


def table_halves(db: sqlite_utils.Database, table: str) -> list[RowidRange]:
    """Two rowid ranges splitting `table` (one of `PART_FRAMES`) in half: its frame built in
    two processes at once, one part each (`store_frame_part`)."""
    row = db.execute(f"select rowid from {table} order by rowid limit 1 offset ?",
                     [db[table].count // 2]).fetchone()
    return [(None, None)] if row is None else [(None, row[0]), (row[0], None)]


def store_frame_part(path: str, table: str, rowids: RowidRange, part: str) -> str | None:
    """In a worker process: the rows in `rowids` of `table`'s frame (one of `PART_FRAMES`),
    written to `part` (`frame_store.write_part`); the signature of the table as read, or None
    when the rows could not be written (the frame is then built whole)."""
    with worker_study(path) as db, snapshot(db):
        frame = PART_FRAMES[table](db, rowids=rowids)
        signature = table_signature(db, table)
    return signature if write_part(frame, Path(part)) else None


def _store_frame_of_file(path: str, table: str) -> None:
    """Build and store `table`'s frame in a worker process (`stored_frames`)."""
    with worker_study(path) as db:
        stored_frames(db, [table])


def without_few_shot(
    extractions: pd.DataFrame, examples: dict[str, frozenset[str]]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Extractions minus each prompt version's own few-shot examples (`prompts.few_shot_map`):
    a model shown a conversation's gold labels in its prompt is not scored on it. Also how many
    conversations were left out, per prompt id (versions that lost none are not named)."""
    if not examples or extractions.empty:
        return extractions, {}
    leak = pd.Series(False, index=extractions.index)
    left_out: dict[str, int] = {}
    for pid, ids in examples.items():
        hit = (extractions["prompt_id"] == pid) & extractions["conversation_id"].isin(list(ids))
        if hit.any():
            left_out[pid] = int(extractions.loc[hit, "conversation_id"].nunique())
            leak |= hit
    return extractions.loc[~leak], left_out


def scored_extractions(
    db: sqlite_utils.Database, pushed_only: bool = False
) -> tuple[pd.DataFrame, dict[str, int]]:
    """`extractions_frame` as agreement scores it: without each version's few-shot examples
    (`without_few_shot`), and how many were left out per prompt id."""
    return without_few_shot(extractions_frame(db, pushed_only=pushed_only), few_shot_map(db))


def conversation_rows(db: sqlite_utils.Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored conversations with these ids (turns decoded), keyed by id."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in db.query(f"select * from conversations where id in ({marks})", chunk):
            row["turns"] = stored_turns(row["id"], row["turns"])
            with reading_row(conversation_row(row["id"])):
                row["metadata"] = orjson.loads(row["metadata"] or "{}")
            found[row["id"]] = row
    return found


def _study_signatures(db: sqlite_utils.Database) -> dict[str, str]:
    """The signature of each table `study_agreement` reads: annotations, gold and each prompt
    version's extractions ("extractions:<prompt id>", in order of prompt id)."""
    prompts = [prompt for (prompt,) in db.execute(
        f"select distinct prompt_id from extractions where {NOT_SCRUB} and status = 'ok' "
        "order by prompt_id")]
    tables = ["annotations", "gold", *(f"extractions:{p}" for p in prompts)]
    return {table: table_signature(db, table) for table in tables}


def _prompts_of(signatures: dict[str, str]) -> list[str]:
    return [t.removeprefix("extractions:") for t in signatures if t.startswith("extractions:")]


class _StudyFrames(NamedTuple):
    annotations: pd.DataFrame
    gold: pd.DataFrame
    extractions: pd.DataFrame  # every prompt version's, few-shot examples included
    signatures: dict[str, str]  # of each table read ("extractions:<prompt id>" per version)

    @property
    def annotations_signature(self) -> str:
        return self.signatures["annotations"]


def _study_frames(db: sqlite_utils.Database, worker: Executor | None = None,
                  signatures: dict[str, str] | None = None, for_models: bool = False
                  ) -> _StudyFrames:
    """The annotations, gold and extractions frames of one snapshot, from the frame store
    (`worker`: see `stored_frames`; `signatures`: `_study_signatures`, read by the caller in
    the snapshot it holds; `for_models`: for the model rows alone, `_model_frames`). Each
    version's rows keep the table's order, which the report's resampling follows; the
    versions are scored apart, so their order is free."""
    with snapshot(db):
        signatures = signatures or _study_signatures(db)
        prompts = _prompts_of(signatures)
        found = (_model_frames(db, list(signatures), signatures) if for_models
                 else stored_frames(db, list(signatures), signatures, worker))
        parts = [found[f"extractions:{p}"] for p in prompts]
        extractions = pd.concat(parts, ignore_index=True) if parts else extractions_frame(db)
    return _StudyFrames(found["annotations"], found["gold"], extractions, signatures)


# Where a caller finds the inter-annotator report already computed from a study's annotations
# at a signature (the app's summary: `precompute.stored_inter_annotator`), else None.
StoredInterAnnotator = Callable[[Path, str], AgreementReport | None]


class KeptInterAnnotator(NamedTuple):
    """How a caller has the inter-annotator report computed so that later readers find it
    (the app's summary: `precompute.KEPT_INTER_ANNOTATOR`). `compute(path, signature)` runs in
    the second process: it computes the report of the annotations frame stored at exactly
    `signature` with `settings`, stores it where `StoredInterAnnotator` reads, and returns it
    (None: that frame is no longer stored). A module-level function: it is sent to a spawned
    process by name."""

    compute: Callable[[str, str], AgreementReport | None]
    settings: Mapping[str, Any]  # `agreement_report`'s: levels, distances, top_k, n_boot, ...


class StoredGoldScores(NamedTuple):
    """Where a caller finds a prompt version's scores against gold already computed (the app's
    summary: `precompute.STORED_GOLD_SCORES`): `read(path, prompt id, signatures)` gives them
    as computed from the version's extractions and gold at these signatures (None: not
    stored), with `settings`: the resamples, seed and taxonomy levels they were computed with.
    `read` runs in the first process alone: what it reads goes to the second one as data."""

    read: Callable[[Path, str, Mapping[str, str]], KnownScores | None]
    settings: Mapping[str, Any]


class StoredFigures(NamedTuple):
    """Where a caller that shows agreement figures finds those already computed (the app's
    summaries: `precompute.STORED_FIGURES`): the annotators' own and each version's against
    gold (`study_agreement`'s `stored_inter_annotator` and `stored_gold_scores`)."""

    inter_annotator: StoredInterAnnotator | None = None
    gold_scores: StoredGoldScores | None = None


def _known_gold_scores(stored: StoredGoldScores | None, path: Path | None,
                       signatures: Mapping[str, str], prompt_ids: list[str],
                       settings: Mapping[str, Any]) -> dict[tuple[str, str], KnownScores]:
    """Each scored version's scores against gold that `stored` holds, when computed with the
    resamples and seed asked for, on every level asked for (`agreement_report`'s
    `known_scores`); the others are computed."""
    if stored is None or path is None or any(
            settings[k] != stored.settings[k] for k in ("n_boot", "seed")) or not set(
            settings["levels"]) <= set(stored.settings["levels"]):
        return {}
    found = {}
    for pid in _prompts_of(signatures):
        if prompt_ids and pid not in prompt_ids:
            continue
        known = stored.read(path, pid, signatures)
        if known is not None:
            found[(pid, "gold")] = known
    return found


# From this many annotations, the inter-annotator figures are computed in a second process
# while this one computes the model rows (each about half the work): below it, starting the
# process costs more than it saves.
PARALLEL_MIN_ANNOTATIONS = 50_000


def _inter_annotator_part(path: str, signature: str, levels: tuple[int, ...], n_boot: int,
                          top_k: int, seed: int, figures: Mapping[str, Any] | None = None
                          ) -> AgreementReport | None:
    """The inter-annotator part of `study_agreement`, in a worker process, from the stored
    annotations frame of exactly this signature (None if it is no longer stored)."""
    from annotator.taxonomy import load_taxonomy

    collect_garbage_rarely()  # a spawned worker starts with Python's defaults
    annotations = read_frame(path, "annotations", signature)
    if annotations is None:
        return None
    tree = load_taxonomy()
    return agreement_report(annotations, level_maps={lv: tree.level_map(lv) for lv in levels},
                            levels=levels, n_boot=n_boot, top_k=top_k, seed=seed,
                            **(figures or {}))


@contextmanager
def _second_process(wanted: bool) -> Iterator[ProcessPoolExecutor | None]:
    """`study_agreement`'s second process (`spawned_pool`), or None. Left without waiting
    for it to exit, while this process writes the report."""
    if not wanted:
        yield None
        return
    pool = spawned_pool(1)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _ready_to_score(levels: tuple[int, ...]) -> None:
    """A spawned worker's first task: the taxonomy's level maps made (its imports done by
    now), so that it scores as soon as its frames are read."""
    from annotator.taxonomy import load_taxonomy

    tree = load_taxonomy()
    for level in levels:
        tree.level_map(level)


def _versions_scored(annotations: pd.DataFrame, gold: pd.DataFrame, parts: list[pd.DataFrame],
                     prompt_ids: list[str], few_shot: dict[str, frozenset[str]],
                     settings: dict[str, Any]) -> tuple[AgreementReport, dict[str, int]]:
    """The model rows of these prompt versions from their extraction frames (`parts`), and how
    many conversations each left out as its few-shot examples."""
    from annotator.taxonomy import load_taxonomy

    extractions, left_out = without_few_shot(pd.concat(parts, ignore_index=True), few_shot)
    tree = load_taxonomy()
    maps = {level: tree.level_map(level) for level in settings["levels"]}
    return agreement_report(annotations, gold, extractions, maps, prompt_ids=prompt_ids,
                            inter_annotator=False, **settings), left_out


def _models_part(path: str, signatures: dict[str, str], prompt_ids: list[str],
                 few_shot: dict[str, frozenset[str]], settings: dict[str, Any]
                 ) -> tuple[AgreementReport, dict[str, int]] | None:
    """`_versions_scored` in a worker process, from the frames stored at exactly these
    signatures (None if one is no longer stored)."""
    collect_garbage_rarely()  # a spawned worker starts with Python's defaults
    tables = ["annotations", "gold", *(f"extractions:{p}" for p in prompt_ids)]
    found = [read_frame(path, table, signatures.get(table, ""), arrow_lists=True)
             for table in tables]
    if any(frame is None for frame in found):
        return None
    annotations, gold, *parts = found
    return _versions_scored(annotations, gold, parts, prompt_ids, few_shot, settings)


def _model_frames(db: sqlite_utils.Database, tables: list[str], signatures: dict[str, str]
                  ) -> dict[str, pd.DataFrame]:
    """The frames of `tables` for the model rows alone: each stored one with its names left
    Arrow lists (`read_frame`'s `arrow_lists`, which `encode_sets` takes as they are), any
    other read or built as `stored_frames` does."""
    path = database_path(db)
    found = {table: read_frame(path, table, signatures[table], arrow_lists=True)
             for table in tables} if path is not None else {}
    missing = [table for table in tables if found.get(table) is None]
    if missing:
        found.update(stored_frames(db, missing, {t: signatures[t] for t in missing}))
    return found


def _version_halves(path: Path | None, worker: Executor | None, signatures: dict[str, str],
                    prompt_ids: list[str]) -> tuple[list[str], list[str]] | None:
    """The prompt versions scored, in two halves (earlier, later), when the worker can score
    the later half from stored frames while this process scores the earlier one. None: no
    worker, fewer than two versions, or a frame still to be built (the worker then builds the
    annotations frame meanwhile)."""
    if worker is None or path is None:
        return None
    scored = [p for p in _prompts_of(signatures) if not prompt_ids or p in prompt_ids]
    if len(scored) < 2 or not all(has_frame(path, t, sig) for t, sig in signatures.items()):
        return None
    return scored[:len(scored) // 2], scored[len(scored) // 2:]


def _models_in_halves(
    db: sqlite_utils.Database, worker: Executor, signatures: dict[str, str],
    halves: tuple[list[str], list[str]], few_shot: dict[str, frozenset[str]],
    settings: dict[str, Any],
) -> tuple[AgreementReport, dict[str, int]]:
    """The model rows of both halves of the prompt versions: the later half's in the worker,
    started first, the earlier half's here, from the frames of those versions alone; joined in
    the order one call over both gives (each figure draws from the seed alone). Inside the
    caller's snapshot, at `signatures`."""
    earlier, later = halves
    path = database_path(db)
    theirs = worker.submit(_models_part, str(path), signatures, later, few_shot, settings)
    tables = [f"extractions:{p}" for p in later]
    found = _model_frames(db, ["annotations", "gold", *(f"extractions:{p}" for p in earlier)],
                          signatures)
    annotations, gold = found["annotations"], found["gold"]
    models, left_out = _versions_scored(
        annotations, gold, [found[f"extractions:{p}"] for p in earlier], earlier, few_shot,
        settings)
    rest = theirs.result()
    if rest is None:  # a frame it was to read is no longer stored: read or built here
        found = _model_frames(db, tables, signatures)
        rest = _versions_scored(annotations, gold, [found[t] for t in tables], later,
                                few_shot, settings)
    joined_left_out = {**left_out, **rest[1]}
    return (_models_joined(models, rest[0]),
            {pid: joined_left_out[pid] for pid in few_shot if pid in joined_left_out})


def _kept_for(kept: KeptInterAnnotator | None, requested: Mapping[str, Any]
              ) -> KeptInterAnnotator | None:
    """`kept` when the report it computes holds the figures `requested` (`settings_cover`;
    the pairs it always holds) at the same levels and distances, so that it costs little
    more than they do; else None: those are computed as asked, and nothing kept (`--level 0`
    alone is not made to wait for the other levels)."""
    if kept is None:
        return None
    same = all(set(requested.get(k, kept.settings[k])) == set(kept.settings[k])
               for k in ("levels", "distances"))
    return kept if same and settings_cover(kept.settings, requested) else None


def _models_joined(first: AgreementReport, second: AgreementReport) -> AgreementReport:
    """The model rows of two sets of prompt versions, the second's versions after the
    first's: the rows one call over both gives (each figure draws from the seed alone)."""
    return first.model_copy(update={"rows": first.rows + second.rows,
                                    "confusion": first.confusion + second.confusion,
                                    "prompt_ids": first.prompt_ids + second.prompt_ids})


def study_agreement(
    db: sqlite_utils.Database,
    prompt_ids: list[str] | None = None,
    levels: tuple[int, ...] = (0, 1, 2, 3),
    n_boot: int = 200,
    top_k: int = 50,
    seed: int = 0,
    parallel_min_annotations: int = PARALLEL_MIN_ANNOTATIONS,
    figures: Mapping[str, Any] | None = None,
    stored_inter_annotator: StoredInterAnnotator | None = None,
    kept_inter_annotator: KeptInterAnnotator | None = None,
    stored_gold_scores: StoredGoldScores | None = None,
) -> AgreementReport:
    """Inter-annotator and model-human agreement of the study, from its stored labels.

    Value names are mapped to their taxonomy ancestors at each level with the released tree;
    names outside it stay free values. `prompt_ids` may name versions any way `--prompt` does
    (`prompts.resolve_prompt`). A version's few-shot examples are left out of its figures; the
    report's `settings["few_shot_left_out"]` says how many conversations, per prompt id.
    From `parallel_min_annotations` annotations, a second process builds the annotations frame
    (when not stored) while this one builds the others, then computes the inter-annotator
    figures while this one computes the model rows, or, with those figures stored, the model
    rows of the later half of the prompt versions (the same figures: each draws its resamples
    from `seed` alone).
    `figures`: `agreement_report`'s choices of figures (`distances`, `pairwise`,
    `per_annotator`), for a caller that shows only some; each figure is the same either way.
    `stored_inter_annotator`: where an inter-annotator report of the annotations may be
    stored already; when one holds the figures asked for (`inter_annotator_part`), they are
    taken from it.
    `kept_inter_annotator`: when the figures are computed here (none stored) and its settings
    hold the figures asked for, the second process computes its report and stores it, and the
    figures are taken from that: the next reader (the app, the next `agreement`) finds them.
    `stored_gold_scores`: where a version's scores against gold may be stored already,
    computed from the same rows with the same resamples and seed; they are taken from there.
    """
    from annotator.taxonomy import load_taxonomy

    prompt_ids = resolve_used_ids(db, prompt_ids)  # an unknown or ambiguous one is an error
    tree = load_taxonomy()
    maps = {level: tree.level_map(level) for level in levels}
    settings = {"levels": levels, "n_boot": n_boot, "top_k": top_k, "seed": seed,
                **(figures or {})}
    path = database_path(db)
    large = path is not None and db["annotations"].count >= parallel_min_annotations
    # the inter-annotator figures asked for (of the figures chosen, the distances and pairs are
    # the annotators' own)
    requested = {"levels": levels, "n_boot": n_boot, "top_k": top_k, "seed": seed,
                 **{k: v for k, v in (figures or {}).items() if k != "per_annotator"}}
    few_shot = few_shot_map(db)
    with _second_process(large) as worker:
        if worker is not None:  # started now: its imports and taxonomy while this one reads
            worker.submit(_ready_to_score, levels)
        with snapshot(db):  # the signatures, the figures stored for them, the frames: one read
            signatures = _study_signatures(db)
            set_aside = set_aside_count(db)
            known = _known_gold_scores(stored_gold_scores, path, signatures, prompt_ids,
                                       settings)
            if known:
                settings["known_scores"] = known
            found = (stored_inter_annotator(path, signatures["annotations"])
                     if stored_inter_annotator is not None and path is not None else None)
            stored_part = found and inter_annotator_part(found, **requested)
            # with those stored, the worker scores the later versions while this process
            # scores the earlier ones (else it computes the annotators' figures)
            halves = stored_part and _version_halves(path, worker, signatures, prompt_ids)
            if halves:
                models, left_out = _models_in_halves(db, worker, signatures, halves, few_shot,
                                                     settings)
            else:  # with the annotators' figures stored, the frames serve the model rows alone
                study = _study_frames(db, worker, signatures, for_models=bool(stored_part))
        if halves:
            annotators = stored_part
        else:
            extractions, left_out = without_few_shot(study.extractions, few_shot)
            if prompt_ids:
                extractions = extractions[extractions["prompt_id"].isin(prompt_ids)]
                left_out = {pid: n for pid, n in left_out.items() if pid in prompt_ids}
            part = kept = None
            if (worker is not None and not stored_part
                    and has_frame(path, "annotations", study.annotations_signature)):
                kept = _kept_for(kept_inter_annotator, requested)
                part = (worker.submit(kept.compute, str(path), study.annotations_signature)
                        if kept is not None else
                        worker.submit(_inter_annotator_part, str(path),
                                      study.annotations_signature, levels, n_boot, top_k, seed,
                                      figures))
            models = agreement_report(study.annotations, study.gold, extractions, maps,
                                      prompt_ids=prompt_ids or None, inter_annotator=False,
                                      **settings)
            annotations = study.annotations
            # the frames only the model rows read are freed before the inter-annotator
            # figures' counter is built here: that counter is the peak of a process computing
            # both
            del study, extractions
            annotators = stored_part or (part.result() if part is not None else None)
            if kept is not None and annotators is not None:  # the kept report: what was asked
                annotators = inter_annotator_part(annotators, **requested)
            if annotators is None:  # here: no worker, or the stored frame changed meanwhile
                annotators = agreement_report(annotations, level_maps=maps, **settings)
        report = joined(annotators, models)
    report.settings["few_shot_left_out"] = left_out
    report.settings["set_aside_edited_by_other"] = set_aside
    report.settings["set_aside_why"] = SET_ASIDE_WHY
    return report


REVIEW_COLUMNS = ["conversation_id", "annotator", "blind", "prefilled_by", "response_type",
                  "ai_values"]


def review_annotations_frame(db: sqlite_utils.Database) -> pd.DataFrame:
    """One row per complete, live annotation pulled from Label Studio, with its task: blind
    (pushed without any prediction) or pre-filled, and by which prompt version.

    An annotation belongs to the task of its source's server and project and its conversation.
    Incomplete annotations (a required field left empty) are left out, as `adjudicate` leaves
    them, and so are annotations last changed by someone other than their author; so are tasks
    that were neither blind nor pre-filled (no prediction of the pre-filling version: an empty
    form, though not by design) and tasks pushed before either was recorded.
    """
    rows = []
    try:
        for conv, annotator, labels, blind, prefilled_by in db.execute(
            "select a.conversation_id, a.annotator, a.labels, t.blind, t.prefilled_by "
            "from annotations a join tasks t on t.conversation_id = a.conversation_id "
            "and a.source = 'labelstudio:' || t.server || ':' || t.project_id "
            "where a.deleted = 0 and a.cancelled = 0 and coalesce(a.missing, '[]') = '[]' "
            f"and {authors_own('a')} "
            "and (t.blind = 1 or t.prefilled_by is not null) "
            "order by a.conversation_id, a.annotator"
        ):
            data = orjson.loads(labels)
            rows.append((conv, annotator, bool(blind), prefilled_by, data.get("response_type"),
                         _names(data.get("ai_values") or [])))
    except UNREADABLE_ROW as exc:
        raise unreadable_row(f"the annotation by {annotator!r} of conversation {conv!r}",
                             exc) from exc
    return pd.DataFrame.from_records(rows, columns=REVIEW_COLUMNS)


def study_anchoring(
    db: sqlite_utils.Database,
    prompt_ids: list[str] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    min_blind: int = MIN_BLIND_CONVERSATIONS,
) -> list[AnchoringReport]:
    """Anchoring per prompt version: its extractions against each Label Studio annotation, on
    pre-filled and on blind tasks (`agreement.anchoring`). Versions with extractions of pushed
    conversations, in order of first use; none when no annotation came from Label Studio.
    `prompt_ids` are resolved as in `study_agreement`; a version's few-shot examples are left
    out of its figures."""
    prompt_ids = resolve_used_ids(db, prompt_ids)  # checked even when nothing was reviewed
    reviews = review_annotations_frame(db)
    if reviews.empty:
        return []
    extractions, _ = scored_extractions(db, pushed_only=True)
    # in order of first use
    order = list(dict.fromkeys(extractions.sort_values("created_at", kind="stable")["prompt_id"]))
    return [
        anchoring(extractions.loc[extractions["prompt_id"] == pid], reviews, prompt_id=pid,
                  min_blind=min_blind, n_boot=n_boot, seed=seed)
        for pid in order
        if not prompt_ids or pid in prompt_ids
    ]


# --- the published study and the prompt versions, for the report and the app ---

# Published figures of the study the project follows, for side-by-side display. Only numbers
# confirmed in text read for this project are given; None means "not confirmed, shown as
# unavailable". 700,000 / 308,210 and the response-type shares (28.2% strong support, 14.5% mild
# support, 3.0% strong resistance, of conversations) were read in a summary of the paper
# (https://ch-ai-tanya.cyberchitta.cc/raw/papers/source-2025-values-in-the-wild-huang.html), not
# in the paper's own text; 6.6% reframing is from Anthropic's post on the study
# (https://www.anthropic.com/research/values-wild). The other response types' shares were not
# found in either.
# The top categories' shares are not here: they are read from the released tree
# (`published_category_shares`), not copied by hand.
PUBLISHED_STUDY: dict[str, Any] = {
    "source": (
        "Huang, Durmus, McCain et al. (2025), \"Values in the Wild: Discovering and Analyzing "
        "Values in Real-World Language Model Interactions\", arXiv:2504.15236, Anthropic"
    ),
    "url": "https://arxiv.org/abs/2504.15236",
    "conversations_sampled": 700_000,
    "conversations_subjective": 308_210,
    # Share of the subjective conversations by the AI's response type, in percent: the six
    # types add up to 64.3%, the share of subjective conversations where the user states a
    # value ("no values" is the rest, 35.7%, not stated as such).
    "response_type_pct": {
        "strong support": 28.2,
        "mild support": 14.5,
        "neutral": 9.6,
        "reframing": 6.6,
        "mild resistance": 2.4,
        "strong resistance": 3.0,
        "no values": None,
    },
    "human_values_present_pct": 64.3,
    "ai_values_per_conversation": 4.0,
    "category_source": (
        "Anthropic/values-in-the-wild, values_tree.csv, level-3 pct_total_occurrences (CC BY 4.0)"
    ),
}


def published_category_shares() -> dict[str, float]:
    """Released share of all value occurrences per top category, in percent ("Practical": 31.4)."""
    from annotator.taxonomy import load_taxonomy

    return {
        short: float(node.pct_total_occurrences or 0.0)
        for short, node in load_taxonomy().top_categories().items()
    }


def prompt_list(db: sqlite_utils.Database) -> pd.DataFrame:
    """Prompt versions with extractions, oldest first: id, name, version, ok and error counts."""
    counts = pd.DataFrame.from_records(
        list(
            db.execute(
                "select prompt_id, sum(status = 'ok'), sum(status = 'error') from extractions "
                f"where {NOT_SCRUB} group by prompt_id"
            )
        ),
        columns=["prompt_id", "ok", "errors"],
    )
    meta = pd.DataFrame.from_records(
        list(db.execute("select id, name, version, first_used_at from prompts")),
        columns=["prompt_id", "name", "version", "first_used"],
    )
    frame = counts.merge(meta, on="prompt_id", how="left")
    frame["name"] = frame["name"].fillna("")
    frame["version"] = frame["version"].fillna("")
    frame = frame.sort_values(["first_used", "prompt_id"], na_position="last")
    return frame[["prompt_id", "name", "version", "ok", "errors", "first_used"]].reset_index(
        drop=True
    )
