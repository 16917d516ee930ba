"""Agreement engine vs independent implementations on random data (hypothesis), to 1e-9.

nltk's AnnotationTask (alpha with MASI / Jaccard / binary distance), the krippendorff package,
statsmodels' fleiss_kappa, scikit-learn's cohen_kappa_score and multilabel scores.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from oracles import needs
from pair_counter import with_cross_counter

from annotator.measure import coefficients, model_scores, value_sets

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
VOCAB = ["honesty", "care", "clarity", "rigor", "respect", "autonomy"]


@st.composite
def set_studies(draw: st.DrawFn, min_units: int = 2) -> pd.DataFrame:
    n_units = draw(st.integers(min_units, 25))
    n_raters = draw(st.integers(2, 4))
    rows = []
    for u in range(n_units):
        for r in range(n_raters):
            if draw(st.integers(0, 9)) == 0:  # about 10% missing
                continue
            values = draw(st.sets(st.sampled_from(VOCAB), max_size=4))
            rows.append((f"u{u}", f"r{r}", tuple(sorted(values))))
    return pd.DataFrame(rows, columns=["conversation_id", "annotator", "ai_values"])


@st.composite
def label_studies(draw: st.DrawFn, n_cats: int = 5) -> pd.DataFrame:
    n_units = draw(st.integers(2, 30))
    n_raters = draw(st.integers(2, 5))
    rows = []
    for u in range(n_units):
        for r in range(n_raters):
            if draw(st.integers(0, 5)) == 0:
                continue
            rows.append((f"u{u}", f"r{r}", draw(st.integers(1, n_cats))))
    return pd.DataFrame(rows, columns=["conversation_id", "annotator", "label"])


def _nltk_set_alpha(frame: pd.DataFrame, distance) -> float:
    from nltk.metrics import agreement as nltk_agreement

    def safe(a: frozenset, b: frozenset) -> float:
        # nltk divides by zero on two empty sets; ours defines their distance as 0
        return 0.0 if not a and not b else distance(a, b)

    task = nltk_agreement.AnnotationTask(
        data=[(r, u, frozenset(v)) for u, r, v in frame.itertuples(index=False)],
        distance=safe,
    )
    return task.alpha()


def _nltk_masi_weights() -> str:
    """Which constants this nltk's masi_distance uses: exact 2/3 or the old rounded 0.67."""
    from nltk.metrics import distance as nltk_distance

    d = nltk_distance.masi_distance({1, 2}, {1})
    return "exact" if abs(d - (1 - 0.5 * 2 / 3)) < 1e-12 else "nltk"


@needs("nltk")
@SETTINGS
@given(set_studies())
def test_masi_alpha_matches_nltk(frame: pd.DataFrame) -> None:
    from nltk.metrics import distance as nltk_distance

    ours = value_sets.set_alpha(frame, "masi", masi_weights=_nltk_masi_weights())
    assume(ours.defined)  # nltk returns a silent 1.0 where we return NaN
    assert ours.value == pytest.approx(
        _nltk_set_alpha(frame, nltk_distance.masi_distance), abs=1e-9)


@needs("nltk")
@SETTINGS
@given(set_studies())
def test_masi_rounded_weights_match_nltk_machinery(frame: pd.DataFrame) -> None:
    def masi_rounded(a: frozenset, b: frozenset) -> float:  # older nltk constants
        t, union = len(a & b), len(a | b)
        if a == b:
            m = 1.0
        elif t == min(len(a), len(b)):
            m = 0.67
        else:
            m = 0.33 if t else 0.0
        return 1 - t / union * m

    ours = value_sets.set_alpha(frame, "masi", masi_weights="nltk")
    assume(ours.defined)
    assert ours.value == pytest.approx(_nltk_set_alpha(frame, masi_rounded), abs=1e-9)


@needs("nltk")
@SETTINGS
@given(set_studies())
def test_jaccard_alpha_matches_nltk(frame: pd.DataFrame) -> None:
    from nltk.metrics import distance as nltk_distance

    ours = value_sets.set_alpha(frame, "jaccard")
    assume(ours.defined)
    assert ours.value == pytest.approx(
        _nltk_set_alpha(frame, nltk_distance.jaccard_distance), abs=1e-9)


@SETTINGS
@given(set_studies(), st.lists(st.integers(0, 3), min_size=25, max_size=25),
       st.sampled_from(["all", "cross"]))
