"""Agreement statistics, inter-annotator and model-human: exact, vectorised, bootstrapped.

Pure functions over numpy arrays and pandas frames; no database, no taxonomy loader.

Input shapes
------------
Every inter-annotator function takes ``data`` in one of three shapes:

* a long frame with columns ``conversation_id``, ``annotator`` and the label column (``label=``,
  e.g. ``"response_type"`` or ``"ai_values"``); a (conversation, annotator) pair that appears
  twice keeps its last row;
* a wide frame, index = units (conversations), columns = raters, cells = labels;
* a 2-D array, rows = units, columns = raters (note: the ``krippendorff`` package takes the
  transpose, raters x units).

Missing ratings are ``None``/``NaN`` cells or absent rows. A single label is any hashable
(``str`` for the response type). A value set is a tuple, list, set or frozenset of value names;
an EMPTY set is a real label ("annotated, no values"), a ``None`` cell is a missing rating.

Edge cases (each gives a number, or NaN with ``Stat.reason``; nothing raises on data shape):

* units with one rating are not pairable: Krippendorff's alpha, Fleiss' kappa and percent
  agreement ignore them (``n_units`` counts the pairable units used);
* no pairable unit at all -> NaN, "no unit has two or more ratings";
* no variation (every pairable rating identical, or a single category) -> NaN: chance-corrected
  coefficients are 0/0 there. Agreement is perfect but the data cannot tell it from chance, so
  we do not report a silent 1.0; percent agreement (not chance-corrected) still reports 1.0;
* missing annotators: alpha uses every pairable unit (its standard treatment); Fleiss' kappa,
  AC1 and percent agreement use each unit's own number of ratings (Fleiss 1971 assumes a
  constant number; with a constant number the formulas are his); Cohen's kappa uses the units
  both raters rated;
* empty value sets: two empty sets are identical (distance 0), an empty and a non-empty set are
  disjoint (distance 1, as MASI and Jaccard give for disjoint sets);
* response type "no values" sits outside the support-to-resistance order: nominal statistics
  treat it as a category; ORDINAL alpha treats it as a missing rating (the number dropped is in
  the note).

Statistics
----------
* Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"),
  nominal/ordinal/interval, from the coincidence matrix; ordinal uses the order
  ``models.ORDERED_RESPONSE_TYPES`` and Krippendorff's rank-frequency distance, as the
  ``krippendorff`` package does (tests check both agree).
* Alpha for value sets with MASI (Passonneau 2006) or Jaccard distance. MASI = 1 - J * M, with J
  the Jaccard index and M = 1 (identical), 2/3 (one set contains the other), 1/3 (they overlap),
  0 (disjoint); ``masi_weights="nltk"`` uses the rounded 0.67/0.33 that older nltk releases
  used. Vectorised: the expected disagreement needs the distance of every pair of the n
  ratings (n^2 / 2, 3e11 at paper scale); it depends only on the sizes a, b and the overlap t of
  the two sets, so we count pairs by (a, b, t): F_r(a, b) = sum over r-subsets T of
  count_a(T) * count_b(T) counts pairs weighted by C(t, r), and Moebius inversion
  N(t) = sum_r (-1)^(r-t) C(r, t) F_r gives the exact count of pairs with overlap t, in integers.
  The subsets are those of the DISTINCT sets (cost sum 2^a - 1 over distinct sets; coarse
  levels have few). The tests check the counts against a second exact counter that keeps only
  subsets shared by two units (apriori pruning, tests/pair_counter.py).
* Per-value binary alpha (value present / absent in each rating) for the K most used values.
* Fleiss' kappa (Fleiss 1971), Gwet's AC1 (Gwet 2008), percent agreement (mean over units of
  the share of agreeing rater pairs), Cohen's kappa for each pair of annotators.
* Model-human: per prompt version, against gold and against each annotator: response-type
  accuracy, Cohen's kappa, confusion matrix; value precision, recall, F1 (micro and macro, macro
  as scikit-learn's ``zero_division=0`` over the values either side used) and mean Jaccard
  (two empty sets count 1), at each taxonomy level.
* Taxonomy levels: 0 = leaf value, 1 = level-1 cluster, 2 = level-2 cluster, 3 = top category.
  ``level_maps[level]`` maps a value name (or node id) to its ancestor id at that level; a
  value not in the map (a free value) stays itself at every level.

Bootstrap
---------
95% percentile intervals over conversations: each resample draws the conversations in scope
with replacement, seeded (``seed``) and so reproducible. Statistics that depend on a unit only
through a small pattern (its category counts, its confusion cell, its (tp, fp, fn)) resample the
pattern counts from the equivalent multinomial, which is the same distribution at a fraction of
the cost; value-set alpha and macro scores re-weight units exactly per resample and are skipped
(with a note) when units x resamples exceeds ``boot_budget``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import chain, combinations
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import sparse

from annotator.models import ORDERED_RESPONSE_TYPES, ResponseType

UNIT, RATER = "conversation_id", "annotator"
RESPONSE_TYPE = "response_type"
VALUE_FIELDS = ("ai_values", "human_values")
LEVEL_NAMES: dict[int, str] = {0: "leaf", 1: "cluster-1", 2: "cluster-2", 3: "top"}
RESPONSE_TYPE_ORDER: tuple[str, ...] = tuple(r.value for r in ORDERED_RESPONSE_TYPES)
RESPONSE_TYPE_LABELS: tuple[str, ...] = tuple(r.value for r in ResponseType)
MASI_WEIGHTS: dict[str, tuple[float, float]] = {"exact": (2 / 3, 1 / 3), "nltk": (0.67, 0.33)}

Level = Literal["nominal", "ordinal", "interval"]
SetDistance = Literal["masi", "jaccard"]
MasiWeights = Literal["exact", "nltk"]

HOW_TO_READ = """\
How to read these figures
- Krippendorff's alpha: 1 = perfect agreement, 0 = no better than chance, below 0 = systematic
  disagreement. Krippendorff's rule: alpha >= .800 is reliable; .667 <= alpha < .800 allows only
  tentative conclusions; below .667, do not rely on the labels.
- MASI / Jaccard alpha compare value SETS: partial overlap earns partial credit (MASI also
  rewards one set containing the other). Higher taxonomy levels merge near-synonyms, so alpha
  usually rises from leaf to top category: a big rise means annotators agree on the gist but
  pick different leaf names.
