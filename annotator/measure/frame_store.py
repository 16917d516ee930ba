"""The study's frames kept on disk beside it, one file per table and change signature.

Building a frame from SQLite parses every row's JSON in Python: at 300,000 conversations the
annotations frame takes about 5 s and the three others as long again, and every command and
every summary worker used to build the same frames anew. Stored as Arrow IPC (never pickle: a
study folder may come from someone else) in `<study folder>/.annotator-cache/<database
name>/frames/`, a frame is read back in about a fifth of that, with one string object per
value name instead of one per occurrence.

A stored frame is keyed on its table's change signature (`table_signatures`): any write to the
table gives a new signature, so a changed table is built afresh and an unchanged one is read.
The annotations frame, the largest, is kept with a row index (`store_index`), so that after a
small change the next one is made from it and the rows changed since (`frame_patch`).
Reading is best effort: a missing, half-written or unreadable file is rebuilt, and a folder
that cannot be written just means the frame is built each time.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlite_utils
from pyarrow import feather

from annotator.models import MAJORITY

CACHE_DIR = ".annotator-cache"
FRAMES_DIR = "frames"
# Bump when a frame's columns or their meaning change: files of older versions are then unused.
FRAME_VERSION = "1"
_KIND = b"annotator.kinds"  # schema metadata: how each column is read back
_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
STALE_WRITE_SECONDS = 3600  # a temporary file this old belongs to no running writer


def cache_root(path: str | Path) -> Path:
    """Where the study's derived files live: `<study folder>/.annotator-cache/<database name>`."""
    p = Path(path).resolve()
    return p.parent / CACHE_DIR / p.name


# Each signature: these counts (the pages read them: a study without gold, its size), then the
# table's change token, which every write to the table sets anew (`db._add_change_tokens`).
_SIGNATURE_SQL = {
    "conversations": "select count(*), max(rowid) from conversations",
    "annotations": "select count(*) from annotations",
    "gold": "select count(*) from gold",
    # Gold decided by a person (not by majority), alone: the Gold page's queue leaves these
    # out and reads nothing else of gold, so a majority decision does not recompute it.
    "gold:people": f"select count(*) from gold where decided_by != '{MAJORITY}'",
    "tasks": "select count(*), max(pushed_at) from tasks",
}
_EXTRACTIONS_SQL = (
    "select prompt_id, status, count(*), max(rowid) from extractions {where} "
    "group by prompt_id, status order by prompt_id, status"
)
_TOKENS_SQL = "select name, token from table_changes"
# What the signatures are made of: a copy of them kept by an earlier version (the app's facts)
# is not read when this changes, as a signature it lacks would key new results on "".
SIGNATURES_MADE_OF = json.dumps([_SIGNATURE_SQL, _EXTRACTIONS_SQL, _TOKENS_SQL], sort_keys=True)


def table_signatures(db: sqlite_utils.Database) -> dict[str, str]:
    """A change signature per table (and per prompt version for extractions), read without
    scanning a table.

    What is derived from a table (a frame, an app summary) is keyed on that table's signature,
    so adjudicating one conversation recomputes what depends on gold and nothing else. A
    signature ends in the table's change token, which triggers set to a new random number on
    every insert, update and delete, by this tool or any other program (`db.TOKEN_TABLES`):
    equal signatures mean the table was not written in between.
    """
    with snapshot(db):
        tokens = _tokens(db)
        sigs = {table: _signed(db.execute(sql).fetchone(), tokens.get(table))
                for table, sql in _SIGNATURE_SQL.items()}
        sigs.update(_extraction_signatures(db, None, tokens))
    return sigs


def table_signature(db: sqlite_utils.Database, table: str) -> str:
    """`table_signatures(db)[table]` ("" for a prompt version without extractions), alone."""
    with snapshot(db):
        tokens = _tokens(db)
        if table in _SIGNATURE_SQL:
            return _signed(db.execute(_SIGNATURE_SQL[table]).fetchone(), tokens.get(table))
        prompt = table.removeprefix("extractions:")
        return _extraction_signatures(db, prompt, tokens).get(table, "")


def _tokens(db: sqlite_utils.Database) -> dict[str, int]:
    """Each table's change token; none in a database the migration has not reached."""
    try:
        return dict(db.execute(_TOKENS_SQL).fetchall())
    except sqlite3.OperationalError:  # no table_changes: a file opened without `open_db`
        return {}


def _signed(counts: tuple[Any, ...], token: int | None) -> str:
    return ":".join(map(str, (*counts, "" if token is None else token)))


