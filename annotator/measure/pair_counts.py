"""The pair counts behind alpha for value sets, made from the ones before a change.

Alpha for sets (`value_sets`) needs N[t, a, b]: how many ordered pairs of non-empty pairable
ratings, over the whole study, have sizes a and b and share t values. Counting them means
grouping every subset of every distinct set (26 million subset records at the leaf level of
the 300,000-conversation bench study): most of the inter-annotator figures' time. After new
labels only the changed conversations' ratings differ, so the counts follow from the ones
stored before them:

    N_now = N_before + S(X, P) - N(X, X),    S(X, P) = N(X, P) + N(X, P) with a and b swapped

where P is every pairable rating now (as distinct sets with their weights: the ones
`rating_counts` keeps) and X the changed conversations' ratings, signed: +1 for each now, -1
for each before. (Write Q for the ratings the change left alone, A for the
changed conversations' ratings now and D for theirs before: N(Q+A, Q+A) - N(Q+D, Q+D) expands
to exactly that.) N(X, P) counts pairs sharing at least one value, by Moebius inversion as the
full counter does, but it looks up only the subsets of X's sets among P's: no grouping of P's.

Every count is an integer, kept in int64: the counts made here equal the ones counted whole,
and so does every figure made from them (`tests/test_pair_counts.py`). Pairs sharing no value
(t = 0) are not counted here: no figure reads them (their similarity is 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from annotator.measure.value_sets import (
    SetRatings,
    _moebius,
    _SetAlphaData,
    subset_words,
    value_bits,
)

COLUMNS = ("field", "level", "t", "a", "b", "count")
# Below this many subset records the whole count is as fast: at the 300,000-conversation bench
# study, level 2's 4 million took 0.18 s whole and 0.28 s made from a change.
MIN_RECORDS = 5_000_000

# Keys below this are looked up in a table (`_lookup`): the counts of each key by size, in
# floats, then take 8 * 2**16 * sizes bytes.
TABLE_KEYS = 2**16

# Sets of one size, as rows of value ids sorted within a row, each with an integer weight.
Groups = dict[int, tuple[np.ndarray, np.ndarray]]


def as_rows(counts: Mapping[tuple[str, int], np.ndarray]) -> pd.DataFrame:
    """Each (field, level)'s counts with t >= 1, one row per non-zero cell, and a row
    (0, 0, 0, 0) per (field, level) so one with no pair is still known to be stored."""
    rows: list[tuple[str, int, int, int, int, int]] = []
    for (field, level), hist in counts.items():
        rows.append((field, level, 0, 0, 0, 0))
        exact = np.rint(hist).astype(np.int64)
        for t, a, b in zip(*np.nonzero(exact[1:]), strict=True):
            rows.append((field, level, int(t) + 1, int(a), int(b), int(exact[t + 1, a, b])))
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(
        {"level": "int64", "t": "int64", "a": "int64", "b": "int64", "count": "int64"})


def from_rows(frame: pd.DataFrame) -> dict[tuple[str, int], np.ndarray]:
    """`as_rows` read back: each (field, level)'s counts, shaped by its largest size."""
    counts: dict[tuple[str, int], np.ndarray] = {}
    for (field, level), rows in frame.groupby(["field", "level"], sort=False):
        t, a, b = (rows[c].to_numpy(np.int64) for c in ("t", "a", "b"))
        size = int(max(t.max(), a.max(), b.max())) + 1
        hist = np.zeros((size, size, size), dtype=np.int64)
        hist[t, a, b] = rows["count"].to_numpy(np.int64)
        counts[(str(field), int(level))] = hist
    return counts


def counts_after(before: np.ndarray, now: _SetAlphaData, added: SetRatings,
                 removed: SetRatings) -> np.ndarray | None:
    """N_now (float, as the counter gives it) from N_before and the changed conversations'
    ratings: `added` as they are now, `removed` as they were (see the module docstring).
    None when they do not add up (counts before that are not those of the ratings before
    the change): the caller counts them whole."""
    _, by_size, _ = now.distinct
    weights = np.bincount(now.distinct[0][now.distinct[0] >= 0], minlength=now.distinct[2])
    everyone: Groups = {a: (vals, weights[start:start + vals.shape[0]].astype(np.int64))
                        for a, (vals, start) in by_size.items()}
    return counts_after_sets(before, pd.Index(now.ratings.vocab), everyone, added, removed)


