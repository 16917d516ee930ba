"""Adjudicated labels: the `gold/*.jsonl` files and the `gold` table.

A gold file holds one conversation a line, sorted by id, so a change reads well in a diff.
Importing a gold file brings its conversations, each annotator's labels and the gold label into
the study database; importing twice changes nothing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import sqlite_utils
from pydantic import BaseModel, Field, ValidationError

from .db import (
    annotation_to_row,
    dumps,
    gold_to_row,
    loads,
    row_to_annotation,
    row_to_conversation,
    row_to_gold,
)
from .errors import AnnotatorError, InputError
from .ingest import RawConversation, conversation_row
from .models import (
    Annotation,
    AnnotatorLabels,
    GoldLabel,
    GoldRecord,
    Labels,
    RejectedRecord,
    utc_now,
)

MAJORITY = "majority"


class GoldImportReport(BaseModel):
    files: list[str] = Field(default_factory=list)
    conversations: int = 0
    annotations: int = 0
    gold_labels: int = 0
    rejected: list[RejectedRecord] = Field(default_factory=list)


def read_gold(path: Path) -> Iterator[GoldRecord | RejectedRecord]:
    """Records of one gold file; a line that does not validate is reported, not dropped."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield GoldRecord.model_validate_json(line)
            except ValidationError as exc:
                reason = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
                )
                yield RejectedRecord(file=str(path), line=line_no, reason=reason)


