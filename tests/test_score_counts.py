"""A version's scores against each annotator from counts summed over conversations
(`score_counts`): made from the counts before a change, they are the counts of the labels
after it, and the scores from them are the scores computed in one pass, pair by pair
(`summaries._reference_scores`, the path the scores against gold take), every value and note;
and the scores do not depend on the order of the conversations.

Unit tests on random labels (hypothesis) with real taxonomy names, re-submitted rows, missing
cells, response types off the scale and hostile names: real scoring code, no fakes. The
summary that keeps the counts is tested end to end in `tests/test_frame_patch.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.measure import model_scores, score_counts, shapes, summaries
from annotator.measure.rating_counts import Inconsistent

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# taxonomy values (so the clusters above them count), a free value, hostile names: a
# right-to-left override, a formula, markup, an empty name
NAMES = ["honesty", "Honesty", "wisdom", "self-trust", "agency", "patient wellbeing",
         "moon logic", "x\u202eevil", "=cmd()", "<b>bold</b>", ""]
TYPES = ["strong support", "mild support", "neutral", "reframing", "mild resistance",
         "strong resistance", "no values", "made up", None]
ANNOTATORS = ["ana", "bo \u2603", "=cy"]
COLUMNS = ["conversation_id", "annotator", "response_type", "ai_values", "human_values"]
MAPS = summaries.level_maps()


@st.composite
def label_row(draw: st.DrawFn, conversation: str, annotator: str) -> tuple:
    names = st.one_of(st.lists(st.sampled_from(NAMES), max_size=4).map(tuple), st.none())
    return (conversation, annotator, draw(st.sampled_from(TYPES)), draw(names), draw(names))


@st.composite
def rows_of(draw: st.DrawFn, conversation: str, annotator: str) -> list[tuple]:
    """One labeller's rows of a conversation: none, one, or a re-submitted one after it."""
    return [draw(label_row(conversation, annotator)) for _ in range(draw(st.integers(0, 2)))]