- Cohen's and Fleiss' kappa mislead when one label dominates (the prevalence paradox): with 90%
  of conversations "neutral", two annotators agreeing 90% of the time can get kappa near 0,
  because chance agreement is already high. Gwet's AC1 corrects chance differently and stays
  stable there; that is why it is reported. Read kappa next to percent agreement and AC1.
- [low, high] is a 95% bootstrap interval over conversations; n is the number of units behind
  the figure. A wide interval or small n means: collect more before deciding.
- NaN is not zero: the note says why the statistic is undefined (e.g. no variation, too few
  units).
"""


def _null_to_nan(v: Any) -> Any:
    """JSON has no NaN: pydantic writes it as null; read null back as NaN."""
    return float("nan") if v is None else v


class Stat(BaseModel):
    """One statistic: point value, 95% bootstrap interval, units used, and why it may be NaN."""

    value: float
    low: float | None = None
    high: float | None = None
    n_units: int = 0
    reason: str | None = None

    _nan_from_null = field_validator("value", mode="before")(lambda v: _null_to_nan(v))

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)


def _nan(reason: str, n_units: int = 0) -> Stat:
    return Stat(value=float("nan"), n_units=n_units, reason=reason)


# --------------------------------------------------------------------------- input shapes


def _is_missing(x: Any) -> bool:
    if x is None or x is pd.NA or x is pd.NaT:
        return True
    return isinstance(x, float) and math.isnan(x)


def as_long(data: pd.DataFrame | np.ndarray, label: str = "label") -> pd.DataFrame:
    """Any accepted input shape -> long frame (conversation_id, annotator, label), no missing."""
    if isinstance(data, pd.DataFrame) and {UNIT, RATER, label} <= set(data.columns):
        frame = data[[UNIT, RATER, label]]
    else:
        wide = data if isinstance(data, pd.DataFrame) else pd.DataFrame(np.asarray(data, object))
        stacked = wide.stack(future_stack=True)
        frame = pd.DataFrame(
            {
                UNIT: stacked.index.get_level_values(0),
                RATER: stacked.index.get_level_values(1),
                label: stacked.to_numpy(),
            }
        )
    keep = ~frame[label].isna().to_numpy(bool)  # None/NaN cells; tuples are never NA
    frame = frame.loc[keep]
    # A re-submitted annotation replaces the earlier one: keep the last row per (unit, rater).
    return frame.drop_duplicates([UNIT, RATER], keep="last").reset_index(drop=True)


# --------------------------------------------------------------------------- bootstrap


def _percentile(samples: np.ndarray) -> tuple[float | None, float | None, str | None]:
    ok = samples[~np.isnan(samples)]
    if ok.size < max(10, samples.size // 2):
        return None, None, f"interval omitted: only {ok.size} of {samples.size} resamples defined"
    low, high = np.percentile(ok, [2.5, 97.5])
    note = None
    if ok.size < samples.size:
        note = f"{samples.size - ok.size} of {samples.size} resamples undefined, dropped"
    return float(low), float(high), note


def _pattern_draws(
    weights: np.ndarray, n_boot: int, seed: int | np.random.Generator
) -> np.ndarray:
    """`n_boot` resamples of the units as pattern counts (multinomial: same distribution as
    drawing the units with replacement). A Generator as `seed` continues its own stream, so a
    caller can chain several statistics on one reproducible stream."""
    total = int(weights.sum())
    if n_boot <= 0 or total == 0:
        return np.empty((0, weights.size))
    rng = np.random.default_rng(seed)
    return rng.multinomial(total, weights / total, size=n_boot)


def _boot_patterns(
    weights: np.ndarray, stat: Callable[[np.ndarray], float], n_boot: int,
    seed: int | np.random.Generator,
) -> np.ndarray:
    """Resample units by resampling their pattern counts (multinomial, same distribution)."""
    return np.array([stat(d.astype(float)) for d in _pattern_draws(weights, n_boot, seed)])


def paired_stats(
    weights: np.ndarray,
    first: Callable[[np.ndarray], float],
    second: Callable[[np.ndarray], float],
    *,
    n_units: tuple[int, int, int],
    undefined: tuple[str, str, str],
    n_boot: int,
    seed: int | np.random.Generator,
) -> tuple[Stat, Stat, Stat]:
    """Two statistics of the same units and their difference first - second, each with a 95%
    interval. Units enter through pattern counts `weights`; the three see the same resamples,
    so the difference's interval is that of the paired difference. `undefined[i]` is the
    reason given when the i-th figure is NaN."""
    draws = _pattern_draws(weights, n_boot, seed).astype(float)
    firsts = np.array([first(d) for d in draws])
    seconds = np.array([second(d) for d in draws])
    a, b = first(weights), second(weights)
    out = []
    for value, samples, n, why in zip((a, b, a - b), (firsts, seconds, firsts - seconds),
                                      n_units, undefined, strict=True):
        stat = Stat(value=value, n_units=n, reason=why if math.isnan(value) else None)
        out.append(_with_interval(stat, samples))
    return out[0], out[1], out[2]


def _boot_units(
    n_units: int, stat: Callable[[np.ndarray], float], n_boot: int, seed: int
) -> np.ndarray:
    """Resample units with replacement; `stat` takes per-unit multiplicities."""
    if n_boot <= 0 or n_units == 0:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        w = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units).astype(float)
        out[b] = stat(w)
    return out


def _with_interval(stat: Stat, samples: np.ndarray) -> Stat:
    if samples.size == 0 or not stat.defined:
        return stat
    low, high, note = _percentile(samples)
    if low is not None and high is not None and not low <= stat.value <= high:
        # Happens for ratios driven by rare categories (macro scores): resamples lose or
        # duplicate them, so the bootstrap distribution is shifted. Say so rather than hide it.
        note = "; ".join(x for x in (note, "value outside its bootstrap interval: the "
                                     "statistic is biased under resampling (rare labels)") if x)
    reason = "; ".join(x for x in (stat.reason, note) if x) or None
    return stat.model_copy(update={"low": low, "high": high, "reason": reason})


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
    codes = pd.Categorical(labels, categories=list(cats)).codes
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

    def one(wb: np.ndarray) -> float:
        return _alpha_from(np.tensordot(wb[pair], per, axes=1), level, values)[0]

    return _with_interval(stat, _boot_patterns(counts.weights, one, n_boot, seed))


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


def _paired_table(
    a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable] | None
) -> tuple[np.ndarray, tuple[Hashable, ...]]:
    a = [getattr(x, "value", x) for x in a]
    b = [getattr(x, "value", x) for x in b]
    cats = tuple(labels) if labels is not None else tuple(sorted(set(a) | set(b), key=str))
    ia = pd.Categorical(a, categories=list(cats)).codes
    ib = pd.Categorical(b, categories=list(cats)).codes
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
    codes = pd.Categorical(plain, categories=list(cats)).codes.astype(np.int64)
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
    n = unit.size
    v = max(int(vocab.size), 1)
    key = np.unique(rating_of.astype(np.int64) * v + codes.astype(np.int64))
    rating, ids = key // v, key % v
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rating, minlength=n))]).astype(np.int64)
    return SetRatings(unit, indptr, ids.astype(np.int64), vocab, units, raters)


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
    """Exact group ids for rows given as several int64 key columns (hash factorize per column)."""
    if len(words) == 1:
        uniq, inv = np.unique(words[0], return_inverse=True)
        return inv.astype(np.int64).ravel(), int(uniq.size)
    codes = pd.factorize(words[0])[0].astype(np.int64)
    for w in words[1:]:
        c2 = pd.factorize(w)[0].astype(np.int64)
        # both codes < 2**31 here, so the combined key is exact in int64
        codes = pd.factorize(codes * (int(c2.max()) + 1) + c2)[0].astype(np.int64)
    return codes, (int(codes.max()) + 1 if codes.size else 0)


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


@dataclass(frozen=True)
class _AllPairCounter:
    """Counts ALL ordered pairs of ratings (same unit and i = j included) by (a, b, t), from
    every subset of every DISTINCT set. Cheap when few distinct sets exist (upper taxonomy
    levels: at most 2^5 - 1 top-category sets); exponential in set size otherwise."""

    max_size: int
    combos: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]  # per r: subset, size, owner
    distinct_of: np.ndarray  # rating -> distinct set, -1 for excluded or empty ratings
    n_distinct: int
    n_records: int

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
        max_size = max(vals_by_size, default=0)
        n_vocab = max(int(ratings.vocab.size), 1)
        bits = max(1, (n_vocab - 1).bit_length())
        per_word = max(1, 62 // bits)
        combos, n_records = [], 0
        for r in range(1, max_size + 1):
            words: list[list[np.ndarray]] = []
            owner, owner_size = [], []
            for a, (vals, start) in vals_by_size.items():
                if a < r:
                    continue
                idx = np.array(list(combinations(range(a), r)), dtype=np.int64)
                # pack each r-subset straight from the set's columns: no (n, C, r) temporary
                block = []
                for w0 in range(0, r, per_word):
                    key = vals[:, idx[:, w0]].astype(np.int64)
                    for k in range(w0 + 1, min(r, w0 + per_word)):
                        key |= vals[:, idx[:, k]].astype(np.int64) << (bits * (k - w0))
                    block.append(key.ravel())
                words.append(block)
                owner.append(np.repeat(np.arange(vals.shape[0]) + start, idx.shape[0]))
                owner_size.append(np.full(vals.shape[0] * idx.shape[0], a, dtype=np.int8))
            cols = [np.concatenate([b[k] for b in words]) for k in range(len(words[0]))]
            if len(cols) == 1 and (1 << (bits * r)) <= 4 * cols[0].size:
                # the packed key is a row index no sparser than the records: skip the sort
                t_row, n_t = cols[0], 1 << (bits * r)
            else:
                t_row, n_t = _group(cols)
            own, size = np.concatenate(owner), np.concatenate(owner_size)
            combos.append((t_row, size, own, n_t))
            n_records += own.size
        return cls(max_size, combos, distinct_of, n_distinct, n_records)

    def pair_hist(self, unit_w: np.ndarray, unit: np.ndarray) -> np.ndarray:
        a_max = self.max_size
        ok = self.distinct_of >= 0
        dw = np.bincount(self.distinct_of[ok], weights=unit_w[unit[ok]],
                         minlength=self.n_distinct)
        f = np.zeros((a_max + 1, a_max + 1, a_max + 1))
        for r, (t_row, size, own, n_t) in enumerate(self.combos, start=1):
            # duplicates (same subset, same size) are summed by the sparse constructor
            c = sparse.csr_matrix((dw[own], (t_row, size)), shape=(n_t, a_max + 1))
            f[r] = (c.T @ c).toarray()
        return _moebius(f, unit_w)


def _moebius(f: np.ndarray, unit_w: np.ndarray) -> np.ndarray:
    """F[r, a, b] (pairs weighted by C(t, r)) -> N[t, a, b] (pairs with overlap exactly t)."""
    a_max = f.shape[0] - 1
    hist = np.zeros_like(f)
    for t in range(1, a_max + 1):
        for r in range(t, a_max + 1):
            hist[t] += (-1) ** (r - t) * math.comb(r, t) * f[r]
    if np.all(unit_w == np.rint(unit_w)):
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
    counter: _AllPairCounter
    _hist: np.ndarray | None = None

    def hist(self, unit_w: np.ndarray) -> np.ndarray:
        return self.counter.pair_hist(unit_w, self.ratings.unit)

    def point_hist(self) -> np.ndarray:
        if self._hist is None:
            self._hist = self.hist(np.ones(self.m_unit.size))
        return self._hist

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
    # Every subset of every distinct set: measured faster at every taxonomy level of the
    # synthetic paper-scale study than an apriori-pruned count of the subsets shared by two
    # units (that counter is now a test oracle: tests/pair_counter.py).
    counter = _AllPairCounter.build(ratings, pairable)
    return _SetAlphaData(ratings, i, j, overlap, m_unit, pairable_unit, empties, counter)


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
    cost = float(d.counter.n_records + d.ratings.unit.size + n_units_all) * n_boot
    if cost > boot_budget:
        note = (f"interval omitted: ({d.counter.n_records:,} subset records + "
                f"{d.ratings.unit.size:,} ratings + {n_units_all:,} units) x {n_boot} "
                f"resamples exceeds the budget {boot_budget:.0e}")
        return stat.model_copy(update={"reason": note})

    def one(w: np.ndarray) -> float:
        hist = d.hist(w)
        return _set_alpha_value(d, w, observed, hist, distance, masi_weights)[0]

    return _with_interval(stat, _boot_units(n_units_all, one, n_boot, seed))


def per_value_alpha(
    data: pd.DataFrame | np.ndarray | SetRatings,
    *,
    label: str = "ai_values",
    top_k: int = 50,
    level_map: Mapping[str, str] | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, Stat]:
    """Binary nominal alpha (value in the set or not) for the `top_k` most used values."""
    ratings = data if isinstance(data, SetRatings) else set_ratings(data, label)
    ratings = map_level(ratings, level_map)
    n_units = ratings.units.size
    m_unit = np.bincount(ratings.unit, minlength=n_units)
    x = ratings.matrix().tocsc()
    usage = np.asarray(x.sum(0)).ravel()
    top = np.argsort(-usage, kind="stable")[:top_k]
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


# --------------------------------------------------------------------------- model vs human


class ConfusionMatrix(BaseModel):
    """Rows: reference (gold or annotator); columns: model."""

    scope: str
    labels: list[str]
    counts: list[list[int]]


def _aligned(model: pd.DataFrame, reference: pd.DataFrame, label: str) -> pd.DataFrame:
    left = model[[UNIT, label]].drop_duplicates(UNIT, keep="last")
    right = reference[[UNIT, label]].drop_duplicates(UNIT, keep="last")
    both = left.merge(right, on=UNIT, suffixes=("_model", "_ref"))
    keep = ~(both[f"{label}_model"].isna() | both[f"{label}_ref"].isna())
    return both.loc[keep.to_numpy()]


def response_type_scores(
    model: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    label: str = RESPONSE_TYPE,
    n_boot: int = 0,
    seed: int = 0,
) -> tuple[Stat, Stat, np.ndarray]:
    """Accuracy, Cohen's kappa and the confusion matrix (rows reference, columns model) over
    conversations both labelled, in the order of RESPONSE_TYPE_LABELS."""
    both = _aligned(model, reference, label)
    if both.empty:
        z = np.zeros((len(RESPONSE_TYPE_LABELS),) * 2, dtype=np.int64)
        return _nan("no shared conversations"), _nan("no shared conversations"), z
    table, _ = _paired_table(both[f"{label}_ref"].tolist(), both[f"{label}_model"].tolist(),
                             RESPONSE_TYPE_LABELS)
    acc = _table_stat(table, accuracy_from_table, n_boot, seed)
    kap = _table_stat(table, kappa_from_table, n_boot, seed)
    return acc, kap, table


def micro_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, w: np.ndarray
                 ) -> dict[str, float]:
    """Micro precision, recall and F1 of units with counts (tp, fp, fn) and weights w."""
    stp, sfp, sfn = float(w @ tp), float(w @ fp), float(w @ fn)
    nan = float("nan")
    return {
        "precision": stp / (stp + sfp) if stp + sfp > 0 else nan,
        "recall": stp / (stp + sfn) if stp + sfn > 0 else nan,
        "f1": 2 * stp / (2 * stp + sfp + sfn) if stp + sfp + sfn > 0 else nan,
    }


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation of paired values, ties at their average rank (Pearson's r
    of the ranks); None when one side has no ranking (all values equal)."""
    a, b = pd.Series(x, dtype=float), pd.Series(y, dtype=float)
    if a.nunique() < 2 or b.nunique() < 2:
        return None
    return float(a.rank().corr(b.rank()))


