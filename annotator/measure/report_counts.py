"""The counts the study's report is made of, summed over conversations.

Every figure of the report (`findings`) is a count of conversations or is made from such
counts: how many hold each AI value, reach each cluster, have each response type, hold a value
the user stated, hold two values together, by response type and by task; and which
conversations hold an opposing value. Each conversation adds to these counts on its own, so
after new labels the annotators' report follows from the counts kept before them, minus the
changed conversations' counts as they were, plus theirs now (`ReportCounts.after`), as
`rating_counts` does for the inter-annotator figures. The report made so equals the one
computed whole: both are made from equal integer counts (`tests/test_report_counts.py`).

A value counts under its key: its leaf's id where the taxonomy has it (so "Honesty" and
"honesty" are one value), else its normalised name (a free value, shown in its most used
spelling, ties by name). The counts are over the report's base conversations (those not
labelled non-subjective), but for the conversation totals and the flagged conversations,
which are over every conversation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import cached_property
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from annotator.measure.rating_counts import Inconsistent
from annotator.measure.shapes import LIST_CELLS
from annotator.measure.sorted_keys import distinct, distinct_counts
from annotator.taxonomy import LEVELS, Taxonomy, load_taxonomy, normalise

COLUMNS = ["kind", "a", "b", "n"]
# what each kind of row counts (a, b: what it is of; n: how many)
KINDS = {
    "total": "a: conversations, labelled, subjective, base, with_human, mirrored, split, "
             "incomplete",
    "value": "a: an AI value's key; its base conversations",
    "node": "a: a level, b: a taxonomy node there; base conversations reaching it",
    "type": "a: a response type; base conversations",
    "held": "a: an AI value's key; base conversations with user values holding it",
    "matched": "a: an AI value's key; of those, where the user stated it too",
    "mirrored_type": "a: a response type; base conversations mirroring a user value",
    "ai_type": "a: a response type, b: an AI value's key",
    "human_type": "a: a response type, b: a user value's key",
    "task": "a: a task; base conversations",
    "task_value": "a: a task, b: an AI value's key",
    "together": "a, b: two AI values' keys, a < b; base conversations holding both",
    "per_conversation": "a: a number of AI values; base conversations holding that many",
    "spelling": "a: a free value's key, b: a spelling; conversation fields spelling it so",
    "flagged": "a: a conversation, b: an opposing AI value's key it holds (any conversation)",
    "flagged_type": "a: a flagged conversation, b: its response type",
}

_SHIFT = np.int64(32)  # a (row, key) pair packed in one int64: both stay below 2**31
_LOW = np.int64(0xFFFFFFFF)


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_names(cells: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    """Every name in `cells` (a list of names per row) as strings: each name's row, and the
    names in row order (one pass over the cells, not a list per cell: 810,000 annotations took
    1.7 s that way)."""
    listed = [c if isinstance(c, LIST_CELLS) else () for c in cells]
    lengths = np.fromiter(map(len, listed), dtype=np.int64, count=len(listed))
    flat = list(chain.from_iterable(listed))
    # names are strings (the frames intern them): each kind of name looked at once, not
    # `str` called on each of 5 million names (2 s at 700,000 conversations)
    try:
        strings = all(type(name) is str for name in set(flat))
    except TypeError:  # a name that is a list: made a string as any other name
        strings = False
    if not strings:
        flat = [str(v) for v in flat]
    return np.repeat(np.arange(len(cells), dtype=np.int64), lengths), flat


class Vocabulary:
    """The key each value name counts under (see the module docstring). Keys are numbered;
    each distinct name is resolved once."""

    def __init__(self, tree: Taxonomy) -> None:
        self.tree = tree
        self.keys: list[str] = []
        self.in_tree: list[bool] = []
        self._index: dict[str, int] = {}
        self._of_name: dict[str, int] = {}

    def key_of(self, name: str) -> int:
        found = self._of_name.get(name)
        if found is None:
            leaf = self.tree.get(name)
            if leaf is None or leaf.level != 0:
                leaf = self.tree.resolve(name)
            key = leaf.id if leaf is not None else normalise(name)
            found = self._index.get(key)
            if found is None:
                found = self._index[key] = len(self.keys)
                self.keys.append(key)
                self.in_tree.append(leaf is not None)
            self._of_name[name] = found
        return found


class _Pairs(NamedTuple):
    """(row, key) of every value of one field, each pair once, sorted."""

    rows: np.ndarray
    keys: np.ndarray

    def where(self, rows: np.ndarray) -> _Pairs:
        chosen = rows[self.rows]
        return _Pairs(self.rows[chosen], self.keys[chosen])


def _unique_pairs(rows: np.ndarray, keys: np.ndarray) -> _Pairs:
    packed = distinct((rows << _SHIFT) | keys)
    return _Pairs(packed >> _SHIFT, packed & _LOW)


def _strings(values: Iterable[Any]) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    return np.asarray([str(v) for v in values], dtype=object)


def _rows(kind: str, a: Iterable[Any], b: Iterable[Any] | None, n: np.ndarray) -> pd.DataFrame:
    """Rows of one kind; those of n 0 left out. Object columns: the counts are joined and
    summed as plain strings."""
    n = np.asarray(n, dtype=np.int64)
    keep = np.flatnonzero(n)
    b_col = np.full(len(keep), "", dtype=object) if b is None else _strings(b)[keep]
    return pd.DataFrame({
        "kind": pd.Series(np.full(len(keep), kind, dtype=object), dtype=object),
        "a": pd.Series(_strings(a)[keep], dtype=object),
        "b": pd.Series(b_col, dtype=object), "n": n[keep]}, columns=COLUMNS)


def _packed_counts(high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """Distinct (high, low) pairs and how often each comes."""
    packed, counts = distinct_counts((high << _SHIFT) | low)
    return packed >> _SHIFT, packed & _LOW, counts


class ReportCounts:
    """The counts (`KINDS`), one row per kind and (a, b), n > 0."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table

    @cached_property
    def _kinds(self) -> dict[str, np.ndarray]:
        return {str(k): rows for k, rows in self.table.groupby("kind", sort=False).indices.items()}

    def of(self, kind: str) -> pd.DataFrame:
        return self.table.iloc[self._kinds.get(kind, np.empty(0, np.int64))]

    def one(self, kind: str) -> dict[str, int]:
        rows = self.of(kind)
        return dict(zip(rows["a"].tolist(), rows["n"].tolist(), strict=True))

    def two(self, kind: str) -> dict[tuple[str, str], int]:
        rows = self.of(kind)
        return dict(zip(zip(rows["a"].tolist(), rows["b"].tolist(), strict=True),
                        rows["n"].tolist(), strict=True))

    def after(self, minus: ReportCounts, plus: ReportCounts) -> ReportCounts:
        """These counts, minus those of the changed conversations as they were, plus theirs
        now. Raises `Inconsistent` when the result is not a count (a negative, or a
        conversation flagged twice): these were not the counts of the rows before."""
        signed = pd.concat([self.table, minus.table.assign(n=-minus.table["n"]), plus.table],
                           ignore_index=True)
        summed = signed.groupby(["kind", "a", "b"], sort=False, as_index=False)["n"].sum()
        if (summed["n"] < 0).any():
            raise Inconsistent("a count below zero")
        flagged = summed["kind"].isin(["flagged", "flagged_type"])
        if (summed.loc[flagged, "n"] > 1).any():
            raise Inconsistent("a conversation flagged twice")
        return ReportCounts(summed[summed["n"] > 0].reset_index(drop=True))

    def canonical(self) -> pd.DataFrame:
        """Sorted, for comparing two counts."""
        return _plain(self.table).sort_values(COLUMNS[:3]).reset_index(drop=True)

    @staticmethod
    def from_table(table: pa.Table) -> ReportCounts:
        """The counts as a summary stored them (`table`)."""
        return ReportCounts(_plain(table.select(COLUMNS).to_pandas()))


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    return table.astype({"kind": object, "a": object, "b": object, "n": np.int64})


