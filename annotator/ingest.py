"""Read conversations from files into the study database, scrubbing personal data first.

Formats (each also gzip-compressed, `.gz`):
- JSONL with a `messages` (or `conversation`) list of `{role, content}`; content a string or a
  list of text blocks, as chat APIs write them;
- JSONL whose field holds a `Human:` / `Assistant:` transcript (preference data sets: `chosen`
  by default, `field=` to pick another);
- plain-text transcripts in that layout (`.txt`, one conversation a file);
- CSV in long form: conversation id, turn index, role, text (other columns kept as metadata).

Readers are generators of `RawConversation | RejectedRecord`, so memory stays flat whatever the
file size. Rows are written in batches, one transaction each, with INSERT OR IGNORE on the
content-hash id: an interrupted run leaves whole batches only, and a rerun adds just what is
missing.
"""

from __future__ import annotations

import csv
import gzip
import io
import multiprocessing
import os
import re
import signal
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import sqlite_utils

from .db import dumps
from .errors import InputError
from .models import IngestReport, RejectedRecord, content_id, utc_now
from .privacy import scrub_text, scrub_value

BATCH_SIZE = 2000  # records parsed and scrubbed as one unit of work
# Rows per transaction. Content-hash keys land all over the primary-key index, and each commit
# rewrites every index page it touched: 20,000 rows a commit wrote about twice as fast as 2,000
# (measured here: 118k vs 52k rows/s), at the cost of redoing at most that many after a crash.
COMMIT_ROWS = 20_000

ROLE_ALIASES: dict[str, str] = {
    "user": "user",
    "human": "user",
    "customer": "user",
    "prompter": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "bot": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "claude": "assistant",
    "chatbot": "assistant",
    "system": "system",
}
ID_FIELDS = ("id", "conversation_id", "uuid")
MESSAGE_FIELDS = ("messages", "conversation", "turns", "dialogue")
TRANSCRIPT_FIELDS = ("chosen", "rejected")
_NOT_METADATA = frozenset({*MESSAGE_FIELDS, *TRANSCRIPT_FIELDS, *ID_FIELDS})
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "conversation_id": ("conversation_id", "conversation", "conv_id", "dialogue_id", "id"),
    "turn": ("turn", "turn_index", "turn_idx", "index", "position"),
    "role": ("role", "speaker", "author"),
    "text": ("text", "content", "message", "utterance"),
}
_TRANSCRIPT_MARK = re.compile(r"(?:^|\n)[ \t]*(Human|Assistant|System)[ \t]*:[ \t]?")


@dataclass(slots=True)
class RawConversation:
    """One conversation as read from a file, before scrubbing: a plain row."""

    line: int
    turns: list[tuple[str, str]]
    external_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


Record = RawConversation | RejectedRecord


# --- shared parsing helpers --------------------------------------------------------------------


class RecordError(ValueError):
    """A reason one record cannot land."""


def normalise_role(role: Any, position: int) -> str:
    known = ROLE_ALIASES.get(role) if isinstance(role, str) else None
    if known is not None:  # the common case, without the string work below
        return known
    key = str(role).strip().lower() if role is not None else ""
    if key not in ROLE_ALIASES:
        raise RecordError(
            f"unknown role {role!r} in turn {position + 1} (expected user, assistant or system)"
        )
    return ROLE_ALIASES[key]


def content_text(content: Any, position: int) -> str:
    """Text of a message's content: a string, or the text blocks of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type", "text") == "text":
                parts.append(str(block.get("text", "")))
        return "\n".join(parts)
    raise RecordError(f"turn {position + 1} has content of type {type(content).__name__}")


def finish_turns(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop empty turns; refuse a conversation with nothing said."""
    kept = [(role, text.strip()) for role, text in turns if text and text.strip()]
    if not kept:
        raise RecordError("empty conversation: no turn has text")
    if not any(role != "system" for role, _ in kept):
        raise RecordError("empty conversation: only a system prompt")
    return kept


