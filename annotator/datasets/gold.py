"""Adjudicated labels: the `gold/*.jsonl` files and the `gold` table.

A gold file holds one conversation a line, sorted by id, so a change reads well in a diff.
Importing a gold file brings its conversations, each annotator's labels and the gold label into
the study database; importing twice changes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import chain, groupby
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import sqlite_utils
from pydantic import BaseModel, Field

from annotator.datasets.halves import (
    Progress,
    RowsRead,
    WorkerCount,
    counting,
    for_worker,
    in_worker,
    second_half_start,
    worker_counting,
)
from annotator.datasets.plain import (
    GOLD_COLUMNS,
    PlainGold,
    PlainLabels,
    PlainVote,
    Vote,
    annotations_of,
    own_votes,
    plain_gold,
    plain_votes_in_order,
    vote_rows_in_order,
)
from annotator.db import (
    EVERY_ID,
    VOTES,
    IdRange,
    annotation_to_row,
    authors_own,
    database_path,
    dumps,
    gold_to_row,
    id_range_sql,
    loads,
    row_to_annotation,
    row_to_conversation,
    row_to_gold,
    vote_to_annotation,
    worker_study,
)
from annotator.errors import AnnotatorError, InputError
from annotator.extract.tasks import TaskList, load_task_list
from annotator.gold_file import gold_files, numbered_records
from annotator.ingest.formats import RawConversation
from annotator.ingest.rows import conversation_row
from annotator.models import (
    MAJORITY,
    REQUIRED_FIELDS,
    SET_ASIDE_WHY,
    Annotation,
    AnnotatorLabels,
    GoldLabel,
    GoldRecord,
    Labels,
    RejectedRecord,
    content_id,
    utc_now,
)
from annotator.study_key import study_key


class GoldImportReport(BaseModel):
    files: list[str] = Field(default_factory=list)
    conversations: int = 0
    annotations: int = 0
    gold_labels: int = 0
    rejected: list[RejectedRecord] = Field(default_factory=list)


def import_gold(
    db: sqlite_utils.Database, paths: Iterable[str | Path], scrub: bool = True
) -> GoldImportReport:
    """Load gold files into the study: conversations, annotations (one per annotator), gold.

    A gold label without a response type or `subjective` is not imported (gold is never
    incomplete): its conversation and annotations are, and the line is reported, so that
    `adjudicate` or a person decides it.
    """
    report = GoldImportReport()
    counts: Counter[str] = Counter()
    now = utc_now().isoformat()
    key = study_key(db)
    task_list: TaskList | None = None
    for path in gold_files(paths):
        report.files.append(str(path))
        for line_no, record in numbered_records(path):
            if isinstance(record, RejectedRecord):
                report.rejected.append(record)
                continue
            try:
                if _has_tasks(record):
                    task_list = task_list or load_task_list()
                    record = _with_listed_tasks(record, task_list)
            except InputError as exc:
                report.rejected.append(RejectedRecord(file=str(path), line=line_no,
                                                      reason=str(exc)))
                continue
            raw = RawConversation(0, [(t.role.value, t.text) for t in record.turns])
            row = conversation_row(raw, record.source, scrub, counts, now, key)
            conversation_id = _gold_conversation_id(db, record.conversation_id, row)
            row = (conversation_id, *row[1:])
            annotations = [
                Annotation(
                    id=f"{record.source}:{conversation_id}:{labels.annotator}",
                    conversation_id=conversation_id,
                    annotator=labels.annotator,
                    labels=labels,
                    source=f"gold:{record.source}",
                    missing=labels.missing_fields(),
                )
                for labels in record.annotations
            ]
            gaps = record.gold.missing_fields()
            with db.conn:
                db.conn.execute(
                    "INSERT OR IGNORE INTO conversations (id, source, external_id, turns, "
                    "metadata, scrubbed, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                db["annotations"].upsert_all(
                    [annotation_to_row(a) for a in annotations], pk="id"
                )
                if not gaps:
                    # what the file's decision was made on is not known here: `new_labels_since`
                    # falls back to the annotations' times
                    db["gold"].upsert(
                        {**gold_to_row(conversation_id, record.gold), "labels_seen": None},
                        pk="conversation_id",
                    )
            report.conversations += 1
            report.annotations += len(annotations)
            if gaps:
                report.rejected.append(RejectedRecord(
                    file=str(path), line=line_no,
                    reason=f"gold label not imported: no {' and no '.join(gaps)} "
                           "(the conversation and its annotations were)",
                ))
            else:
                report.gold_labels += 1
    return report


def _has_tasks(record: GoldRecord) -> bool:
    return any(labels.task for labels in [record.gold, *record.annotations])


def _with_listed_tasks(record: GoldRecord, task_list: TaskList) -> GoldRecord:
    """The record with each task spelled as the study's task list spells it; a task not in
    the list is an InputError (the line is reported, nothing of it lands)."""
    def fixed(labels: Labels) -> dict[str, Any]:
        return {"task": task_list.require(labels.task)}

    return record.model_copy(update={
        "gold": record.gold.model_copy(update=fixed(record.gold)),
        "annotations": [a.model_copy(update=fixed(a)) for a in record.annotations],
    })


def _gold_conversation_id(db: sqlite_utils.Database, named: str, row: tuple[Any, ...]) -> str:
    """The id a gold record's conversation gets here: the one its file names, so a gold file
    exported from this study links its labels to the rows already here (ids cannot be computed
    again from the turns: they were made from the unscrubbed text, under the key of the study
    that exported them). If that id names another conversation here (turns edited, or ids
    made up), the record gets the id this study gives its text (`row[0]`), never merging two."""
    stored = db.execute("select turns from conversations where id = ?", [named]).fetchone()
    if stored is None or _same_turns(stored[0], row[3]):
        return named
    return str(row[0])


def _same_turns(a: str, b: str) -> bool:
    def pairs(turns_json: str) -> list[tuple[str, str]]:
        return [(t["role"], t["text"]) for t in loads(turns_json, [])]

    return content_id(pairs(a)) == content_id(pairs(b))


# --- adjudication ------------------------------------------------------------------------------

FIELD_NAMES = {"response_type": "the response type", "subjective": "subjective"}


def _vote(annotation: Annotation) -> Vote:
    labels = annotation.labels
    return Vote(annotation.annotator, labels.response_type, labels.subjective,
                tuple(annotation.missing))


def _missing(vote: Vote) -> list[str]:
    if not vote.missing and vote.response_type is not None and vote.subjective is not None:
        return []  # complete (`REQUIRED_FIELDS`, spelled out): most votes, read per vote
    empty = [f for f in REQUIRED_FIELDS if getattr(vote, f) is None]
    return list(dict.fromkeys([*vote.missing, *empty]))


def missing_fields(annotation: Annotation) -> list[str]:
    """Required fields the annotation left empty: those its source marked, and any that are
    empty in its labels (rows imported before `missing` was recorded say "[]")."""
    return _missing(_vote(annotation))


def _incomplete(votes: list[Vote]) -> str | None:
    parts = [
        f"incomplete annotation by {v.annotator}: {', '.join(gone)} missing"
        for v in votes
        if (gone := _missing(v))
    ]
    return "; ".join(parts) or None


def no_majority_reason(annotations: Sequence[AnnotatorLabels | Vote]) -> str | None:
    """Why a majority cannot decide these labels (a split on the response type or on
    `subjective`), or None when it can. A field needs more than half of the annotators."""
    if not annotations:
        return "no annotations"
    need = len(annotations) // 2 + 1
    for field, getter in _REQUIRED:
        votes = _tally(map(getter, annotations))
        votes.pop(None, None)
        if not votes or max(votes.values()) < need:
            return f"{len(annotations)} annotations split on {FIELD_NAMES[field]}"
    return None


# each required field with its getter (C: no Python frame per vote)
_REQUIRED = tuple((name, attrgetter(name)) for name in REQUIRED_FIELDS)


def _tally(items: Iterable[Any]) -> dict[Any, int]:
    """How often each item occurs, in order of first occurrence: `Counter`'s counts, without
    its cost (a conversation has a few annotations; an export of 300,000 tallies a million
    times)."""
    counts: dict[Any, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _most_common(counts: dict[Any, int]) -> Any:
    """The item counted most; of a tie, the first seen (as `Counter.most_common` orders)."""
    return max(counts.items(), key=itemgetter(1))[0]


def majority_label(annotations: list[AnnotatorLabels]) -> GoldLabel | None:
    """The labels more than half of the annotators gave, or None when the response type or
    `subjective` has no such majority (then a person decides: gold never lacks either).

    A value is in gold when more than half listed it. With three annotators that is two of
    three, the rule `gold/` follows.
    """
    if no_majority_reason(annotations) is not None:
        return None
    return _majority_gold(_majority_of(annotations), [a.annotator for a in annotations])


def _majority_gold(found: _Majority, annotators: list[str]) -> GoldLabel:
    """The gold of the labels a majority gives (`_majority_of`), decided now; `annotators`:
    whose labels they are."""
    return GoldLabel(**found._asdict(), decided_by=MAJORITY, decided_at=utc_now(),
                     from_annotations=annotators)


class _Majority(NamedTuple):
    """The labels a majority gives, as plain values (`majority_label` makes them gold)."""

    ai_values: list[str]
    human_values: list[str]
    response_type: Any
    subjective: Any
    task: str | None
    task_description: str | None


def _majority_of(labels: Sequence[Labels]) -> _Majority:
    """`majority_label`'s fields, for labels on which a majority decides (`no_majority_reason`
    is None): no model is built, which an export checking every majority gold would pay."""
    need = len(labels) // 2 + 1
    return _Majority(_agreed(map(_AI_VALUES, labels), need),
                     _agreed(map(_HUMAN_VALUES, labels), need),
                     _most_common(_tally(map(_RESPONSE_TYPE, labels))),
                     _most_common(_tally(map(_SUBJECTIVE, labels))), *majority_task(labels))


_AI_VALUES, _HUMAN_VALUES = attrgetter("ai_values"), attrgetter("human_values")
_RESPONSE_TYPE, _SUBJECTIVE = attrgetter("response_type"), attrgetter("subjective")


def _agreed(lists: Iterable[list[str]], need: int) -> list[str]:
    """The values at least `need` of these lists name; each list counts a value once, and the
    order is the one values were first listed."""
    counts = _tally(chain.from_iterable(map(dict.fromkeys, lists)))
    return [value for value, n in counts.items() if n >= need]


def majority_task(annotations: Sequence[Labels]) -> tuple[str | None, str | None]:
    """The task category more than half of the annotators gave (None when none did: the task
    is not required, a person may add it) and the first description given with it."""
    counts = _tally(a.task for a in annotations if a.task)
    if not counts:
        return None, None
    task = _most_common(counts)
    votes = counts[task]
    if votes < len(annotations) // 2 + 1:
        return None, None
    return task, next((a.task_description for a in annotations
                       if a.task == task and a.task_description), None)


class PersonNeeded(BaseModel):
    """A conversation `adjudicate` leaves to a person, and why."""

    conversation_id: str
    reason: str


NEW_LABELS_SINCE = "new labels since"


class AdjudicationReport(BaseModel):
    decided: int = 0
    unchanged: int = 0
    kept_person_decisions: int = 0
    need_a_person: list[str] = Field(default_factory=list)  # ids, as before; `reasons` says why
    reasons: list[PersonNeeded] = Field(default_factory=list)
    # majority gold the live annotations no longer give: removed from gold (kept in its
    # history), and why; those now split or incomplete are in `need_a_person` too
    reopened: list[PersonNeeded] = Field(default_factory=list)
    # a person's decisions kept though the annotations changed after it: "new labels since"
    new_labels_since: list[str] = Field(default_factory=list)
    set_aside: int = 0  # annotations edited by someone other than their author, not counted
    set_aside_why: str = SET_ASIDE_WHY

    def add_person_needed(self, conversation_id: str, reason: str) -> None:
        self.need_a_person.append(conversation_id)
        self.reasons.append(PersonNeeded(conversation_id=conversation_id, reason=reason))

    def merge(self, later: AdjudicationReport) -> None:
        """Add the report of conversations after these (`adjudicate`'s second half)."""
        for name in ("decided", "unchanged", "kept_person_decisions", "set_aside"):
            setattr(self, name, getattr(self, name) + getattr(later, name))
        for name in ("need_a_person", "reasons", "reopened", "new_labels_since"):
            getattr(self, name).extend(getattr(later, name))


def own_annotations(annotations: Iterable[Annotation]) -> tuple[list[Annotation], int]:
    """The annotations whose labels are their author's, and how many were set aside: last
    changed by someone else (`Annotation.edited_by_other`), they count as nobody's vote."""
    own = [a for a in annotations if not a.edited_by_other]
    return own, sum(1 for a in annotations if a.edited_by_other)


def labels_seen(annotations: Iterable[Annotation]) -> str:
    """A digest of the labels a decision is made on (each own, live annotation's id, author,
    required fields, values as sets and what it left missing): a person's decision stores it,
    and a different digest later means new labels since."""
    own, _ = own_annotations(annotations)
    items = sorted(
        (a.id, a.annotator, str(a.labels.response_type), str(a.labels.subjective),
         sorted(set(a.labels.ai_values)), sorted(set(a.labels.human_values)),
         sorted(missing_fields(a)))
        for a in own
    )
    return hashlib.sha256(repr(items).encode()).hexdigest()[:32]


def new_labels_since(seen: str | None, decided_at: datetime | None,
                     annotations: list[Annotation]) -> bool:
    """Whether a person's decision was made before the conversation's current labels: their
    digest differs from the one stored with it (`seen`). A decision stored without one (loaded
    from a gold file, or decided before digests were kept) has new labels when an own
    annotation was changed after its `decided_at`."""
    if seen:
        return seen != labels_seen(annotations)
    if decided_at is None:
        return False
    own, _ = own_annotations(annotations)
    return any(a.updated_at is not None and _utc(a.updated_at) > _utc(decided_at) for a in own)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def majority_out_of_date(gold: GoldLabel, annotations: list[Annotation]) -> str | None:
    """Why a majority gold label is no longer what the majority rule gives on the live
    annotations (a split, an incomplete label, other labels, none left), or None when it
    still is. Such gold is not decided: nothing exports it, `adjudicate` re-opens it."""
    own, aside = own_annotations(annotations)
    return out_of_date_reason(gold, [_vote(a) for a in own], [a.labels for a in own], aside)


def plain_out_of_date(gold: Labels | PlainGold, votes: list[PlainVote]) -> str | None:
    """`majority_out_of_date` of plain votes (`plain`: a pass over every conversation)."""
    own, aside = own_votes(votes)
    return out_of_date_reason(gold, [vote.vote() for vote in own],
                              [vote.labels for vote in own], aside)


def out_of_date_reason(gold: Labels | PlainGold, votes: list[Vote],
                       labels: Sequence[Labels | PlainLabels], aside: int) -> str | None:
    """`majority_out_of_date` of the own annotations' votes and labels, `aside` more set
    aside: models, or the plain tuples of `plain` (an export's pass over every
    conversation)."""
    if not votes:
        return (f"its {aside} annotation{'s were' if aside > 1 else ' was'} {SET_ASIDE_WHY}"
                if aside else "no live annotations left")
    reason = _undecided(votes)
    if reason:
        return reason
    # a majority decides (no reason above): its labels, compared as `adjudicate` compares them
    found = _majority_of(labels)
    if not _same_labels(gold, found._replace(task_description=_kept_description(gold, found))):
        return "the majority of the live annotations now gives other labels"
    return None


def _live_annotations(db: sqlite_utils.Database) -> dict[str, list[Annotation]]:
    return dict(live_annotations_in_order(db))


def live_annotations_in_order(db: sqlite_utils.Database, ids: IdRange = EVERY_ID
                              ) -> Iterator[tuple[str, list[Annotation]]]:
    """`live_annotations` one conversation at a time, in conversation id order (SQLite's
    binary order, which is Python's order of the ids): a reader that walks gold in the same
    order holds one conversation's annotations, not the study's. `ids`: only those."""
    for conversation_id, rows in vote_rows_in_order(db, ids):
        yield conversation_id, [vote_to_annotation(row) for row in rows]


def _as_annotator_labels(annotation: Annotation) -> AnnotatorLabels:
    # Built from labels already validated (`Annotation.labels`): not validated again, which
    # cost a model dump and a validation per annotation.
    return AnnotatorLabels.model_construct(annotator=annotation.annotator,
                                           **annotation.labels.__dict__)


def undecided_reason(annotations: list[Annotation]) -> str | None:
    """Why these annotations of one conversation do not decide its gold by majority: an
    incomplete annotation (a person looks, or its reviewer finishes it) or a split; None when
    a majority decides."""
    return _undecided([_vote(a) for a in annotations])


def _undecided(votes: list[Vote]) -> str | None:
    return _incomplete(votes) or no_majority_reason(votes)


def not_adjudicated_reason(annotations: list[Annotation], min_annotations: int = 2) -> str:
    """Why a conversation with these live annotations has no gold, in words for a report;
    annotations last changed by someone other than their author are named, not counted."""
    own, aside = own_annotations(annotations)
    reason = _not_adjudicated(own, min_annotations)
    if aside:
        reason += (f" ({aside} more set aside: last changed by someone other than "
                   f"{'their authors' if aside > 1 else 'its author'})")
    return reason


def _not_adjudicated(annotations: list[Annotation], min_annotations: int) -> str:
    votes = [_vote(a) for a in annotations]
    complete = [v for v in votes if not _missing(v)]
    incomplete = _incomplete(votes)
    if incomplete and not complete:
        return f"not adjudicated: no complete annotations ({incomplete})"
    if incomplete:
        return f"not adjudicated: {incomplete}"
    if len(annotations) < min_annotations:
        n = len(annotations)
        return (f"not adjudicated: {n} annotation{'' if n == 1 else 's'}, `annotator "
                f"adjudicate` needs {min_annotations}")
    split = no_majority_reason(votes)
    if split:
        return f"not adjudicated: {split}"
    return "not adjudicated yet: a majority agrees, run `annotator adjudicate`"


def adjudicate(db: sqlite_utils.Database, min_annotations: int = 2,
               progress: Progress | None = None) -> AdjudicationReport:
    """Decide gold by majority where annotators agree; never overwrite a person's decision.

    A conversation with an incomplete annotation, or whose annotators split on the response
    type or on `subjective`, is listed for a person (`decide`, or the app's Gold page) with
    the reason. New labels re-open a majority decision: when the majority rule no longer gives
    its label, it leaves gold (the label is kept in the history the next decision carries) and
    the conversation is decided again, by the rule or by a person. A person's decision stays,
    listed in `new_labels_since` when the labels changed after it. Annotations last changed by
    someone other than their author are no one's vote (`set_aside`).

    A large study is read in two halves at once (`halves`), the decisions written after both.
    `progress(read, total)` is called as the annotations that are votes are read.
    """
    rows_read = (RowsRead(progress, db.execute(f"select count(*) from annotations where "
                                               f"{VOTES}").fetchone()[0])
                 if progress is not None else None)
    split = second_half_start(db, "annotations")
    if split is None:
        report, decided, reopening = _decisions(db, min_annotations, EVERY_ID,
                                                *counting(rows_read))
    else:
        with in_worker("the decisions of the study's second half", _decisions_of_file,
                       str(database_path(db)), min_annotations, (split, None),
                       for_worker(rows_read)) as second:
            report, decided, reopening = _decisions(db, min_annotations, (None, split),
                                                    *counting(rows_read))
            later, later_decided, later_reopening = second.get(
                rows_read.report if rows_read else None)
        report.merge(later)
        decided += later_decided
        reopening += later_reopening
    # Written at the end, in two batches: a statement a conversation cost minutes at 300,000.
    with db.conn:
        _reopen_rows(db, reopening)
    _store_gold_rows(db, decided)
    if rows_read is not None:
        rows_read.done()
    return report


Decisions = tuple[AdjudicationReport, list[dict[str, Any]], list[dict[str, Any]]]


def _decisions_of_file(path: str, min_annotations: int, ids: IdRange,
                       count: WorkerCount = None) -> Decisions:
    """`_decisions` in a worker process, from the study file; `count`: the first process's
    count it adds its rows to (`halves.for_worker`)."""
    with worker_study(path) as db:
        return _decisions(db, min_annotations, ids, *worker_counting(count))


def _decisions(db: sqlite_utils.Database, min_annotations: int, ids: IdRange,
               rows_read: Callable[[int], None] | None = None, every: int = 1) -> Decisions:
    """What `adjudicate` decides for the conversations in `ids`, nothing written: its report,
    the gold rows to store and the majority labels to re-open. `rows_read(n)` is called each
    time about `every` more annotations are read."""
    report = AdjudicationReport()
    decided: list[dict[str, Any]] = []
    reopening: list[dict[str, Any]] = []
    in_range, params = id_range_sql("conversation_id", ids)
    # Decisions re-opened by an earlier run, read once: a decided conversation carries the
    # history of its re-opened label (`_gold_row`); a query each costs a minute at 300,000.
    waiting = {row["conversation_id"]: row for row in db.query(
        f"select * from gold_reopened where {in_range}", params)}
    # Annotations and gold are read side by side in id order, one conversation at a time;
    # what changes is written after the reading, at the end.
    gold_rows = ((row["conversation_id"], row) for row in db.query(
        f"select * from gold where {in_range} order by conversation_id", params))
    unreported = 0
    for conversation_id, labelled, existing in side_by_side(plain_votes_in_order(db, ids),
                                                              gold_rows):
        labelled = labelled or []
        unreported += len(labelled)
        if rows_read is not None and unreported >= every:
            rows_read(unreported)
            unreported = 0
        own, aside = own_votes(labelled)
        report.set_aside += aside
        gold = (plain_gold(conversation_id, [existing[name] for name in GOLD_COLUMNS])
                if existing else None)
        if gold is not None and gold.decided_by != MAJORITY:
            report.kept_person_decisions += 1
            if new_labels_since(existing.get("labels_seen"), gold.decided_at,
                                annotations_of(labelled)):
                report.new_labels_since.append(conversation_id)
            continue
        if len(own) >= min_annotations:
            reason = _undecided([vote.vote() for vote in own])
            if reason is None:  # a majority decides (`no_majority_reason`)
                found = _majority_of([vote.labels for vote in own])
                if gold is not None:
                    found = found._replace(task_description=_kept_description(gold, found))
                    if _same_labels(gold, found):
                        report.unchanged += 1
                        continue
                # new, or other labels than the majority decided before: a model only now
                label = _majority_gold(found, [vote.annotator for vote in own])
                decided.append(_gold_row(conversation_id, label, existing, None,
                                         _reopened_row(waiting.get(conversation_id))))
                report.decided += 1
                continue
            report.add_person_needed(conversation_id, reason)
        if gold is not None and (why := plain_out_of_date(gold, labelled)):
            reopening.append(_reopen_row(conversation_id, existing, why))
            report.reopened.append(PersonNeeded(conversation_id=conversation_id, reason=why))
    return report, decided, reopening


def side_by_side(first: Iterator[tuple[str, Any]], second: Iterator[tuple[str, Any]]
                  ) -> Iterator[tuple[str, Any, Any]]:
    """Two streams of (id, item), each in id order, as one: (id, first's item or None,
    second's item or None) for every id either has, in id order."""
    a, b = next(first, None), next(second, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            yield a[0], a[1], None  # type: ignore[index]
            a = next(first, None)
        elif a is None or b[0] < a[0]:
            yield b[0], None, b[1]
            b = next(second, None)
        else:
            yield a[0], a[1], b[1]
            a, b = next(first, None), next(second, None)


def _reopen_row(conversation_id: str, existing: dict[str, Any], reason: str) -> dict[str, Any]:
    """The `gold_reopened` row of a majority label the live annotations no longer give: it
    and the history before it wait there for the conversation's next decision."""
    history = loads(existing.get("history"), [])
    history.append(row_to_gold(existing).model_dump(mode="json"))
    return {"conversation_id": conversation_id, "history": dumps(history),
            "reopened_at": utc_now().isoformat(), "reason": reason}


def _reopen_rows(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> None:
    """Take these conversations' majority labels out of gold, into `gold_reopened`."""
    if rows:
        db["gold_reopened"].upsert_all(rows, pk="conversation_id")
        db.conn.executemany("delete from gold where conversation_id = ?",
                            [[row["conversation_id"]] for row in rows])


def reopened(db: sqlite_utils.Database, conversation_id: str) -> dict[str, Any] | None:
    """The majority decision new labels re-opened for this conversation, if it has no gold
    yet: when, why, and the labels it replaced (`history`, oldest first)."""
    return _reopened_row(
        next(db["gold_reopened"].rows_where("conversation_id = ?", [conversation_id]), None))


def _reopened_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"reopened_at": row["reopened_at"], "reason": row["reason"],
            "history": loads(row["history"], [])}


def people_needed(db: sqlite_utils.Database, min_annotations: int = 2,
                  conversations: Sequence[str] | None = None) -> list[PersonNeeded]:
    """The conversations `adjudicate` leaves to a person, and why, without deciding anything
    (for the app's Gold page): an incomplete annotation or no majority, and no person's
    decision yet. The same reasons as `adjudicate`, from the two fields they need only, and
    the same votes (an annotation last changed by someone other than its author is none).
    In conversation id order; `conversations`: of those alone."""
    decided_by_person = {
        row[0] for row in db.execute("select conversation_id from gold where decided_by != ?",
                                     [MAJORITY])
    }
    needed: list[PersonNeeded] = []
    only, params = "", []
    if conversations is not None:
        only = " and conversation_id in (select value from json_each(?))"
        params = [dumps(list(conversations))]
    rows = db.execute(
        "select conversation_id, annotator, json_extract(labels, '$.response_type'), "
        "json_extract(labels, '$.subjective'), missing from annotations "
        f"where {VOTES} and {authors_own()}{only} order by conversation_id, annotator", params
    )
    for conversation_id, group in groupby(rows, key=itemgetter(0)):
        votes = list(group)
        if len(votes) < min_annotations or conversation_id in decided_by_person:
            continue
        # Most conversations are unanimous and complete: nothing for a person, decided without
        # building votes (the Gold page's first visit reads every annotation of the study).
        _, _, response_type, subjective, _ = votes[0]
        if response_type is not None and subjective is not None and all(
            v[2] == response_type and v[3] == subjective and v[4] in (None, "", "[]")
            for v in votes
        ):
            continue
        full = [Vote(annotator, rt, subj, () if gone in (None, "", "[]") else tuple(
            loads(gone, []))) for _, annotator, rt, subj, gone in votes]
        if reason := _incomplete(full) or no_majority_reason(full):
            needed.append(PersonNeeded(conversation_id=conversation_id, reason=reason))
    return needed


def _kept_description(existing: Labels | PlainGold, label: Labels | _Majority) -> str | None:
    """A majority that agrees on the task's category keeps the description gold has: the
    annotators' forms carry the category only."""
    if label.task == existing.task and not label.task_description:
        return existing.task_description
    return label.task_description


def _same_labels(a: Labels | PlainGold, b: Labels | _Majority) -> bool:
    """Equal as labels: value lists compare as sets (their order carries no meaning)."""
    return (
        set(a.ai_values) == set(b.ai_values)
        and set(a.human_values) == set(b.human_values)
        and (a.response_type, a.subjective) == (b.response_type, b.subjective)
        and (a.task, a.task_description) == (b.task, b.task_description)
    )


def _gold_row(
    conversation_id: str,
    label: GoldLabel,
    existing: dict | None,
    seen: str | None,
    was: dict[str, Any] | None,
) -> dict[str, Any]:
    # The one maker of decided gold rows: a label without a response type or `subjective`
    # would be dropped by the export, so it is refused here whoever asks. `seen`: the digest of
    # the labels a person decided on (`labels_seen`); a majority label is checked anew instead.
    gone = label.missing_fields()
    if gone:
        raise AnnotatorError(f"gold for {conversation_id} needs {_needs(gone)}")
    row = gold_to_row(conversation_id, label)
    # `was`: the conversation's re-opened decision (`reopened`), whose history it carries
    history = loads(existing.get("history"), []) if existing else (was or {}).get("history", [])
    if existing:
        replaced = row_to_gold(existing).model_dump(mode="json")
        history.append(replaced)
    row["history"] = dumps(history)
    row["labels_seen"] = seen
    return row


def _store_gold(
    db: sqlite_utils.Database,
    conversation_id: str,
    label: GoldLabel,
    existing: dict | None,
    seen: str | None = None,
) -> None:
    _store_gold_rows(db, [_gold_row(conversation_id, label, existing, seen,
                                    reopened(db, conversation_id))])


def _store_gold_rows(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> None:
    """Gold rows (`_gold_row`) written in one transaction: adjudicating a study of 300,000
    conversations writes once, not once per conversation. A decided conversation leaves the
    re-opened list."""
    if rows:
        # one statement for every row (sqlite-utils' upsert builds and runs two a row: 3 s
        # of 81,000 decisions); `_gold_row` makes every row with the same columns
        columns = list(rows[0])
        with db.conn:
            db.conn.executemany(
                f"insert into gold ({', '.join(columns)}) values "
                f"({', '.join('?' * len(columns))}) on conflict (conversation_id) do update "
                f"set {', '.join(f'{name} = excluded.{name}' for name in columns[1:])}",
                [[row[name] for name in columns] for row in rows])
            db.conn.executemany("delete from gold_reopened where conversation_id = ?",
                                [[row["conversation_id"]] for row in rows])


def _needs(fields: list[str]) -> str:
    wanted = {"response_type": "a response type", "subjective": "subjective (yes or no)"}
    return " and ".join(wanted[f] for f in fields)


def decide(
    db: sqlite_utils.Database, conversation_id: str, labels: Labels, decided_by: str
) -> GoldLabel:
    """A person's decision on one conversation's gold labels; the replaced label is kept.

    Refused without a response type or `subjective`: gold is never written incomplete.
    """
    if not decided_by.strip():
        raise AnnotatorError("say who decided: a name or e-mail for the gold record")
    gone = labels.missing_fields()
    if gone:
        raise AnnotatorError(f"a gold decision needs {_needs(gone)}")
    if not db["conversations"].count_where("id = ?", [conversation_id]):
        raise AnnotatorError(f"no conversation {conversation_id!r} in this study")
    live = [row_to_annotation(r) for r in db.query(
        "select * from annotations where conversation_id = ? and deleted = 0 and cancelled = 0 "
        "order by annotator", [conversation_id])]
    label = GoldLabel(
        **labels.model_dump(),
        decided_by=decided_by.strip(),
        decided_at=utc_now(),
        from_annotations=[a.annotator for a in own_annotations(live)[0]],
    )
    existing = next(db["gold"].rows_where("conversation_id = ?", [conversation_id]), None)
    _store_gold(db, conversation_id, label, existing, seen=labels_seen(live))
    return label


# --- the gold file ----------------------------------------------------------------------------


def live_annotations(db: sqlite_utils.Database) -> dict[str, list[Annotation]]:
    """Each conversation's annotations that are votes: neither deleted nor cancelled, nor a
    flag raised instead of labels (`db.VOTES`); their edit history is not read (left empty:
    no vote is counted by it)."""
    return _live_annotations(db)


def gold_records(
    db: sqlite_utils.Database, annotations: dict[str, list[Annotation]] | None = None,
    with_annotations: bool = True, ids: IdRange = EVERY_ID,
) -> Iterator[GoldRecord]:
    """Every adjudicated conversation as a gold-file record, sorted by conversation id (of
    those in `ids`).

    `annotations` (from `live_annotations`) saves reading them again for a caller that has them;
    `with_annotations=False` leaves the records' `annotations` empty, for a caller that reads
    the annotations itself (`export`, one conversation at a time).
    """
    by_conversation = ({} if not with_annotations else
                       _live_annotations(db) if annotations is None else annotations)
    # each gold row with its conversation in one query (a lookup per row costs a minute at
    # 300,000 conversations)
    columns = ("id", "source", "external_id", "turns", "metadata", "scrubbed", "ingested_at")
    joined = ", ".join(f"c.{name} as _c_{name}" for name in columns)
    in_range, params = id_range_sql("g.conversation_id", ids)
    for row in db.query(f"select g.*, {joined} from gold g left join conversations c "
                        f"on c.id = g.conversation_id where {in_range} "
                        "order by g.conversation_id", params):
        conversation_id = row["conversation_id"]
        found = {name: row.pop(f"_c_{name}") for name in columns}
        conversation = row_to_conversation(
            found if found["id"] is not None else db["conversations"].get(conversation_id))
        yield GoldRecord(
            conversation_id=conversation_id,
            turns=conversation.turns,
            annotations=[
                _as_annotator_labels(a) for a in by_conversation.get(conversation_id, [])
            ],
            gold=row_to_gold(row),
            source=conversation.source,
        )


def write_gold_file(db: sqlite_utils.Database, path: str | Path) -> int:
    """Write the study's gold labels to a JSONL file, one conversation a line, sorted by id.

    The file is written beside its final name and then renamed, so a reader never sees half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    count = 0
    with open(partial, "w", encoding="utf-8") as handle:
        for record in gold_records(db):
            handle.write(record.model_dump_json(exclude_none=False) + "\n")
            count += 1
    os.replace(partial, path)
    return count
