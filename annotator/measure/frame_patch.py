"""The annotations frame after a small change, made from the frame stored before it.

After `import-labels` or `pull` of a thousand labels, building the annotations frame anew
parses every annotation's JSON (about 4 s on both cores at 300,000 conversations, 10 s at
700,000) to change a thousand rows. So each stored annotations frame is kept with a row index
(`frame_store.store_index`): per row of the table, what the frame's row depends on, and the
position of the table's change log (`db._add_annotation_log`: triggers note the rowid of
every row written, by this tool or another program) when those facts were read. The next
frame keeps the stored rows, re-reads the rows the log notes since, and drops the rows gone.

What a frame's row depends on: whether the frame holds the row (its SQL condition: deleted,
cancelled, edited by someone else, flagged; exactly), and its content, by the lengths of the
labels and of the edit history, the lead time and when it was last updated. When the log does
not reach back to the index (pruned past it, or an index kept before the log), every row's
facts are compared instead, in one pass over the table without its JSON: every write of this
tool changes one of them. When the signature (`frame_store.table_signatures`) moved but no
row did, or many rows changed, or the parts do not join (`frame_store.joined_rows`), the
frame is built whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlite_utils

from annotator.db import LOG_PRUNED
from annotator.measure.frame_store import (
    index_metadata,
    joined_rows,
    latest_index,
    latest_index_metadata,
    read_frame,
    read_table,
    snapshot,
    store_index,
    store_table,
    table_signature,
    to_arrow,
)

TABLE = "annotations"
_BEFORE = "annotations:before"  # the changed conversations' rows before (`rows_before`)
# A row's facts, each 8 bytes (compared as their bits; SQL's NULL is NaN, as `row_facts`
# reads both sides): its rowid and whether the frame holds it (rowid * 2 + 1 if it does), the
# lengths of its labels and history (each + 1, 0 for NULL, far below 2**31), its lead time,
# when it was last updated, and the length of what it left missing (not in the frame, but the
# Gold page's queue reads it for the conversations a change names: `Change`).
FACTS = np.dtype([("key", "i8"), ("lengths", "i8"), ("lead_time", "f8"), ("updated", "f8"),
                  ("missing", "i8")])
_FACTS_SQL = ("rowid * 2 + ({in_frame}), "
              "coalesce(length(labels) + 1, 0) * 2147483648 + coalesce(length(history) + 1, 0), "
              "lead_time, julianday(updated_at), coalesce(length(missing) + 1, 0)")
_LAYOUT = b"annotator.facts"  # the index's metadata: which facts it holds, in what layout
_CHANGE = b"annotator.change"  # and the change its frame was made by (`Change`), if any
_LOGGED = b"annotator.logged"  # and the change log's position its facts were read at
# beyond this share of the table changed, re-reading it whole costs no more than patching
MAX_CHANGED_SHARE = 0.25


def row_facts(db: sqlite_utils.Database, in_frame: str,
              rowids: np.ndarray | None = None) -> np.ndarray:
    """`FACTS` of every row of the annotations table (or of those of `rowids` that are
    there), in rowid order. `in_frame`: the SQL condition of the rows the frame holds."""
    where, params = "", []
    if rowids is not None:
        where, params = "where rowid in (select value from json_each(?)) ", [
            orjson.dumps(rowids.tolist()).decode()]
    cursor = db.execute(f"select {_FACTS_SQL.format(in_frame=in_frame)} from {TABLE} "
                        f"{where}order by rowid", params)
    return np.fromiter(cursor, dtype=FACTS)


def log_position(db: sqlite_utils.Database) -> int | None:
    """The last entry of the annotations' change log (`db._add_annotation_log`), 0 when it
    holds none; None in a file without the log (opened without `open_db`)."""
    try:
        return int(db.execute("select coalesce(max(seq), 0) from annotation_changes"
                              ).fetchone()[0])
    except sqlite3.OperationalError:
        return None


def _logged_since(db: sqlite_utils.Database, position: int) -> np.ndarray | None:
    """The rowids the log notes after `position`, in order; None when the log was pruned
    past it (or there is none): every row's facts are then compared."""
    try:
        pruned = db.execute("select token from table_changes where name = ?",
                            [LOG_PRUNED]).fetchone()
        if pruned is not None and int(pruned[0]) > position:
            return None
        rows = db.execute("select distinct row from annotation_changes where seq > ? "
                          "order by row", [position])
        return np.fromiter((row for (row,) in rows), dtype=np.int64)
    except sqlite3.OperationalError:
        return None


def prune_log(db: sqlite_utils.Database, path: str) -> None:
    """Drop the change log's entries the newest stored index holds (its frame was made from
    them): an index older than that compares every row's facts instead. Writes nothing when
    there is nothing to drop (a write changes the study file, which the app's facts key on)."""
    position = _logged_at(latest_index_metadata(path, TABLE))
    if position is None:
        return
    try:
        if db.execute("select 1 from annotation_changes where seq <= ? limit 1",
                      [position]).fetchone() is None:
            return
    except sqlite3.OperationalError:  # no log
        return
    with db.conn:
        db.execute("delete from annotation_changes where seq <= ?", [position])
        db.execute("insert into table_changes (name, token) values (?, ?) on conflict (name) "
                   "do update set token = max(token, excluded.token)", [LOG_PRUNED, position])