def jaccard_index(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Per unit |model & reference| / |model | reference| from its counts; two empty sets: 1."""
    union = tp + fp + fn
    return np.where(union > 0, tp / np.where(union > 0, union, 1), 1.0)


def per_value_scores(
    tp: np.ndarray, predicted: np.ndarray, reference: np.ndarray, zero_division: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per value: precision, recall and F1 from its true positives and the times the model and
    the reference name it; a ratio over zero is `zero_division` (scikit-learn's name)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), zero_division)
        r = np.where(reference > 0, tp / np.where(reference > 0, reference, 1), zero_division)
        f = 2 * tp / (predicted + reference)
    return p, r, f


@dataclass(frozen=True)
class SetCounts:
    """Model and reference sets of paired ratings (`pair_sets`), one row per unit."""

    predicted: sparse.csr_matrix  # units x values: the model names the value
    reference: sparse.csr_matrix
    hits: sparse.csr_matrix  # both name it
    tp: np.ndarray  # (U,) per unit
    fp: np.ndarray
    fn: np.ndarray


def set_counts(r: SetRatings) -> SetCounts:
    """True positives, false positives and false negatives of each unit of paired ratings."""
    x = r.matrix()
    is_model = r.raters == "model"
    pm = x[np.flatnonzero(is_model)]
    pr = x[np.flatnonzero(~is_model)]
    # ratings are sorted by unit and each unit has exactly one of each: rows align.
    tp_m = pm.multiply(pr).tocsr()
    tp = np.asarray(tp_m.sum(1)).ravel()
    fp = np.asarray(pm.sum(1)).ravel() - tp
    fn = np.asarray(pr.sum(1)).ravel() - tp
    return SetCounts(pm, pr, tp_m, tp, fp, fn)


def _macro(tp: sparse.csr_matrix, pred: sparse.csr_matrix, ref: sparse.csr_matrix,
           w: np.ndarray) -> dict[str, float]:
    tpv = tp.T @ w
    pv = pred.T @ w
    rv = ref.T @ w
    used = (pv > 0) | (rv > 0)
    if not used.any():
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan")}
    p, r, f = per_value_scores(tpv[used], pv[used], rv[used], 0.0)
    return {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean())}


VALUE_SCORE_KEYS = ("micro_precision", "micro_recall", "micro_f1", "macro_precision",
                    "macro_recall", "macro_f1", "mean_jaccard")


def value_scores(
    model: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    label: str = "ai_values",
    level_map: Mapping[str, str] | None = None,
    n_boot: int = 0,
    seed: int = 0,
    boot_budget: float = 1e8,
) -> dict[str, Stat]:
    """Precision, recall, F1 (micro and macro) and mean Jaccard of model value sets against a
    reference, at the level given by `level_map`; keys as in VALUE_SCORE_KEYS."""
    leaf = _model_ref_ratings(model, reference, label)
    if leaf is None:
        return {k: _nan("no shared conversations") for k in VALUE_SCORE_KEYS}
    return _value_scores(map_level(leaf, level_map), n_boot, seed, boot_budget)


def value_scores_of_pairs(
    leaf: SetRatings | None,
    level_maps: Mapping[int, Mapping[str, str] | None],
    *,
    n_boot: int = 0,
    seed: int = 0,
    boot_budget: float = 1e8,
) -> dict[int, dict[str, Stat]]:
    """`value_scores` at several taxonomy levels (`level_maps[level]` is None for the leaf) of
    sets already paired (`pair_sets`): the frames are aligned once, and one model scored against
    several references encodes each frame once."""
    if leaf is None:
        return {
            level: {k: _nan("no shared conversations") for k in VALUE_SCORE_KEYS}
            for level in level_maps
        }
    return {
        level: _value_scores(map_level(leaf, level_map), n_boot, seed, boot_budget)
        for level, level_map in level_maps.items()
    }


def _model_ref_ratings(model: pd.DataFrame, reference: pd.DataFrame,
                       label: str) -> SetRatings | None:
    """Model and reference sets of the conversations both labelled, as one SetRatings."""
    vocab = Vocabulary()
    return pair_sets(encode_sets(model, label, vocab), encode_sets(reference, label, vocab),
                     vocab.names())


class Vocabulary:
    """Value names -> codes, in order of first appearance, shared by the columns encoded with
    it so that their codes compare."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def encode(self, names: list[str]) -> np.ndarray:
        # hash the names in C (factorize), then look up only the distinct ones in Python
        local, uniques = pd.factorize(pd.Series(names, dtype=object), use_na_sentinel=False)
        codes = self.codes
        mapping = np.fromiter((codes.setdefault(n, len(codes)) for n in uniques.tolist()),
                              dtype=np.int64, count=len(uniques))
        return mapping[local] if len(names) else np.zeros(0, np.int64)

    def names(self) -> np.ndarray:
        return np.array(list(self.codes), dtype=object)


@dataclass(frozen=True)
class SetColumn:
    """One labeller's value sets, one per unit, as CSR over a `Vocabulary`.

    Built once per frame and field: pairing a model's sets with several references (gold, each
    annotator) then costs array gathers, not a pass over Python lists per pair.
    """

    units: np.ndarray  # distinct unit labels: each unit's last row, rows with a missing cell out
    indptr: np.ndarray
    codes: np.ndarray  # sorted and distinct within a unit


def encode_sets(frame: pd.DataFrame, label: str, vocab: Vocabulary) -> SetColumn:
    """The last row of each unit (a re-submitted label replaces the earlier one), as the
    model-vs-reference scores align them; a unit whose last cell is missing is left out."""
    last = frame[[UNIT, label]].drop_duplicates(UNIT, keep="last")
    cells = last[label].tolist()
    present = np.fromiter((type(c) in _SET_TYPES or not _is_missing(c) for c in cells),
                          dtype=bool, count=len(cells))
    units = last[UNIT].to_numpy(dtype=object)[present]
    cells = [c for c, keep in zip(cells, present, strict=True) if keep]
    lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
    codes = vocab.encode(list(chain.from_iterable(cells)))
    # sort and de-duplicate each set: one unique over (row, code) keys
    n_codes = max(len(vocab.codes), 1)
    key = np.unique(np.repeat(np.arange(len(cells), dtype=np.int64), lengths) * n_codes + codes)
    row, codes = key // n_codes, key % n_codes
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=len(cells)))])
    return SetColumn(units, indptr.astype(np.int64), codes.astype(np.int64))


