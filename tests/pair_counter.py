"""A second exact pair counter for set alpha, kept as a test oracle.

`agreement._AllPairCounter` counts every ordered pair of ratings by (overlap, size, size) from
every subset of every distinct set. This counter gets the same histogram another way: it counts
only pairs from different units, enumerating the subsets shared by two units (apriori pruning),
then adds the pairs within each unit directly. It was the alternative in `agreement` until
measurements showed the other always faster; the tests check that both give the same counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
from scipy import sparse

from annotator.measure.value_sets import SetRatings, _group, _moebius, _pack, _ranges, _SetAlphaData


def _subsets(vals: np.ndarray, r: int) -> np.ndarray:
    """(n, k) rows -> (n * C(k, r), r): every r-subset of every row, rows kept sorted."""
    idx = np.array(list(combinations(range(vals.shape[1]), r)), dtype=np.int64)
    return vals[:, idx].reshape(-1, r)


@dataclass(frozen=True)
class CrossLevel:
    """Subsets of size r shared by ratings of two or more units (the only ones that matter)."""

    r: int
    rec_unit: np.ndarray  # unit of each kept record (rating, subset)
    combo: np.ndarray  # (subset, size of the rating) group of each record
    combo_t: np.ndarray
    combo_a: np.ndarray
    n_t: int
    group: sparse.csr_matrix  # (subset, unit) x size: ratings of that unit holding the subset
    group_unit: np.ndarray


@dataclass(frozen=True)
class CrossPairCounter:
    """Counts ordered pairs of ratings from DIFFERENT units by (size a, size b, overlap t).

    F_r(a, b) = sum over r-subsets T of [C_a(T) C_b(T) - sum_u c_u(T, a) c_u(T, b)], with
    C_a(T) the ratings of size a holding T and c_u the same within unit u, counts cross-unit
    pairs weighted by C(t, r); Moebius inversion gives the exact count per overlap t. A subset
    held in one unit only adds nothing, and a subset is held in two units only if all its
    (r-1)-subsets are (apriori), so level r enumerates only subsets of values that lie in a
    shared (r-1)-subset of the same rating. Unit weights (the bootstrap) enter as w_u per
    rating in C and w_u^2 in the within-unit term.
    """

    max_size: int
    levels: list[CrossLevel]
    n_records: int

    @classmethod
    def build(cls, ratings: SetRatings, keep: np.ndarray) -> CrossPairCounter:
        sizes = ratings.sizes
        rows = np.flatnonzero(keep & (sizes > 0))
        max_size = int(sizes[rows].max()) if rows.size else 0
        bits = max(1, int(max(ratings.vocab.size - 1, 1)).bit_length())
        # alive values of each rating, as (rating, value) pairs; level 1: all of them
        alive_r = np.repeat(rows, sizes[rows])
        alive_v = ratings.indices[_ranges(ratings.indptr, rows)]
        levels: list[CrossLevel] = []
        n_records = 0
        for r in range(1, max_size + 1):
            if alive_r.size == 0:
                break
            # ratings with at least r alive values -> all r-subsets of their alive values
            cnt = np.bincount(alive_r, minlength=sizes.size)
            starts = np.concatenate([[0], np.cumsum(cnt)])
            subs, owners = [], []
            for k in range(r, int(cnt.max()) + 1):
                rk = np.flatnonzero(cnt == k)
                if rk.size == 0:
                    continue
                vals = alive_v[starts[rk][:, None] + np.arange(k)]
                subs.append(_subsets(vals, r))
                owners.append(np.repeat(rk, math.comb(k, r)))
            if not subs:
                break
            sub = np.concatenate(subs)
            owner = np.concatenate(owners)
            t_id, _ = _group(_pack(sub, bits))
            unit = ratings.unit[owner]
            # keep subsets held in two or more units
            tu, _ = _group([t_id, unit])
            first_tu = np.zeros(int(tu.max()) + 1, np.int64)
            first_tu[tu] = t_id
            units_per_t = np.bincount(first_tu, minlength=int(t_id.max()) + 1)
            shared = units_per_t[t_id] >= 2
            if not shared.any():
                break
            t_id, unit, owner, sub = t_id[shared], unit[shared], owner[shared], sub[shared]
            a = sizes[owner]
            t_id, n_t = _group([t_id])
            combo, n_combo = _group([t_id * (max_size + 1) + a])
            combo_t = np.zeros(n_combo, np.int64)
            combo_a = np.zeros(n_combo, np.int64)
            combo_t[combo], combo_a[combo] = t_id, a
            g, n_g = _group([t_id, unit])
            g_unit = np.zeros(n_g, np.int64)
            g_unit[g] = unit
            group = sparse.csr_matrix(
                (np.ones(g.size), (g, a)), shape=(n_g, max_size + 1)
            )
            levels.append(CrossLevel(r, unit, combo, combo_t, combo_a, n_t, group, g_unit))
            n_records += int(owner.size)
            # values of shared r-subsets stay alive for level r + 1
            pairs = np.unique(np.repeat(owner, r) * (ratings.vocab.size + 1) + sub.ravel())
            alive_r, alive_v = pairs // (ratings.vocab.size + 1), pairs % (ratings.vocab.size + 1)
        return cls(max_size, levels, n_records)

    def cross_hist(self, unit_w: np.ndarray) -> np.ndarray:
        """N[a, b, t]: weighted ordered cross-unit pairs of non-empty ratings by overlap t."""
        a_max = self.max_size
        f = np.zeros((a_max + 1, a_max + 1, a_max + 1))  # F[r, a, b]
        for lv in self.levels:
            cnt = np.bincount(lv.combo, weights=unit_w[lv.rec_unit], minlength=lv.combo_t.size)
            c = sparse.csr_matrix((cnt, (lv.combo_t, lv.combo_a)), shape=(lv.n_t, a_max + 1))
            g = lv.group
            within = g.T @ sparse.diags(unit_w[lv.group_unit] ** 2) @ g
            f[lv.r] = (c.T @ c).toarray() - within.toarray()
        return _moebius(f, unit_w)


@dataclass(frozen=True)
class OracleCounter:
    """Cross-unit pairs from CrossPairCounter plus the within-unit ones: every ordered pair of
    non-empty pairable ratings, as `_AllPairCounter.pair_hist` counts them."""

    cross: CrossPairCounter
    data: _SetAlphaData

    @property
    def n_records(self) -> int:
        return self.cross.n_records

    def pair_hist(self, unit_w: np.ndarray, unit: np.ndarray) -> np.ndarray:
        d = self.data
        hist = self.cross.cross_hist(unit_w)
        sizes = d.ratings.sizes
        keep = d.pairable_unit[unit] & (sizes > 0)
        w2 = unit_w[unit] ** 2
        # i = j: a rating with itself, overlap = its size
        a = sizes[keep]
        np.add.at(hist, (a, a, a), w2[keep])
        # i != j in the same unit, both orders
        i, j, t = d.pair_i, d.pair_j, d.overlap.astype(np.int64)
        ok = keep[i] & keep[j] & (t > 0)
        i, j, t = i[ok], j[ok], t[ok]
        np.add.at(hist, (t, sizes[i], sizes[j]), w2[i])
        np.add.at(hist, (t, sizes[j], sizes[i]), w2[i])
        return hist


def with_cross_counter(d: _SetAlphaData) -> _SetAlphaData:
    """`d` with its pair counts taken from the oracle instead of `_AllPairCounter`."""
    pairable = d.pairable_unit[d.ratings.unit]
    return replace(d, counter=OracleCounter(CrossPairCounter.build(d.ratings, pairable), d),
                   _hist=None)