def left_out_counts(split: int, incomplete: int) -> ReportCounts:
    """The annotated conversations the annotators' combined labels leave out, as counts."""
    return ReportCounts(_rows("total", ["split", "incomplete"], None,
                              np.array([split, incomplete])))


def joined(*parts: ReportCounts) -> ReportCounts:
    return ReportCounts(pd.concat([p.table for p in parts], ignore_index=True))


def report_counts(frame: pd.DataFrame, opposing: Iterable[str] = (),
                  tree: Taxonomy | None = None) -> ReportCounts:
    """The counts of one row per conversation (`findings.FRAME_COLUMNS`); `opposing`: the
    value names whose conversations are flagged."""
    tree = tree or load_taxonomy()
    vocab = Vocabulary(tree)
    n_rows = len(frame)
    subjective = [None if missing(v) else bool(v) for v in frame["subjective"].tolist()]
    in_base = np.array([v is not False for v in subjective], dtype=bool)
    base = int(in_base.sum())
    types = [None if missing(t) else str(t) for t in frame["response_type"].tolist()]
    tasks = ([None if missing(t) or not str(t) else str(t) for t in frame["task"].tolist()]
             if "task" in frame else [None] * n_rows)
    ai, human, spellings = _pairs_and_spellings(frame, vocab)
    wanted = np.array(sorted({vocab.key_of(name) for name in opposing}), dtype=np.int64)
    keys = np.array(vocab.keys, dtype=object)
    n_keys = len(keys)
    ai_b, human_b = ai.where(in_base), human.where(in_base)
    type_code, type_names = pd.factorize(pd.Series(types, dtype=object))
    type_code = type_code.astype(np.int64)
    task_code, task_names = pd.factorize(pd.Series(tasks, dtype=object))
    task_code = task_code.astype(np.int64)

    # mirroring: an AI value the user stated too, in a base conversation with user values
    with_human = np.zeros(n_rows, dtype=bool)
    with_human[human_b.rows] = True
    held = ai_b.where(with_human)
    matched = np.intersect1d((held.rows << _SHIFT) | held.keys,
                             (human_b.rows << _SHIFT) | human_b.keys, assume_unique=True)
    mirrored = np.zeros(n_rows, dtype=bool)
    mirrored[matched >> _SHIFT] = True
    typed_mirrored = type_code[mirrored & (type_code >= 0)]

    def per_key(pairs: _Pairs) -> np.ndarray:
        return np.bincount(pairs.keys, minlength=n_keys) if len(pairs.keys) else np.zeros(
            n_keys, np.int64)

    def by_row_kind(kind: str, codes: np.ndarray, names: Any, pairs: _Pairs) -> pd.DataFrame:
        chosen = codes[pairs.rows] >= 0
        high, low, counts = _packed_counts(codes[pairs.rows][chosen], pairs.keys[chosen])
        return _rows(kind, np.asarray(names, dtype=object)[high], keys[low], counts)

    per_row = np.bincount(ai_b.rows, minlength=n_rows)[in_base] if n_rows else np.zeros(0)
    in_task = in_base & (task_code >= 0)
    flagged = ai.where(np.ones(n_rows, dtype=bool))
    hit = np.isin(flagged.keys, wanted)
    flagged_rows = np.unique(flagged.rows[hit])
    ids = frame["conversation_id"].to_numpy(dtype=object)
    flagged_types = [(ids[r], types[r]) for r in flagged_rows.tolist() if types[r] is not None]
    totals = {"conversations": n_rows, "labelled": sum(v is not None for v in subjective),
              "subjective": sum(v is True for v in subjective), "base": base,
              "with_human": int((with_human & in_base).sum()), "mirrored": int(mirrored.sum())}
    parts = [
        _rows("total", list(totals), None, np.array(list(totals.values()))),
        _rows("value", keys, None, per_key(ai_b)),
        *_node_rows(ai_b, vocab),
        _rows("type", type_names, None, np.bincount(type_code[in_base & (type_code >= 0)],
                                                    minlength=len(type_names))),
        _rows("held", keys, None, per_key(held)),
        _rows("matched", keys, None, np.bincount(matched & _LOW, minlength=n_keys)),
        _rows("mirrored_type", type_names, None,
              np.bincount(typed_mirrored, minlength=len(type_names))),
        by_row_kind("ai_type", type_code, type_names, ai_b),
        by_row_kind("human_type", type_code, type_names, human_b),
        _rows("task", task_names, None, np.bincount(task_code[in_task],
                                                    minlength=len(task_names))),
        by_row_kind("task_value", task_code, task_names, ai_b),
        _together(ai_b, keys),
        _rows("per_conversation", np.arange(per_row.max() + 1 if len(per_row) else 0), None,
              np.bincount(per_row) if len(per_row) else np.zeros(0, np.int64)),
        spellings,
        _rows("flagged", ids[flagged.rows[hit]], keys[flagged.keys[hit]],
              np.ones(int(hit.sum()), np.int64)),
        _rows("flagged_type", [i for i, _ in flagged_types], [t for _, t in flagged_types],
              np.ones(len(flagged_types), np.int64)),
    ]
    return ReportCounts(pd.concat(parts, ignore_index=True))


