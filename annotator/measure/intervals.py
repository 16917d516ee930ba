"""95% bootstrap intervals over conversations.

Each resample draws the conversations in scope with replacement, seeded and so reproducible.
Statistics that depend on a unit only through a small pattern (its category counts, its
confusion cell, its (tp, fp, fn)) resample the pattern counts from the equivalent multinomial,
which is the same distribution at a fraction of the cost; value-set alpha and macro scores
re-weight units exactly per resample and are skipped (with a note) when units x resamples
exceeds the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from annotator.measure.shapes import (
    Stat,
)

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
