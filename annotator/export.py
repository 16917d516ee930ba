"""Validated, adjudicated datasets: gold labels with resolved taxonomy nodes, as JSONL or CSV.

Only adjudicated conversations are exported. Each record is validated before it is written; a
record that fails (no response type, a value name that is empty, ...) is reported with its reason
and left out, never silently changed. An annotated conversation without gold is named in the
report too, with why it has none: nothing leaves the dataset unsaid.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import sqlite_utils
from pydantic import BaseModel, Field, ValidationError, field_validator

from .errors import AnnotatorError
from .gold import MAJORITY, gold_records, live_annotations, not_adjudicated_reason
from .models import Annotation, AnnotatorLabels, GoldRecord, ResponseType, Turn
from .taxonomy import load_taxonomy


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class ExportedValue(BaseModel):
    name: str
    node_id: str | None
    category: str | None = Field(description="top category, e.g. 'Practical values'")
    cluster: str | None = Field(description="level-1 cluster name")
    free: bool


class ExportRecord(BaseModel):
    conversation_id: str
    source: str
    turns: list[Turn] = Field(min_length=1)
    ai_values: list[ExportedValue]
    human_values: list[ExportedValue]
    response_type: ResponseType
    subjective: bool
    decided_by: str
    decided_at: str | None
    annotations: list[AnnotatorLabels] = Field(default_factory=list)

    @field_validator("ai_values", "human_values")
    @classmethod
    def names_present(cls, values: list[ExportedValue]) -> list[ExportedValue]:
        if any(not v.name.strip() for v in values):
            raise ValueError("a value has an empty name")
        return values


class ExportFilter(BaseModel):
    sources: list[str] = Field(default_factory=list)
    response_types: list[ResponseType] = Field(default_factory=list)
    categories: list[str] = Field(
        default_factory=list, description="keep conversations with an AI value in these"
    )
    decided_by_person_only: bool = False
    subjective_only: bool = False
    min_annotations: int = 0
    include_annotations: bool = True


class LeftOut(BaseModel):
    """A conversation the export leaves out other than by a filter, and why."""

    conversation_id: str
    reason: str


class ExportReport(BaseModel):
    path: str | None = None
    format: ExportFormat
    exported: int = 0
    filtered_out: int = 0
    invalid: list[tuple[str, str]] = Field(default_factory=list)  # gold that fails validation
    # every annotated or adjudicated conversation not exported and not filtered out: invalid
    # gold, and conversations without gold (incomplete or split annotations, not adjudicated)
    left_out: list[LeftOut] = Field(default_factory=list)


def _exported_value(name: str) -> ExportedValue:
    tree = load_taxonomy()
    node = tree.resolve(name)
    if node is None:
        return ExportedValue(name=name, node_id=None, category=None, cluster=None, free=True)
    ancestors = tree.ancestors(node)
    return ExportedValue(
        name=node.name,
        node_id=node.id,
        category=ancestors[3].name,
        cluster=ancestors[1].name,
        free=False,
    )


def _category_matches(record: ExportRecord, categories: list[str]) -> bool:
    wanted = {c.lower().removesuffix(" values") for c in categories}
    return any(
        v.category and v.category.lower().removesuffix(" values") in wanted
        for v in record.ai_values
    )


def _gold_gaps(gold_record: GoldRecord) -> str | None:
    """A required gold field left empty, in words (validation would say "Input should be...")."""
    gone = [name for name, value in (("response type", gold_record.gold.response_type),
                                     ("subjective", gold_record.gold.subjective))
            if value is None]
    return f"gold has no {' and no '.join(gone)}" if gone else None


def export_records(
    db: sqlite_utils.Database,
    filters: ExportFilter | None = None,
    annotations: dict[str, list[Annotation]] | None = None,
) -> Iterator[ExportRecord | tuple[str, str]]:
    """Adjudicated conversations as validated records; `(conversation_id, reason)` if invalid."""
    filters = filters or ExportFilter()
    for gold_record in gold_records(db, annotations):
        gold = gold_record.gold
        gap = _gold_gaps(gold_record)
        if gap:
            yield (gold_record.conversation_id, gap)
            continue
        try:
            record = ExportRecord(
                conversation_id=gold_record.conversation_id,
                source=gold_record.source,
                turns=gold_record.turns,
                ai_values=[_exported_value(v) for v in gold.ai_values],
                human_values=[_exported_value(v) for v in gold.human_values],
                response_type=gold.response_type,
                subjective=gold.subjective,
                decided_by=gold.decided_by,
                decided_at=gold.decided_at.isoformat() if gold.decided_at else None,
                annotations=gold_record.annotations if filters.include_annotations else [],
            )
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            yield (gold_record.conversation_id, reason)
            continue
        yield record


def _keep(record: ExportRecord, filters: ExportFilter, n_annotations: int) -> bool:
    return not (
        (filters.sources and record.source not in filters.sources)
        or (filters.response_types and record.response_type not in filters.response_types)
        or (filters.categories and not _category_matches(record, filters.categories))
        or (filters.decided_by_person_only and record.decided_by == MAJORITY)
        or (filters.subjective_only and not record.subjective)
        or n_annotations < filters.min_annotations
    )


CSV_COLUMNS = [
    "conversation_id",
    "source",
    "response_type",
    "subjective",
    "ai_values",
    "ai_value_categories",
    "free_ai_values",
    "human_values",
    "decided_by",
    "decided_at",
    "n_annotations",
    "turns_json",
]


def _csv_row(record: ExportRecord) -> list[str]:
    return [
        record.conversation_id,
        record.source,
        record.response_type.value,
        str(record.subjective).lower(),
        "; ".join(v.name for v in record.ai_values),
        "; ".join(sorted({v.category for v in record.ai_values if v.category})),
        "; ".join(v.name for v in record.ai_values if v.free),
        "; ".join(v.name for v in record.human_values),
        record.decided_by,
        record.decided_at or "",
        str(len(record.annotations)),
        "[" + ",".join(t.model_dump_json() for t in record.turns) + "]",
    ]


def render_export(
    db: sqlite_utils.Database,
    fmt: ExportFormat = ExportFormat.jsonl,
    filters: ExportFilter | None = None,
) -> tuple[str, ExportReport]:
    """The export as text (for a download button) and what went into it."""
    buffer = io.StringIO()
    report = _write(db, buffer, ExportFormat(fmt), filters or ExportFilter())
    return buffer.getvalue(), report


def _write(
    db: sqlite_utils.Database, handle: io.TextIOBase, fmt: ExportFormat, filters: ExportFilter
) -> ExportReport:
    report = ExportReport(format=fmt)
    writer = csv.writer(handle) if fmt is ExportFormat.csv else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    live = live_annotations(db)
    for item in export_records(db, filters, live):
        if isinstance(item, tuple):
            report.invalid.append(item)
            report.left_out.append(LeftOut(conversation_id=item[0], reason=item[1]))
            continue
        if not _keep(item, filters, len(live.get(item.conversation_id, []))):
            report.filtered_out += 1
            continue
        if writer is not None:
            writer.writerow(_csv_row(item))
        else:
            handle.write(item.model_dump_json() + "\n")
        report.exported += 1
    report.left_out.extend(_without_gold(db, live, filters))
    return report


def _without_gold(
    db: sqlite_utils.Database, live: dict[str, list[Annotation]], filters: ExportFilter
) -> Iterator[LeftOut]:
    """Annotated conversations that have no gold, each with why (of the chosen sources)."""
    decided = {row[0] for row in db.execute("select conversation_id from gold")}
    pending = sorted(set(live) - decided)
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
        reason = not_adjudicated_reason(live[conversation_id])
        yield LeftOut(conversation_id=conversation_id, reason=reason)


def export(
    db: sqlite_utils.Database,
    path: str | Path,
    fmt: ExportFormat = ExportFormat.jsonl,
    filters: ExportFilter | None = None,
) -> ExportReport:
    """Write the validated dataset to `path` (written aside, then renamed into place)."""
    if not db["gold"].count:
        raise AnnotatorError("nothing adjudicated yet: run `annotator adjudicate` first")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        report = _write(db, handle, ExportFormat(fmt), filters or ExportFilter())
    os.replace(partial, path)
    report.path = str(path)
    return report


__all__ = [
    "ExportFilter",
    "ExportFormat",
    "ExportRecord",
    "ExportReport",
    "LeftOut",
    "export",
    "export_records",
    "render_export",
]