def _pairs_and_spellings(frame: pd.DataFrame, vocab: Vocabulary
                         ) -> tuple[_Pairs, _Pairs, pd.DataFrame]:
    """The AI and the user values' (row, key) pairs, and the spelling rows of free values."""
    ai_rows, ai_flat = row_names(frame["ai_values"].tolist())
    human_rows, human_flat = row_names(frame["human_values"].tolist())
    empty = _Pairs(np.empty(0, np.int64), np.empty(0, np.int64))
    if not ai_flat and not human_flat:
        return empty, empty, _rows("spelling", [], [], np.zeros(0, np.int64))
    codes, names = pd.factorize(np.array(ai_flat + human_flat, dtype=object))
    codes = codes.astype(np.int64)
    key_of_name = np.array([vocab.key_of(str(name)) for name in names], dtype=np.int64)
    free = ~np.asarray(vocab.in_tree, dtype=bool)[key_of_name]
    split = len(ai_flat)
    spelt = np.zeros(len(names), np.int64)
    for rows, field in ((ai_rows, codes[:split]), (human_rows, codes[split:])):
        chosen = free[field]
        if chosen.any():  # each spelling once per conversation's field
            spelt += np.bincount(distinct((rows[chosen] << _SHIFT) | field[chosen]) & _LOW,
                                 minlength=len(names))
    keys = np.array(vocab.keys, dtype=object)
    spellings = _rows("spelling", keys[key_of_name], np.asarray(names, dtype=object), spelt)
    return (_unique_pairs(ai_rows, key_of_name[codes[:split]]),
            _unique_pairs(human_rows, key_of_name[codes[split:]]), spellings)


