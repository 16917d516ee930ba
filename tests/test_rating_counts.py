"""The inter-annotator figures of a study over the bootstrap budget, from counts summed over
conversations (`rating_counts`): made from the counts before a change, they are the counts of
the study after it, and every figure from them is the figure computed whole.

Unit tests on random studies (hypothesis): real statistics code, no fakes. A budget of 1
makes a small study one whose value-set intervals are over it, as a large study's are. The
summaries that keep the counts are tested end to end in `tests/test_frame_patch.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_pair_counts import changes as pair_changes

from annotator.measure import agreement, rating_counts

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
VOCAB = ["honesty", "care", "clarity", "rigor", "respect", "autonomy", "x\u202eevil", ""]
MAPS = {1: {"honesty": "epistemic", "clarity": "epistemic", "rigor": "epistemic",
            "care": "social", "respect": "social"},  # autonomy and the rest: free values
        2: {"honesty": "values", "care": "values"}}
TYPES = ["strong support", "neutral", "reframing", "no values", "made up", None]
COLUMNS = ["conversation_id", "annotator", "response_type", "ai_values", "human_values"]


def _rows(draw: st.DrawFn, unit: str, raters: int, vocab: list[str]) -> list[tuple]:
    rows = []
    for r in range(raters):
        if draw(st.integers(0, 4)) == 0:  # missing
            continue
        names = st.sets(st.sampled_from(vocab), max_size=4)
        rows.append((unit, f"r{r}", draw(st.sampled_from(TYPES)),
                     tuple(sorted(draw(names))), tuple(sorted(draw(names)))))
    return rows


def changes() -> st.SearchStrategy:
    """`test_pair_counts.changes` with a response type and human values in each row."""
    return pair_changes(_rows, lambda unit, rater: (unit, rater, "neutral", ("care",), ()),
                        COLUMNS)


def _report(frame: pd.DataFrame, **kw) -> agreement.AgreementReport:
    return agreement.agreement_report(frame, level_maps=MAPS, n_boot=20, top_k=5,
                                      boot_budget=1, **kw)


def _rows_of(report: agreement.AgreementReport) -> list[tuple]:
    return [(r.scope, r.metric, r.field, r.level, r.value_name,
             None if math.isnan(r.value) else r.value, r.low, r.high, r.n_units, r.note)
            for r in report.rows]


def _stored(counts: rating_counts.RatingCounts) -> rating_counts.RatingCounts:
    """The counts as a summary keeps them, read back."""
    tables = {name: pa.Table.from_pandas(frame, preserve_index=False)
              for name, frame in rating_counts.as_frames(counts).items()}
    return rating_counts.from_tables(tables, counts.pair_counts)


@SETTINGS
@given(changes())
def test_figures_from_counts_made_from_a_change_are_the_figures_computed_whole(case) -> None:
    before, after, changed = case
    kept: list = []
    _report(before, kept_counts=kept)
    assume(bool(kept))  # a study with no rating is under any budget: nothing kept
    made = _stored(kept[0]).after(before.loc[before["conversation_id"].isin(changed)],
                                  after.loc[after["conversation_id"].isin(changed)], MAPS)
    used: list = []
    from_change = _report(after, counts=made, kept_counts=used)
    whole = _report(after)
    assert _rows_of(from_change) == _rows_of(whole)
    assert from_change.settings == whole.settings
    # used unless the study is now under the budget (no rating left): then as whole
    assert used == ([made] if made.over_budget(20, 1) else [])


@SETTINGS
@given(changes())
def test_figures_from_counts_are_the_figures_from_the_ratings(case) -> None:
    """The same rows, values and intervals as the computation from each conversation's
    ratings; alpha for sets sums its observed disagreement in another order (to 1e-12)."""
    _, after, _ = case
    counted = _rows_of(_report(after))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rating_counts.RatingCounts, "over_budget",
                      lambda self, n_boot, budget: False)
        rated = _rows_of(_report(after))
    assert len(counted) == len(rated)
    for a, b in zip(counted, rated, strict=True):
        assert a[:5] == b[:5] and a[6:] == b[6:], (a, b)
        if a[5] != b[5]:
            assert a[1].startswith("krippendorff_alpha_") and a[2] != "response_type", (a, b)
            assert math.isclose(a[5], b[5], rel_tol=1e-12, abs_tol=1e-15), (a, b)


def test_counts_that_are_not_the_ones_before_are_refused() -> None:
    before = pd.DataFrame([("u0", "a", "neutral", ("care",), ()),
                           ("u0", "b", "neutral", ("care", "rigor"), ())], columns=COLUMNS)
    kept: list = []
    _report(before, kept_counts=kept)
    # rows the counts never held: their labels are not among the counts
    other = before.assign(conversation_id="u9", response_type="reframing",
                          ai_values=[("honesty",)] * 2)
    with pytest.raises(rating_counts.Inconsistent):
        kept[0].after(other, other.iloc[:0], MAPS)


def test_a_study_under_the_budget_after_a_change_is_computed_from_its_ratings() -> None:
    """Counts given for a study whose intervals now fit the budget are not used: the report
    is the one computed from the ratings, intervals for sets included."""
    rng = np.random.default_rng(3)
    rows = [(f"u{u}", f"r{r}", "neutral",
             tuple(sorted(set(rng.choice(VOCAB[:6], rng.integers(0, 4))))), ())
            for u in range(30) for r in range(3)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    kept: list = []
    _report(frame, kept_counts=kept)
    roomy = agreement.agreement_report(frame, level_maps=MAPS, n_boot=20, top_k=5,
                                       boot_budget=1e9, counts=kept[0])
    whole = agreement.agreement_report(frame, level_maps=MAPS, n_boot=20, top_k=5,
                                       boot_budget=1e9)
    assert _rows_of(roomy) == _rows_of(whole)
    assert any(r.low is not None for r in whole.rows if r.field == "ai_values"
               and r.metric == "krippendorff_alpha_masi")