def parse_transcript(text: str) -> list[tuple[str, str]]:
    """Split a `Human:` / `Assistant:` transcript into turns."""
    marks = list(_TRANSCRIPT_MARK.finditer(text))
    if not marks:
        raise RecordError("no 'Human:' or 'Assistant:' turn found in transcript")
    turns: list[tuple[str, str]] = []
    preamble = text[: marks[0].start()].strip()
    if preamble:
        turns.append(("system", preamble))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        turns.append((normalise_role(mark.group(1), i), text[mark.end() : end]))
    return finish_turns(turns)


def parse_messages(messages: Any) -> list[tuple[str, str]]:
    """Turns of a chat-message list; the loop is the ingest hot path, so the common shape
    (`role` and string `content`) is handled inline and the rest by the helpers."""
    if not isinstance(messages, list):
        raise RecordError("'messages' is not a list")
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if type(message) is not dict:
            raise RecordError(f"turn {i + 1} is not an object")
        role = message.get("role")
        known = ROLE_ALIASES.get(role) if type(role) is str else None
        if known is None:
            known = normalise_role(role if "role" in message else message.get("from"), i)
        text = message.get("content")
        if type(text) is not str:
            if "content" not in message:  # ShareGPT-style exports name the fields differently
                text = message.get("text", message.get("value"))
            text = content_text(text, i)
        text = text.strip()
        if text:
            turns.append((known, text))
    if not turns:
        raise RecordError("empty conversation: no turn has text")
    if all(role == "system" for role, _ in turns):
        raise RecordError("empty conversation: only a system prompt")
    return turns


def external_id_of(obj: dict[str, Any]) -> str | None:
    for key in ID_FIELDS:
        if obj.get(key) not in (None, ""):
            return str(obj[key])
    return None


# --- readers ---------------------------------------------------------------------------------


def _message_list(obj: dict[str, Any]) -> Any:
    for key in MESSAGE_FIELDS:
        if key in obj:
            return obj[key]
    return None


def conversation_from_object(
    obj: Any, line: int, transcript_field: str = "chosen"
) -> RawConversation:
    """One conversation from a JSON object: chat messages, a transcript field, or a Label Studio
    task whose `data` holds either."""
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}")
    messages = _message_list(obj)
    if messages is None and isinstance(obj.get("data"), dict):
        # A Label Studio task (export or import file): the conversation is in `data`.
        task_id = obj.get("id")
        obj = dict(obj["data"])
        if task_id is not None:
            obj.setdefault("label_studio_task_id", task_id)
        messages = _message_list(obj)
    if messages is not None:
        turns = parse_messages(messages)
    elif isinstance(obj.get(transcript_field), str):
        turns = parse_transcript(obj[transcript_field])
    else:
        raise RecordError(f"no 'messages' list and no {transcript_field!r} transcript field")
    metadata = {k: v for k, v in obj.items() if k not in _NOT_METADATA and k != transcript_field}
    return RawConversation(line, turns, external_id_of(obj), metadata)


def read_jsonl(
    lines: Iterable[bytes], name: str, transcript_field: str = "chosen", first_line: int = 1
) -> Iterator[Record]:
    """JSONL of chat-message lists or of `Human:`/`Assistant:` transcripts, one object a line."""
    for line_no, raw in enumerate(lines, start=first_line):
        if len(raw) < 4 and not raw.strip():  # a blank line (length test first: no copy)
            continue
        try:
            obj = orjson.loads(raw)  # orjson validates UTF-8 itself: no separate decode pass
        except orjson.JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                reason = f"invalid UTF-8 at byte {bad.start} ({bad.reason})"
            else:
                reason = f"malformed JSON: {exc}"
            yield RejectedRecord(file=name, line=line_no, reason=reason)
            continue
        try:
            yield conversation_from_object(obj, line_no, transcript_field)
        except RecordError as exc:
            yield RejectedRecord(file=name, line=line_no, reason=str(exc))