def test_weighted_set_alpha_equals_duplicated_units(frame: pd.DataFrame, copies: list[int],
                                                    method: str) -> None:
    """The bootstrap's unit weights give the alpha of the study with units copied, with
    either pair counter (every subset of distinct sets, or cross-unit shared subsets)."""
    ratings = value_sets.set_ratings(frame)
    d = value_sets._prepare_sets(ratings)
    if method == "cross":
        d = with_cross_counter(d)
    w = np.array(copies[: ratings.units.size], dtype=float)
    hist = d.hist(w)
    ours, _ = value_sets._set_alpha_value(d, w, d.observed_per_unit("masi", "exact"), hist, "masi",
                                  "exact")
    parts = []
    for unit, k in zip(ratings.units, w, strict=True):
        part = frame[frame.conversation_id == unit]
        parts += [part.assign(conversation_id=f"{unit}#{c}") for c in range(int(k))]
    assume(parts)
    copied = value_sets.set_alpha(pd.concat(parts))
    if math.isnan(copied.value):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(copied.value, abs=1e-9)


@SETTINGS
@given(set_studies())
def test_pair_counters_agree(frame: pd.DataFrame) -> None:
    ratings = value_sets.set_ratings(frame)
    a = value_sets.set_alpha_prepared(value_sets._prepare_sets(ratings), "masi")
    b = value_sets.set_alpha_prepared(with_cross_counter(value_sets._prepare_sets(ratings)), "masi")
    assert (math.isnan(a.value) and math.isnan(b.value)) or a.value == pytest.approx(b.value,
                                                                                     abs=1e-12)


@SETTINGS
@given(set_studies(), st.sampled_from([1, 2, 3]))
def test_level_map_equals_premapped_sets(frame: pd.DataFrame, level: int) -> None:
    maps = {1: {"honesty": "E", "rigor": "E", "clarity": "E", "care": "S", "respect": "S"},
            2: {"honesty": "X", "rigor": "X", "clarity": "Y", "care": "Y", "respect": "Y"},
            3: {v: "P" for v in VOCAB[:4]}}
    m = maps[level]
    premapped = frame.assign(ai_values=frame.ai_values.map(
        lambda s: tuple(sorted({m.get(v, v) for v in s}))))
    a = value_sets.set_alpha(frame, level_map=m)
    b = value_sets.set_alpha(premapped)
    assert (math.isnan(a.value) and math.isnan(b.value)) or a.value == pytest.approx(b.value,
                                                                                     abs=1e-12)


@needs("krippendorff")
@SETTINGS
@given(label_studies(), st.sampled_from(["nominal", "ordinal", "interval"]))
def test_alpha_matches_krippendorff_package(frame: pd.DataFrame, level: str) -> None:
    import krippendorff

    ours = coefficients.krippendorff_alpha(frame, level, order=[1, 2, 3, 4, 5])
    wide = frame.pivot(index="annotator", columns="conversation_id", values="label")
    data = wide.to_numpy(dtype=float)
    values = set(frame.label)
    pairable = (np.sum(~np.isnan(data), axis=0) >= 2).any()
    assume(len(values) >= 2 and pairable and ours.defined)
    theirs = krippendorff.alpha(reliability_data=data, value_domain=[1, 2, 3, 4, 5],
                                level_of_measurement=level)
    assert ours.value == pytest.approx(theirs, abs=1e-9)


@needs("nltk")
@SETTINGS
@given(label_studies())
def test_nominal_alpha_matches_nltk(frame: pd.DataFrame) -> None:
    from nltk.metrics import agreement as nltk_agreement

    ours = coefficients.krippendorff_alpha(frame)
    assume(ours.defined)
    task = nltk_agreement.AnnotationTask(
        data=[(r, u, v) for u, r, v in frame.itertuples(index=False)])
    assert ours.value == pytest.approx(task.alpha(), abs=1e-9)


@needs("statsmodels")
@SETTINGS
@given(st.integers(2, 40), st.integers(2, 7), st.integers(2, 5), st.randoms())
def test_fleiss_matches_statsmodels(n_units: int, n_raters: int, n_cats: int, rnd) -> None:
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    ratings = np.array([[rnd.randrange(n_cats) for _ in range(n_raters)]
                        for _ in range(n_units)])
    table = aggregate_raters(ratings)[0]
    ours = coefficients.fleiss_kappa(ratings)
    assume(ours.defined)
    assert ours.value == pytest.approx(fleiss_kappa(table), abs=1e-9)


@needs("sklearn")
@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=60))
def test_cohen_matches_sklearn(pairs: list[tuple[int, int]]) -> None:
    from sklearn.metrics import cohen_kappa_score

    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    ours = coefficients.cohen_kappa(a, b)
    assume(ours.defined)
    assert ours.value == pytest.approx(cohen_kappa_score(a, b), abs=1e-9)


