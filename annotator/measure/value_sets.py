"""Agreement on value SETS: MASI (Passonneau 2006) and Jaccard distances, alpha over sets (exact
and vectorised, by counting pairs of sets by sizes and overlap with Moebius inversion), per-value
binary alpha, and taxonomy levels (a value mapped to its ancestor; a free value stays itself).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, combinations
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import sparse

from annotator.measure.coefficients import (
    _alpha_counts,
    _Counts,
)
from annotator.measure.intervals import (
    _with_interval,
)
from annotator.measure.shapes import (
    MASI_WEIGHTS,
    RATER,
    UNIT,
    MasiWeights,
    SetDistance,
    Stat,
    _nan,
    as_long,
)

# --------------------------------------------------------------------------- value sets


def masi_distance(
    a: Iterable[Hashable], b: Iterable[Hashable], weights: MasiWeights = "exact"
) -> float:
    """MASI distance (Passonneau 2006): 1 - Jaccard * monotonicity; two empty sets: 0."""
    sa, sb = set(a), set(b)
    sim = _set_similarity(np.array([len(sa)]), np.array([len(sb)]), np.array([len(sa & sb)]),
                          "masi", weights)
    return float(1.0 - sim[0])


def jaccard_distance(a: Iterable[Hashable], b: Iterable[Hashable]) -> float:
    """1 - |A & B| / |A | B|; two empty sets: 0."""
    sa, sb = set(a), set(b)
    sim = _set_similarity(np.array([len(sa)]), np.array([len(sb)]), np.array([len(sa & sb)]),
                          "jaccard", "exact")
    return float(1.0 - sim[0])


def _set_similarity(
    a: np.ndarray, b: np.ndarray, t: np.ndarray, distance: SetDistance, weights: MasiWeights
) -> np.ndarray:
    """1 - distance, from set sizes a, b and overlap t (arrays of the same shape)."""
    a, b, t = (np.asarray(x, dtype=float) for x in (a, b, t))
    union = a + b - t
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, t / np.where(union > 0, union, 1.0), 1.0)
    if distance == "jaccard":
        return jac
    if distance != "masi":
        raise ValueError(f"unknown set distance: {distance!r}")
    w_sub, w_over = MASI_WEIGHTS[weights]
    mono = np.where(
        (t == a) & (t == b),
        1.0,
        np.where(t == np.minimum(a, b), w_sub, np.where(t > 0, w_over, 0.0)),
    )
    return jac * mono


@dataclass(frozen=True)
class SetRatings:
    """Value-set ratings in CSR form, sorted by unit; value ids index `vocab`."""

    unit: np.ndarray  # (R,) unit index of each rating, non-decreasing
    indptr: np.ndarray  # (R + 1,)
    indices: np.ndarray  # value ids, sorted and unique within a rating
    vocab: np.ndarray  # (V,) value names
    units: np.ndarray  # (U,) unit labels (conversation ids)
    raters: np.ndarray  # (R,) rater of each rating

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)

    def matrix(self) -> sparse.csr_matrix:
        data = np.ones(self.indices.size, dtype=np.int32)
        return sparse.csr_matrix(
            (data, self.indices, self.indptr), shape=(self.unit.size, self.vocab.size)
        )

    def sets(self) -> list[frozenset[str]]:
        names = self.vocab
        return [
            frozenset(names[self.indices[s:e]].tolist())
            for s, e in zip(self.indptr[:-1], self.indptr[1:], strict=True)
        ]


def _norm(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def level_name(name: str, level_map: Mapping[str, str] | None) -> str:
    """The key a value counts under in `level_map`: its ancestor, looked up as written, then
    whitespace-collapsed and casefolded; a value found neither way (a free value) is itself."""
    if not level_map:
        return name
    return level_map.get(name, level_map.get(_norm(name), name))


def set_ratings(data: pd.DataFrame | np.ndarray, label: str = "ai_values") -> SetRatings:
    """Build the CSR form from any accepted input shape (see module docstring)."""
    long = as_long(data, label)
    unit_codes, unit_labels = pd.factorize(long[UNIT])
    order = np.argsort(unit_codes, kind="stable")
    cells = long[label].to_numpy()[order]
    unit_codes = unit_codes[order]
    raters = long[RATER].to_numpy()[order]
    lengths = np.fromiter((len(c) for c in cells), dtype=np.int64, count=cells.size)
    flat = list(chain.from_iterable(cells))
    codes, vocab = pd.factorize(pd.Series(flat, dtype=object)) if flat else (
        np.zeros(0, np.int64), pd.Index([], dtype=object))
    rating_of = np.repeat(np.arange(cells.size), lengths)
    return _csr(unit_codes, rating_of, np.asarray(codes), np.asarray(vocab, dtype=object),
                np.asarray(unit_labels, dtype=object), raters)


def _csr(
    unit: np.ndarray,
    rating_of: np.ndarray,
    codes: np.ndarray,
    vocab: np.ndarray,
    units: np.ndarray,
    raters: np.ndarray,
) -> SetRatings:
    """The ratings' sets, each code sorted and distinct within its rating. `rating_of`: each
    code's rating."""
    if rating_of.size > 1 and bool((rating_of[1:] < rating_of[:-1]).any()):  # not in order
        order = np.argsort(rating_of, kind="stable")
        rating_of, codes = rating_of[order], codes[order]
    indptr, ids = sorted_sets(np.bincount(rating_of, minlength=unit.size), codes,
                              max(int(vocab.size), 1))
    return SetRatings(unit, indptr, ids, vocab, units, raters)