def counts_after_sets(before: np.ndarray, names: pd.Index, everyone: Groups,
                      added: SetRatings, removed: SetRatings) -> np.ndarray | None:
    """`counts_after`, given every pairable non-empty set now as distinct sets with their
    weights (`everyone`, value ids placing them in `names`)."""
    # every rating's names now, then those the changed ratings had that no rating has now
    for side in (added, removed):
        names = names.append(pd.Index(side.vocab).difference(names, sort=False))
    bits = value_bits(names.size)
    changed = _net(_groups(added, names, 1), _groups(removed, names, -1))
    size = max([*everyone, *changed, before.shape[0] - 1, 0]) + 1
    hist = np.zeros((size, size, size), dtype=np.int64)
    hist[:before.shape[0], :before.shape[0], :before.shape[0]] = before
    hist[0] = 0
    cross = _pairs(changed, everyone, size, bits)
    hist += cross + cross.transpose(0, 2, 1) - _pairs(changed, changed, size, bits)
    largest = max(everyone, default=0)  # the counter's shape: its largest distinct set
    if hist[:, largest + 1:, :].any() or hist[:, :, largest + 1:].any() or (hist < 0).any():
        return None
    return hist[:largest + 1, :largest + 1, :largest + 1].astype(float)


def _groups(ratings: SetRatings, names: pd.Index, sign: int) -> Groups:
    """The non-empty pairable ratings, by size, their ids their names' places in `names`."""
    m_unit = np.bincount(ratings.unit, minlength=ratings.units.size)
    sizes = ratings.sizes
    keep = (m_unit >= 2)[ratings.unit] & (sizes > 0)
    ids = names.get_indexer(ratings.vocab)
    groups: Groups = {}
    for a in np.unique(sizes[keep]).tolist():
        rows = np.flatnonzero(keep & (sizes == a))
        vals = np.sort(ids[ratings.indices[ratings.indptr[rows][:, None] + np.arange(a)]],
                       axis=1)
        groups[a] = (vals, np.full(rows.size, sign, dtype=np.int64))
    return groups


def _net(added: Groups, removed: Groups) -> Groups:
    """One signed multiset: equal sets' weights summed, sets of weight 0 left out. A rating
    the change left as it was (another annotator's, in a conversation that gained one) is in
    both sides and cancels: X is the change alone."""
    net: Groups = {}
    for a in sorted({*added, *removed}):
        parts = [side[a] for side in (added, removed) if a in side]
        vals = np.concatenate([p[0] for p in parts])
        weights = np.concatenate([p[1] for p in parts])
        # the changed ratings are few: rows grouped by sorting them whole
        sets, codes = np.unique(vals, axis=0, return_inverse=True)
        summed = np.rint(np.bincount(codes.ravel(), weights=weights)).astype(np.int64)
        if (summed != 0).any():
            net[a] = (sets[summed != 0], summed[summed != 0])
    return net


class _Subsets(NamedTuple):
    """Every r-subset of some sets: key words, and each one's set (numbered set after set),
    size and weight."""

    words: list[np.ndarray]
    owner: np.ndarray
    size: np.ndarray
    weight: np.ndarray


# Sets as `_subsets` takes them: (the sets' size, their values, their weights); the values may
# be fewer than the size (a set cut to the values another side holds, `_cut`)
Sized = list[tuple[int, np.ndarray, np.ndarray]]


def _subsets(groups: Sized, r: int, bits: int) -> _Subsets | None:
    words, owners, sizes, weights = [], [], [], []
    first = 0
    for a, vals, w in groups:
        if vals.shape[1] >= r and vals.shape[0]:
            block, per_set = subset_words(vals, r, bits)
            words.append(block)
            owners.append(np.repeat(np.arange(first, first + vals.shape[0]), per_set))
            sizes.append(np.full(vals.shape[0] * per_set, a, dtype=np.int64))
            weights.append(np.repeat(w, per_set))
        first += vals.shape[0]
    if not words:
        return None
    return _Subsets([np.concatenate([b[k] for b in words]) for k in range(len(words[0]))],
                    np.concatenate(owners), np.concatenate(sizes), np.concatenate(weights))


