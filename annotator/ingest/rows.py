"""Records into study rows: keyed ids, scrubbed turns and metadata, batches of rows (the unit of
work a worker process does), and the rows an older study already holds under unkeyed ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from annotator.ingest.privacy import scrub_text, scrub_value
from annotator.json_columns import dumps
from annotator.models import RejectedRecord, content_id, keyed_id

if TYPE_CHECKING:  # not at run time: a worker process would import pandas with it, for nothing
    import sqlite_utils
from annotator.ingest.formats import (
    MAX_RECORD_BYTES,
    LineChunk,
    RawConversation,
    Record,
    read_jsonl,
)

# --- turning records into rows ---------------------------------------------------------------


@dataclass(slots=True)
class RowSettings:
    """What every row of one file shares; small and picklable, sent to worker processes."""

    name: str
    source: str
    scrub: bool
    ingested_at: str
    transcript_field: str = "chosen"
    max_record_bytes: int = MAX_RECORD_BYTES
    key: bytes | None = field(default=None, repr=False)  # the study's; never printed
    legacy_ids: bool = False  # the study has conversations with unkeyed ids


@dataclass(slots=True)
class Batch:
    """Rows ready to insert, with what was rejected and scrubbed on the way; with
    `legacy_ids` set, the unkeyed id each row would have had, in the same order."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    last_line: int = 0
    legacy_ids: list[str] = field(default_factory=list)


def conversation_row(
    raw: RawConversation,
    source: str,
    scrub: bool,
    counts: Counter[str],
    ingested_at: str,
    key: bytes | None = None,
) -> tuple[Any, ...]:
    """The database row of one conversation: scrubbed turns, id, JSON columns.

    The id is `keyed_id` under the study's `key`, from the turns as read (before scrubbing);
    without a key, the unkeyed content id of the stored turns (the id before keyed ids)."""
    if scrub:
        turns = [(role, scrub_text(text, counts)) for role, text in raw.turns]
        metadata = scrub_value(raw.metadata, counts) if raw.metadata else raw.metadata
        external_id = scrub_text(raw.external_id, counts) if raw.external_id else None
    else:
        turns, metadata, external_id = raw.turns, raw.metadata, raw.external_id
    turns_json = orjson.dumps([{"role": role, "text": text} for role, text in turns]).decode()
    return (
        keyed_id(key, raw.turns) if key is not None else content_id(turns),
        source,
        external_id,
        turns_json,
        dumps(metadata),
        int(scrub),
        ingested_at,
    )


def build_batch(records: Iterable[Record], settings: RowSettings) -> Batch:
    batch = Batch()
    for record in records:
        batch.last_line = max(batch.last_line, record.line)
        if isinstance(record, RejectedRecord):
            batch.rejected.append(record)
            continue
        if record.external_id is None:
            # a record without an id of its own (hh-rlhf has none) is found again in its source
            # by file and line
            record.external_id = f"{Path(settings.name).name}:{record.line}"
        try:
            row = conversation_row(
                record, settings.source, settings.scrub, batch.counts, settings.ingested_at,
                settings.key,
            )  # fmt: skip
        except (TypeError, ValueError, RecursionError) as exc:  # orjson: depth, integer range
            reason = f"cannot be stored ({type(exc).__name__}: {exc})"
            batch.rejected.append(
                RejectedRecord(file=settings.name, line=record.line, reason=reason)
            )
            continue
        batch.rows.append(row)
        if settings.legacy_ids:
            batch.legacy_ids.append(content_id(_stored_pairs(row[3])))
    return batch


def _stored_pairs(turns_json: str) -> list[tuple[str, str]]:
    return [(turn["role"], turn["text"]) for turn in orjson.loads(turns_json)]


def without_legacy_duplicates(db: sqlite_utils.Database, batch: Batch) -> list[tuple[Any, ...]]:
    """The rows of `batch` whose unkeyed id is not in the study: a conversation stored before
    keyed ids, under the hash of its stored text, is not stored again."""
    present: set[str] = set()
    ids = batch.legacy_ids
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        present.update(
            r[0] for r in db.execute(
                f"select id from conversations where id in ({','.join('?' * len(chunk))})", chunk
            )
        )  # fmt: skip
    if not present:
        return batch.rows
    return [row for row, old in zip(batch.rows, ids, strict=True) if old not in present]




def jsonl_batch(chunk: LineChunk, settings: RowSettings) -> Batch:
    """Parse and scrub one chunk of JSONL lines; runs in a worker process for large files."""
    data = chunk.data
    if chunk.length >= 0:
        with open(settings.name, "rb") as handle:
            handle.seek(chunk.offset)
            data = handle.read(chunk.length)
    if not data or data.isspace():  # blank lines only: nothing to parse
        return Batch(last_line=chunk.first_line + chunk.n_lines - 1)
    lines = data.splitlines(keepends=True)  # CRLF, LF and a lone CR each end a line
    records = read_jsonl(
        lines, settings.name, settings.transcript_field, chunk.first_line,
        settings.max_record_bytes,
    )  # fmt: skip
    batch = build_batch(records, settings)
    batch.last_line = chunk.first_line + len(lines) - 1
    return batch
