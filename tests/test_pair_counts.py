"""Pair counts made from the ones before a change (`pair_counts`) equal the counts made whole
(`value_sets._AllPairCounter`), and every alpha figure made from them equals the whole one.

Unit tests on random data (hypothesis): real statistics code, no fakes. The whole
computation is the reference; the summaries that use this are tested end to end in
`tests/test_frame_patch.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.measure import pair_counts, value_sets

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
VOCAB = ["honesty", "care", "clarity", "rigor", "respect", "autonomy", "x\u202eevil", ""]
LEVEL_MAP = {"honesty": "epistemic", "clarity": "epistemic", "rigor": "epistemic",
             "care": "social", "respect": "social"}  # autonomy and the rest: free values
COLUMNS = ["conversation_id", "annotator", "ai_values"]


def _rows(draw: st.DrawFn, unit: str, raters: int, vocab: list[str]) -> list[tuple]:
    rows = []
    for r in range(raters):
        if draw(st.integers(0, 4)) == 0:  # missing
            continue
        rows.append((unit, f"r{r}", tuple(sorted(draw(st.sets(st.sampled_from(vocab),
                                                              max_size=5))))))
    return rows


def _resubmitted(unit: str, rater: str) -> tuple:
    return (unit, rater, ("care",))


@st.composite
def changes(draw: st.DrawFn, rows: Callable = _rows, resubmitted: Callable = _resubmitted,
            columns: list[str] = COLUMNS) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """A study before and after a change, and the conversations the change touched. `rows`
    draws a conversation's rows, `resubmitted` makes a rater's second row (in `columns`)."""
    n_units = draw(st.integers(1, 14))
    before = [row for u in range(n_units) for row in rows(draw, f"u{u}", 3, VOCAB[:6])]
    changed = sorted(draw(st.sets(st.sampled_from([f"u{u}" for u in range(n_units + 3)]),
                                  max_size=6)))
    after = [row for row in before if row[0] not in changed]
    for unit in changed:  # anew: more raters, other sets, names no one used before
        if draw(st.booleans()):
            after += rows(draw, unit, draw(st.integers(0, 5)), VOCAB)
    if draw(st.booleans()):  # a re-submitted label: the last row of a pair counts
        repeats = [row for row in after if row[0] in changed]
        if repeats:
            after.append(resubmitted(*repeats[0][:2]))
    return pd.DataFrame(before, columns=columns), pd.DataFrame(after, columns=columns), changed


def _whole(frame: pd.DataFrame, level_map: dict | None) -> value_sets._SetAlphaData:
    return value_sets._prepare_sets(value_sets.map_level(value_sets.set_ratings(frame),
                                                         level_map))


def _made(before: pd.DataFrame, after: pd.DataFrame, changed: list[str],
          level_map: dict | None) -> tuple[value_sets._SetAlphaData, np.ndarray | None]:
    stored = pair_counts.from_rows(pair_counts.as_rows(
        {("ai_values", 1): _whole(before, level_map).point_hist()}))[("ai_values", 1)]
    now = _whole(after, level_map)
    added, removed = (value_sets.map_level(value_sets.set_ratings(
        frame.loc[frame["conversation_id"].isin(changed)]), level_map)
        for frame in (after, before))
    return now, pair_counts.counts_after(stored, now, added, removed)


@SETTINGS
@given(changes(), st.booleans())
def test_counts_after_a_change_equal_the_whole_count(case, mapped) -> None:
    before, after, changed = case
    level_map = LEVEL_MAP if mapped else None
    now, made = _made(before, after, changed, level_map)
    whole = now.point_hist()
    assert made is not None
    assert made.shape == whole.shape
    assert np.array_equal(made[1:], whole[1:])  # t = 0 is not counted (its similarity is 0)


@SETTINGS
@given(changes())
def test_alpha_from_counts_after_a_change_is_the_whole_alpha(case) -> None:
    before, after, changed = case
    now, made = _made(before, after, changed, None)
    assert made is not None
    for distance in ("masi", "jaccard"):
        whole = value_sets.set_alpha_prepared(_whole(after, None), distance, n_boot=0)
        now.use_point_hist(made)
        patched = value_sets.set_alpha_prepared(now, distance, n_boot=0)
        assert patched.model_dump_json() == whole.model_dump_json()  # NaN as null


def test_counts_that_are_not_the_ones_before_are_refused() -> None:
    before = pd.DataFrame([("u0", "a", ("care",)), ("u0", "b", ("care", "rigor")),
                           ("u1", "a", ("rigor",)), ("u1", "b", ("rigor",))], columns=COLUMNS)
    after = before.iloc[:2]
    wrong = np.zeros((3, 3, 3))  # as if no pair had been counted before
    now = _whole(after, None)
    removed = value_sets.set_ratings(before.iloc[2:])
    assert pair_counts.counts_after(wrong, now, value_sets.set_ratings(after.iloc[:0]),
                                    removed) is None


@SETTINGS
@given(st.lists(st.tuples(st.frozensets(st.integers(0, 60), min_size=1, max_size=7),
                          st.integers(1, 3)), min_size=1, max_size=120),
       st.integers(0, 2**32 - 1))
def test_pair_counts_of_distinct_sets_equal_every_pair_counted(held, seed) -> None:
    """The counter lists only the subsets two or more sets hold (`_AllPairCounter.of_sets`):
    its counts equal every ordered pair of weighted sets counted by overlap and sizes, here
    with a vocabulary wide enough that most larger subsets are one set's; and a bootstrap's
    counts (resample weights) equal each resample's counted whole."""
    weights: dict[frozenset, int] = {}
    for values, weight in held:  # distinct sets, each with the ratings that hold it
        weights[values] = weights.get(values, 0) + weight
    sets = list(weights)
    max_size = max(len(s) for s in sets)
    every = np.zeros((max_size + 1,) * 3)
    for x in sets:
        for y in sets:
            if x & y:
                every[len(x & y), len(x), len(y)] += weights[x] * weights[y]
    by_size: dict[int, tuple[list, list]] = {}
    for s in sets:
        vals, ws = by_size.setdefault(len(s), ([], []))
        vals.append(sorted(s))
        ws.append(weights[s])
    arrays = {a: (np.array(v, dtype=np.int64), np.array(w)) for a, (v, w) in by_size.items()}
    assert np.array_equal(value_sets.hist_of_sets(arrays, 61), every)
    # the bootstrap's path: each distinct set a unit of its own, weighted by a resample
    starts, start = {}, 0
    for a in sorted(arrays):
        starts[a] = (arrays[a][0], start)
        start += arrays[a][0].shape[0]
    counter = value_sets._AllPairCounter.of_sets(starts, start, 61, np.arange(start))
    unit_ws = np.random.default_rng(seed).integers(0, 4, (3, start)).astype(float)
    order = [s for a in sorted(arrays) for s in sets if len(s) == a]
    for unit_w, counted in zip(unit_ws, counter.pair_hists(unit_ws, np.arange(start)),
                               strict=True):
        resampled = np.zeros_like(every)
        for i, x in enumerate(order):
            for j, y in enumerate(order):
                if x & y:
                    resampled[len(x & y), len(x), len(y)] += unit_w[i] * unit_w[j]
        assert np.array_equal(counted, resampled)
