"""The files an export writes: which format, where it may go, and how each format is written.

Every format is written beside its final name (a hidden `.NAME.*.partial` file or folder in the
same folder, so the rename never crosses a file system) and renamed into place only once it is
complete: a reader sees the old export or the new one, never half of one, and a failed export
leaves nothing behind. A large export's second half is written by a worker into a hidden
`.annotator-export-*` folder beside it (`export._write_in_two_parts`), appended through its
sink (`RowSink.append`) and removed when the export ends.

Formats:
- `jsonl`, `jsonl.gz`: one record a line, exactly as the record's pydantic model dumps it.
- `csv`: one record a row, for spreadsheets. Cells a spreadsheet would run as a formula are
  neutralised (OWASP's CSV-injection rule), so a CSV does not keep data exactly; the others do.
- `parquet`: typed columns with an explicit Arrow schema per kind of record (lists stay lists,
  nested values stay structs, booleans stay booleans, missing stays null).
- `hf`: a folder in the Hugging Face Hub's layout, `data/train-00000-of-00001.parquet` plus a
  `README.md` dataset card; `datasets.load_dataset(FOLDER)` reads it.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from annotator.errors import AnnotatorError


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    jsonl_gz = "jsonl.gz"
    csv = "csv"
    parquet = "parquet"
    hf = "hf"


class ExportWhat(StrEnum):
    """What an export holds: gold with each annotator's labels, gold alone, or the proposals."""

    validated = "validated"
    gold = "gold"
    proposals = "proposals"


# Formats written as Parquet (`hf`: a folder around one Parquet file).
PARQUET_FORMATS = (ExportFormat.parquet, ExportFormat.hf)
# Formats a caller can hold as text (the app's download button).
TEXT_FORMATS = (ExportFormat.jsonl, ExportFormat.csv)
# Longest suffix first: "x.jsonl.gz" is jsonl.gz, not gz.
_SUFFIXES = {".jsonl.gz": ExportFormat.jsonl_gz, ".jsonl": ExportFormat.jsonl,
             ".csv": ExportFormat.csv, ".parquet": ExportFormat.parquet}
HF_DATA_FILE = "data/train-00000-of-00001.parquet"
_FORMAT_NAMES = ", ".join(f.value for f in ExportFormat)


def export_format(path: Path, chosen: str | None = None) -> ExportFormat:
    """The format `--format` names, else the one the file name ends with; else one line why."""
    if chosen is not None:
        try:
            return ExportFormat(chosen.lower().lstrip("."))
        except ValueError:
            raise AnnotatorError(
                f"unknown format {chosen!r}: choose one of {_FORMAT_NAMES}"
            ) from None
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    raise AnnotatorError(
        f"cannot tell the format of {path.name!r} from its name: end it in .jsonl, .jsonl.gz, "
        f".csv or .parquet, or choose one with --format ({_FORMAT_NAMES}; hf writes a folder)"
    )


# --- where an export may go ---------------------------------------------------------------------

STDOUT = "-"  # as the path: the export goes to standard output
STREAM_FORMATS = (ExportFormat.jsonl, ExportFormat.jsonl_gz, ExportFormat.csv)


def is_stdout(path: Path | str) -> bool:
    return str(path) == STDOUT


def check_target(path: Path, fmt: ExportFormat, force: bool = False) -> Path:
    """Where the export really goes: `path`, or the file a link at `path` leads to (the link
    stays a link: the file behind it is replaced). Refused, in one line: a dangling link (it
    could lead anywhere a planted link says), a folder for a file format, a device, pipe or
    socket (a rename would replace it, as a root export once replaced /dev/stdout; `-` writes
    to standard output), an existing export without `force`, a foreign folder for `hf`."""
    real = path
    if path.is_symlink():
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise AnnotatorError(
                f"{path} is a link to {os.readlink(path)}, which does not exist: name the file "
                "itself"
            ) from None
    if fmt is ExportFormat.hf:
        _check_folder_target(real, path, force)
        return real
    if real.is_dir():
        raise AnnotatorError(f"{path} is a folder: name a file, e.g. {path / 'export.' }{fmt}")
    if real.exists() and not real.is_file():
        raise AnnotatorError(
            f"{path} is not a regular file (a device, a pipe or a socket): name a file, or "
            f"{STDOUT} for standard output"
        )
    if real.exists() and not force:
        raise AnnotatorError(f"{path} exists: pass --force to replace it")
    return real


