"""The export's records as the code before the plain path built them: one `Annotation` model
per vote, a `GoldLabel` per gold row and an `ExportRecord` validated and dumped per record;
an `Extraction` and a `ProposalRecord` per proposal; and `adjudicate`'s decisions made with
those models. Kept as the oracle `tests/test_export_plain.py` checks
`export.export_records`, `proposals.proposal_records` and `gold._decisions` against: the same
files, byte for byte, the same report and the same gold rows."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import sqlite_utils
from pydantic import ValidationError

from annotator.datasets.export import _gold_gaps
from annotator.datasets.gold import (
    MAJORITY,
    AdjudicationReport,
    Decisions,
    PersonNeeded,
    _gold_row,
    _kept_description,
    _majority_gold,
    _majority_of,
    _reopen_row,
    _reopened_row,
    _same_labels,
    live_annotations_in_order,
    majority_out_of_date,
    new_labels_since,
    not_adjudicated_reason,
    own_annotations,
    side_by_side,
    undecided_reason,
)
from annotator.datasets.proposals import model_calls
from annotator.datasets.records import (
    ExportFilter,
    ExportRecord,
    LeftOut,
    ProposalRecord,
)
from annotator.datasets.values import exported_value as _exported_value
from annotator.datasets.values import proposal_fields, proposed_value
from annotator.db import EVERY_ID, IdRange, id_range_sql, loads, row_to_extraction, row_to_gold
from annotator.errors import invalid_reason as _invalid_reason
from annotator.extract.prompts import NOT_SCRUB
from annotator.models import Annotation, GoldLabel


def _exported_annotation(annotation: Annotation) -> dict[str, Any]:
    return {"annotator": annotation.annotator, "edited_by": annotation.edited_by,
            **annotation.labels.__dict__}


class _Gold(NamedTuple):
    conversation_id: str
    source: str
    external_id: str | None
    turns: list[Any] | None
    gold: GoldLabel
    labels_seen: str | None


def _gold_in_order(db: sqlite_utils.Database, ids: IdRange) -> Iterator[_Gold]:
    in_range, params = id_range_sql("g.conversation_id", ids)
    for row in db.query("select g.*, c.id as _c_id, c.source as _c_source, "
                        "c.external_id as _c_external_id, c.turns as _c_turns from gold g "
                        "left join conversations c on c.id = g.conversation_id "
                        f"where {in_range} order by g.conversation_id", params):
        yield _Gold(row["conversation_id"], row["_c_source"] or "", row["_c_external_id"],
                    None if row["_c_id"] is None else loads(row["_c_turns"], []),
                    row_to_gold(row), row.get("labels_seen"))


def export_records(
    db: sqlite_utils.Database,
    filters: ExportFilter | None = None,
    without_gold: list[tuple[str, str]] | None = None,
    ids: IdRange = EVERY_ID,
) -> Iterator[ExportRecord | tuple[str, str] | LeftOut]:
    filters = filters or ExportFilter()
    live = iter(live_annotations_in_order(db, ids))
    exported_value = functools.cache(_exported_value)
    golds = ((gold.conversation_id, gold) for gold in _gold_in_order(db, ids))
    for conversation_id, labelled, gold_record in side_by_side(live, golds):
        if gold_record is None:
            if without_gold is not None:
                without_gold.append((conversation_id, not_adjudicated_reason(labelled)))
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
        if gold.decided_by == MAJORITY and (why := majority_out_of_date(gold, labelled)):
            if filters.sources and gold_record.source not in filters.sources:
                continue
            yield LeftOut(conversation_id=gold_record.conversation_id,
                          reason=f"majority gold no longer decided: {why} (new labels since "
                                 "it was decided; run `annotator adjudicate`)")
            continue
        newer = gold.decided_by != MAJORITY and new_labels_since(
            gold_record.labels_seen, gold.decided_at, labelled)
        try:
            record = ExportRecord(
                conversation_id=gold_record.conversation_id,
                source=gold_record.source,
                external_id=gold_record.external_id,
                turns=gold_record.turns,
                ai_values=[exported_value(v) for v in gold.ai_values],
                human_values=[exported_value(v) for v in gold.human_values],
                response_type=gold.response_type,
                subjective=gold.subjective,
                task=gold.task,
                task_description=gold.task_description,
                decided_by=gold.decided_by,
                decided_at=gold.decided_at.isoformat() if gold.decided_at else None,
                n_annotations=len(labelled),
                new_labels_since=newer,
                annotations=([_exported_annotation(a) for a in labelled]
                             if filters.include_annotations else []),
            )
        except ValidationError as exc:
            yield (gold_record.conversation_id, _invalid_reason(exc))
            continue
        yield record


_PROPOSALS_SQL = (
    "select e.*, c.id as conversation_present, c.source as conversation_source, "
    "c.turns as conversation_turns, c.external_id as conversation_external_id, "
    "p.name as prompt_name, p.version as prompt_version from extractions e "
    "left join conversations c on c.id = e.conversation_id "
    "left join prompts p on p.id = e.prompt_id "
    f"where e.{NOT_SCRUB} and {{in_range}} order by e.conversation_id, e.prompt_id, e.model"
)


def proposal_records(db: sqlite_utils.Database, ids: IdRange = EVERY_ID
                     ) -> Iterator[ProposalRecord | tuple[str, str]]:
    calls = model_calls(db, ids)
    fields = functools.cache(proposal_fields)
    in_range, params = id_range_sql("e.conversation_id", ids)
    for row in db.query(_PROPOSALS_SQL.format(in_range=in_range), params):
        extra = {k: row.pop(k) for k in ("conversation_present", "conversation_source",
                                         "conversation_turns", "conversation_external_id",
                                         "prompt_name", "prompt_version")}
        if extra["conversation_present"] is None:
            yield (row["conversation_id"], "proposal of a conversation that is not in the study")
            continue
        try:
            extraction = row_to_extraction(row)
            n_calls, ms = calls.get((row["conversation_id"], row["prompt_id"], row["model"]),
                                    (0, 0.0))
            yield ProposalRecord(
                **extraction.model_dump(exclude={"ai_values", "human_values", "raw_reply",
                                                 "created_at"}),
                source=extra["conversation_source"] or "",
                external_id=extra["conversation_external_id"],
                turns=loads(extra["conversation_turns"], []),
                prompt_name=extra["prompt_name"],
                prompt_version=extra["prompt_version"],
                ai_values=[proposed_value(v, fields) for v in extraction.ai_values],
                human_values=[proposed_value(v, fields) for v in extraction.human_values],
                model_calls=n_calls,
                call_ms=ms,
                created_at=extraction.created_at.isoformat(),
            )
        except ValidationError as exc:
            yield (row["conversation_id"], _invalid_reason(exc))


def decisions(db: sqlite_utils.Database, min_annotations: int = 2) -> Decisions:
    """`gold._decisions` of the whole study as the code before plain votes decided: an
    `Annotation` model per vote, a `GoldLabel` per gold row and per majority."""
    report = AdjudicationReport()
    decided: list[dict[str, Any]] = []
    reopening: list[dict[str, Any]] = []
    waiting = {row["conversation_id"]: row for row in db.query("select * from gold_reopened")}
    gold_rows = ((row["conversation_id"], row) for row in db.query(
        "select * from gold order by conversation_id"))
    for conversation_id, labelled, existing in side_by_side(live_annotations_in_order(db),
                                                              gold_rows):
        labelled = labelled or []
        own, aside = own_annotations(labelled)
        report.set_aside += aside
        gold = row_to_gold(existing) if existing else None
        if gold is not None and gold.decided_by != MAJORITY:
            report.kept_person_decisions += 1
            if new_labels_since(existing.get("labels_seen"), gold.decided_at, labelled):
                report.new_labels_since.append(conversation_id)
            continue
        if len(own) >= min_annotations:
            reason = undecided_reason(own)
            label = None if reason else _majority_gold(_majority_of([a.labels for a in own]),
                                                       [a.annotator for a in own])
            if label is not None and gold is not None:
                description = _kept_description(gold, label)
                if description != label.task_description:
                    label = label.model_copy(update={"task_description": description})
            if label is not None and gold is not None and _same_labels(gold, label):
                report.unchanged += 1
                continue
            if label is not None:
                decided.append(_gold_row(conversation_id, label, existing, None,
                                         _reopened_row(waiting.get(conversation_id))))
                report.decided += 1
                continue
            report.add_person_needed(conversation_id, reason or "no majority")
        if gold is not None and (why := majority_out_of_date(gold, labelled)):
            reopening.append(_reopen_row(conversation_id, existing, why))
            report.reopened.append(PersonNeeded(conversation_id=conversation_id, reason=why))
    return report, decided, reopening