def pair_sets(model: SetColumn, reference: SetColumn, names: np.ndarray) -> SetRatings | None:
    """The units both labelled, in the model's order, as one SetRatings: for each unit the
    model's set, then the reference's. None when they share no unit."""
    pos = pd.Index(reference.units).get_indexer(model.units)
    im = np.flatnonzero(pos >= 0)
    ir = pos[im]
    n = im.size
    if n == 0:
        return None
    lengths = np.empty(2 * n, dtype=np.int64)
    lengths[0::2] = model.indptr[im + 1] - model.indptr[im]
    lengths[1::2] = reference.indptr[ir + 1] - reference.indptr[ir]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.empty(int(indptr[-1]), dtype=np.int64)
    slots = np.arange(n, dtype=np.int64) * 2
    ids[_ranges(indptr, slots)] = model.codes[_ranges(model.indptr, im)]
    ids[_ranges(indptr, slots + 1)] = reference.codes[_ranges(reference.indptr, ir)]
    return SetRatings(np.repeat(np.arange(n), 2), indptr, ids, names, model.units[im],
                      np.tile(np.array(["model", "ref"], dtype=object), n))


_SET_TYPES = (tuple, list, frozenset, set)  # cells that are never missing: skip the check


def pair_ratings(
    units: np.ndarray, first: Sequence[Any], second: Sequence[Any],
    raters: tuple[str, str] = ("model", "ref"),
) -> SetRatings:
    """Two sets for each of `units` (distinct), rated by `raters[0]` then `raters[1]`.

    The SetRatings `set_ratings` builds from the frame of these 2n rows, without building the
    frame: at paper scale the frame's string columns cost more than the sets. A missing cell
    counts as an empty set, so the two raters' rows stay aligned unit by unit.
    """
    n = len(units)
    cells = [c if type(c) in _SET_TYPES else () if _is_missing(c) else c
             for c in chain.from_iterable(zip(first, second, strict=True))]
    lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
    flat = list(chain.from_iterable(cells))
    codes, vocab = pd.factorize(pd.Series(flat, dtype=object)) if flat else (
        np.zeros(0, np.int64), pd.Index([], dtype=object))
    return _csr(np.repeat(np.arange(n), 2), np.repeat(np.arange(2 * n), lengths),
                np.asarray(codes), np.asarray(vocab, dtype=object),
                np.asarray(units, dtype=object), np.tile(np.array(raters, dtype=object), n))


