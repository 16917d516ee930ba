"""Coefficients for one label per rating: Krippendorff's alpha (nominal, ordinal, interval),
Fleiss' kappa, Gwet's AC1, percent agreement, and for two raters Cohen's kappa and accuracy.

Krippendorff 2011 (from the coincidence matrix; ordinal by rank-frequency distance, as the
`krippendorff` package), Fleiss 1971 (each unit's own number of ratings), Gwet 2008.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np
import pandas as pd

from annotator.measure.intervals import (
    _boot_patterns,
    _pattern_draws,
    _with_interval,
)
from annotator.measure.shapes import (
    RATER,
    RESPONSE_TYPE,
    RESPONSE_TYPE_LABELS,
    RESPONSE_TYPE_ORDER,
    UNIT,
    Level,
    Stat,
    _is_missing,
    _nan,
    as_long,
)

# --------------------------------------------------------------------------- categorical


@dataclass(frozen=True)
class _Counts:
    """Units x categories rating counts, compressed to distinct rows (patterns) with weights."""

    patterns: np.ndarray  # (P, V) ratings per category in a unit
    weights: np.ndarray  # (P,) number of units with that pattern
    categories: tuple[Hashable, ...]
    n_units: int  # all units in scope, including those with fewer than two ratings

    @property
    def pairable_units(self) -> int:
        return int(self.weights[self.patterns.sum(1) >= 2].sum())


def _counts(
    long: pd.DataFrame, label: str, categories: Sequence[Hashable] | None = None
) -> _Counts:
    units = pd.factorize(long[UNIT])[0]
    labels = _plain(long[label])
    cats = tuple(categories) if categories is not None else tuple(
        sorted(pd.unique(labels), key=str)
    )
    codes = _category_codes(labels.tolist(), cats)  # -1: a label outside `categories`
    keep = codes >= 0
    n_units = int(units.max()) + 1 if units.size else 0
    v = len(cats)
    flat = np.bincount(units[keep] * v + codes[keep], minlength=n_units * v)
    table = flat.reshape(n_units, v) if v else np.zeros((n_units, 0), int)
    if table.size == 0:
        return _Counts(np.zeros((0, v), int), np.zeros(0), cats, n_units)
    return counts_from_table(table, cats)


def _distinct_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a small-integer table and how often each occurs (fast path: one key)."""
    base = int(table.max()) + 1 if table.size else 1
    if table.shape[1] * math.log2(base + 1) < 62:
        key = table.astype(np.int64) @ (base ** np.arange(table.shape[1], dtype=np.int64))
        _, first, counts = np.unique(key, return_index=True, return_counts=True)
        return table[first], counts
    return np.unique(table, axis=0, return_counts=True)


def counts_from_table(table: np.ndarray, categories: Sequence[Hashable] | None = None) -> _Counts:
    """Units x categories count table (e.g. Fleiss' layout) -> the internal compressed form."""
    table = np.asarray(table, dtype=np.int64)
    cats = tuple(categories) if categories is not None else tuple(range(table.shape[1]))
    patterns, weights = _distinct_rows(table)
    return _Counts(patterns, weights.astype(float), cats, table.shape[0])


