"""Read conversations from files into the study database, scrubbing personal data first.

Formats (each also gzip-compressed, `.gz`):
- JSONL with a `messages` (or `conversation`) list of `{role, content}`; content a string or a
  list of text blocks, as chat APIs write them;
- JSONL whose field holds a `Human:` / `Assistant:` transcript (preference data sets: `chosen`
  by default, `field=` to pick another);
- plain-text transcripts in that layout (`.txt`, one conversation a file);
- CSV in long form: conversation id, turn index, role, text (other columns kept as metadata).

Readers are generators of `RawConversation | RejectedRecord`, so memory stays flat whatever the
file size. A conversation's id is a keyed hash of its text as read, before scrubbing, under the
study's key (`study_key`): conversations that differ only in personal data stay apart. Rows are
written in batches, one transaction each, with INSERT OR IGNORE on that id: an interrupted run
leaves whole batches only, and a rerun adds just what is missing.
"""

from __future__ import annotations

import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from annotator.errors import InputError
from annotator.json_columns import dumps
from annotator.models import IngestReport, RejectedRecord, utc_now
from annotator.study_key import has_legacy_ids, study_key

if TYPE_CHECKING:  # not at run time: a worker process would import pandas with it, for nothing
    import sqlite_utils
from annotator.ingest.formats import BATCH_SIZE, MAX_RECORD_BYTES, REJECTED_KEPT, detect_format
from annotator.ingest.rows import RowSettings, without_legacy_duplicates
from annotator.ingest.workers import WorkerPool, file_batches

# Rows per transaction. Content-hash keys land all over the primary-key index, and each commit
# rewrites every index page it touched: 20,000 rows a commit wrote about twice as fast as 2,000
# (measured here: 118k vs 52k rows/s), at the cost of redoing at most that many after a crash.
COMMIT_ROWS = 20_000

# --- storing ---------------------------------------------------------------------------------


