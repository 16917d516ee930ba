"""Adjudicated labels: the `gold/*.jsonl` files and the `gold` table.

A gold file holds one conversation a line, sorted by id, so a change reads well in a diff.
Importing a gold file brings its conversations, each annotator's labels and the gold label into
the study database; importing twice changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import sqlite_utils
from pydantic import BaseModel, Field, ValidationError

from .db import annotation_to_row, gold_to_row
from .errors import InputError
from .ingest import RawConversation, conversation_row
from .models import Annotation, GoldRecord, RejectedRecord, utc_now


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
