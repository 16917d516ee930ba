"""Parsing and scrubbing in worker processes (spawned, never forked), in file order: large
JSONL files are cut into chunks of whole lines that workers parse, scrub and return as rows.
"""

from __future__ import annotations

import ctypes
import gzip
import io
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from annotator.errors import AnnotatorError
from annotator.models import RejectedRecord

if TYPE_CHECKING:  # not at run time: a worker process would import pandas with it, for nothing
    pass
from annotator.ingest.formats import (
    _PIECE,
    BATCH_SIZE,
    READ_ERRORS,
    LineChunk,
    Oversize,
    Record,
    _CountingReader,
    _line_chunks,
    detect_format,
    oversize_reason,
    read_csv,
    read_json_document,
    read_transcript_text,
)
from annotator.ingest.rows import Batch, RowSettings, build_batch, jsonl_batch


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of `size` items; on a read error, the items read so far come out first."""
    chunk: list[Any] = []
    try:
        for item in items:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except READ_ERRORS:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Make this worker end when the ingest that started it ends, even by kill -9: otherwise it
    waits forever on a queue whose writer it holds itself, with the database file open."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:  # no parent-death signal: watch the parent instead

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _start_worker(parent: int) -> None:
    _die_with_parent(parent)
    # Ctrl-C is the parent's to handle: it finishes the batch in hand and reports; workers that
    # died of the same signal would only add tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


WORKER_DIED = (
    "an ingest worker process ended abruptly (killed, out of memory, or started from a script "
    "without `if __name__ == \"__main__\":`: workers are spawned, and import the script that "
    "calls ingest); what was written before stays, rerun to complete"
)


class WorkerPool:
    """A bounded window of chunks in worker processes, results in input order.

    At most `window` chunks are in flight, so memory stays flat however large the file.
    """

    def __init__(self, workers: int) -> None:
        # spawn, not fork: the CLI's progress bar runs a thread, and a forked child would inherit
        # its locks (and any other thread's) in whatever state they were, possibly held.
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        self.window = workers * 8

    def map(self, units: Iterable[LineChunk | Batch], settings: RowSettings) -> Iterator[Batch]:
        try:
            yield from self._map(units, settings)
        except BrokenProcessPool as exc:
            raise AnnotatorError(WORKER_DIED) from exc

    def _map(self, units: Iterable[LineChunk | Batch], settings: RowSettings) -> Iterator[Batch]:
        pending: deque[Future[Batch]] = deque()
        try:
            for unit in units:
                if isinstance(unit, Batch):  # already decided (a rejection): keeps its place
                    done: Future[Batch] = Future()
                    done.set_result(unit)
                    pending.append(done)
                else:
                    pending.append(self.executor.submit(jsonl_batch, unit, settings))
                if len(pending) >= self.window:
                    yield pending.popleft().result()
        except READ_ERRORS:
            while pending:  # what was read before the error still lands
                yield pending.popleft().result()
            raise
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _jsonl_units(
    stream: IO[bytes], settings: RowSettings, batch_size: int, spans: bool
) -> Iterator[LineChunk | Batch]:
    """Units of work for a JSONL file: chunks of lines (by position in the file when `spans`),
    and a line over the limit as a ready batch with its rejection."""
    limit = settings.max_record_bytes
    for item in _line_chunks(stream, batch_size, batch_size * 1024, limit):
        if isinstance(item, Oversize):
            reason = oversize_reason(item.size, limit)
            rejected = RejectedRecord(file=settings.name, line=item.line, reason=reason)
            yield Batch(rejected=[rejected], last_line=item.line)
        elif spans:
            yield LineChunk(item.first_line, item.n_lines, b"", item.offset, len(item.data))
        else:
            yield item


def _records(stream: IO[bytes], fmt: str, settings: RowSettings) -> Iterator[Record]:
    """The records of a CSV, JSON or text file (JSONL goes by chunks of lines instead)."""
    limit = settings.max_record_bytes
    if fmt == "csv":
        return read_csv(stream, settings.name, limit)
    if fmt == "json":
        return read_json_document(stream, settings.name, settings.transcript_field, limit)
    return read_transcript_text(stream, settings.name, limit)


def file_batches(
    path: Path,
    settings: RowSettings,
    batch_size: int = BATCH_SIZE,
    pool: WorkerPool | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Batch]:
    """Batches of rows from one file; a truncated or corrupt gzip ends it with a rejected record."""
    fmt = detect_format(path)
    with open(path, "rb") as handle:
        counting = _CountingReader(handle)
        # GzipFile buffers by itself; a large buffer on top would lose up to that much of the
        # good lines when a truncated file ends in EOFError.
        stream: IO[bytes] = io.BufferedReader(counting, buffer_size=_PIECE)
        compressed = path.suffix.lower() == ".gz"
        if compressed:
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        last_line = 0
        try:
            batches: Iterable[Batch]
            if fmt == "jsonl":
                spans = pool is not None and not compressed
                units = _jsonl_units(stream, settings, batch_size, spans)
                if pool is not None:
                    batches = pool.map(units, settings)
                else:
                    batches = (
                        u if isinstance(u, Batch) else jsonl_batch(u, settings) for u in units
                    )
            else:
                chunks = _chunks(_records(stream, fmt, settings), batch_size)
                batches = (build_batch(records, settings) for records in chunks)
            for batch in batches:
                last_line = max(last_line, batch.last_line)
                if on_bytes is not None:
                    on_bytes(counting.position)
                yield batch
        except READ_ERRORS as exc:
            yield Batch(
                rejected=[
                    RejectedRecord(
                        file=settings.name,
                        line=last_line + 1,
                        reason=f"truncated or corrupt gzip ({exc}); the records before it landed",
                    )
                ]
            )
