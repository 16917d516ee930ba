"""Input formats: each reader turns a file's records into `RawConversation`s or rejections named
by file and line (JSONL with message lists or transcripts, one JSON document, plain-text
transcripts, long-form CSV), and `detect_format` picks the reader by name and content.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from annotator.errors import InputError
from annotator.models import RejectedRecord

if TYPE_CHECKING:  # not at run time: a worker process would import pandas with it, for nothing
    pass


BATCH_SIZE = 2000  # records parsed and scrubbed as one unit of work
READ_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)

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

# Hostile input must not exhaust memory or crash the file: these bound what one record may be.
MAX_RECORD_BYTES = 8 << 20  # a line (JSONL), a row (CSV) or a transcript (.txt); --max-record-bytes
# orjson stops serialising at 255 levels; no real metadata comes close to this.
MAX_METADATA_DEPTH = 64
# A .json document is parsed whole (several times its size in memory): larger ones go to JSONL.
MAX_JSON_DOCUMENT_BYTES = 64 << 20
REJECTED_KEPT = 1000  # rejections kept in the report; the rest are counted (and in --rejects)
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, as Windows tools write at the start of a file
_LONE_CR = re.compile(rb"\r(?!\n)")
_HEAD = 4096  # bytes of an oversize CSV row kept, to name its conversation
_PIECE = 1 << 16  # bytes read at a time: a truncated gzip loses at most this much before the break


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


def oversize_reason(size: int | None, limit: int, what: str = "record") -> str:
    """Why a record is refused for its size; `size` None when only "over the limit" is known
    (the read stopped there)."""
    sized = what if size is None else f"{what} of {size:,} bytes"
    return (
        f"{sized} is over the limit of {limit:,} bytes (--max-record-bytes); "
        "split it, or raise the limit"
    )


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in `value` nest more than `limit` levels; iterative, so the
    depth itself cannot overflow the stack."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if type(item) is dict else item
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False


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
    if metadata and nested_deeper_than(metadata, MAX_METADATA_DEPTH):
        raise RecordError(f"metadata nested deeper than {MAX_METADATA_DEPTH} levels")
    return RawConversation(line, turns, external_id_of(obj), metadata)


def read_jsonl(
    lines: Iterable[bytes],
    name: str,
    transcript_field: str = "chosen",
    first_line: int = 1,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[Record]:
    """JSONL of chat-message lists or of `Human:`/`Assistant:` transcripts, one object a line."""
    for line_no, raw in enumerate(lines, start=first_line):
        if line_no == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if len(raw) < 4 and not raw.strip():  # a blank line (length test first: no copy)
            continue
        if len(raw) > max_record_bytes:
            yield RejectedRecord(
                file=name, line=line_no, reason=oversize_reason(len(raw), max_record_bytes)
            )
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
        except RecursionError:  # content blocks nested hundreds deep, turned into text
            yield RejectedRecord(file=name, line=line_no, reason="nested too deeply")


def read_json_document(
    stream: IO[bytes],
    name: str,
    transcript_field: str = "chosen",
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[Record]:
    """A `.json` file: a JSON array of conversations or tasks (a Label Studio export), or one
    object. The whole document is parsed at once (JSON arrays cannot be split by line), so one
    over MAX_JSON_DOCUMENT_BYTES is refused; for large inputs use JSONL. `line` in reports is
    the item's position, from 1."""
    data = stream.read(MAX_JSON_DOCUMENT_BYTES + 1)
    if len(data) > MAX_JSON_DOCUMENT_BYTES:
        yield RejectedRecord(
            file=name,
            line=1,
            reason=f"a .json document over {MAX_JSON_DOCUMENT_BYTES:,} bytes is not read (it is "
            f"parsed whole); write it as JSONL, one object a line: jq -c '.[]' FILE > FILE.jsonl",
        )
        return
    data = data.removeprefix(_BOM)
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if data.lstrip()[:1] == b"{":  # one object a line under a .json name: read as JSONL
            lines = _split_line_ends(data).splitlines(keepends=True)
            yield from read_jsonl(lines, name, transcript_field, 1, max_record_bytes)
            return
        line = data[: exc.pos].count(b"\n") + 1
        yield RejectedRecord(file=name, line=line, reason=f"malformed JSON document: {exc}")
        return
    items = document if isinstance(document, list) else [document]
    for position, item in enumerate(items, start=1):
        try:
            # an item can be over the limit only when the whole document is: measured then
            size = len(orjson.dumps(item)) if len(data) > max_record_bytes else 0
            if size > max_record_bytes:
                raise RecordError(oversize_reason(size, max_record_bytes))
            yield conversation_from_object(item, position, transcript_field)
        except RecordError as exc:
            yield RejectedRecord(file=name, line=position, reason=f"item {position}: {exc}")
        except (RecursionError, orjson.JSONEncodeError):
            yield RejectedRecord(file=name, line=position, reason=f"item {position}: nested "
                                 "too deeply")  # fmt: skip