def _extraction_signatures(db: sqlite_utils.Database, prompt: str | None,
                           tokens: dict[str, int]) -> dict[str, str]:
    where, params = ("where prompt_id = ?", [prompt]) if prompt is not None else ("", [])
    per_prompt: dict[str, list[str]] = {}
    for prompt_id, status, n, last in db.execute(_EXTRACTIONS_SQL.format(where=where), params):
        per_prompt.setdefault(prompt_id, []).append(f"{status}={n}@{last}")
    return {f"extractions:{p}": _signed((",".join(parts),), tokens.get(f"extractions:{p}"))
            for p, parts in per_prompt.items()}


@contextmanager
def snapshot(db: sqlite_utils.Database) -> Iterator[None]:
    """Every read inside sees the database as of one moment (a read transaction), so a frame
    and the signature it is stored under describe the same rows even while another process
    writes. Inside a transaction already open, that one is the snapshot."""
    if db.conn.in_transaction:
        yield
        return
    db.execute("begin")
    try:
        yield
    finally:
        db.conn.rollback()  # nothing was written: ending the read is all this does


def is_frame_table(table: str) -> bool:
    """Whether `table` names a frame the store keeps: annotations, gold, extractions:<prompt>."""
    return table in ("annotations", "gold") or table.startswith("extractions:")


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def _file(path: str | Path, table: str, signature: str) -> Path:
    # names and signatures may hold any character: the file is named by their digests
    return (cache_root(path) / FRAMES_DIR
            / f"{_digest(table)}-{_digest(FRAME_VERSION, table, signature)}.arrow")


LARGE_FRAME_ROWS = 50_000  # from here a built frame's memory is worth a full collection


def stored_frame(
    path: str | Path, table: str, signature: str,
    build: Callable[[], tuple[pd.DataFrame | pa.Table, str]],
) -> pd.DataFrame:
    """The frame of `table` at `signature`: read from disk if stored, else built and stored.

    `build` returns the frame (or the Arrow table it is stored as) and the signature of the
    rows it read (`snapshot`): a frame built after the table changed again is not stored under
    the older signature.
    """
    file = _file(path, table, signature)
    found = _read(file)
    if found is not None:
        return found
    built = _built_and_stored(path, table, build)
    return built if isinstance(built, pd.DataFrame) else _from_arrow(built)


def store_built_frame(
    path: str | Path, table: str, signature: str,
    build: Callable[[], tuple[pd.DataFrame | pa.Table, str]],
) -> None:
    """`stored_frame`'s building and storing, for a worker that only stores the frame: not
    read back (at 700,000 conversations, 1 s a version's extractions)."""
    if not _file(path, table, signature).exists():
        _built_and_stored(path, table, build)


def _built_and_stored(
    path: str | Path, table: str, build: Callable[[], tuple[pd.DataFrame | pa.Table, str]],
) -> pd.DataFrame | pa.Table:
    """The frame built, and stored as the Arrow table returned; a frame Arrow cannot hold
    exactly (mixed types) is returned as built, not stored."""
    frame, built_at = build()
    if isinstance(frame, pa.Table):  # built as it is stored (`frame_patch`)
        store_table(path, table, built_at, frame)
        return frame
    try:
        arrow = to_arrow(frame)
    except (TypeError, ValueError, pa.ArrowException):
        return frame
    # Stored as it reads back, not as built: built from the study's rows, it holds an object
    # per row for every string (at 300,000 conversations, 0.74 GB of memory for the annotations
    # instead of 0.16 GB). Freeing it leaves a few thousand of its tuples on Python's free
    # lists, each holding on to an arena of the heap: a full collection clears those lists and
    # gives the memory back (0.43 GB here, in 0.1 s). A small frame is not worth one.
    large = len(frame) >= LARGE_FRAME_ROWS
    del frame
    if large:
        gc.collect()
    _write(arrow, _file(path, table, built_at))
    return arrow


@contextmanager
def parts_folder(path: str | Path) -> Iterator[Path | None]:
    """A private folder in the frame store for parts of a frame (`write_part`), removed after;
    None when the store cannot be written (the frame is then built whole)."""
    try:
        frames = cache_root(path) / FRAMES_DIR
        frames.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".parts-", dir=frames))  # made 0700
    except OSError:
        yield None
        return
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_part(frame: pd.DataFrame, file: Path) -> bool:
    """Write some rows of a table's frame to `file`, for `store_joined`; False when Arrow
    cannot hold them exactly (as `stored_frame` then keeps the frame unstored)."""
    try:
        feather.write_feather(to_arrow(frame), file, compression="uncompressed")
    except (TypeError, ValueError, OSError, pa.ArrowException):
        return False
    return True