def _delta(level: Level, n_v: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    v = n_v.size
    if level == "nominal":
        return 1.0 - np.eye(v)
    if level == "ordinal":
        # Krippendorff's ordinal metric: (sum of n_g from c to k - (n_c + n_k) / 2)^2.
        cum = np.concatenate([[0.0], np.cumsum(n_v)])
        i, k = np.minimum.outer(np.arange(v), np.arange(v)), np.maximum.outer(
            np.arange(v), np.arange(v)
        )
        between = cum[k + 1] - cum[i]
        return (between - (n_v[i] + n_v[k]) / 2.0) ** 2
    if level == "interval":
        x = np.arange(v, dtype=float) if values is None else np.asarray(values, float)
        return np.subtract.outer(x, x) ** 2
    raise ValueError(f"unknown level of measurement: {level!r}")


def _alpha_terms(patterns: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pattern coincidence matrices o_p (P, V, V) for pairable patterns, and their mask."""
    m = patterns.sum(1)
    pair = m >= 2
    c = patterns[pair].astype(float)
    f = 1.0 / (m[pair] - 1.0)
    o = c[:, :, None] * c[:, None, :]
    idx = np.arange(c.shape[1])
    o[:, idx, idx] -= c
    return o * f[:, None, None], pair


def _alpha_from(o: np.ndarray, level: Level, values: np.ndarray | None) -> tuple[float, str | None]:
    n_v = o.sum(0)
    n = n_v.sum()
    if n <= 1:
        return float("nan"), "no unit has two or more ratings"
    d = _delta(level, n_v, values)
    expected = float(n_v @ d @ n_v)
    if expected <= 0:
        return float("nan"), "no variation: every pairable rating is the same category (0/0)"
    return 1.0 - (n - 1.0) * float((o * d).sum()) / expected, None


def _alpha_counts(
    counts: _Counts,
    level: Level = "nominal",
    values: np.ndarray | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> Stat:
    if counts.patterns.shape[0] == 0 or counts.pairable_units == 0:
        return _nan("no unit has two or more ratings")
    per, pair = _alpha_terms(counts.patterns, counts.weights)
    w = counts.weights[pair]
    value, reason = _alpha_from(np.tensordot(w, per, axes=1), level, values)
    stat = Stat(value=value, n_units=counts.pairable_units, reason=reason)
    if not stat.defined:
        return stat

    draws = _pattern_draws(counts.weights, n_boot, seed)[:, pair].astype(float)
    return _with_interval(stat, _alpha_samples(draws, per, level, values))


def _alpha_samples(draws: np.ndarray, per: np.ndarray, level: Level,
                   values: np.ndarray | None) -> np.ndarray:
    """`_alpha_from`'s value for each resample (a row of pattern counts, `draws`), NaN where
    undefined: every resample's coincidences in one matrix product, not one product a
    resample (the intervals of a few hundred per-value alphas took 0.4 s so)."""
    if level == "ordinal":  # its distances depend on each resample's marginals
        return np.array([_alpha_from(np.tensordot(w, per, axes=1), level, values)[0]
                         for w in draws])
    v = per.shape[1]
    o = (draws @ per.reshape(per.shape[0], v * v)).reshape(-1, v, v)
    n_v = o.sum(1)
    n = n_v.sum(1)
    d = _delta(level, np.zeros(v), values)
    expected = np.einsum("bi,ij,bj->b", n_v, d, n_v)
    observed = np.einsum("bij,ij->b", o, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (n - 1.0) * observed / expected
    return np.where((n > 1) & (expected > 0), alpha, np.nan)


def krippendorff_alpha(
    data: pd.DataFrame | np.ndarray,
    level: Level = "nominal",
    *,
    label: str = "label",
    order: Sequence[Hashable] | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> Stat:
    """Krippendorff's alpha for single labels.

    `order` lists the categories (required order for "ordinal"; numeric categories give the
    "interval" distances). Labels outside `order` are treated as missing; the note counts them.
    """
    long = as_long(data, label)
    values = None
    note = None
    if order is not None:
        allowed = {getattr(x, "value", x) for x in order}
        labels = _plain(long[label])
        outside = ~labels.isin(allowed)
        if outside.any():
            note = f"{int(outside.sum())} ratings outside the scale treated as missing"
            long = long.loc[~outside.to_numpy()]
        cats = [getattr(x, "value", x) for x in order]
        if level == "interval":
            values = np.asarray(cats, float)
    else:
        cats = None
        if level == "interval":
            cats = sorted(pd.unique(long[label]))
            values = np.asarray(cats, float)
        elif level == "ordinal":
            cats = sorted(pd.unique(long[label]))
    stat = _alpha_counts(_counts(long, label, cats), level, values, n_boot, seed)
    if note:
        stat = stat.model_copy(update={"reason": "; ".join(x for x in (stat.reason, note) if x)})
    return stat


def response_type_alpha(
    data: pd.DataFrame | np.ndarray,
    level: Literal["nominal", "ordinal"] = "nominal",
    *,
    label: str = RESPONSE_TYPE,
    n_boot: int = 0,
    seed: int = 0,
) -> Stat:
    """Alpha for the response type: nominal over all seven labels; ordinal over the six ordered
    ones, with "no values" treated as a missing rating (it is outside the order)."""
    order = RESPONSE_TYPE_LABELS if level == "nominal" else RESPONSE_TYPE_ORDER
    return krippendorff_alpha(data, level, label=label, order=order, n_boot=n_boot, seed=seed)


def _fleiss_from(patterns: np.ndarray, w: np.ndarray) -> tuple[float, str | None]:
    m = patterns.sum(1)
    pair = (m >= 2) & (w > 0)
    if not pair.any():
        return float("nan"), "no unit has two or more ratings"
    c, mm, ww = patterns[pair].astype(float), m[pair].astype(float), w[pair]
    p_i = ((c * (c - 1)).sum(1)) / (mm * (mm - 1))
    p_bar = float((ww * p_i).sum() / ww.sum())
    p_j = (ww[:, None] * c).sum(0) / float((ww * mm).sum())
    p_e = float((p_j**2).sum())
    if p_e >= 1.0 - 1e-15:
        return float("nan"), "no variation: a single category, chance agreement is 1 (0/0)"
    return (p_bar - p_e) / (1.0 - p_e), None


def _ac1_from(patterns: np.ndarray, w: np.ndarray, q: int) -> tuple[float, str | None]:
    m = patterns.sum(1)
    pair = (m >= 2) & (w > 0)
    rated = (m >= 1) & (w > 0)
    if not pair.any():
        return float("nan"), "no unit has two or more ratings"
    if q < 2:
        return float("nan"), "a single category: AC1 needs at least two (q - 1 = 0)"
    c, mm, ww = patterns[pair].astype(float), m[pair].astype(float), w[pair]
    p_a = float((ww * ((c * (c - 1)).sum(1) / (mm * (mm - 1)))).sum() / ww.sum())
    cr, mr, wr = patterns[rated].astype(float), m[rated].astype(float), w[rated]
    pi = (wr[:, None] * cr / mr[:, None]).sum(0) / wr.sum()
    p_e = float((pi * (1 - pi)).sum() / (q - 1))
    if p_e >= 1.0:
        return float("nan"), "chance agreement is 1 (0/0)"
    return (p_a - p_e) / (1.0 - p_e), None


def _pa_from(patterns: np.ndarray, w: np.ndarray) -> tuple[float, str | None]:
    m = patterns.sum(1)
    pair = (m >= 2) & (w > 0)
    if not pair.any():
        return float("nan"), "no unit has two or more ratings"
    c, mm, ww = patterns[pair].astype(float), m[pair].astype(float), w[pair]
    return float((ww * ((c * (c - 1)).sum(1) / (mm * (mm - 1)))).sum() / ww.sum()), None


def _pattern_stat(
    counts: _Counts,
    fn: Callable[[np.ndarray, np.ndarray], tuple[float, str | None]],
    n_boot: int,
    seed: int,
) -> Stat:
    if counts.patterns.shape[0] == 0:
        return _nan("no ratings")
    value, reason = fn(counts.patterns, counts.weights)
    stat = Stat(value=value, n_units=counts.pairable_units, reason=reason)
    if not stat.defined:
        return stat
    samples = _boot_patterns(
        counts.weights, lambda wb: fn(counts.patterns, wb)[0], n_boot, seed
    )
    return _with_interval(stat, samples)


def _as_counts(
    data: pd.DataFrame | np.ndarray | _Counts, label: str, categories: Sequence[Hashable] | None
) -> _Counts:
    if isinstance(data, _Counts):
        return data
    return _counts(as_long(data, label), label, categories)


def fleiss_kappa(
    data: pd.DataFrame | np.ndarray | _Counts,
    *,
    label: str = "label",
    categories: Sequence[Hashable] | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> Stat:
    """Fleiss' kappa (1971); units with unequal numbers of ratings use their own n_i."""
    counts = _as_counts(data, label, categories)
    return _pattern_stat(counts, _fleiss_from, n_boot, seed)


def gwet_ac1(
    data: pd.DataFrame | np.ndarray | _Counts,
    *,
    label: str = "label",
    categories: Sequence[Hashable] | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> Stat:
    """Gwet's AC1 (Gwet 2008; Handbook 2014 with missing ratings).

    q is the number of categories of the scale: pass `categories` (e.g. the seven response
    types) or it is the number observed.
    """
    counts = _as_counts(data, label, categories)
    q = len(counts.categories)
    return _pattern_stat(counts, lambda p, w: _ac1_from(p, w, q), n_boot, seed)


def percent_agreement(
    data: pd.DataFrame | np.ndarray | _Counts,
    *,
    label: str = "label",
    n_boot: int = 0,
    seed: int = 0,
) -> Stat:
    """Mean over pairable units of the share of rater pairs that agree (not chance-corrected)."""
    counts = _as_counts(data, label, None)
    return _pattern_stat(counts, _pa_from, n_boot, seed)


# --------------------------------------------------------------------------- two raters


def kappa_from_table(table: np.ndarray) -> tuple[float, str | None]:
    """Cohen's kappa of a confusion table (rows one rater, columns the other)."""
    total = table.sum()
    if total == 0:
        return float("nan"), "no shared units"
    p_o = np.trace(table) / total
    p_e = float((table.sum(0) / total) @ (table.sum(1) / total))
    if p_e >= 1.0 - 1e-15:
        return float("nan"), "no variation: both use one and the same category (0/0)"
    return float((p_o - p_e) / (1.0 - p_e)), None


def _category_codes(values: Sequence[Hashable], categories: Sequence[Hashable]) -> np.ndarray:
    """Each value's position in `categories`, -1 for a missing value or one not listed: the
    codes `pd.Categorical(values, categories=...)` gives, by a dict lookup of each distinct
    value (a Categorical of a list of 300,000 strings first makes them Arrow strings, which
    cost seconds; a lookup of each of 3.8 million values took 0.5 s)."""
    position = {category: i for i, category in enumerate(categories)}
    given = np.asarray(values, dtype=object)
    codes, distinct = pd.factorize(given)
    out = np.array([position.get(v, -1) for v in distinct.tolist()] + [-1], dtype=np.int64)[codes]
    missing = np.flatnonzero(codes < 0)  # None, NaN, pd.NA, which pandas takes for one value
    out[missing] = [position.get(v, -1) for v in given[missing].tolist()]
    return out


def _paired_table(
    a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable] | None
) -> tuple[np.ndarray, tuple[Hashable, ...]]:
    a = [getattr(x, "value", x) for x in a]
    b = [getattr(x, "value", x) for x in b]
    cats = tuple(labels) if labels is not None else tuple(sorted(set(a) | set(b), key=str))
    ia, ib = _category_codes(a, cats), _category_codes(b, cats)
    keep = (ia >= 0) & (ib >= 0)
    v = len(cats)
    table = np.bincount(ia[keep] * v + ib[keep], minlength=v * v).reshape(v, v)
    return table, cats


def _table_stat(
    table: np.ndarray, fn: Callable[[np.ndarray], tuple[float, str | None]], n_boot: int, seed: int
) -> Stat:
    n = int(table.sum())
    value, reason = fn(table)
    stat = Stat(value=value, n_units=n, reason=reason)
    if not stat.defined:
        return stat
    flat = table.ravel().astype(float)
    samples = _boot_patterns(flat, lambda w: fn(w.reshape(table.shape))[0], n_boot, seed)
    return _with_interval(stat, samples)


def cohen_kappa(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    *,
    labels: Sequence[Hashable] | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> Stat:
    """Cohen's kappa for two aligned label sequences (None = missing, pair dropped)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if not (_is_missing(x) or _is_missing(y))]
    if not pairs:
        return _nan("no shared units")
    table, _ = _paired_table([p[0] for p in pairs], [p[1] for p in pairs], labels)
    return _table_stat(table, kappa_from_table, n_boot, seed)


def accuracy_from_table(table: np.ndarray) -> tuple[float, str | None]:
    """Share of a confusion table on its diagonal."""
    total = table.sum()
    if total == 0:
        return float("nan"), "no shared units"
    return float(np.trace(table) / total), None


def pairwise_cohen_kappa(
    data: pd.DataFrame | np.ndarray,
    *,
    label: str = "label",
    labels: Sequence[Hashable] | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[tuple[str, str], Stat]:
    """Cohen's kappa for each pair of annotators over the units both rated, keyed (a, b), a < b."""
    long = as_long(data, label)
    plain = _plain(long[label])
    cats = tuple(labels) if labels is not None else tuple(sorted(pd.unique(plain), key=str))
    codes = _category_codes(plain.tolist(), cats)
    units = pd.factorize(long[UNIT])[0]
    rater_codes, raters = pd.factorize(long[RATER])
    n_units, v = (int(units.max()) + 1 if units.size else 0), len(cats)
    grid = np.full((n_units, len(raters)), -1, dtype=np.int64)
    grid[units, rater_codes] = codes
    order = sorted(range(len(raters)), key=lambda k: str(raters[k]))
    out: dict[tuple[str, str], Stat] = {}
    for x, ia in enumerate(order):
        for ib in order[x + 1 :]:
            a, b = grid[:, ia], grid[:, ib]
            both = (a >= 0) & (b >= 0)
            key = (str(raters[ia]), str(raters[ib]))
            if not both.any():
                out[key] = _nan("no shared units")
                continue
            table = np.bincount(a[both] * v + b[both], minlength=v * v).reshape(v, v)
            out[key] = _table_stat(table, kappa_from_table, n_boot, seed)
    return out


def _plain(labels: pd.Series) -> pd.Series:
    """Enum members (ResponseType) -> their values; other labels unchanged."""
    uniques = pd.unique(labels)
    if not any(isinstance(u, Enum) for u in uniques):
        return labels
    return labels.map({u: getattr(u, "value", u) for u in uniques})