@needs("sklearn")
@SETTINGS
@given(st.lists(st.tuples(st.sets(st.sampled_from(VOCAB), max_size=4),
                          st.sets(st.sampled_from(VOCAB), max_size=4)), min_size=1, max_size=40))
def test_value_scores_match_sklearn(pairs: list[tuple[set, set]]) -> None:
    from sklearn.metrics import jaccard_score, precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    ids = [f"u{i}" for i in range(len(pairs))]
    model = pd.DataFrame({"conversation_id": ids, "ai_values": [tuple(p[0]) for p in pairs]})
    ref = pd.DataFrame({"conversation_id": ids, "ai_values": [tuple(p[1]) for p in pairs]})
    ours = model_scores.value_scores(model, ref)
    used = sorted(set().union(*(p[0] | p[1] for p in pairs)))
    assume(len(used) >= 2)  # with one column sklearn switches to binary, not multilabel
    mlb = MultiLabelBinarizer(classes=used)
    y_pred = mlb.fit_transform([p[0] for p in pairs])
    y_true = mlb.transform([p[1] for p in pairs])
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro",
                                                 zero_division=0)
    assert ours["macro_precision"].value == pytest.approx(p, abs=1e-9)
    assert ours["macro_recall"].value == pytest.approx(r, abs=1e-9)
    assert ours["macro_f1"].value == pytest.approx(f, abs=1e-9)
    if y_pred.sum() and y_true.sum():
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro")
        assert ours["micro_precision"].value == pytest.approx(p, abs=1e-9)
        assert ours["micro_recall"].value == pytest.approx(r, abs=1e-9)
        assert ours["micro_f1"].value == pytest.approx(f, abs=1e-9)
    jac = jaccard_score(y_true, y_pred, average="samples", zero_division=1)
    assert ours["mean_jaccard"].value == pytest.approx(jac, abs=1e-9)


@SETTINGS
@given(st.lists(st.tuples(st.sets(st.sampled_from(VOCAB), max_size=4),
                          st.sets(st.sampled_from(VOCAB), max_size=4)), min_size=1, max_size=30))
def test_pair_ratings_equals_set_ratings_of_the_same_rows(pairs) -> None:
    """The frame-free builder used for model-vs-reference scores gives exactly what the general
    builder gives for the 2n rows it stands for."""
    units = np.array([f"u{i}" for i in range(len(pairs))], dtype=object)
    first = [tuple(sorted(a)) for a, _ in pairs]
    second = [tuple(sorted(b)) for _, b in pairs]
    frame = pd.DataFrame({
        "conversation_id": np.concatenate([units, units]),
        "annotator": ["model"] * len(pairs) + ["ref"] * len(pairs),
        "ai_values": first + second,
    })
    want = value_sets.set_ratings(frame, "ai_values")
    got = model_scores.pair_ratings(units, first, second)
    assert got.units.tolist() == want.units.tolist()
    assert got.raters.tolist() == want.raters.tolist()
    assert got.unit.tolist() == want.unit.tolist()
    assert got.sets() == want.sets()


@st.composite
def labellings(draw: st.DrawFn) -> pd.DataFrame:
    """Rows of (conversation, value set or missing), conversations repeated (re-submissions)."""
    rows = draw(st.lists(st.tuples(
        st.integers(0, 12),
        st.one_of(st.none(), st.sets(st.sampled_from(VOCAB), max_size=4).map(
            lambda v: tuple(sorted(v)))),
    ), max_size=30))
    return pd.DataFrame([(f"u{u}", v) for u, v in rows],
                        columns=["conversation_id", "ai_values"], dtype=object)


@SETTINGS
@given(labellings(), labellings())
def test_encoded_pairs_equal_the_merge_of_each_units_last_label(model, reference) -> None:
    """`encode_sets` + `pair_sets` (each frame encoded once, then gathered) give the units and
    sets of the plain pandas alignment: the last row per unit, both sides present, in the
    model's order."""
    both = model_scores._aligned(model, reference, "ai_values")
    got = model_scores._model_ref_ratings(model, reference, "ai_values")
    if both.empty:
        assert got is None
        return
    assert got is not None
    assert got.units.tolist() == both["conversation_id"].tolist()
    sets = got.sets()
    assert sets[0::2] == [frozenset(v) for v in both["ai_values_model"]]
    assert sets[1::2] == [frozenset(v) for v in both["ai_values_ref"]]
    assert got.raters.tolist() == ["model", "ref"] * len(both)