def sorted_sets(lengths: np.ndarray, codes: np.ndarray, width: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Sets given as each one's length and their codes (below `width`) one set after
    another, as CSR (indptr, codes) with each set's codes sorted and distinct. Each set's few
    codes are sorted and merged by scipy, row by row in C++ (`sum_duplicates`): a third of the
    time of sorting every (set, code) key at once, which took a fifth of the model rows' time
    at 300,000 conversations (each pair mapped to each taxonomy level)."""
    indptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    sets = sparse.csr_matrix((np.ones(codes.size, dtype=np.int32), codes, indptr),
                             shape=(lengths.size, width))
    sets.sum_duplicates()
    return (sets.indptr.astype(np.int64, copy=False),
            sets.indices.astype(np.int64, copy=False))


def map_level(ratings: SetRatings, level_map: Mapping[str, str] | None) -> SetRatings:
    """Replace each value by its ancestor (free values stay themselves), merge duplicates."""
    if not level_map:
        return ratings
    mapped = [level_name(n, level_map) for n in ratings.vocab.tolist()]
    new_codes, new_vocab = pd.factorize(pd.Series(mapped, dtype=object))
    rating_of = np.repeat(np.arange(ratings.unit.size), ratings.sizes)
    return _csr(ratings.unit, rating_of, np.asarray(new_codes)[ratings.indices],
                np.asarray(new_vocab, dtype=object), ratings.units, ratings.raters)


def _group(words: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Exact group ids for rows given as several int64 key columns (one column at a time).

    Callers use the ids only to tell groups apart (every figure from them is a sum of integer
    counts), so any numbering does. Sorting (`np.unique`) measured faster than hashing
    (`pd.factorize`) on the subset keys of the 300,000-conversation study: 2.4 s against
    3.4 s for the two taxonomy levels that have many."""
    codes = _codes(words[0])
    for w in words[1:]:
        c2 = _codes(w)
        # both codes < 2**31 here, so the combined key is exact in int64
        codes = _codes(codes * (int(c2.max()) + 1) + c2)
    return codes, (int(codes.max()) + 1 if codes.size else 0)


def _codes(keys: np.ndarray) -> np.ndarray:
    """Dense ids of int64 keys: the rank of each key among the distinct ones."""
    return np.unique(keys, return_inverse=True)[1].astype(np.int64, copy=False).ravel()


def _shared_runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Of sorted keys: which are in a run of two or more, the number of each one's run among
    those runs (numbered densely), and how many such runs."""
    if keys.size == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64), 0
    same = keys[1:] == keys[:-1]
    shared = np.r_[False, same] | np.r_[same, False]
    first = np.r_[True, ~same] & shared
    return shared, (np.cumsum(first) - 1)[shared], int(first.sum())


def _pack(cols: np.ndarray, bits: int) -> list[np.ndarray]:
    """(M, r) small non-negative ints -> list of int64 words, as many values a word as fit."""
    per = max(1, 62 // bits)
    words = []
    for s in range(0, cols.shape[1], per):
        block = cols[:, s : s + per].astype(np.int64)
        shifts = np.arange(block.shape[1], dtype=np.int64) * bits
        words.append((block << shifts).sum(1) if block.shape[1] > 1 else block[:, 0])
    return words


def _hist_similarity(hist: np.ndarray, distance: SetDistance, weights: MasiWeights) -> float:
    """Sum of N[t, a, b] * (1 - distance(a, b, t)) over t >= 1."""
    size = hist.shape[0]
    t, a, b = np.meshgrid(np.arange(size), np.arange(size), np.arange(size), indexing="ij")
    valid = (t >= 1) & (a >= t) & (b >= t)
    sim = _set_similarity(a, b, t, distance, weights)
    return float((hist * np.where(valid, sim, 0.0)).sum())


class _KeyPairs(NamedTuple):
    """The ordered pairs of (subset, size) keys of one subset (`left`, `right`), and the
    sparse sum of each pair into its (size, size) cell (`cells`)."""

    cells: sparse.csr_matrix
    left: np.ndarray
    right: np.ndarray


@dataclass(frozen=True)
class _AllPairCounter:
    """Counts ALL ordered pairs of ratings (same unit and i = j included) by (a, b, t), from
    every subset two or more DISTINCT sets hold (`of_sets`). Cheap when few distinct sets
    exist (upper taxonomy levels: at most 2^5 - 1 top-category sets)."""

    max_size: int
    combos: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]  # per r: subset, size, owner
    distinct_of: np.ndarray  # rating -> distinct set, -1 for excluded or empty ratings
    n_distinct: int
    set_size: np.ndarray  # distinct set -> its size
    # built when a bootstrap first needs them (`batched_gathers`)
    batched: list[tuple[sparse.csr_matrix, _KeyPairs]] = field(
        default_factory=list, compare=False, repr=False)

    @staticmethod
    def distinct(ratings: SetRatings, keep: np.ndarray) -> tuple[np.ndarray, dict, int]:
        sizes = ratings.sizes
        rows = np.flatnonzero(keep & (sizes > 0))
        bits = max(1, int(max(ratings.vocab.size - 1, 1)).bit_length())
        distinct_of = np.full(sizes.size, -1, dtype=np.int64)
        vals_by_size: dict[int, tuple[np.ndarray, int]] = {}
        offset = 0
        for a in np.unique(sizes[rows]).tolist():
            ra = rows[sizes[rows] == a]
            vals = ratings.indices[ratings.indptr[ra][:, None] + np.arange(a)]
            gid, n = _group(_pack(vals, bits))
            first = np.zeros(n, dtype=np.int64)
            first[gid[::-1]] = np.arange(ra.size)[::-1]
            vals_by_size[a] = (vals[first], offset)
            distinct_of[ra] = offset + gid
            offset += n
        return distinct_of, vals_by_size, offset

    @classmethod
    def build(cls, ratings: SetRatings, keep: np.ndarray,
              prepared: tuple[np.ndarray, dict, int] | None = None) -> _AllPairCounter:
        distinct_of, vals_by_size, n_distinct = prepared or cls.distinct(ratings, keep)
        return cls.of_sets(vals_by_size, n_distinct, int(ratings.vocab.size), distinct_of)

    @classmethod
    def of_sets(cls, vals_by_size: dict, n_distinct: int, n_vocab: int,
                distinct_of: np.ndarray) -> _AllPairCounter:
        """The counter of distinct sets given by size (ids sorted within a row, and where
        each size's sets start in the numbering; the numbering covers 0..n_distinct-1),
        `n_vocab` the ids' range.

        Only the subsets two or more sets hold are listed (`combos`). A subset one set alone
        holds adds that set's weight squared to its size's own cell; `_alone` counts those
        without listing them. Each r-subset is found as a shared (r-1)-subset (all of it but
        its largest value) and one more value of its set: a subset two sets hold has every
        subset held by both, so an (r-1)-subset one set alone holds is never extended. Its
        key is one word, the prefix's number and the value, and the keys come in order of
        their prefix, so grouping them is a stable sort of short runs, not a sort of several
        words per subset (at 700,000 conversations the finest level's counts took 7.4 s
        instead of 12.5 s; a fifth of its 3-subsets are one set's).
        """
        max_size = max(vals_by_size, default=0)
        # kept for every resample: 32-bit indices halve the largest arrays held here
        own_type = np.int32 if n_distinct < 2**31 else np.int64
        set_size = np.zeros(n_distinct, dtype=np.int16)
        for a, (vals, start) in vals_by_size.items():
            set_size[start:start + vals.shape[0]] = a
        # every set's values one set after another; a record is where its largest value is
        # in them, and the subset's key
        values = np.concatenate([vals.ravel() for vals, _ in sorted(
            vals_by_size.values(), key=lambda v: v[1])] or [np.zeros(0, np.int64)])
        owner_of = np.repeat(np.arange(n_distinct, dtype=own_type), set_size)
        # how many values of its set come after each value
        after = (np.repeat(np.cumsum(set_size, dtype=np.int64), set_size) - 1
                 - np.arange(values.size, dtype=np.int64))
        # level 1: every value of every set, its key the value
        at = np.arange(values.size, dtype=np.int64)
        key = values.astype(np.int16 if n_vocab < 2**15 else np.int64)
        combos = []
        for _ in range(max_size):
            # in order of key, so a subset's records are next to each other. A stable sort:
            # past level 1 the keys come sorted by their prefix, left to sort among a few
            # records each (a sort of sorted runs: a tenth of an unordered sort's time)
            order = np.argsort(key, kind="stable")
            held, t_row, n_t = _shared_runs(key[order])
            at = at[order[held]]
            owner = owner_of[at]
            combos.append((_compact(t_row, n_t), set_size[owner], owner, n_t))
            # the next level: each shared subset and each larger value of its set
            more = after[at]
            at = np.arange(int(more.sum()), dtype=np.int64) - np.repeat(
                np.cumsum(more) - more - at - 1, more)
            key = np.repeat(t_row.astype(np.int64) * max(n_vocab, 1), more) + values[at]
        return cls(max_size, combos, distinct_of, n_distinct, set_size)

    def pair_hist(self, unit_w: np.ndarray, unit: np.ndarray) -> np.ndarray:
        ok = self.distinct_of >= 0
        dw = np.bincount(self.distinct_of[ok], weights=unit_w[unit[ok]],
                         minlength=self.n_distinct)
        return self.weighted_hist(dw, unit_w)

    def pair_hists(self, unit_ws: np.ndarray, unit: np.ndarray) -> list[np.ndarray]:
        """`pair_hist` of each row of `unit_ws` (resamples' unit weights): every subset
        record is gathered once for the lot, not once a resample. The weights are integers
        and every count a sum of them, so each histogram equals `pair_hist`'s exactly."""
        ok = self.distinct_of >= 0
        rating_of = self.distinct_of[ok]
        dws = np.stack([np.bincount(rating_of, weights=w[unit[ok]], minlength=self.n_distinct)
                        for w in unit_ws], axis=1)  # distinct sets x resamples
        a_max = self.max_size
        f = np.zeros((unit_ws.shape[0], a_max + 1, a_max + 1, a_max + 1))
        for r, (gather, pairs) in enumerate(self.batched_gathers(), start=1):
            weight = gather @ dws  # (subset, size) keys x resamples
            f[:, r] = (pairs.cells @ (weight[pairs.left] * weight[pairs.right])).T.reshape(
                -1, a_max + 1, a_max + 1)
            own = self.combos[r - 1][2]
            alone = sparse.csr_matrix(
                (self._alone(r, own), (np.arange(self.n_distinct), self.set_size)),
                shape=(self.n_distinct, a_max + 1))
            f[:, r, np.arange(a_max + 1), np.arange(a_max + 1)] += (alone.T @ (dws * dws)).T
        return [_moebius(f[k], w) for k, w in enumerate(unit_ws)]

    def batched_gathers(self) -> list[tuple[sparse.csr_matrix, _KeyPairs]]:
        """Per subset size r: the sparse sum of each (subset, size) key's records by their
        set, and the pairs of keys of one subset with the (size, size) cell each adds to."""
        if self.batched:
            return self.batched
        out = self.batched
        cells = self.max_size + 1
        for t_row, size, own, _ in self.combos:
            key = t_row.astype(np.int64) * cells + size
            keys, at = np.unique(key, return_inverse=True)
            gather = sparse.csr_matrix(
                (np.ones(own.size), (at.ravel(), own.astype(np.int64))),
                shape=(keys.size, self.n_distinct))
            subset = keys // cells
            # the keys of one subset are next to each other (sorted): every ordered pair
            starts = np.flatnonzero(np.r_[True, subset[1:] != subset[:-1]])
            lengths = np.diff(np.r_[starts, keys.size])
            first = np.repeat(starts, lengths * lengths)
            within = np.arange(first.size) - np.repeat(
                np.cumsum(lengths * lengths) - lengths * lengths, lengths * lengths)
            group = np.repeat(lengths, lengths * lengths)
            left, right = first + within // group, first + within % group
            cell = (keys[left] % cells) * cells + keys[right] % cells
            pairs = sparse.csr_matrix((np.ones(left.size), (cell, np.arange(left.size))),
                                      shape=(cells * cells, left.size))
            out.append((gather, _KeyPairs(pairs, left, right)))
        return out

    def weighted_hist(self, dw: np.ndarray, unit_w: np.ndarray) -> np.ndarray:
        """The pair counts of the distinct sets weighted `dw` (their ratings' unit weights
        `unit_w` summed: integers give exact counts)."""
        a_max = self.max_size
        f = np.zeros((a_max + 1, a_max + 1, a_max + 1))
        for r, (t_row, size, own, n_t) in enumerate(self.combos, start=1):
            # duplicates (same subset, same size) are summed by the sparse constructor
            c = sparse.csr_matrix((dw[own], (t_row, size)), shape=(n_t, a_max + 1))
            f[r] = (c.T @ c).toarray()
            f[r][np.diag_indices(a_max + 1)] += np.bincount(
                self.set_size, weights=dw * dw * self._alone(r, own), minlength=a_max + 1)
        return _moebius(f, unit_w)

    def _alone(self, r: int, own: np.ndarray) -> np.ndarray:
        """Per distinct set: its r-subsets no other set holds, which `combos` does not list.
        Each adds the set's weight squared to its size's own cell."""
        sizes = np.arange(self.max_size + 1)
        subsets = np.array([math.comb(int(a), r) for a in sizes], dtype=float)
        return subsets[self.set_size] - np.bincount(own, minlength=self.n_distinct)


def hist_of_sets(by_size: Mapping[int, tuple[np.ndarray, np.ndarray]], n_vocab: int
                 ) -> np.ndarray:
    """The pair counts N[t, a, b] (`_SetAlphaData.point_hist`) of the pairable non-empty
    ratings given as distinct sets and how many ratings hold each (size -> ids sorted within
    a row, integer weights), value ids below `n_vocab`."""
    vals_by_size, weights, start = {}, [], 0
    for a in sorted(by_size):
        vals, w = by_size[a]
        vals_by_size[a] = (vals, start)
        weights.append(np.asarray(w, dtype=float))
        start += vals.shape[0]
    counter = _AllPairCounter.of_sets(vals_by_size, start, n_vocab, np.zeros(0, np.int64))
    dw = np.concatenate(weights) if weights else np.zeros(0)
    return counter.weighted_hist(dw, np.ones(1))


def value_bits(n_vocab: int) -> int:
    """Bits that hold any value id of a vocabulary of `n_vocab` names."""
    return max(1, (max(n_vocab, 1) - 1).bit_length())


def subset_words(vals: np.ndarray, r: int, bits: int) -> tuple[list[np.ndarray], int]:
    """Every r-subset of each row of `vals` (n sets of one size, ids sorted within a row) as
    packed int64 key words, `bits` a value, the subsets of a row next to each other; and how
    many subsets a row has. Equal subsets (ids in the same order) give equal words."""
    per_word = max(1, 62 // bits)
    idx = np.array(list(combinations(range(vals.shape[1]), r)), dtype=np.int64)
    # pack each r-subset straight from the set's columns: no (n, C, r) temporary
    block = []
    for w0 in range(0, r, per_word):
        key = vals[:, idx[:, w0]].astype(np.int64)
        for k in range(w0 + 1, min(r, w0 + per_word)):
            key |= vals[:, idx[:, k]].astype(np.int64) << (bits * (k - w0))
        block.append(key.ravel())
    return block, idx.shape[0]


def _compact(index: np.ndarray, bound: int) -> np.ndarray:
    """`index` (values below `bound`) as int32 when they fit."""
    return index.astype(np.int32) if bound < 2**31 else index


def _moebius(f: np.ndarray, unit_w: np.ndarray) -> np.ndarray:
    """F[r, a, b] (pairs weighted by C(t, r)) -> N[t, a, b] (pairs with overlap exactly t),
    in F's type (integer counts stay exact)."""
    a_max = f.shape[0] - 1
    hist = np.zeros_like(f)
    for t in range(1, a_max + 1):
        for r in range(t, a_max + 1):
            hist[t] += (-1) ** (r - t) * math.comb(r, t) * f[r]
    if hist.dtype.kind == "f" and np.all(unit_w == np.rint(unit_w)):
        hist = np.rint(hist)  # integer weights: counts are integers, drop rounding noise
    return hist


def _ranges(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Concatenated index ranges indptr[i]:indptr[i + 1] for i in rows."""
    lengths = indptr[rows + 1] - indptr[rows]
    if lengths.sum() == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(indptr[rows] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum())) + offsets


@dataclass
class _SetAlphaData:
    ratings: SetRatings
    pair_i: np.ndarray  # within-unit unordered pairs (i < j)
    pair_j: np.ndarray
    overlap: np.ndarray
    m_unit: np.ndarray  # (U,) ratings per unit
    pairable_unit: np.ndarray  # (U,) bool: two or more ratings
    empties: np.ndarray  # (U,) empty-set ratings per pairable unit
    # the distinct non-empty pairable sets (`_AllPairCounter.distinct`)
    distinct: tuple[np.ndarray, dict, int]
    # built when first needed: the point counts can come from the ones before a change
    # (`pair_counts`), and only a bootstrap then needs every subset counted
    counter: _AllPairCounter | None = None
    _hist: np.ndarray | None = None

    def hist(self, unit_w: np.ndarray) -> np.ndarray:
        return self._counter().pair_hist(unit_w, self.ratings.unit)

    def _counter(self) -> _AllPairCounter:
        if self.counter is None:
            pairable = self.pairable_unit[self.ratings.unit]
            self.counter = _AllPairCounter.build(self.ratings, pairable, self.distinct)
        return self.counter

    def resampled_hists(self, n_units: int, n_boot: int, seed: int
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each bootstrap resample's unit weights (units drawn with replacement from `seed`,
        one resample after another) and its pair counts, a few resamples' counts at a time
        (`_AllPairCounter.pair_hists`)."""
        if n_boot <= 0 or n_units == 0:
            return
        counter = self._counter()
        rng = np.random.default_rng(seed)
        # a few resamples at a time: each holds a float per pair of keys of one subset
        largest = max((pairs.left.size for _, pairs in counter.batched_gathers()), default=1)
        per_chunk = max(1, min(32, int(4e6 // max(largest, 1))))
        for start in range(0, n_boot, per_chunk):
            ws = np.stack([np.bincount(rng.integers(0, n_units, n_units),
                                       minlength=n_units).astype(float)
                           for _ in range(min(per_chunk, n_boot - start))])
            yield from zip(ws, counter.pair_hists(ws, self.ratings.unit), strict=True)

    def point_hist(self) -> np.ndarray:
        if self._hist is None:
            self._hist = self.hist(np.ones(self.m_unit.size))
        return self._hist

    def use_point_hist(self, hist: np.ndarray) -> None:
        """Take the point counts as given (`pair_counts.counts_after`), not counted here."""
        self._hist = hist

    @property
    def n_records(self) -> int:
        """The subset records a bootstrap's cost is reckoned in (`BOOT_BUDGET`): 2^a - 1 for
        each distinct set of size a, as many as the counter once listed (it now lists only
        the subsets two sets hold), so a study gets an interval as it did before."""
        return sum(vals.shape[0] * (2**a - 1) for a, (vals, _) in self.distinct[1].items())

    def observed_per_unit(self, distance: SetDistance, weights: MasiWeights) -> np.ndarray:
        """Per unit: its term of the observed disagreement."""
        sizes = self.ratings.sizes
        sim = _set_similarity(sizes[self.pair_i], sizes[self.pair_j], self.overlap, distance,
                              weights)
        u = self.ratings.unit[self.pair_i]
        m = self.m_unit.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            observed = np.bincount(u, weights=2.0 * (1.0 - sim), minlength=m.size) / (m - 1.0)
        observed[~self.pairable_unit] = 0.0
        return observed


def _within_pairs(unit: np.ndarray, max_m: int) -> tuple[np.ndarray, np.ndarray]:
    ii, jj = [], []
    for k in range(1, max_m):
        i = np.flatnonzero(unit[:-k] == unit[k:])
        ii.append(i)
        jj.append(i + k)
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii), np.concatenate(jj)


def _prepare_sets(ratings: SetRatings) -> _SetAlphaData:
    n_units = ratings.units.size
    m_unit = np.bincount(ratings.unit, minlength=n_units)
    pairable_unit = m_unit >= 2
    pairable = pairable_unit[ratings.unit]
    i, j = _within_pairs(ratings.unit, int(m_unit.max()) if n_units else 0)
    x = ratings.matrix()
    overlap = np.asarray(x[i].multiply(x[j]).sum(1)).ravel() if i.size else np.zeros(0)
    empties = np.bincount(ratings.unit[(ratings.sizes == 0) & pairable], minlength=n_units)
    # Every subset of every distinct set (`_AllPairCounter`, built when first needed):
    # measured faster at every taxonomy level of the synthetic paper-scale study than an
    # apriori-pruned count of the subsets shared by two units (that counter is now a test
    # oracle: tests/pair_counter.py).
    distinct = _AllPairCounter.distinct(ratings, pairable)
    return _SetAlphaData(ratings, i, j, overlap, m_unit, pairable_unit, empties, distinct)


def _set_alpha_value(
    d: _SetAlphaData,
    unit_w: np.ndarray,
    observed_u: np.ndarray,
    hist: np.ndarray,
    distance: SetDistance,
    weights: MasiWeights,
) -> tuple[float, str | None]:
    """Alpha of the units weighted `unit_w`; `hist` counts every ordered pair of non-empty
    pairable ratings (same unit and i = j included) by (overlap, size, size)."""
    w = unit_w * d.pairable_unit
    n = float(w @ d.m_unit)
    if n <= 1 or not d.pairable_unit.any():
        return float("nan"), "no unit has two or more ratings"
    observed = float(w @ observed_u)
    e = float(w @ d.empties)
    similar = e * e + _hist_similarity(hist, distance, weights)
    expected = n * n - similar
    # n^2 - S carries rounding of order 1e-16 n^2: below 1e-12 n^2 it is zero.
    if expected <= 1e-12 * n * n:
        return float("nan"), "no variation: every pairable rating is the same set (0/0)"
    return 1.0 - (n - 1.0) * observed / expected, None


def set_alpha(
    data: pd.DataFrame | np.ndarray | SetRatings,
    distance: SetDistance = "masi",
    *,
    label: str = "ai_values",
    level_map: Mapping[str, str] | None = None,
    masi_weights: MasiWeights = "exact",
    n_boot: int = 0,
    seed: int = 0,
    boot_budget: float = 1e8,
) -> Stat:
    """Krippendorff's alpha for value sets with MASI or Jaccard distance (see module docstring).

    `level_map` maps values to their ancestors first (a taxonomy level). The bootstrap re-weights
    units exactly; it is skipped with a note when subset records x resamples > `boot_budget`.
    """
    ratings = data if isinstance(data, SetRatings) else set_ratings(data, label)
    ratings = map_level(ratings, level_map)
    return set_alpha_prepared(_prepare_sets(ratings), distance, masi_weights, n_boot, seed,
                              boot_budget)


def set_alpha_prepared(
    d: _SetAlphaData,
    distance: SetDistance = "masi",
    masi_weights: MasiWeights = "exact",
    n_boot: int = 0,
    seed: int = 0,
    boot_budget: float = 1e8,
) -> Stat:
    n_units_all = d.m_unit.size
    observed = d.observed_per_unit(distance, masi_weights)
    ones = np.ones(n_units_all)
    value, reason = _set_alpha_value(d, ones, observed, d.point_hist(), distance, masi_weights)
    stat = Stat(value=value, n_units=int(d.pairable_unit.sum()), reason=reason)
    if not stat.defined or n_boot <= 0:
        return stat
    # one resample touches every subset record, rating and unit once
    n_records = d.n_records
    cost = float(n_records + d.ratings.unit.size + n_units_all) * n_boot
    if cost > boot_budget:
        note = (f"interval omitted: ({n_records:,} subset records + "
                f"{d.ratings.unit.size:,} ratings + {n_units_all:,} units) x {n_boot} "
                f"resamples exceeds the budget {boot_budget:.0e}")
        return stat.model_copy(update={"reason": note})

    return _with_interval(stat, np.array([
        _set_alpha_value(d, w, observed, hist, distance, masi_weights)[0]
        for w, hist in d.resampled_hists(n_units_all, n_boot, seed)]))


def most_used(usage: np.ndarray, names: Sequence[str], top_k: int) -> np.ndarray:
    """The ids of the `top_k` most used values (usage above 0), most used first and equal
    usage by name: the same list however the ratings were read (`rating_counts`)."""
    used = np.flatnonzero(usage > 0).tolist()
    used.sort(key=lambda i: (-int(usage[i]), str(names[i])))
    return np.asarray(used[:top_k], dtype=np.int64)


def per_value_alpha(
    data: pd.DataFrame | np.ndarray | SetRatings,
    *,
    label: str = "ai_values",
    top_k: int = 50,
    level_map: Mapping[str, str] | None = None,
    n_boot: int = 0,
    seed: int = 0,
    only: Collection[str] | None = None,
    min_conversations: int = 0,
) -> dict[str, Stat]:
    """Binary nominal alpha (value in the set or not) for the `top_k` most used values.

    `only`: the values that may be listed (at a cluster level, the clusters: a free value is
    not one). A value held in fewer than `min_conversations` conversations gets no figure but
    a reason ("too few conversations: 2"): alpha from two conversations with the value reads
    1.000 with an interval of 1.000 to 1.000, which says nothing."""
    ratings = data if isinstance(data, SetRatings) else set_ratings(data, label)
    ratings = map_level(ratings, level_map)
    n_units = ratings.units.size
    m_unit = np.bincount(ratings.unit, minlength=n_units)
    x = ratings.matrix().tocsc()
    usage = np.asarray(x.sum(0)).ravel()
    if only is not None:
        allowed = set(only)
        usage = np.where([str(v) in allowed for v in ratings.vocab.tolist()], usage, -1)
    top = most_used(usage, ratings.vocab.tolist(), top_k)
    # units x values: how many ratings of the unit hold the value.
    per_unit = sparse.csr_matrix(
        (np.ones(ratings.unit.size), (ratings.unit, np.arange(ratings.unit.size))),
        shape=(n_units, ratings.unit.size),
    ) @ x[:, top]
    per_unit = per_unit.tocsc()
    # a unit enters only through (ratings m, ratings holding the value h): count those pairs
    m_max = int(m_unit.max()) + 1 if n_units else 1
    base = np.bincount(m_unit, minlength=m_max).astype(np.int64)  # units with h = 0, per m
    out: dict[str, Stat] = {}
    for k, v in enumerate(top):
        lo, hi = per_unit.indptr[k], per_unit.indptr[k + 1]
        if hi - lo < min_conversations:  # conversations where any rating holds the value
            out[str(ratings.vocab[v])] = _nan(f"too few conversations: {hi - lo}", n_units)
            continue
        rows, h = per_unit.indices[lo:hi], per_unit.data[lo:hi].astype(np.int64)
        hits = np.bincount(m_unit[rows] * m_max + h, minlength=m_max * m_max)
        hits = hits.reshape(m_max, m_max)  # [m, h], h >= 1
        grid = hits.copy()
        grid[:, 0] = base - hits.sum(1)
        mm, hh = np.nonzero(grid)
        patterns = np.stack([mm - hh, hh], axis=1)
        counts = _Counts(patterns, grid[mm, hh].astype(float), ("absent", "present"), n_units)
        out[str(ratings.vocab[v])] = _alpha_counts(counts, "nominal", None, n_boot, seed)
    return out