def _value_scores(r: SetRatings, n_boot: int, seed: int, boot_budget: float) -> dict[str, Stat]:
    n = r.units.size
    c = set_counts(r)
    pm, pr, tp_m, tp, fp, fn = c.predicted, c.reference, c.hits, c.tp, c.fp, c.fn
    ones = np.ones(n)
    out: dict[str, Stat] = {}
    # micro scores: a unit enters through (tp, fp, fn) only -> pattern bootstrap.
    pats, pw = _distinct_rows(np.stack([tp, fp, fn], 1).astype(np.int64))
    pw = pw.astype(float)
    for name in ("precision", "recall", "f1"):
        def micro(w: np.ndarray, name: str = name) -> float:
            return micro_scores(pats[:, 0], pats[:, 1], pats[:, 2], w)[name]
        v = micro(pw)
        stat = Stat(value=v, n_units=n,
                    reason=None if not math.isnan(v) else "no values on either side")
        out[f"micro_{name}"] = _with_interval(stat, _boot_patterns(pw, micro, n_boot, seed))
    jac = jaccard_index(tp, fp, fn)
    jp, jinv = np.unique(jac, return_inverse=True)
    jw = np.bincount(jinv.ravel(), minlength=jp.size).astype(float)
    jstat = Stat(value=float(jac.mean()), n_units=n)
    out["mean_jaccard"] = _with_interval(
        jstat, _boot_patterns(jw, lambda w: float(w @ jp / w.sum()), n_boot, seed)
    )
    macro = _macro(tp_m, pm, pr, ones)
    cost = float(n + pm.nnz + pr.nnz + tp_m.nnz) * n_boot
    do_boot = n_boot > 0 and cost <= boot_budget
    samples = None
    if do_boot:
        samples = {k: [] for k in macro}
        rng = np.random.default_rng(seed)
        for _ in range(n_boot):
            w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            for k, val in _macro(tp_m, pm, pr, w).items():
                samples[k].append(val)
    for name, v in macro.items():
        stat = Stat(value=v, n_units=n, reason=None if not math.isnan(v) else "no values used")
        if samples is not None:
            stat = _with_interval(stat, np.asarray(samples[name]))
        elif n_boot > 0:
            stat = stat.model_copy(update={"reason": f"interval omitted: {cost:.1e} operations "
                                           f"over the budget {boot_budget:.0e}"})
        out[f"macro_{name}"] = stat
    return out