_INSERT = (
    "INSERT OR IGNORE INTO conversations "
    "(id, source, external_id, turns, metadata, scrubbed, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Below this, starting worker processes costs more than it saves. Spawned workers each import
# this module first (~0.3 s before the first chunk); measured here, 2 workers against none:
# 4 MB 0.53 vs 0.17 s, 17 MB 0.58 vs 0.60 s, 34 MB 0.85 vs 1.15 s.
PARALLEL_MIN_BYTES = 16 << 20


def _write_batch(db: sqlite_utils.Database, rows: list[tuple[Any, ...]]) -> int:
    conn = db.conn
    with conn:  # one transaction per batch: all of it lands, or none of it
        # the rows inserted (an ignored duplicate is none); unlike `total_changes`, not the
        # change tokens' rows the triggers write (`db._add_change_tokens`)
        return conn.executemany(_INSERT, rows).rowcount


def _default_workers(files: list[Path]) -> int:
    big = any(detect_format(p) == "jsonl" and p.stat().st_size >= PARALLEL_MIN_BYTES for p in files)
    return min(os.cpu_count() or 1, 4) if big else 1


def check_input_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files to read, refused up front if one is missing, a folder, not a regular file (a
    device such as /dev/zero, a pipe: endless or blocking input) or of an unknown format."""
    files = [Path(p) for p in paths]
    for path in files:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        if stat.S_ISDIR(mode):
            raise InputError(f"{path}: is a folder; pass the files in it")
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: not a regular file (a device, pipe or socket); pass a file")
        detect_format(path)
    return files


class _Rejections:
    """Every rejection counted, the first `keep` kept for the report, all of them written to
    `rejects` (JSONL) when given: millions of bad lines cost no memory."""

    def __init__(self, report: IngestReport, keep: int, rejects: Path | None) -> None:
        self.report, self.keep = report, keep
        self.handle = open(rejects, "wb") if rejects is not None else None  # noqa: SIM115

    def add(self, rejected: list[RejectedRecord]) -> None:
        report = self.report
        room = self.keep - len(report.rejected)
        if room > 0:
            report.rejected.extend(rejected[:room])
        report.rejected_total += len(rejected)
        for record in rejected:
            report.rejected_per_file[record.file] = report.rejected_per_file.get(record.file, 0) + 1
            if self.handle is not None:
                self.handle.write(orjson.dumps(record.model_dump()) + b"\n")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def ingest(
    db: sqlite_utils.Database,
    paths: Iterable[str | Path],
    scrub: bool = True,
    transcript_field: str = "chosen",
    source: str | None = None,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    commit_every: int = COMMIT_ROWS,
    max_record_bytes: int = MAX_RECORD_BYTES,
    rejects: str | Path | None = None,
    keep_rejected: int = REJECTED_KEPT,
) -> IngestReport:
    """Ingest files into `db`; return what landed, what was a duplicate and what was rejected.

    Large JSONL files are parsed and scrubbed, `batch_size` records at a time, in `workers`
    processes (default: one per core); rows are written here, in file order, one transaction
    per `commit_every` rows.
    A record (a line, a CSV row, a transcript) over `max_record_bytes` is rejected, so is every
    malformed one; the report keeps the first `keep_rejected` rejections and counts all, and
    `rejects` (a JSONL file) receives every one.
    `progress(file, bytes_read, bytes_total)` is called as the files are read.
    Workers are spawned (never forked): a script that calls this with workers must start from
    an `if __name__ == "__main__":` block.
    """
    if max_record_bytes < 1:
        raise InputError("--max-record-bytes must be at least 1")
    files = check_input_files(paths)
    report = IngestReport(
        files=[str(p) for p in files], scrubbed=scrub, rejected_kept=keep_rejected,
        rejects_file=str(rejects) if rejects is not None else None,
    )  # fmt: skip
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    ingested_at = utc_now().isoformat()
    workers = _default_workers(files) if workers is None else workers
    rejections = _Rejections(report, keep_rejected, Path(rejects) if rejects else None)
    key, legacy = study_key(db), has_legacy_ids(db)
    pool: WorkerPool | None = None
    pending: list[tuple[Any, ...]] = []

    def flush(at_least: int = 1) -> None:
        """Write pending rows, `commit_every` to a transaction, while `at_least` are waiting."""
        while len(pending) >= at_least and pending:
            rows = pending[:commit_every]
            inserted = _write_batch(db, rows)
            report.landed += inserted
            report.duplicates += len(rows) - inserted
            report.read += len(rows)
            del pending[: len(rows)]

    try:
        pool = WorkerPool(workers) if workers > 1 else None
        for path in files:
            total = path.stat().st_size
            settings = RowSettings(
                name=str(path),
                source=source or path.name.split(".")[0],
                scrub=scrub,
                ingested_at=ingested_at,
                transcript_field=transcript_field,
                max_record_bytes=max_record_bytes,
                key=key,
                legacy_ids=legacy,
            )
            on_bytes = (lambda n, p=path, t=total: progress(str(p), n, t)) if progress else None
            for batch in file_batches(path, settings, batch_size, pool, on_bytes):
                rows = without_legacy_duplicates(db, batch) if legacy else batch.rows
                report.duplicates += len(batch.rows) - len(rows)
                report.read += len(batch.rows) - len(rows)
                pending.extend(rows)
                rejections.add(batch.rejected)
                counts.update(batch.counts)
                flush(at_least=commit_every)
            flush()
            if progress:
                progress(str(path), total, total)
    finally:
        if pool is not None:
            pool.close()
        rejections.close()
    report.scrub_counts = dict(sorted(counts.items()))
    report.seconds = time.perf_counter() - started
    record_run(db, report, ingested_at)
    return report


def record_run(db: sqlite_utils.Database, report: IngestReport, started_at: str) -> None:
    with db.conn:
        db["ingest_runs"].insert(
            {
                "started_at": started_at,
                "files": dumps(report.files),
                "scrubbed": int(report.scrubbed),
                "read": report.read,
                "landed": report.landed,
                "duplicates": report.duplicates,
                "rejected": report.rejected_total,
                "scrub_counts": dumps(report.scrub_counts),
            }
        )