def _check_folder_target(real: Path, path: Path, force: bool) -> None:
    if real.exists() and not real.is_dir():
        raise AnnotatorError(f"{path} is not a folder: --format hf writes a folder")
    if real.is_dir() and not _replaceable_folder(real):
        raise AnnotatorError(
            f"{path} holds other files: name a new or empty folder (an earlier hf export "
            "there is replaced with --force)"
        )
    if real.is_dir() and any(real.iterdir()) and not force:
        raise AnnotatorError(f"{path} holds an earlier export: pass --force to replace it")


def _replaceable_folder(path: Path) -> bool:
    """Empty, or what an earlier hf export wrote (README.md and data/*.parquet) and nothing
    else: replacing a folder deletes it, so anything else in it is never ours to delete."""
    entries = {entry.name: entry for entry in path.iterdir()}
    if not entries:
        return True
    if set(entries) - {"README.md", "data"} or not entries.get("data", path).is_dir():
        return False
    return all(f.suffix == ".parquet" and f.is_file() for f in (path / "data").iterdir())


@contextmanager
def staged(path: Path, folder: bool = False) -> Iterator[Path]:
    """A fresh file (or folder) beside `path`, renamed onto `path` when the block ends without
    an error, removed when it raises."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial"
        if folder:
            temp.mkdir()
        else:
            temp.touch(exist_ok=False)  # created as any new file is (the umask applies)
    except OSError as exc:
        raise AnnotatorError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield temp
        _put_in_place(temp, path, folder)
    except BaseException:
        _remove(temp)
        raise


def _put_in_place(temp: Path, path: Path, folder: bool) -> None:
    try:
        if folder and path.exists():
            # A folder cannot be renamed over a non-empty one: move the old one aside first.
            old = path.parent / f".{path.name}.{secrets.token_hex(4)}.old"
            os.replace(path, old)
            os.replace(temp, path)
            _remove(old)
        else:
            os.replace(temp, path)
    except OSError as exc:
        raise AnnotatorError(f"cannot write {path}: {exc.strerror or exc}") from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- writers ------------------------------------------------------------------------------------


class RowSink(Protocol):
    def write(self, row: dict[str, Any]) -> None: ...

    def append(self, part: Path) -> None:
        """Add the rows a sink of the same kind wrote into `part` (without a header)."""

    def close(self) -> None: ...


def _append_text(handle: IO[str], part: Path) -> None:
    with open(part, encoding="utf-8", newline="") as rows:
        shutil.copyfileobj(rows, handle, 1 << 20)


class JsonlSink:
    """One JSON object a line; `row` is already in JSON mode (pydantic `mode="json"`)."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def write(self, row: dict[str, Any]) -> None:
        self.handle.write(orjson.dumps(row).decode() + "\n")

    def append(self, part: Path) -> None:
        _append_text(self.handle, part)

    def close(self) -> None:
        self.handle.flush()


# OWASP, CSV injection: a cell starting with one of these is run as a formula by Excel, LibreOffice
# or Google Sheets; a leading single quote makes the spreadsheet show it as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


class CsvSink:
    """One row a record, flattened by `to_row`; every cell neutralised."""

    def __init__(self, handle: IO[str], columns: list[str],
                 to_row: Callable[[dict[str, Any]], list[str]], header: bool = True) -> None:
        self.writer = csv.writer(handle)
        self.to_row = to_row
        self.handle = handle
        if header:
            self.writer.writerow(columns)

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow([neutralise(cell) for cell in self.to_row(row)])

    def append(self, part: Path) -> None:
        _append_text(self.handle, part)

    def close(self) -> None:
        self.handle.flush()