def read_json_document(
    stream: IO[bytes], name: str, transcript_field: str = "chosen"
) -> Iterator[Record]:
    """A `.json` file: a JSON array of conversations or tasks (a Label Studio export), or one
    object. The whole document is parsed at once (JSON arrays cannot be split by line); for
    large inputs prefer JSONL. `line` in reports is the item's position, from 1."""
    data = stream.read()
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if data.lstrip()[:1] == b"{":  # one object a line under a .json name: read as JSONL
            yield from read_jsonl(io.BytesIO(data), name, transcript_field)
            return
        line = data[: exc.pos].count(b"\n") + 1
        yield RejectedRecord(file=name, line=line, reason=f"malformed JSON document: {exc}")
        return
    items = document if isinstance(document, list) else [document]
    for position, item in enumerate(items, start=1):
        try:
            yield conversation_from_object(item, position, transcript_field)
        except RecordError as exc:
            yield RejectedRecord(file=name, line=position, reason=f"item {position}: {exc}")


def read_transcript_text(stream: IO[bytes], name: str) -> Iterator[Record]:
    """A plain-text `Human:` / `Assistant:` transcript: one conversation per file."""
    data = stream.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield RejectedRecord(file=name, line=line, reason=f"invalid UTF-8 ({exc.reason})")
        return
    try:
        turns = parse_transcript(text)
    except RecordError as exc:
        yield RejectedRecord(file=name, line=1, reason=str(exc))
        return
    yield RawConversation(1, turns, Path(name).name.split(".")[0], {})


def _csv_columns(header: list[str], name: str) -> dict[str, int]:
    lowered = [h.strip().lower() for h in header]
    found: dict[str, int] = {}
    for column, aliases in CSV_COLUMNS.items():
        for alias in aliases:
            if alias in lowered:
                found[column] = lowered.index(alias)
                break
    missing = [c for c in ("conversation_id", "role", "text") if c not in found]
    if missing:
        raise InputError(
            f"{name}:1: wrong CSV header {header!r}: missing {', '.join(missing)}; expected "
            "columns conversation_id, turn, role, text (other columns are kept as metadata)"
        )
    return found


def _has_surrogates(values: Iterable[str]) -> bool:
    try:
        for value in values:
            value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_csv(stream: IO[bytes], name: str) -> Iterator[Record]:
    """Long-form CSV, rows of one conversation contiguous; extra columns become metadata."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    cols = _csv_columns(header, name)
    meta_cols = [i for i in range(len(header)) if i not in cols.values()]
    finished: set[str] = set()
    current: str | None = None
    rows: list[tuple[int, list[str]]] = []
    start = 0

    def flush() -> Record:
        finished.add(current or "")
        try:
            bad = next((line for line, row in rows if _has_surrogates(row)), None)
            if bad is not None:
                raise RecordError(f"invalid UTF-8 on line {bad}")
            if "turn" in cols:
                try:
                    rows.sort(key=lambda r: int(r[1][cols["turn"]]))
                except ValueError as exc:
                    raise RecordError(f"turn index is not a number: {exc}") from None
            role, text = cols["role"], cols["text"]
            turns = finish_turns(
                [(normalise_role(r[role], i), r[text]) for i, (_, r) in enumerate(rows)]
            )
        except RecordError as exc:
            return RejectedRecord(file=name, line=start, reason=f"conversation {current}: {exc}")
        first = rows[0][1]
        metadata = {header[i]: first[i] for i in meta_cols if i < len(first) and first[i] != ""}
        return RawConversation(start, turns, current, metadata)

    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            yield RejectedRecord(
                file=name, line=line, reason=f"{len(row)} fields, header has {len(header)}"
            )
            continue
        conv = row[cols["conversation_id"]]
        if conv != current:
            if rows:
                yield flush()
            if conv in finished:
                yield RejectedRecord(
                    file=name,
                    line=line,
                    reason=f"rows of conversation {conv!r} are not contiguous; sort the file by "
                    "conversation id",
                )
                current, rows = None, []
                continue
            current, rows, start = conv, [], line
        rows.append((line, row))
    if rows:
        yield flush()


# --- files ----------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".jsonl", ".ndjson"):
        return "jsonl"
    if ext == ".json":
        return "json"
    if ext == ".csv":
        return "csv"
    if ext in (".txt", ".transcript", ""):
        return "transcript"
    raise InputError(
        f"{path}: unknown format {ext!r}; use .jsonl, .json, .csv or .txt (optionally .gz)"
    )


class _CountingReader(io.RawIOBase):
    """Wraps a binary file and counts bytes read, so progress can follow compressed input."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.position += n or 0
        return n or 0