def _lookup(keys: list[np.ndarray], among: list[np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of the (multi-word) keys `keys`, and of `among` (-1: none of `keys`), and how
    many codes: hashing the few keys and looking the many up, never sorting the many. Keys
    of one small word (a 1-subset's is the value's id) are looked up in a table instead."""
    if len(keys) == 1 and max(int(keys[0].max()), int(among[0].max())) < TABLE_KEYS:
        code = np.full(TABLE_KEYS, -1, dtype=np.int64)
        used = np.unique(keys[0])
        code[used] = np.arange(used.size)
        return code[keys[0]], code[among[0]], used.size
    code_k: np.ndarray | None = None
    code_a = np.zeros(among[0].size, dtype=np.int64)
    n = 1
    for word_k, word_a in zip(keys, among, strict=True):
        index = pd.Index(pd.unique(word_k))
        ck, ca = index.get_indexer(word_k), index.get_indexer(word_a)
        ck = ck if code_k is None else code_k * index.size + ck
        ca = np.where((code_a >= 0) & (ca >= 0), code_a * index.size + ca, -1)
        combined = pd.Index(pd.unique(ck))  # renumbered: codes stay below len(keys)
        code_k, n = combined.get_indexer(ck), combined.size
        code_a = np.where(ca >= 0, combined.get_indexer(ca), -1)
    assert code_k is not None
    return code_k, code_a, n


def _cut(y: Groups, held: np.ndarray) -> Sized:
    """Y's sets cut to the values in `held` (each keeps its size), those left with none
    dropped: only values X holds can be in a subset both share, so the rest of a set of Y
    is never looked at (a change's few sets hold a few hundred of the thousands of values)."""
    mark = np.zeros(max([int(held.max()), *(int(v.max()) for v, _ in y.values() if v.size)])
                    + 1, dtype=bool)
    mark[held] = True
    out: Sized = []
    for a, (vals, w) in y.items():
        inside = mark[vals]
        kept = inside.sum(axis=1)
        for k in np.unique(kept[kept > 0]).tolist():
            rows = np.flatnonzero(kept == k)
            out.append((a, vals[rows][inside[rows]].reshape(-1, k), w[rows]))
    return out


def _pairs(x: Groups, y: Groups, size: int, bits: int) -> np.ndarray:
    """N(X, Y)[t, a, b] for t >= 1: weighted ordered pairs (x in X, y in Y) by overlap and
    sizes. F_r[a, b] sums w_x * w_y * C(t, r) over the r-subsets x and y share; Moebius
    inversion gives N, in integers."""
    f = np.zeros((size, size, size), dtype=np.int64)
    mine_sets: Sized = [(a, vals, w) for a, (vals, w) in x.items()]
    held = [vals.ravel() for _, vals, _ in mine_sets if vals.size]
    if not held or not any(vals.size for vals, _ in y.values()):
        return _moebius(f, np.ones(1))
    theirs_sets = _cut(y, np.unique(np.concatenate(held)))
    # a set of Y shares an (r + 1)-subset with a set of X only if r + 1 of its r-subsets
    # are X's: the others are not looked at again
    alive = [np.ones(vals.shape[0], dtype=bool) for _, vals, _ in theirs_sets]
    for r in range(1, max(x, default=0) + 1):
        mine = _subsets(mine_sets, r, bits)
        left = [(a, vals[keep], w[keep]) for (a, vals, w), keep in zip(theirs_sets, alive,
                                                                         strict=True)]
        theirs = _subsets(left, r, bits)
        if mine is None or theirs is None:
            break
        code_x, code_y, n = _lookup(mine.words, theirs.words)
        hit = code_y >= 0
        per_x = np.bincount(code_x * size + mine.size, weights=mine.weight,
                            minlength=n * size)
        per_y = np.bincount(code_y[hit] * size + theirs.size[hit],
                            weights=theirs.weight[hit], minlength=n * size)
        # each bin sums integers far below 2**53: exact in float, then exact in int64
        f[r] = np.rint(per_x.reshape(n, size)).astype(np.int64).T @ np.rint(
            per_y.reshape(n, size)).astype(np.int64)
        hits = np.bincount(theirs.owner[hit], minlength=sum(v.shape[0] for _, v, _ in left))
        first = 0
        for keep, (_, vals, _) in zip(alive, left, strict=True):
            keep[np.flatnonzero(keep)] = hits[first:first + vals.shape[0]] > r
            first += vals.shape[0]
    return _moebius(f, np.ones(1))