def store_joined(path: str | Path, table: str, signature: str, parts: list[Path]) -> bool:
    """Store the frame of `table` at `signature` as the rows of `parts` one after the other,
    each written by `write_part` from the table read at `signature`. A column whose every
    value is None in one part (a half where no annotation names a task) is typed there as
    nothing in particular: it takes the other parts' type, as the whole column would have.
    False, nothing stored, when the parts differ otherwise (the frame is then built whole)."""
    try:
        tables = [feather.read_table(part, memory_map=False) for part in parts]
    except (OSError, pa.ArrowException):
        return False
    joined = joined_rows(tables)
    if joined is None:
        return False
    store_table(path, table, signature, joined)
    return True


_EMPTY_LISTS = pa.list_(pa.null())  # a list column whose every list is empty, or None
_UNTYPED = {pa.null(), _EMPTY_LISTS}


def one_after_another(tables: list[pa.Table]) -> pa.Table | None:
    """The rows of these tables one after the other, each column of the one Arrow type the
    tables give it but where all its values are None, or empty lists (typed as nothing in
    particular there); None when the tables differ otherwise (other columns, or a column of
    two types)."""
    names = tables[0].schema.names
    if any(t.schema.names != names for t in tables[1:]):
        return None
    fields = []
    for name in names:
        types = {t.schema.field(name).type for t in tables} - _UNTYPED
        if not types and any(t.schema.field(name).type == _EMPTY_LISTS for t in tables):
            types = {_EMPTY_LISTS}
        if len(types) > 1:
            return None
        fields.append(pa.field(name, types.pop() if types else pa.null()))
    schema = pa.schema(fields)
    return pa.concat_tables([t.replace_schema_metadata(None).cast(schema) for t in tables])


def joined_rows(tables: list[pa.Table]) -> pa.Table | None:
    """The rows of these parts of one frame (each as `to_arrow` makes it) one after the other,
    as one table of the frame, each column of the kind a frame built whole would give it.

    Built from a part of the rows, a column is typed by those rows alone: Arrow types a column
    whose every value is None as nothing in particular (a half where no annotation names a
    task), and pandas a column of booleans without a None as booleans, with one as objects.
    So the parts' columns are joined by their Arrow type, and each column's kind is that of
    its joined values (`_kind_of`). None when the parts differ otherwise (a column of whole
    numbers in one part, of decimals in another)."""
    joined = one_after_another(tables)
    if joined is None:
        return None
    kinds = {}
    for i, field in enumerate(joined.schema):
        kind = _kind_of(joined.column(i))
        if kind is None:
            return None
        kinds[field.name] = kind
        if kind == "names":
            # a file holds one dictionary a column: the parts' dictionaries of names unified
            joined = joined.set_column(i, field, joined.column(i).combine_chunks())
    return joined.replace_schema_metadata({_KIND: json.dumps(kinds).encode()})


def _kind_of(column: pa.ChunkedArray) -> str | None:
    """The kind `to_arrow` gives a frame's column of these values (pandas' type of it, as
    `DataFrame.from_records` infers it from the values), or None for values a frame of this
    store does not hold."""
    kind = column.type
    if column.null_count == len(column) and not pa.types.is_large_list(kind):
        return "objects"  # None alone (or no rows): a column of Python objects
    if _names_type(kind):
        return "names"
    if pa.types.is_boolean(kind):
        return "objects" if column.null_count else "bool"  # None beside booleans: objects
    if pa.types.is_large_string(kind) or pa.types.is_string(kind):
        return "str"
    if pa.types.is_floating(kind):
        return "float64"
    if pa.types.is_integer(kind) and not column.null_count:
        return "int64"
    return None


def read_frame(path: str | Path, table: str, signature: str, arrow_lists: bool = False
               ) -> pd.DataFrame | None:
    """The stored frame of `table` at `signature`, or None when it is not stored (or damaged).
    `arrow_lists`: its columns of names stay Arrow lists (`pd.ArrowDtype`), no tuple of
    Python strings made per row: for a reader that takes them as Arrow
    (`model_scores.encode_sets`); the annotations at 300,000 conversations read in 0.2 s
    instead of 1 s."""
    return _read(_file(path, table, signature), arrow_lists)