@st.composite
def studies(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """A version's extractions, the annotations before and after a change, and the
    conversations whose rows changed (new, removed or relabelled; a new annotator too)."""
    ids = [f"c{i:02d}" for i in range(draw(st.integers(0, 12)))]
    extractions = [row for c in ids for row in draw(rows_of(c, "model"))]
    before = {(c, a): draw(rows_of(c, a)) for c in ids for a in ANNOTATORS[:2]}
    after = dict(before)
    changed = draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    for c in changed:
        for a in ANNOTATORS:
            if draw(st.booleans()):
                after[(c, a)] = draw(rows_of(c, a))
    return (_frame(extractions), _frame(r for rows in before.values() for r in rows),
            _frame(r for rows in after.values() for r in rows), changed)


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


def _references(annotations: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {f"annotator {name}": rows for name, rows in shapes.by_rater(annotations).items()}


def _of(frame: pd.DataFrame, conversations: list[str]) -> pd.DataFrame:
    return frame.loc[frame["conversation_id"].isin(conversations)]


def _counts(extractions: pd.DataFrame, annotations: pd.DataFrame) -> score_counts.ScoreCounts:
    return score_counts.score_counts(extractions, _references(annotations), MAPS)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                  check_dtype=False)


@SETTINGS
@given(studies())
def test_counts_after_a_change_are_the_counts_and_scores_computed_whole(study) -> None:
    extractions, before, after, changed = study
    made = _counts(extractions, before).after(
        _counts(_of(extractions, changed), _of(before, changed)),
        _counts(_of(extractions, changed), _of(after, changed)))
    whole = _counts(extractions, after)
    names = list(_references(after))
    # as the summary stores them: the confusion cells of the references that have rows
    made, whole = (c._replace(confusion=score_counts.scores_of_counts(c, names)[1])
                   for c in (made, whole))
    for name, frame in whole.canonical().items():
        _same(made.canonical()[name], frame)
    scores = score_counts.scores_of_counts(made, names)
    for got, want in zip(scores, score_counts.scores_of_counts(whole, names), strict=True):
        _same(got, want)
    # the one-pass scores, pair by pair, as the scores against gold are made
    metrics, confusion = summaries._reference_scores(
        extractions, [(name, rows, 0) for name, rows in _references(after).items()], MAPS, 0)
    if names:
        _same(scores[0], metrics)
        _same(scores[1], confusion)


@SETTINGS
@given(studies(), st.randoms(use_true_random=False))
def test_scores_do_not_depend_on_the_order_of_the_conversations(study, random) -> None:
    """Conversations shuffled (each one's rows kept in their order: the last one counts), and
    the names in each set shuffled: the same scores, to the last digit."""
    extractions, _, annotations, _ = study
    names = list(_references(annotations))

    def shuffled(frame: pd.DataFrame) -> pd.DataFrame:
        ids = list(dict.fromkeys(frame["conversation_id"]))
        random.shuffle(ids)
        out = pd.concat([frame.loc[frame["conversation_id"] == c] for c in ids] or [frame])
        out = out.copy()
        out["ai_values"] = [v if v is None else tuple(random.sample(v, len(v)))
                            for v in out["ai_values"]]
        return out

    want = score_counts.scores_of_counts(_counts(extractions, annotations), names)
    got = score_counts.scores_of_counts(_counts(shuffled(extractions), shuffled(annotations)),
                                        names)
    for a, b in zip(got, want, strict=True):
        _same(a, b)


def test_counts_not_of_the_rows_before_are_refused() -> None:
    extractions = _frame([("c1", "model", "neutral", ("honesty",), ())])
    labels = _frame([("c1", "ana", "neutral", ("honesty",), ())])
    empty = _counts(extractions, labels.iloc[:0])
    with pytest.raises(Inconsistent):
        empty.after(_counts(extractions, labels), empty)


def test_a_free_value_and_a_cluster_are_scored_by_hand() -> None:
    """Two conversations, worked by hand: the model says {honesty, moon logic} and {}, the
    annotator {honesty} and {wisdom}."""
    extractions = _frame([("c1", "model", "neutral", ("honesty", "moon logic"), ()),
                          ("c2", "model", "reframing", (), ())])
    labels = _frame([("c1", "ana", "neutral", ("honesty",), ()),
                     ("c2", "ana", "neutral", ("wisdom",), ())])
    metrics, _ = score_counts.scores_of_counts(_counts(extractions, labels), ["annotator ana"])
    leaf = metrics.loc[(metrics["field"] == "ai_values") & (metrics["level"] == 0)]
    value = dict(zip(leaf["metric"], leaf["value"], strict=True))
    assert value["micro_precision"] == pytest.approx(1 / 2)
    assert value["micro_recall"] == pytest.approx(1 / 2)
    # per value: honesty 1/1/1, moon logic p=0 r=0, wisdom p=0 r=0 (zero_division 0)
    assert value["macro_precision"] == pytest.approx(1 / 3)
    assert value["mean_jaccard"] == pytest.approx((1 / 2 + 0) / 2)
    types = metrics.loc[metrics["metric"] == "accuracy", "value"].item()
    assert types == pytest.approx(1 / 2)
    human = metrics.loc[(metrics["field"] == "human_values") & (metrics["level"] == 0)]
    assert human["note"].eq("no values on either side").sum() == 3  # micro: nothing named
    assert math.isnan(human.loc[human["metric"] == "macro_f1", "value"].item())


def test_a_mean_summed_exactly_is_the_same_in_any_order() -> None:
    """The means are summed exactly: a thousand values in two orders give one float, where a
    float sum may not."""
    rng = np.random.default_rng(3)
    values = rng.random(1000) / 3
    weights = rng.integers(1, 50, 1000)
    order = rng.permutation(1000)
    assert (model_scores.exact_mean(values, weights)
            == model_scores.exact_mean(values[order], weights[order]))