class ParquetSink:
    """Rows in Arrow record batches of `batch_rows`, so memory stays flat on a large export."""

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int = 2000) -> None:
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.schema = schema
        self.batch_rows = batch_rows
        self.pending: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_pylist(self.pending, schema=self.schema))
            self.pending = []

    def append(self, part: Path) -> None:
        # a row group at a time: the part is never in memory whole
        self._flush()
        rows = pq.ParquetFile(part)
        for group in range(rows.num_row_groups):
            self.writer.write_table(rows.read_row_group(group))

    def close(self) -> None:
        self._flush()
        self.writer.close()


@contextmanager
def text_file(path: Path, compressed: bool = False,
              stream: IO[bytes] | None = None) -> Iterator[IO[str]]:
    """A UTF-8 text handle on `path` (or on `stream`, left open); gzip with no name and no
    time in its header, so the same export gives the same bytes."""
    with contextlib.ExitStack() as stack:
        raw = stream if stream is not None else stack.enter_context(open(path, "wb"))
        if compressed:
            raw = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0))
        handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            yield handle
            handle.flush()
        finally:
            handle.detach()  # closing the wrapper would close `stream`; the stack closes ours


# --- Arrow schemas, one per kind of record --------------------------------------------------------

_TURN = pa.struct([("role", pa.string()), ("text", pa.string())])
_VALUE_FIELDS = [("name", pa.string()), ("node_id", pa.string()), ("category", pa.string()),
                 ("cluster", pa.string()), ("free", pa.bool_())]
_VALUE = pa.struct(_VALUE_FIELDS)
_PROPOSED_VALUE = pa.struct([*_VALUE_FIELDS, ("evidence", pa.string()), ("score", pa.float64())])
_ANNOTATION = pa.struct([
    ("annotator", pa.string()), ("ai_values", pa.list_(pa.string())),
    ("human_values", pa.list_(pa.string())), ("response_type", pa.string()),
    ("subjective", pa.bool_()), ("notes", pa.string()), ("task", pa.string()),
    ("task_description", pa.string()), ("edited_by", pa.string()),
])
_GOLD_FIELDS = [
    ("conversation_id", pa.string()), ("source", pa.string()), ("external_id", pa.string()),
    ("turns", pa.list_(_TURN)),
    ("ai_values", pa.list_(_VALUE)), ("human_values", pa.list_(_VALUE)),
    ("response_type", pa.string()), ("subjective", pa.bool_()), ("task", pa.string()),
    ("task_description", pa.string()), ("decided_by", pa.string()),
    ("decided_at", pa.string()), ("n_annotations", pa.int64()), ("new_labels_since", pa.bool_()),
]
SCHEMAS: dict[ExportWhat, pa.Schema] = {
    ExportWhat.gold: pa.schema(_GOLD_FIELDS),
    ExportWhat.validated: pa.schema([*_GOLD_FIELDS, ("annotations", pa.list_(_ANNOTATION))]),
    ExportWhat.proposals: pa.schema([
        ("conversation_id", pa.string()), ("source", pa.string()), ("external_id", pa.string()),
        ("turns", pa.list_(_TURN)),
        ("prompt_id", pa.string()), ("prompt_name", pa.string()),
        ("prompt_version", pa.string()), ("model", pa.string()), ("extractor", pa.string()),
        ("status", pa.string()), ("error", pa.string()), ("subjective", pa.bool_()),
        ("response_type", pa.string()), ("task", pa.string()),
        ("task_description", pa.string()), ("ai_values", pa.list_(_PROPOSED_VALUE)),
        ("human_values", pa.list_(_PROPOSED_VALUE)), ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()), ("cache_read_tokens", pa.int64()),
        ("cache_write_tokens", pa.int64()), ("cost_usd", pa.float64()),
        ("attempts", pa.int64()), ("model_calls", pa.int64()), ("call_ms", pa.float64()),
        ("created_at", pa.string()),
    ]),
}


__all__ = [
    "FORMULA_STARTS",
    "HF_DATA_FILE",
    "PARQUET_FORMATS",
    "SCHEMAS",
    "STDOUT",
    "STREAM_FORMATS",
    "TEXT_FORMATS",
    "CsvSink",
    "ExportFormat",
    "ExportWhat",
    "JsonlSink",
    "ParquetSink",
    "check_target",
    "export_format",
    "is_stdout",
    "neutralise",
    "staged",
    "text_file",
]