def _as_index(facts: np.ndarray, logged_at: int | None) -> pa.Table:
    # every row's facts as one column of 64-bit words: written and read without a copy
    meta = {_LAYOUT: _FACTS_SQL.encode()}
    if logged_at is not None:
        meta[_LOGGED] = str(logged_at).encode()
    return pa.table({"facts": facts.view(np.int64)}, metadata=meta)


def _logged_at(meta: dict[bytes, bytes] | None) -> int | None:
    """The change log's position an index's metadata notes; None if it notes none."""
    try:
        return int((meta or {})[_LOGGED])
    except (KeyError, ValueError):
        return None


def _facts_of(index: pa.Table) -> np.ndarray | None:
    if ((index.schema.metadata or {}).get(_LAYOUT) != _FACTS_SQL.encode()
            or index.schema.names != ["facts"]):
        return None  # kept by a version that noted other facts
    words = index.column("facts").combine_chunks().to_numpy()
    if words.dtype != np.int64 or words.size % (FACTS.itemsize // 8):
        return None
    return words.view(FACTS)


class Change(NamedTuple):
    """What made a frame from the one stored at `since`: the conversations, and the
    annotators, whose rows in the frame changed (added, re-read or dropped); and, as made,
    every row those conversations had in the frame before (`rows_before` reads them back)."""

    since: str
    conversations: list[str]
    annotators: list[str]
    rows_before: pa.Table | None = None


def store_row_index(path: str, signature: str, facts: np.ndarray,
                    change: Change | None = None, logged_at: int | None = None) -> None:
    """Keep `facts` (`row_facts`, read with the frame stored at `signature`) as the index
    the next frame starts from, with the `change` the frame was made by, if it was, and the
    change log's position they were read at (`log_position`)."""
    index = _as_index(facts, logged_at)
    if change is not None:
        index = index.replace_schema_metadata({**index.schema.metadata, _CHANGE: orjson.dumps(
            {"from": change.since, "conversations": change.conversations,
             "annotators": change.annotators})})
    store_index(path, TABLE, signature, index)
    if change is not None and change.rows_before is not None:
        store_table(path, _BEFORE, signature, change.rows_before)


def rows_before(path: str, signature: str) -> pd.DataFrame | None:
    """Every row the conversations changed by the change that made the frame at `signature`
    had in the frame before it (the inter-annotator pair counts are made from them); None
    when not kept."""
    return read_frame(path, _BEFORE, signature)


def change_to(path: str, signature: str) -> Change | None:
    """The change that made the annotations frame at `signature` from the one before it, as
    its index notes it; None when that frame was built whole (or its index is not kept). A
    summary of the conversations, kept for the frame before, needs only theirs computed."""
    meta = index_metadata(path, TABLE, signature)
    if not meta or _CHANGE not in meta or meta.get(_LAYOUT) != _FACTS_SQL.encode():
        return None
    try:
        note = orjson.loads(meta[_CHANGE])
        return Change(str(note["from"]), [str(c) for c in note["conversations"]],
                      [str(a) for a in note["annotators"]])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def index_if_unchanged(db: sqlite_utils.Database, path: str, signature: str,
                       in_frame: str) -> None:
    """Keep the row index of the annotations table if the table is still at `signature`
    (that of a frame stored from parts): its facts and signature read in one snapshot."""
    with snapshot(db):
        if table_signature(db, TABLE) == signature:
            store_row_index(path, signature, row_facts(db, in_frame),
                            logged_at=log_position(db))


def _unchanged(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of `new` (facts) are in `old` (an index's facts) with the same facts, and
    where each row of `new` is, or would be, in `old`."""
    old_rowid, rowid = old["key"] >> 1, new["key"] >> 1
    if not old_rowid.size:
        return np.zeros(rowid.size, dtype=bool), np.zeros(rowid.size, dtype=np.int64)
    words = FACTS.itemsize // 8
    old_bits = old.view(np.int64).reshape(-1, words)
    new_bits = new.view(np.int64).reshape(-1, words)
    shared = min(old_rowid.size, rowid.size)
    if np.array_equal(old_rowid[:shared], rowid[:shared]):
        # the rows before are all still there, in place (rows added after them, or none):
        # compared in place, not gathered (a gather of every row costs half a second)
        same = np.zeros(rowid.size, dtype=bool)
        same[:shared] = (old_bits[:shared] == new_bits[:shared]).all(axis=1)
        return same, np.minimum(np.arange(rowid.size), old_rowid.size - 1)
    at = np.minimum(np.searchsorted(old_rowid, rowid), old_rowid.size - 1)
    return (old_bits[at] == new_bits).all(axis=1), at


# A stored frame reads back in record batches of 64Ki rows (`write_feather`'s default): a
# frame made in runs holds a chunk a run besides; past this many more, made one chunk again.
ROWS_A_BATCH = 65_536
MAX_EXTRA_CHUNKS = 16


def _in_rowid_order(kept: pa.Table, kept_rowid: np.ndarray, part: pa.Table,
                    part_rowid: np.ndarray) -> pa.Table:
    """The rows of `kept` and of `part` (each in rowid order, one dictionary of names a
    column, as `joined_rows` gives them) in rowid order. New rows come after every kept one
    (new labels): the two are put one after the other. Else the kept rows are cut in runs
    between the re-read ones (taking each row alone costs a second at 300,000 conversations)
    and the columns made one chunk again."""
    if not part_rowid.size:
        return kept
    cuts = np.searchsorted(kept_rowid, part_rowid).tolist()
    pieces, start = [], 0
    for i, cut in enumerate(cuts):
        if cut > start:
            pieces.append(kept.slice(start, cut - start))
        pieces.append(part.slice(i, 1))
        start = cut
    pieces.append(kept.slice(start))
    if cuts[0] == kept.num_rows:  # every new row after the kept ones
        pieces = [kept, part]
    joined = pa.concat_tables(p for p in pieces if p.num_rows)
    batches = joined.num_rows // ROWS_A_BATCH + 1
    if max(c.num_chunks for c in joined.columns) > batches + MAX_EXTRA_CHUNKS:
        return joined.combine_chunks()
    return joined


class Patched(NamedTuple):
    """A frame made from the one before it (as Arrow), the row facts it was made from (kept
    as its index once it is stored), the change, and the change log's position read."""

    frame: pa.Table
    facts: np.ndarray
    change: Change
    logged_at: int | None


def patched_frame(db: sqlite_utils.Database, path: str, in_frame: str,
                  rows_of: Callable[[list[int]], pd.DataFrame]) -> Patched | None:
    """The annotations frame of the table as it is now (the caller's snapshot), as Arrow,
    made from the last stored frame and the rows changed since (`rows_of(rowids)`: the
    frame's rows of those rowids): the rows the change log notes since that frame's index
    was read, else every row whose facts changed; None when it is to be built whole
    (nothing stored to start from, or see the module's notes)."""
    latest = latest_index(path, TABLE)
    if latest is None:
        return None
    signature, index = latest
    old = _facts_of(index)
    old_frame = read_table(path, TABLE, signature)
    if old is None or old_frame is None:
        return None
    old_in = (old["key"] & 1) == 1
    if int(old_in.sum()) != old_frame.num_rows:
        return None  # not the index of this frame
    logged_at = log_position(db)
    since = _logged_at(index.schema.metadata)
    logged = None if since is None or logged_at is None else _logged_since(db, since)
    if logged is None:
        facts = row_facts(db, in_frame)
    else:  # the rows the log notes read again, every other row's facts as they were
        facts = np.concatenate([old[~np.isin(old["key"] >> 1, logged)],
                                row_facts(db, in_frame, logged)])
        facts = facts[np.argsort(facts["key"] >> 1, kind="stable")]
    rowid, in_frame_now = facts["key"] >> 1, (facts["key"] & 1) == 1
    same, at = _unchanged(old, facts)
    if logged is not None:  # written, whatever its facts say (another program's edit)
        same &= ~np.isin(rowid, logged)
    changed = int((~same).sum())
    if not changed and rowid.size == old.size:
        return None  # the signature changed, yet no row: built whole, to be sure
    if changed > MAX_CHANGED_SHARE * max(rowid.size, 1):
        return None
    # the unchanged rows the frame holds, in the old frame's order (rowid order)
    kept = same & in_frame_now
    keep_old = np.zeros(old_frame.num_rows, dtype=bool)
    keep_old[(np.cumsum(old_in) - 1)[at[kept]]] = True
    kept_rows = old_frame if keep_old.all() else old_frame.filter(pa.array(keep_old))
    reread = rowid[~same & in_frame_now]
    part = rows_of(reread.tolist())
    if len(part) != reread.size:
        return None
    try:
        part_rows = to_arrow(part)
    except (TypeError, ValueError, pa.ArrowException):
        return None
    # joined even with no row to add: a column's kind is that of the rows it now holds
    joined = joined_rows([kept_rows, part_rows])
    if joined is None:
        return None
    kept_rowid = rowid[kept]
    dropped = old_frame.filter(pa.array(~keep_old)).select(["conversation_id", "annotator"])
    conversations = sorted({*dropped["conversation_id"].to_pylist(),
                            *part["conversation_id"].tolist()})
    change = Change(signature, conversations,
                    sorted({*dropped["annotator"].to_pylist(), *part["annotator"].tolist()}),
                    old_frame.filter(pc.is_in(old_frame["conversation_id"],
                                              value_set=pa.array(conversations, pa.string()))))
    return Patched(_in_rowid_order(joined.slice(0, kept_rows.num_rows), kept_rowid,
                                   joined.slice(kept_rows.num_rows), reread), facts, change,
                   logged_at)