# --------------------------------------------------------------------------- report


class MetricKey(BaseModel):
    """What a figure measures: the statistic, the labels it reads, the taxonomy level (value
    sets) and, for a per-value statistic, the value. Hashable, so display names and lookups key
    on it instead of on a name parsed back out of a string."""

    model_config = ConfigDict(frozen=True)

    metric: str  # "krippendorff_alpha_masi", "value_alpha", "micro_f1", ...
    field: str  # "response_type", "ai_values", "human_values"
    level: int | None = None  # taxonomy level for value sets (0 leaf .. 3 top)
    value: str | None = None  # per-value statistics: the value (name or taxonomy id)


class AgreementRow(BaseModel):
    scope: str  # shown: "annotators", "annotators a~b", "model <prompt> vs gold", ...
    metric: str
    field: str  # "response_type", "ai_values", "human_values"
    level: int | None = None  # taxonomy level for value sets (0 leaf .. 3 top)
    value_name: str | None = None  # per-value statistics: the value
    model: str | None = None  # model-human rows: "<prompt id>[ <model>]"
    reference: str | None = None  # model-human rows: "gold" or "annotator <name>"
    pair: tuple[str, str] | None = None  # pairwise rows: the two annotators
    value: float
    low: float | None = None
    high: float | None = None
    n_units: int = 0
    note: str | None = None

    _nan_from_null = field_validator("value", mode="before")(lambda v: _null_to_nan(v))

    @property
    def key(self) -> MetricKey:
        return MetricKey(metric=self.metric, field=self.field, level=self.level,
                         value=self.value_name)


# `pair` stays out of the frame: a tuple column does not fit a flat table (rows have it)
FRAME_COLUMNS = [name for name in AgreementRow.model_fields if name != "pair"]


class AgreementReport(BaseModel):
    rows: list[AgreementRow] = Field(default_factory=list)
    confusion: list[ConfusionMatrix] = Field(default_factory=list)
    n_conversations: int = 0
    annotators: list[str] = Field(default_factory=list)
    prompt_ids: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    how_to_read: str = HOW_TO_READ

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame([r.model_dump(include=set(FRAME_COLUMNS)) for r in self.rows],
                             columns=FRAME_COLUMNS)
        frame["level"] = frame["level"].astype("Int64")  # ints with gaps, not 0.0 floats
        return frame


def _row(scope: str, metric: str, field: str, stat: Stat, level: int | None = None,
         **where: Any) -> AgreementRow:
    """One figure; `where` names what the scope string shows (value_name, model, reference,
    pair) for code to read without parsing it."""
    return AgreementRow(scope=scope, metric=metric, field=field, level=level, value=stat.value,
                        low=stat.low, high=stat.high, n_units=stat.n_units, note=stat.reason,
                        **where)