def _node_rows(ai: _Pairs, vocab: Vocabulary) -> list[pd.DataFrame]:
    """Per level, each taxonomy node's base conversations (a conversation holding two values
    of one cluster reaches it once)."""
    out = []
    for level in LEVELS:
        mapping = vocab.tree.level_map(level)
        node_ids = [mapping.get(k) if inside else None
                    for k, inside in zip(vocab.keys, vocab.in_tree, strict=True)]
        codes, nodes = pd.factorize(pd.Series(node_ids, dtype=object), use_na_sentinel=True)
        node_of_pair = codes[ai.keys] if len(ai.keys) else np.empty(0, np.int64)
        placed = node_of_pair >= 0  # every leaf has an ancestor at each level: a safeguard
        held = distinct((ai.rows[placed] << _SHIFT) | node_of_pair[placed])
        counts = np.bincount(held & _LOW, minlength=len(nodes))
        out.append(_rows("node", np.full(len(nodes), str(level), dtype=object),
                         np.asarray(nodes, dtype=object), counts))
    return out


def _held_together(rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every two keys held in one row, once per row, the lower-placed first: (row, key)
    pairs sorted by row, then key, in; one array of each side out."""
    first, second = [], []
    for d in range(1, len(rows)):
        same = rows[:-d] == rows[d:]
        if not same.any():
            break
        first.append(keys[:-d][same])
        second.append(keys[d:][same])
    if not first:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(first), np.concatenate(second)


def _together(ai: _Pairs, keys: np.ndarray) -> pd.DataFrame:
    """Each two AI values held in one base conversation, and in how many."""
    held = _held_together(*ai)
    if not held[0].size:
        return _rows("together", [], [], np.zeros(0, np.int64))
    first, second, counts = _packed_counts(*held)
    rank = np.empty(len(keys), np.int64)  # named in key order, whatever numbers keys got
    rank[np.argsort(keys.astype(str), kind="stable")] = np.arange(len(keys))
    swap = rank[first] > rank[second]
    return _rows("together", keys[np.where(swap, second, first)],
                 keys[np.where(swap, first, second)], counts)


__all__ = ["COLUMNS", "KINDS", "Inconsistent", "ReportCounts", "Vocabulary", "joined",
           "left_out_counts", "missing", "report_counts", "row_names"]