def _split_line_ends(data: bytes) -> bytes:
    """`data` with every lone CR (old Mac line ends) made a LF; CRLF stays, and the length too."""
    return _LONE_CR.sub(b"\n", data) if b"\r" in data else data


def read_transcript_text(
    stream: IO[bytes], name: str, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[Record]:
    """A plain-text `Human:` / `Assistant:` transcript: one conversation per file."""
    data = stream.read(max_record_bytes + 1)
    if len(data) > max_record_bytes:
        yield RejectedRecord(
            file=name,
            line=1,
            reason=oversize_reason(None, max_record_bytes, "transcript"),
        )
        return
    data = data.removeprefix(_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield RejectedRecord(file=name, line=line, reason=f"invalid UTF-8 ({exc.reason})")
        return
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line ends
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


CsvLine = tuple[int, str, bool]  # line number, text, whether it is being read a second time


def _csv_lines(stream: IO[bytes], max_record_bytes: int) -> Iterator[CsvLine | Oversize]:
    """Physical lines of a CSV file, decoded; invalid UTF-8 is kept as surrogates and reported
    per conversation. A line over the limit comes as `Oversize`, never whole in memory."""
    for item in _line_chunks(stream, BATCH_SIZE, 1 << 20, max_record_bytes):
        if isinstance(item, Oversize):
            yield item
            continue
        for i, raw in enumerate(item.data.splitlines(keepends=True)):
            line = item.first_line + i
            if line == 1:
                raw = raw.removeprefix(_BOM)
            yield line, raw.decode("utf-8", "surrogateescape"), False


@dataclass(slots=True)
class BadRow:
    """A CSV row that cannot be read, with its fields as far as they can be made out (to name
    the conversation it belonged to)."""

    rejected: RejectedRecord
    fields: list[str]


def _guess_fields(text: str) -> list[str]:
    try:
        return next(csv.reader([text]), [])
    except csv.Error:
        return []


def _csv_rows(
    stream: IO[bytes], name: str, max_record_bytes: int
) -> Iterator[tuple[int, list[str]] | BadRow]:
    """Rows of a CSV file with the line each starts on.

    A row goes on over physical lines while a quoted field is open (an odd count of quotes so
    far), and is then parsed strictly. A row that does not parse (an unclosed or stray quote)
    is rejected at its first line and the lines after it are read again as rows, once: one bad
    quote cannot swallow the rows that follow. A row over the limit is rejected and skipped.
    """
    csv.field_size_limit(max(csv.field_size_limit(), max_record_bytes))  # Python's: 131,072
    lines = _csv_lines(stream, max_record_bytes)
    again: deque[CsvLine] = deque()

    def next_line() -> CsvLine | Oversize | None:
        return again.popleft() if again else next(lines, None)

    while (first := next_line()) is not None:
        if isinstance(first, Oversize):
            reason = oversize_reason(first.size, max_record_bytes)
            rejected = RejectedRecord(file=name, line=first.line, reason=reason)
            yield BadRow(rejected, _guess_fields(first.head.decode("utf-8", "replace")))
            continue
        start = first[0]
        parts, size, quotes, end = [first], len(first[1]), first[1].count('"'), start
        over = size if size > max_record_bytes else 0
        while quotes % 2 and not over:  # a quoted field is open: the row goes on
            following = next_line()
            if following is None:
                break
            if isinstance(following, Oversize):
                over, end = size + following.size, following.line
                quotes += following.odd_quotes
                break
            parts.append(following)
            size, end = size + len(following[1]), following[0]
            quotes += following[1].count('"')
            if size > max_record_bytes:
                over = size
                break
        if over:
            while quotes % 2 and (following := next_line()) is not None:  # skip to the row's end
                if isinstance(following, Oversize):
                    quotes, end = quotes + following.odd_quotes, following.line
                else:
                    quotes, end = quotes + following[1].count('"'), following[0]
            reason = oversize_reason(over, max_record_bytes)
            if end > start:
                reason = f"lines {start}-{end}: {reason} (or a quote opened there never closes)"
            rejected = RejectedRecord(file=name, line=start, reason=reason)
            yield BadRow(rejected, _guess_fields(first[1][:_HEAD]))
            continue
        text = "".join(part[1] for part in parts)
        try:
            yield start, next(csv.reader((text,), strict=True))
            continue
        except csv.Error as exc:
            problem = f"unclosed or stray quote ({exc})"
        rest = parts[1:]
        if rest and not any(part[2] for part in rest):
            again.extendleft(reversed([(line, t, True) for line, t, _ in rest]))
            problem += f"; lines {rest[0][0]}-{end} after it are read again as rows"
        elif rest:
            problem = f"lines {start}-{end}: {problem}"
        rejected = RejectedRecord(file=name, line=start, reason=problem)
        yield BadRow(rejected, _guess_fields(first[1]))


def read_csv(
    stream: IO[bytes], name: str, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[Record]:
    """Long-form CSV, rows of one conversation contiguous; extra columns become metadata.

    A conversation with a row that cannot be read is rejected whole, naming that row: landing
    the rest would store a conversation with a turn missing."""
    rows = _csv_rows(stream, name, max_record_bytes)
    header: list[str] | None = None
    for first in rows:
        if isinstance(first, BadRow):
            raise InputError(f"{name}:{first.rejected.line}: unreadable CSV header: "
                             f"{first.rejected.reason}")  # fmt: skip
        if any(cell.strip() for cell in first[1]):
            header = first[1]
            break
    if header is None:
        return
    cols = _csv_columns(header, name)
    meta_cols = [i for i in range(len(header)) if i not in cols.values()]
    finished: set[str] = set()
    tainted: dict[str, int] = {}  # conversation -> line of a row of it that was rejected
    current: str | None = None
    conv_rows: list[tuple[int, list[str]]] = []
    start = 0

    def flush() -> Record:
        finished.add(current or "")
        try:
            if current in tainted:
                raise RecordError(f"not stored, its row on line {tainted[current]} was rejected")
            bad = next((line for line, row in conv_rows if _has_surrogates(row)), None)
            if bad is not None:
                raise RecordError(f"invalid UTF-8 on line {bad}")
            if "turn" in cols:
                try:
                    conv_rows.sort(key=lambda r: int(r[1][cols["turn"]]))
                except ValueError as exc:
                    raise RecordError(f"turn index is not a number: {exc}") from None
            role, text = cols["role"], cols["text"]
            turns = finish_turns(
                [(normalise_role(r[role], i), r[text]) for i, (_, r) in enumerate(conv_rows)]
            )
        except RecordError as exc:
            return RejectedRecord(file=name, line=start, reason=f"conversation {current}: {exc}")
        first_row = conv_rows[0][1]
        metadata = {
            header[i]: first_row[i] for i in meta_cols if i < len(first_row) and first_row[i] != ""
        }
        return RawConversation(start, turns, current, metadata)

    def taint(fields: list[str], line: int) -> None:
        if len(fields) > cols["conversation_id"]:
            tainted.setdefault(fields[cols["conversation_id"]], line)

    for item in rows:
        if isinstance(item, BadRow):
            taint(item.fields, item.rejected.line)
            yield item.rejected
            continue
        line, row = item
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            taint(row, line)
            yield RejectedRecord(
                file=name, line=line, reason=f"{len(row)} fields, header has {len(header)}"
            )
            continue
        conv = row[cols["conversation_id"]]
        if conv != current:
            if conv_rows:
                yield flush()
            if conv in finished:
                yield RejectedRecord(
                    file=name,
                    line=line,
                    reason=f"rows of conversation {conv!r} are not contiguous; sort the file by "
                    "conversation id",
                )
                current, conv_rows = None, []
                continue
            current, conv_rows, start = conv, [], line
        conv_rows.append((line, row))
    if conv_rows:
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


@dataclass(slots=True, frozen=True)
class LineChunk:
    """Whole lines of a file from `first_line`: their bytes, or (an uncompressed file, read by a
    worker) where they lie in it, so the main process does not copy the text through a pipe."""

    first_line: int
    n_lines: int
    data: bytes = b""
    offset: int = 0
    length: int = -1  # 0 or more: read `length` bytes at `offset` of the file instead of `data`


@dataclass(slots=True, frozen=True)
class Oversize:
    """A line over the record limit: skipped as it is read, never held whole in memory."""

    line: int
    size: int
    odd_quotes: bool  # for CSV: whether it leaves a quoted field open
    head: bytes = b""  # its first bytes: for CSV, which conversation the row belonged to


def _pieces(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream in pieces of up to _PIECE bytes, each lone CR made a LF (old Mac line ends;
    the length stays, so offsets in the file stay valid). A CR that ends a piece waits for the
    next piece, which may start with its LF."""
    held = b""
    while piece := stream.read1(_PIECE):  # type: ignore[attr-defined]
        if held:
            piece, held = held + piece, b""
        if piece.endswith(b"\r"):
            piece, held = piece[:-1], b"\r"
        if piece:
            yield _split_line_ends(piece)
    if held:
        yield b"\n"


def _skip_line(pieces: Iterator[bytes], start: bytes) -> tuple[int, int, bytes, bool]:
    """Read past the end of a line that began with `start`, keeping nothing of it: its size
    (with its LF), its count of quotes, what follows it in the last piece, and whether the
    stream ended."""
    size, quotes = len(start), start.count(b'"')
    for piece in pieces:
        end = piece.find(b"\n")
        if end < 0:
            size, quotes = size + len(piece), quotes + piece.count(b'"')
            continue
        return size + end + 1, quotes + piece.count(b'"', 0, end), piece[end + 1 :], False
    return size, quotes, b"", True


def _at_most_lines(whole: bytes, max_lines: int) -> Iterator[bytes]:
    """`whole` (whole lines) cut into parts of at most `max_lines` lines; blank runs stay one
    part (a gigabyte of newlines is skipped, not cut into a million parts)."""
    if whole.count(b"\n") <= max_lines or whole.isspace():
        if whole:
            yield whole
        return
    start = 0
    while start < len(whole):
        end = start
        for _ in range(max_lines):
            end = whole.find(b"\n", end) + 1
            if not end:
                end = len(whole)
                break
        yield whole[start:end]
        start = end


def _line_chunks(
    stream: IO[bytes], max_lines: int, chunk_bytes: int, max_record: int
) -> Iterator[LineChunk | Oversize]:
    """Chunks of at most `max_lines` whole lines and about `chunk_bytes`, in order. A line over
    `max_record` bytes comes out as `Oversize`, read past without being held: memory stays
    within about max(chunk_bytes, max_record) whatever the input. On a read error (a truncated
    gzip) the whole lines read before it come out first."""
    pieces = _pieces(stream)
    line, offset, carry = 1, 0, b""
    while True:
        parts, size, newline, eof = [carry], len(carry), b"\n" in carry, False
        error: Exception | None = None
        try:
            while (size < chunk_bytes or not newline) and (newline or size <= max_record):
                piece = next(pieces, None)
                if piece is None:
                    eof = True
                    break
                parts.append(piece)
                size += len(piece)
                newline = newline or b"\n" in piece
        except READ_ERRORS as exc:
            error = exc
        data = b"".join(parts)
        if error is None and not newline and size > max_record:
            size, quotes, carry, eof = _skip_line(pieces, data)
            yield Oversize(line, size, quotes % 2 == 1, data[:_HEAD])
            line, offset = line + 1, offset + size
            if eof:
                return
            continue
        cut = len(data) if eof else data.rfind(b"\n") + 1
        whole, carry = data[:cut], data[cut:]
        for part in _at_most_lines(whole, max_lines):
            n_lines = part.count(b"\n") + (not part.endswith(b"\n"))
            yield LineChunk(line, n_lines, part, offset)
            line, offset = line + n_lines, offset + len(part)
        if error is not None:
            raise error
        if eof:
            return