# --- turning records into rows ---------------------------------------------------------------


@dataclass(slots=True)
class RowSettings:
    """What every row of one file shares; small and picklable, sent to worker processes."""

    name: str
    source: str
    scrub: bool
    ingested_at: str
    transcript_field: str = "chosen"


@dataclass(slots=True)
class Batch:
    """Rows ready to insert, with what was rejected and scrubbed on the way."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    last_line: int = 0


def conversation_row(
    raw: RawConversation, source: str, scrub: bool, counts: Counter[str], ingested_at: str
) -> tuple[Any, ...]:
    """The database row of one conversation: scrubbed turns, content id, JSON columns."""
    if scrub:
        turns = [(role, scrub_text(text, counts)) for role, text in raw.turns]
        metadata = scrub_value(raw.metadata, counts) if raw.metadata else raw.metadata
        external_id = scrub_text(raw.external_id, counts) if raw.external_id else None
    else:
        turns, metadata, external_id = raw.turns, raw.metadata, raw.external_id
    turns_json = orjson.dumps([{"role": role, "text": text} for role, text in turns]).decode()
    return (
        content_id(turns),
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
        else:
            batch.rows.append(
                conversation_row(
                    record, settings.source, settings.scrub, batch.counts, settings.ingested_at
                )
            )
    return batch


@dataclass(slots=True, frozen=True)
class FileSpan:
    """Whole lines of an uncompressed file, by position: a worker reads them itself, so the
    main process does not copy the text through a pipe."""

    offset: int
    length: int


def jsonl_batch(first_line: int, lines: list[bytes] | FileSpan, settings: RowSettings) -> Batch:
    """Parse and scrub one chunk of JSONL lines; runs in a worker process for large files."""
    if isinstance(lines, FileSpan):
        with open(settings.name, "rb") as handle:
            handle.seek(lines.offset)
            lines = handle.read(lines.length).splitlines(keepends=True)
    records = read_jsonl(lines, settings.name, settings.transcript_field, first_line)
    batch = build_batch(records, settings)
    batch.last_line = first_line + len(lines) - 1
    return batch


READ_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


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


def _ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle: it finishes the batch in hand and reports; workers that
    # died of the same signal would only add tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Pool:
    """A bounded window of chunks in worker processes, results in input order.

    At most `window` chunks are in flight, so memory stays flat however large the file.
    """

    def __init__(self, workers: int) -> None:
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_ignore_sigint,
        )
        self.window = workers * 8

    def map(self, chunks: Iterable[tuple[int, list[bytes] | FileSpan]], settings: RowSettings):
        pending: deque[Future[Batch]] = deque()
        try:
            for first_line, lines in chunks:
                pending.append(self.executor.submit(jsonl_batch, first_line, lines, settings))
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


def _numbered_lines(
    stream: IO[bytes], size: int, compressed: bool
) -> Iterator[tuple[int, list[bytes]]]:
    """Chunks of about `size` lines with the number of each chunk's first line."""
    line = 1
    if compressed:
        # Line by line, so a truncated file still yields every line before the break.
        chunks: Iterable[list[bytes]] = _chunks(stream, size)
    else:
        # readlines(hint) splits a whole buffer in C: a quarter of the reading cost.
        chunks = iter(lambda: stream.readlines(size * 1024), [])
    for lines in chunks:
        yield line, lines
        line += len(lines)


def _numbered_spans(handle: IO[bytes], size: int) -> Iterator[tuple[int, FileSpan]]:
    """Spans of whole lines of about `size` kB, with the number of each span's first line."""
    line, offset = 1, 0  # the stream starts at the beginning of the file
    while True:
        block = handle.read(size * 1024)
        if not block:
            return
        if not block.endswith(b"\n"):
            block += handle.readline()  # finish the last line
        yield line, FileSpan(offset, len(block))
        line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        offset += len(block)