def gold_files(paths: Iterable[str | Path]) -> list[Path]:
    """The JSONL files named, folders expanded to their `*.jsonl` files in name order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.jsonl")))
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    if not files:
        raise InputError("no gold *.jsonl files found")
    return files


def import_gold(
    db: sqlite_utils.Database, paths: Iterable[str | Path], scrub: bool = True
) -> GoldImportReport:
    """Load gold files into the study: conversations, annotations (one per annotator), gold."""
    report = GoldImportReport()
    counts: Counter[str] = Counter()
    now = utc_now().isoformat()
    for path in gold_files(paths):
        report.files.append(str(path))
        for record in read_gold(path):
            if isinstance(record, RejectedRecord):
                report.rejected.append(record)
                continue
            raw = RawConversation(0, [(t.role.value, t.text) for t in record.turns])
            row = conversation_row(raw, record.source, scrub, counts, now)
            conversation_id = row[0]
            annotations = [
                Annotation(
                    id=f"{record.source}:{conversation_id}:{labels.annotator}",
                    conversation_id=conversation_id,
                    annotator=labels.annotator,
                    labels=labels,
                    source=f"gold:{record.source}",
                )
                for labels in record.annotations
            ]
            with db.conn:
                db.conn.execute(
                    "INSERT OR IGNORE INTO conversations (id, source, external_id, turns, "
                    "metadata, scrubbed, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                db["annotations"].upsert_all(
                    [annotation_to_row(a) for a in annotations], pk="id"
                )
                db["gold"].upsert(gold_to_row(conversation_id, record.gold), pk="conversation_id")
            report.conversations += 1
            report.annotations += len(annotations)
            report.gold_labels += 1
    return report


# --- adjudication ------------------------------------------------------------------------------


def majority_label(annotations: list[AnnotatorLabels]) -> GoldLabel | None:
    """The labels more than half of the annotators gave, or None when the response type splits.

    A value is in gold when more than half listed it; the response type and `subjective` need
    more than half too. With three annotators that is two of three, the rule `gold/` follows.
    """
    if not annotations:
        return None
    need = len(annotations) // 2 + 1
    types = Counter(a.response_type for a in annotations if a.response_type is not None)
    response_type, votes = types.most_common(1)[0] if types else (None, 0)
    if votes < need:
        return None
    subjective_votes = Counter(a.subjective for a in annotations if a.subjective is not None)
    subjective, s_votes = subjective_votes.most_common(1)[0] if subjective_votes else (None, 0)

    def agreed(field: str) -> list[str]:
        counts = Counter(v for a in annotations for v in dict.fromkeys(getattr(a, field)))
        first_seen = list(dict.fromkeys(v for a in annotations for v in getattr(a, field)))
        return [v for v in first_seen if counts[v] >= need]

    return GoldLabel(
        ai_values=agreed("ai_values"),
        human_values=agreed("human_values"),
        response_type=response_type,
        subjective=subjective if s_votes >= need else None,
        decided_by=MAJORITY,
        decided_at=utc_now(),
        from_annotations=[a.annotator for a in annotations],
    )


class AdjudicationReport(BaseModel):
    decided: int = 0
    unchanged: int = 0
    kept_person_decisions: int = 0
    need_a_person: list[str] = Field(default_factory=list)


def _live_annotations(db: sqlite_utils.Database) -> dict[str, list[Annotation]]:
    by_conversation: dict[str, list[Annotation]] = {}
    for row in db.query(
        "select * from annotations where deleted = 0 and cancelled = 0 order by conversation_id, "
        "annotator"
    ):
        annotation = row_to_annotation(row)
        by_conversation.setdefault(annotation.conversation_id, []).append(annotation)
    return by_conversation


def _as_annotator_labels(annotation: Annotation) -> AnnotatorLabels:
    return AnnotatorLabels(annotator=annotation.annotator, **annotation.labels.model_dump())


def adjudicate(db: sqlite_utils.Database, min_annotations: int = 2) -> AdjudicationReport:
    """Decide gold by majority where annotators agree; never overwrite a person's decision.

    Conversations whose annotators split on the response type are listed for a person
    (`decide`, or the app's Gold page).
    """
    report = AdjudicationReport()
    current = {row["conversation_id"]: row for row in db["gold"].rows}
    for conversation_id, labelled in _live_annotations(db).items():
        if len(labelled) < min_annotations:
            continue
        existing = current.get(conversation_id)
        if existing and existing["decided_by"] != MAJORITY:
            report.kept_person_decisions += 1
            continue
        label = majority_label([_as_annotator_labels(a) for a in labelled])
        if label is None:
            report.need_a_person.append(conversation_id)
            continue
        if existing and _same_labels(row_to_gold(existing), label):
            report.unchanged += 1
            continue
        _store_gold(db, conversation_id, label, existing)
        report.decided += 1
    return report


def _same_labels(a: Labels, b: Labels) -> bool:
    """Equal as labels: value lists compare as sets (their order carries no meaning)."""
    return (
        set(a.ai_values) == set(b.ai_values)
        and set(a.human_values) == set(b.human_values)
        and (a.response_type, a.subjective) == (b.response_type, b.subjective)
    )


def _store_gold(
    db: sqlite_utils.Database,
    conversation_id: str,
    label: GoldLabel,
    existing: dict | None,
) -> None:
    row = gold_to_row(conversation_id, label)
    history = loads(existing.get("history"), []) if existing else []
    if existing:
        replaced = row_to_gold(existing).model_dump(mode="json")
        history.append(replaced)
    row["history"] = dumps(history)
    with db.conn:
        db["gold"].upsert(row, pk="conversation_id")


def decide(
    db: sqlite_utils.Database, conversation_id: str, labels: Labels, decided_by: str
) -> GoldLabel:
    """A person's decision on one conversation's gold labels; the replaced label is kept."""
    if not decided_by.strip():
        raise AnnotatorError("say who decided: a name or e-mail for the gold record")
    if not db["conversations"].count_where("id = ?", [conversation_id]):
        raise AnnotatorError(f"no conversation {conversation_id!r} in this study")
    annotators = [
        r["annotator"]
        for r in db.query(
            "select annotator from annotations where conversation_id = ? and deleted = 0",
            [conversation_id],
        )
    ]
    label = GoldLabel(
        **labels.model_dump(),
        decided_by=decided_by.strip(),
        decided_at=utc_now(),
        from_annotations=annotators,
    )
    existing = next(db["gold"].rows_where("conversation_id = ?", [conversation_id]), None)
    _store_gold(db, conversation_id, label, existing)
    return label


# --- the gold file ----------------------------------------------------------------------------


def gold_records(db: sqlite_utils.Database) -> Iterator[GoldRecord]:
    """Every adjudicated conversation as a gold-file record, sorted by conversation id."""
    by_conversation = _live_annotations(db)
    for row in db.query("select * from gold order by conversation_id"):
        conversation_id = row["conversation_id"]
        conversation = row_to_conversation(db["conversations"].get(conversation_id))
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