def read_frame_part(path: str | Path, table: str, signature: str,
                    conversations: Sequence[str] | None = None,
                    columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """Part of the stored frame of `table` at `signature`, read as `read_frame` reads it
    whole: the rows of these `conversations` (in the frame's order), these `columns`, or
    both; None when it is not stored (or damaged). A summary made from a change reads what it
    needs of the frame without making Python objects of every row's names (0.6 s for the
    annotations at 300,000 conversations)."""
    return _read(_file(path, table, signature), conversations=conversations, columns=columns)


def store_table(path: str | Path, table: str, signature: str, arrow: pa.Table) -> None:
    """Store the frame of `table` at `signature`, given as the Arrow table it is stored as."""
    _write(arrow, _file(path, table, signature))


def read_table(path: str | Path, table: str, signature: str) -> pa.Table | None:
    """The stored frame of `table` at `signature` as its Arrow table, or None (`read_frame`)."""
    return _read_arrow(_file(path, table, signature))


# A table's row index (`frame_patch`): kept beside its frame under a name of its own, so that
# storing either one leaves the other's file in place. Its schema metadata names the signature.
_INDEX_OF = "{table}:rows"
_SIGNATURE = b"annotator.signature"


def store_index(path: str | Path, table: str, signature: str, index: pa.Table) -> None:
    """Keep `index`, a table of facts per row of `table` at `signature`, replacing the one of
    any other signature (best effort, as frames are)."""
    meta = {**(index.schema.metadata or {}), _SIGNATURE: signature.encode()}
    _write(index.replace_schema_metadata(meta),
           _file(path, _INDEX_OF.format(table=table), signature))


def _index_files(path: str | Path, table: str) -> Iterator[Path]:
    name = _INDEX_OF.format(table=table)
    return (cache_root(path) / FRAMES_DIR).glob(f"{_digest(name)}-*.arrow")


def has_index(path: str | Path, table: str) -> bool:
    """Whether a row index of `table` is kept (not whether it reads back)."""
    return any(_index_files(path, table))


def latest_index(path: str | Path, table: str) -> tuple[str, pa.Table] | None:
    """The row index `store_index` kept last for `table`, with its signature; None if none
    reads back."""
    for file in _index_files(path, table):
        index = _read_arrow(file)
        meta = (index.schema.metadata or {}) if index is not None else {}
        if index is not None and _SIGNATURE in meta:
            signature = meta[_SIGNATURE].decode()
            # not a file renamed from another
            if file == _file(path, _INDEX_OF.format(table=table), signature):
                return signature, index
    return None


def latest_index_metadata(path: str | Path, table: str) -> dict[bytes, bytes] | None:
    """The schema metadata of the row index `latest_index` gives, its rows not read."""
    for file in _index_files(path, table):
        try:
            with os.fdopen(os.open(file, os.O_RDONLY | _NOFOLLOW), "rb") as handle:
                meta = dict(pa.ipc.open_file(handle).schema.metadata or {})
        except (OSError, ValueError, pa.ArrowException):
            continue
        if _SIGNATURE in meta and file == _file(path, _INDEX_OF.format(table=table),
                                                 meta[_SIGNATURE].decode()):
            return meta
    return None


def index_metadata(path: str | Path, table: str, signature: str) -> dict[bytes, bytes] | None:
    """The schema metadata of `table`'s row index at `signature`, its rows not read; None when
    that index is not kept (or does not read)."""
    try:
        file = _file(path, _INDEX_OF.format(table=table), signature)
        with os.fdopen(os.open(file, os.O_RDONLY | _NOFOLLOW), "rb") as handle:
            return dict(pa.ipc.open_file(handle).schema.metadata or {})
    except (OSError, ValueError, pa.ArrowException):
        return None


def has_frame(path: str | Path, table: str, signature: str) -> bool:
    """Whether the frame of `table` at `signature` is stored (not whether it reads back)."""
    return _file(path, table, signature).is_file()


def _read(file: Path, arrow_lists: bool = False, conversations: Sequence[str] | None = None,
          columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """A stored frame, or its rows of these `conversations` and these `columns` (`read_frame`,
    `read_frame_part`); None when it is not stored or not of a shape this version reads."""
    table = _read_arrow(file)
    if table is None:
        return None
    try:
        if conversations is not None:
            ids = table.column("conversation_id")
            table = table.filter(pc.is_in(ids, value_set=pa.array(list(conversations),
                                                                  ids.type)))
        return _from_arrow(table, columns, arrow_lists)
    except (ValueError, KeyError, TypeError, pa.ArrowException):
        return None  # of a shape this version does not read: rebuilt, or read whole


def _read_arrow(file: Path) -> pa.Table | None:
    try:
        # a link planted at a frame's name (someone else's rows) is not followed: rebuilt
        with os.fdopen(os.open(file, os.O_RDONLY | _NOFOLLOW), "rb") as handle:
            return feather.read_table(handle, memory_map=False)
    except (OSError, ValueError, pa.ArrowException):
        return None  # absent or half-written: rebuilt


def _write(table: pa.Table, file: Path) -> None:
    try:
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if file.is_symlink():
            return  # not ours to replace
        # the study's labels: private like the study, from creation on
        tmp = file.with_name(f".{uuid.uuid4().hex}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        with os.fdopen(os.open(tmp, flags, 0o600), "wb") as handle:
            feather.write_feather(table, handle, compression="uncompressed")
        os.replace(tmp, file)  # a reader sees the whole file or none
        prefix = file.name.split("-", 1)[0] + "-"
        for old in file.parent.glob(f"{prefix}*.arrow"):
            if old != file:  # the table's earlier versions: never read again
                old.unlink(missing_ok=True)
        for stale in file.parent.glob(".*.tmp"):  # left by a writer that died mid-write
            if time.time() - stale.lstat().st_mtime > STALE_WRITE_SECONDS:
                stale.unlink(missing_ok=True)
    except OSError:
        return  # a folder the user cannot write: the frame is built each time instead


# --- frames <-> Arrow, exactly ---------------------------------------------------------------


def _name_tuples_to_arrow(values: pd.Series) -> pa.Array | None:
    """Tuples of names -> a list column of dictionary-coded names (each name stored once);
    None when the column holds anything else (a list, None, a name that is not a string)."""
    cells = values.tolist()
    if not all(type(cell) is tuple for cell in cells):
        return None
    try:
        lists = pa.array(cells, type=pa.large_list(pa.string()))  # a non-string name raises
    except (TypeError, pa.ArrowException):
        return None
    if lists.values.null_count:
        return None
    return pa.LargeListArray.from_arrays(lists.offsets, lists.values.dictionary_encode())


def _name_tuples_from_arrow(column: pa.ChunkedArray) -> list[tuple[str, ...]]:
    lists = column.combine_chunks()
    names = lists.values
    pool = names.dictionary.to_pylist()  # one string object per distinct name
    flat = [pool[i] for i in names.indices.to_numpy().tolist()]
    bounds = lists.offsets.to_numpy().tolist()
    return [tuple(flat[start:end]) for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


# what an "objects" column may hold: read back as the same Python values (a tuple would come
# back a list, a float NaN beside strings would not convert)
_SCALARS = {type(None), bool, str}


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """`frame` as the Arrow table it is stored as (TypeError: a column it cannot hold exactly)."""
    columns, kinds = {}, {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype == object:
            names = _name_tuples_to_arrow(series) if len(series) else None
            if names is not None:
                columns[name], kinds[name] = names, "names"
            else:  # None, booleans or strings as Python objects: kept as such
                values = series.tolist()
                if not all(type(v) in _SCALARS for v in values):
                    raise TypeError(f"column {name} holds values Arrow would not give back")
                columns[name], kinds[name] = pa.array(values), "objects"
        else:
            columns[name], kinds[name] = pa.Array.from_pandas(series), str(series.dtype)
    table = pa.table(columns)
    return table.replace_schema_metadata({_KIND: json.dumps(kinds).encode()})


def _names_type(kind: pa.DataType) -> bool:
    """Whether a column is what `_name_tuples_to_arrow` stores: lists of dictionary-coded
    strings."""
    return (pa.types.is_large_list(kind) and pa.types.is_dictionary(kind.value_type)
            and pa.types.is_string(kind.value_type.value_type))


def _from_arrow(table: pa.Table, only: Sequence[str] | None = None, arrow_lists: bool = False
                ) -> pd.DataFrame:
    kinds = json.loads(table.schema.metadata[_KIND])
    if only is not None:
        kinds = {name: kinds[name] for name in kinds if name in only}
    columns: dict[str, object] = {}
    for name, kind in kinds.items():
        column = table.column(name)
        if kind == "names" and not _names_type(column.type):
            raise ValueError(f"column {name} does not hold lists of names")  # rebuilt
        if kind == "names" and arrow_lists:
            columns[name] = pd.Series(pd.arrays.ArrowExtensionArray(column))
        elif kind == "names":
            columns[name] = pd.Series(_name_tuples_from_arrow(column), dtype=object)
        elif kind == "objects":
            columns[name] = pd.Series(column.to_pylist(), dtype=object)
        else:
            series = column.to_pandas()
            if str(series.dtype) != kind:
                series = series.astype(kind)
            columns[name] = series
    return pd.DataFrame(columns, columns=list(kinds))