def file_batches(
    path: Path,
    settings: RowSettings,
    batch_size: int = BATCH_SIZE,
    pool: _Pool | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Batch]:
    """Batches of rows from one file; a truncated or corrupt gzip ends it with a rejected record."""
    fmt = detect_format(path)
    with open(path, "rb") as handle:
        counting = _CountingReader(handle)
        # GzipFile buffers by itself; a large buffer on top would lose up to that much of the
        # good lines when a truncated file ends in EOFError.
        stream: IO[bytes] = io.BufferedReader(counting, buffer_size=1 << 16)
        if path.suffix.lower() == ".gz":
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        last_line = 0
        try:
            if fmt == "jsonl":
                compressed = path.suffix.lower() == ".gz"
                chunks: Iterable[tuple[int, list[bytes] | FileSpan]]
                if pool is not None and not compressed:
                    chunks = _numbered_spans(stream, batch_size)
                else:
                    chunks = _numbered_lines(stream, batch_size, compressed)
                if pool is not None:
                    batches: Iterable[Batch] = pool.map(chunks, settings)
                else:
                    batches = (jsonl_batch(first, lines, settings) for first, lines in chunks)
                for batch in batches:
                    last_line = batch.last_line
                    if on_bytes is not None:
                        on_bytes(counting.position)
                    yield batch
            else:
                if fmt == "csv":
                    reader = read_csv(stream, settings.name)
                elif fmt == "json":
                    reader = read_json_document(stream, settings.name, settings.transcript_field)
                else:
                    reader = read_transcript_text(stream, settings.name)
                for records in _chunks(reader, batch_size):
                    batch = build_batch(records, settings)
                    last_line = batch.last_line
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


# --- storing ---------------------------------------------------------------------------------


_INSERT = (
    "INSERT OR IGNORE INTO conversations "
    "(id, source, external_id, turns, metadata, scrubbed, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
PARALLEL_MIN_BYTES = 4 << 20  # below this, starting worker processes costs more than it saves


def _write_batch(db: sqlite_utils.Database, rows: list[tuple[Any, ...]]) -> int:
    conn = db.conn
    before = conn.total_changes
    with conn:  # one transaction per batch: all of it lands, or none of it
        conn.executemany(_INSERT, rows)
    return conn.total_changes - before


def _default_workers(files: list[Path]) -> int:
    big = any(detect_format(p) == "jsonl" and p.stat().st_size >= PARALLEL_MIN_BYTES for p in files)
    return min(os.cpu_count() or 1, 4) if big else 1


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
) -> IngestReport:
    """Ingest files into `db`; return what landed, what was a duplicate and what was rejected.

    Large JSONL files are parsed and scrubbed, `batch_size` records at a time, in `workers`
    processes (default: one per core); rows are written here, in file order, one transaction
    per `commit_every` rows.
    `progress(file, bytes_read, bytes_total)` is called as the files are read.
    """
    files = [Path(p) for p in paths]
    for path in files:
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder; pass the files in it")
        detect_format(path)
    report = IngestReport(files=[str(p) for p in files], scrubbed=scrub)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    ingested_at = utc_now().isoformat()
    workers = _default_workers(files) if workers is None else workers
    pool = _Pool(workers) if workers > 1 else None
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
        for path in files:
            total = path.stat().st_size
            settings = RowSettings(
                name=str(path),
                source=source or path.name.split(".")[0],
                scrub=scrub,
                ingested_at=ingested_at,
                transcript_field=transcript_field,
            )
            on_bytes = (lambda n, p=path, t=total: progress(str(p), n, t)) if progress else None
            for batch in file_batches(path, settings, batch_size, pool, on_bytes):
                pending.extend(batch.rows)
                report.rejected.extend(batch.rejected)
                counts.update(batch.counts)
                flush(at_least=commit_every)
            flush()
            if progress:
                progress(str(path), total, total)
    finally:
        if pool is not None:
            pool.close()
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
                "rejected": len(report.rejected),
                "scrub_counts": dumps(report.scrub_counts),
            }
        )