def agreement_report(
    annotations: pd.DataFrame,
    gold: pd.DataFrame | None = None,
    extractions: pd.DataFrame | None = None,
    level_maps: Mapping[int, Mapping[str, str]] | None = None,
    *,
    prompt_ids: Sequence[str] | None = None,
    levels: Sequence[int] = (0, 1, 2, 3),
    value_fields: Sequence[str] = VALUE_FIELDS,
    distances: Sequence[SetDistance] = ("masi", "jaccard"),
    masi_weights: MasiWeights = "exact",
    top_k: int = 50,
    n_boot: int = 200,
    seed: int = 0,
    boot_budget: float = 1e8,
    pairwise: bool = True,
    per_annotator: bool = True,
) -> AgreementReport:
    """Every agreement figure of a study, as rows for the CLI and the app.

    Frames (one row per conversation and source):
      annotations: conversation_id, annotator, response_type (str or None), ai_values,
        human_values (tuple/list/frozenset of names; None = not annotated, () = none);
      gold: conversation_id, response_type, ai_values, human_values;
      extractions: conversation_id, prompt_id, [model], response_type, ai_values, human_values,
        [status]: rows with a status other than "ok" are skipped.
    Value columns absent from a frame are skipped. `level_maps[l]` maps names/ids to ancestors
    at level l (1..3); level 0 is the leaf and needs no map (pass one to merge spellings); a
    level without a map is skipped with a note row. Lookups try the name as written, then
    whitespace-collapsed and casefolded; a name found neither way is a free value.
    """
    maps = dict(level_maps or {})
    report = AgreementReport(
        settings={"n_boot": n_boot, "seed": seed, "masi_weights": masi_weights,
                  "masi_weight_values": list(MASI_WEIGHTS[masi_weights]), "top_k": top_k,
                  "levels": list(levels), "distances": list(distances)}
    )
    ann = annotations
    report.n_conversations = int(ann[UNIT].nunique()) if len(ann) else 0
    report.annotators = sorted(map(str, ann[RATER].unique())) if len(ann) else []
    usable_levels = [lv for lv in levels if lv == 0 or lv in maps]
    for lv in levels:
        if lv not in usable_levels:
            report.rows.append(AgreementRow(scope="annotators", metric="level skipped",
                                            field="*", level=lv, value=float("nan"),
                                            note=f"no map for level {lv}"))

    # ---- inter-annotator: response type
    if RESPONSE_TYPE in ann.columns:
        scope = "annotators"
        long = as_long(ann, RESPONSE_TYPE)
        for lvl in ("nominal", "ordinal"):
            report.rows.append(_row(scope, f"krippendorff_alpha_{lvl}", RESPONSE_TYPE,
                                    response_type_alpha(long, lvl, n_boot=n_boot, seed=seed)))
        counts = _counts(long, RESPONSE_TYPE, RESPONSE_TYPE_LABELS)
        report.rows.append(_row(scope, "fleiss_kappa", RESPONSE_TYPE,
                                fleiss_kappa(counts, n_boot=n_boot, seed=seed)))
        report.rows.append(_row(scope, "gwet_ac1", RESPONSE_TYPE,
                                gwet_ac1(counts, n_boot=n_boot, seed=seed)))
        report.rows.append(_row(scope, "percent_agreement", RESPONSE_TYPE,
                                percent_agreement(counts, n_boot=n_boot, seed=seed)))
        if pairwise:
            for (a, b), s in pairwise_cohen_kappa(long, label=RESPONSE_TYPE,
                                                  labels=RESPONSE_TYPE_LABELS,
                                                  n_boot=n_boot, seed=seed).items():
                report.rows.append(_row(f"annotators {a}~{b}", "cohen_kappa", RESPONSE_TYPE, s,
                                        pair=(a, b)))

    # ---- inter-annotator: value sets at each level
    for field in value_fields:
        if field not in ann.columns:
            continue
        leaf = set_ratings(ann, field)
        for lv in usable_levels:
            ratings = map_level(leaf, maps.get(lv))
            prepared = _prepare_sets(ratings)
            for dist in distances:
                s = set_alpha_prepared(prepared, dist, masi_weights, n_boot, seed, boot_budget)
                report.rows.append(_row("annotators", f"krippendorff_alpha_{dist}", field, s, lv))
            for value, s in per_value_alpha(ratings, top_k=top_k, n_boot=n_boot,
                                            seed=seed).items():
                report.rows.append(_row("annotators", "value_alpha", field, s, lv,
                                        value_name=str(value)))

    # ---- model vs human, per prompt version (and model, when given)
    if extractions is not None and len(extractions):
        ext = extractions
        if "status" in ext.columns:
            ext = ext.loc[ext["status"].astype(str) == "ok"]
        keys = ["prompt_id"] + (["model"] if "model" in ext.columns else [])
        pids = sorted(map(str, ext["prompt_id"].unique()))
        if prompt_ids is not None:
            pids = [p for p in pids if p in set(prompt_ids)]
        report.prompt_ids = pids
        refs: list[tuple[str, pd.DataFrame]] = []
        if gold is not None and len(gold):
            refs.append(("gold", gold))
        if per_annotator:
            for name in report.annotators:
                refs.append((f"annotator {name}", ann.loc[ann[RATER].astype(str) == name]))
        for key, group in ext.groupby(keys, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            if str(key[0]) not in pids:
                continue
            who = " ".join(str(k) for k in key)
            for ref_name, ref in refs:
                scope = f"model {who} vs {ref_name}"
                where = {"model": who, "reference": ref_name}
                if RESPONSE_TYPE in group.columns and RESPONSE_TYPE in ref.columns:
                    acc, kap, table = response_type_scores(group, ref, n_boot=n_boot, seed=seed)
                    report.rows.append(_row(scope, "accuracy", RESPONSE_TYPE, acc, **where))
                    report.rows.append(_row(scope, "cohen_kappa", RESPONSE_TYPE, kap, **where))
                    report.confusion.append(ConfusionMatrix(
                        scope=scope, labels=list(RESPONSE_TYPE_LABELS), counts=table.tolist()))
                for field in value_fields:
                    if field not in group.columns or field not in ref.columns:
                        continue
                    by_level = value_scores_of_pairs(
                        _model_ref_ratings(group, ref, field),
                        {lv: maps.get(lv) for lv in usable_levels},
                        n_boot=n_boot, seed=seed, boot_budget=boot_budget)
                    for lv, scores in by_level.items():
                        for metric, s in scores.items():
                            report.rows.append(_row(scope, metric, field, s, lv, **where))
    return report


# --------------------------------------------------------------------------- anchoring

# Below this many annotated blind conversations the blind figure's interval is too wide to tell
# anchoring from noise: with 20 conversations a 95% interval on an accuracy near .5 spans about
# +-.2, as large as the effects worth knowing about.
MIN_BLIND_CONVERSATIONS = 20
ANCHORING_METRICS: tuple[tuple[str, str], ...] = (("accuracy", RESPONSE_TYPE),
                                                  ("micro_f1", "ai_values"))
_ANCHORING_NAMES = {"accuracy": "response-type accuracy", "micro_f1": "AI-value micro F1"}


class AnchoringMetric(BaseModel):
    """One model-human agreement figure on pre-filled and on blind tasks, and their difference."""

    metric: str  # "accuracy" (response type) or "micro_f1" (AI values)
    field: str
    prefilled: Stat
    blind: Stat
    anchoring: Stat  # prefilled - blind; interval from the same resamples of conversations
    reading: str


class AnchoringReport(BaseModel):
    """Does a pre-filled form pull reviewers towards the model? One prompt version's extractions
    against each human annotation, on tasks pre-filled (by any prediction) and on blind tasks."""

    prompt_id: str
    prefilled_conversations: int = 0
    blind_conversations: int = 0
    prefilled_annotations: int = 0
    blind_annotations: int = 0
    min_blind: int = MIN_BLIND_CONVERSATIONS
    enough_blind: bool = False
    metrics: list[AnchoringMetric] = Field(default_factory=list)
    statement: str = ""


def _value_set(cell: Any) -> set | None:
    """A value-set cell as a set; None when missing (an empty set is a real label)."""
    if type(cell) not in _SET_TYPES and _is_missing(cell):
        return None
    return set(cell)


def _pair_counts(model: pd.DataFrame, humans: pd.DataFrame) -> pd.DataFrame:
    """One row per (human annotation, model extraction) of a conversation: blind, and per field
    the counts micro scores add up (type: correct, compared; values: tp, fp, fn)."""
    last = model[[UNIT, RESPONSE_TYPE, "ai_values"]].drop_duplicates(UNIT, keep="last")
    both = humans[[UNIT, "blind", RESPONSE_TYPE, "ai_values"]].merge(
        last, on=UNIT, suffixes=("_ref", "_model"))
    rt_m = [getattr(x, "value", x) for x in both[f"{RESPONSE_TYPE}_model"].tolist()]
    rt_r = [getattr(x, "value", x) for x in both[f"{RESPONSE_TYPE}_ref"].tolist()]
    compared = [not (_is_missing(m) or _is_missing(r)) for m, r in zip(rt_m, rt_r, strict=True)]
    correct = [c and m == r for c, m, r in zip(compared, rt_m, rt_r, strict=True)]
    tp, fp, fn, valued = [], [], [], []
    for m, r in zip(both["ai_values_model"].tolist(), both["ai_values_ref"].tolist(),
                    strict=True):
        ms, rs = _value_set(m), _value_set(r)
        ok = ms is not None and rs is not None
        ms, rs = (ms, rs) if ok else (set(), set())
        tp.append(len(ms & rs))
        fp.append(len(ms - rs))
        fn.append(len(rs - ms))
        valued.append(ok)
    return pd.DataFrame({UNIT: both[UNIT].to_numpy(), "blind": both["blind"].astype(bool),
                         "correct": correct, "compared": compared, "tp": tp, "fp": fp, "fn": fn,
                         "valued": valued})


def _per_conversation(pairs: pd.DataFrame, columns: list[str], used: str) -> tuple[
    np.ndarray, int, int
]:
    """Conversations x (columns on pre-filled tasks, then on blind tasks), summed over their
    pairs; and how many conversations have a used pair on each side."""
    pairs = pairs.loc[pairs[used].to_numpy(bool)]
    sides = []
    for blind in (False, True):
        side = pairs.loc[pairs["blind"].to_numpy(bool) == blind]
        sides.append(side.groupby(UNIT)[columns].sum())
    table = sides[0].add_suffix("_pre").join(sides[1].add_suffix("_blind"), how="outer")
    table = table.fillna(0)
    return table.to_numpy(np.int64), len(sides[0]), len(sides[1])


def _accuracy_of(p: np.ndarray, w: np.ndarray) -> float:
    compared = float(w @ p[:, 1])
    return float(w @ p[:, 0]) / compared if compared > 0 else float("nan")


def _f1_of(p: np.ndarray, w: np.ndarray) -> float:
    return micro_scores(p[:, 0], p[:, 1], p[:, 2], w)["f1"]


def _split_stats(table: np.ndarray, width: int, ratio: Callable[[np.ndarray, np.ndarray], float],
                 n_pre: int, n_blind: int, n_boot: int, seed: int) -> tuple[Stat, Stat, Stat]:
    """The ratio on pre-filled and on blind tasks and their difference, each with a 95%
    interval over conversations, from the same resamples (`paired_stats`)."""
    if table.size == 0:
        none = _nan("no conversation annotated with an extraction")
        return none, none, none
    patterns, counts = _distinct_rows(table)
    return paired_stats(
        counts.astype(float),
        lambda w: ratio(patterns[:, :width], w),
        lambda w: ratio(patterns[:, width:], w),
        n_units=(n_pre, n_blind, len(table)),
        undefined=("no annotated pre-filled task", "no annotated blind task",
                   "needs both pre-filled and blind tasks"),
        n_boot=n_boot, seed=seed,
    )


def _reading(metric: str, anchoring: Stat) -> str:
    name = _ANCHORING_NAMES[metric]
    if not anchoring.defined:
        return f"{name}: no difference to read ({anchoring.reason})"
    figure = f"{anchoring.value:+.3f}"
    if anchoring.low is None or anchoring.high is None:
        return f"{name}: pre-filled minus blind {figure}, no interval ({anchoring.reason})"
    span = f"{figure}, 95% interval [{anchoring.low:+.3f}, {anchoring.high:+.3f}]"
    if anchoring.low > 0:
        return (f"{name}: anchoring, reviewers agree more with the model when its labels "
                f"pre-fill the form ({span})")
    if anchoring.high < 0:
        return f"{name}: reviewers agree less with the model on pre-filled tasks ({span})"
    return f"{name}: no anchoring detected, the interval includes 0 ({span})"


def anchoring(
    model: pd.DataFrame,
    humans: pd.DataFrame,
    *,
    prompt_id: str = "",
    min_blind: int = MIN_BLIND_CONVERSATIONS,
    n_boot: int = 200,
    seed: int = 0,
) -> AnchoringReport:
    """Model-human agreement on pre-filled and on blind tasks, and anchoring = the difference.

    model: one prompt version's extractions, conversation_id, response_type, ai_values (a
      conversation's last row counts);
    humans: one row per human annotation, conversation_id, blind (True: the task had no
      prediction), response_type, ai_values.
    Each annotation is compared with the model's labels: response-type accuracy and AI-value
    micro F1 over the (annotation, extraction) pairs of each side. A positive anchoring with an
    interval above 0 says reviewers agreed more with the model when they saw its labels. With
    fewer than `min_blind` annotated blind conversations the statement says it cannot tell.
    """
    report = AnchoringReport(prompt_id=prompt_id, min_blind=min_blind)
    pairs = _pair_counts(model, humans)
    blind = pairs["blind"].to_numpy(bool)
    report.prefilled_annotations, report.blind_annotations = int((~blind).sum()), int(blind.sum())
    report.prefilled_conversations = int(pairs.loc[~blind, UNIT].nunique())
    report.blind_conversations = int(pairs.loc[blind, UNIT].nunique())
    report.enough_blind = report.blind_conversations >= min_blind
    for metric, field, columns, used, ratio in (
        ("accuracy", RESPONSE_TYPE, ["correct", "compared"], "compared", _accuracy_of),
        ("micro_f1", "ai_values", ["tp", "fp", "fn"], "valued", _f1_of),
    ):
        table, n_pre, n_blind = _per_conversation(pairs, columns, used)
        pre, bl, diff = _split_stats(table, len(columns), ratio, n_pre, n_blind, n_boot, seed)
        report.metrics.append(AnchoringMetric(metric=metric, field=field, prefilled=pre,
                                              blind=bl, anchoring=diff,
                                              reading=_reading(metric, diff)))
    report.statement = _statement(report)
    return report


def _statement(report: AnchoringReport) -> str:
    if report.prefilled_conversations == 0:
        return ("No annotated pre-filled task with an extraction by this prompt version: "
                "nothing to compare the blind tasks with.")
    if not report.enough_blind:
        n = report.blind_conversations
        return (f"Too few blind tasks to tell: {n} annotated blind conversation"
                f"{'' if n == 1 else 's'} with an extraction by this prompt version, at least "
                f"{report.min_blind} needed to measure anchoring; push more blind tasks "
                "(`annotator push --blind-share`).")
    return "; ".join(m.reading for m in report.metrics) + "."
