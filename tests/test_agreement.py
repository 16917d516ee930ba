"""Agreement engine: published worked examples, edge cases, the report.

Each published figure is asserted to the decimals its source prints; the source is cited above
the test. Agreement with independent implementations on random data is in
test_agreement_props.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from oracles import needs

from annotator.measure import agreement, coefficients, model_scores, shapes, value_sets

NA = None

# Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1..5, with missing data. Printed: nominal .743, ordinal .815, interval .849.
# Data as reproduced in the krippendorff package's docstring/tests
# (pln-fing-udelar/fast-krippendorff, tests/test_krippendorff.py), raters x units there.
K2011_C = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NA, NA, NA],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NA, 3],
    [NA, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NA],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NA],
]


def _units_by_raters(raters_by_units: list[list]) -> np.ndarray:
    return np.array(raters_by_units, dtype=object).T


@pytest.mark.parametrize(
    ("level", "printed"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_2011_section_c(level: str, printed: float) -> None:
    stat = coefficients.krippendorff_alpha(_units_by_raters(K2011_C), level, order=[1, 2, 3, 4, 5])
    assert round(stat.value, 3) == printed
    # unit 12 has a single rating: not pairable, so 11 units are used
    assert stat.n_units == 11


@needs("krippendorff")
def test_krippendorff_2011_section_c_matches_krippendorff_package() -> None:
    import krippendorff

    data = np.array(K2011_C, dtype=float)
    for level in ("nominal", "ordinal", "interval"):
        ours = coefficients.krippendorff_alpha(_units_by_raters(K2011_C), level,
                                               order=[1, 2, 3, 4, 5])
        theirs = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert ours.value == pytest.approx(theirs, abs=1e-12)


def test_krippendorff_2011_section_a_binary_two_observers() -> None:
    # Krippendorff (2011), section A: binary data, two observers, 10 units, no missing
    # data. Printed: alpha = 0.095.
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    stat = coefficients.krippendorff_alpha(_units_by_raters([a, b]))
    assert round(stat.value, 3) == 0.095


def test_response_type_ordinal_uses_model_order_and_drops_no_values() -> None:
    order = list(shapes.RESPONSE_TYPE_ORDER)
    # The same 1..5 example written with the first five response types (same order).
    coded = [[order[x - 1] if x else None for x in row] for row in K2011_C]
    frame = pd.DataFrame(_units_by_raters(coded))
    assert round(coefficients.response_type_alpha(frame, "ordinal").value, 3) == 0.815
    # "no values" ratings are missing for ordinal alpha, categories for nominal alpha
    frame.iloc[11, 0] = "no values"  # unit 12 gains a second rating
    ordinal = coefficients.response_type_alpha(frame, "ordinal")
    assert round(ordinal.value, 3) == 0.815 and "1 ratings outside the scale" in ordinal.reason
    nominal = coefficients.response_type_alpha(frame, "nominal")
    assert nominal.n_units == 12 and nominal.value < 0.743


# Fleiss (1971), "Measuring nominal scale agreement among many raters": 30 patients, 6
# psychiatrists, 5 diagnoses; printed kappa = .430. Raw ratings as in R irr's `diagnoses`,
# reproduced in statsmodels' tests (statsmodels/stats/tests/test_inter_rater.py), where irr's
# kappam.fleiss gives 0.4302445.
DIAGNOSES = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
])


def test_fleiss_1971_psychiatric_diagnoses() -> None:
    stat = coefficients.fleiss_kappa(DIAGNOSES)
    assert round(stat.value, 3) == 0.430
    assert stat.value == pytest.approx(0.4302445, abs=5e-8)


def test_fleiss_wikipedia_example() -> None:
    # Wikipedia "Fleiss' kappa" worked example (10 subjects, 14 raters, 5 categories),
    # kappa = 0.210; table as in statsmodels' tests (test_inter_rater.py, table1).
    table = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])
    stat = coefficients.fleiss_kappa(coefficients.counts_from_table(table))
    assert round(stat.value, 3) == 0.210


def _artstein_poesio() -> pd.DataFrame:
    # Artstein & Poesio (2008), "Inter-Coder Agreement for Computational Linguistics":
    # 100 utterances, coders A and B, categories Stat/IReq/Chck (marginals A: 46/44/10,
    # B: 52/32/16). Item-level data as in nltk's nltk/metrics/artstein_poesio_example.txt;
    # printed there (nltk agreement doctest): A_o = 0.88, pi = 0.79953.
    a = ["stat"] * 46 + ["ireq"] * 44 + ["chck"] * 10
    b = ["stat"] * 52 + ["ireq"] * 32 + ["chck"] * 16
    return pd.DataFrame({"a": a, "b": b})


def test_artstein_poesio_observed_agreement_and_pi() -> None:
    frame = _artstein_poesio()
    assert coefficients.percent_agreement(frame).value == pytest.approx(0.88, abs=1e-12)
    # with two coders Fleiss' kappa is Scott's pi (A&P's multi-pi)
    assert round(coefficients.fleiss_kappa(frame).value, 5) == 0.79953
    # Cohen's kappa uses each coder's own marginals: A_e = .46*.52 + .44*.32 + .10*.16 = .396
    assert coefficients.cohen_kappa(frame.a, frame.b).value == pytest.approx((0.88 - 0.396) / 0.604)


# Gwet, Handbook of Inter-Rater Reliability (4th ed., 2014), p. 120: 4 raters, 12 subjects,
# 5 categories, missing ratings; printed AC1 = 0.775 with p_a = 0.818, p_e = 0.190. Data and
# figures as in irrCAC (afergadis/irrCAC, irrCAC/datasets.py raw_4raters and
# test/unit/irrCAC/raw/test_gwet.py).
GWET_4RATERS = pd.DataFrame({
    "Rater1": [1, 2, 3, 3, 2, 1, 4, 1, 2, NA, NA, NA],
    "Rater2": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NA, NA],
    "Rater3": [NA, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 3],
    "Rater4": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NA],
})


def test_gwet_ac1_handbook_example() -> None:
    assert round(coefficients.gwet_ac1(GWET_4RATERS).value, 3) == 0.775
    assert round(coefficients.percent_agreement(GWET_4RATERS).value, 3) == 0.818


def test_masi_distance_passonneau_weights() -> None:
    # Passonneau (2006): MASI = J * M, M = 1 identity, 2/3 subsumption, 1/3 overlap,
    # 0 disjoint; distance 1 - MASI.
    assert value_sets.masi_distance({"A", "B"}, {"A", "B"}) == 0.0
    assert round(value_sets.masi_distance({"A", "B"}, {"A"}), 3) == 0.667  # 1 - 1/2 * 2/3
    assert value_sets.masi_distance({"A", "B"}, {"A"}) == pytest.approx(1 - 0.5 * 2 / 3)
    # nltk's doctest: masi_distance({1, 2}, {1, 2, 3, 4}) = 0.6666666666666667
    assert value_sets.masi_distance({1, 2}, {1, 2, 3, 4}) == pytest.approx(0.6666666666666667)
    assert value_sets.masi_distance({"A", "B"}, {"B", "C"}) == pytest.approx(1 - (1 / 3) * (1 / 3))
    assert value_sets.masi_distance({"A"}, {"B"}) == 1.0
    assert value_sets.masi_distance({"A", "B"}, {"A"}, weights="nltk") == pytest.approx(
        1 - 0.5 * 0.67)
    assert value_sets.jaccard_distance({"A", "B"}, {"B", "C"}) == pytest.approx(2 / 3)
    # empty sets: two empty labels agree, an empty and a non-empty one are disjoint
    assert value_sets.masi_distance(set(), set()) == 0.0
    assert value_sets.masi_distance(set(), {"A"}) == 1.0
    assert value_sets.jaccard_distance(set(), set()) == 0.0


# --------------------------------------------------------------------------- edge cases


def _long(rows: list[tuple[str, str, object]], label: str = "label") -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["conversation_id", "annotator", label])


def test_no_variation_is_nan_with_reason_not_one() -> None:
    frame = _long([(f"u{i}", r, "neutral") for i in range(5) for r in "ab"])
    for stat in (coefficients.krippendorff_alpha(frame), coefficients.fleiss_kappa(frame),
                 coefficients.cohen_kappa(["x"] * 4, ["x"] * 4)):
        assert math.isnan(stat.value) and "no variation" in stat.reason
    assert coefficients.gwet_ac1(frame).value != 1.0  # AC1 with one category: q = 1 -> NaN
    assert math.isnan(coefficients.gwet_ac1(frame).value)
    # with the scale's seven categories declared, AC1 is defined (and 1: full agreement)
    ac1 = coefficients.gwet_ac1(frame, categories=shapes.RESPONSE_TYPE_LABELS)
    assert ac1.value == pytest.approx(1.0)
    assert coefficients.percent_agreement(frame).value == 1.0  # not chance-corrected: defined


def test_single_ratings_only_is_nan() -> None:
    frame = _long([("u1", "a", "x"), ("u2", "b", "y")])
    for stat in (coefficients.krippendorff_alpha(frame), coefficients.fleiss_kappa(frame),
                 coefficients.percent_agreement(frame)):
        assert math.isnan(stat.value) and "two or more" in stat.reason
    sets = _long([("u1", "a", ("x",)), ("u2", "b", ("y",))], "ai_values")
    assert math.isnan(value_sets.set_alpha(sets).value)
    assert math.isnan(coefficients.krippendorff_alpha(_long([], "label")).value)


def test_single_rating_units_ignored_missing_annotators_kept() -> None:
    full = _long([("u1", "a", "x"), ("u1", "b", "x"), ("u2", "a", "y"), ("u2", "b", "y"),
                  ("u3", "a", "x"), ("u3", "b", "y")])
    extra = pd.concat([full, _long([("u4", "a", "y")])])  # u4: one rating only
    alpha = coefficients.krippendorff_alpha
    assert alpha(extra).value == alpha(full).value
    assert coefficients.krippendorff_alpha(extra).n_units == 3


def test_empty_sets_are_labels_and_none_is_missing() -> None:
    rows = [("u1", "a", ()), ("u1", "b", ()), ("u2", "a", ("x",)), ("u2", "b", ("x",)),
            ("u3", "a", ("x", "y")), ("u3", "b", ("y",)), ("u4", "a", None), ("u4", "b", ("z",))]
    frame = _long(rows, "ai_values")
    stat = value_sets.set_alpha(frame)
    assert stat.n_units == 3  # u4 has one rating once None is dropped
    # brute force with the documented convention (empty vs empty = 0)
    sets = [frozenset(), frozenset(), frozenset("x"), frozenset("x"), frozenset("xy"),
            frozenset("y")]
    units = [0, 0, 1, 1, 2, 2]
    assert stat.value == pytest.approx(_brute_alpha(sets, units), abs=1e-12)


def _brute_alpha(sets: list[frozenset], units: list[int]) -> float:
    n = len(sets)
    d = np.array([[value_sets.masi_distance(a, b) for b in sets] for a in sets])
    u = np.array(units)
    m = np.bincount(u)
    observed = sum(d[i, j] / (m[u[i]] - 1) for i in range(n) for j in range(n)
                   if i != j and u[i] == u[j])
    return 1 - (n - 1) * observed / d.sum()


def test_all_sets_identical_is_nan() -> None:
    frame = _long([(f"u{i}", r, ("a", "b")) for i in range(4) for r in "xy"], "ai_values")
    stat = value_sets.set_alpha(frame)
    assert math.isnan(stat.value) and "no variation" in stat.reason


def test_level_map_merges_values_and_keeps_free_values() -> None:
    rows = [("u1", "a", ("honesty",)), ("u1", "b", ("truthfulness",)),
            ("u2", "a", ("my free value",)), ("u2", "b", ("my free value",)),
            ("u3", "a", ("honesty",)), ("u3", "b", ("kindness",))]
    frame = _long(rows, "ai_values")
    top = {"honesty": "epistemic", "truthfulness": "epistemic", "kindness": "social"}
    leaf = value_sets.set_alpha(frame)
    merged = value_sets.set_alpha(frame, level_map=top)
    assert merged.value > leaf.value
    r = value_sets.map_level(value_sets.set_ratings(frame), top)
    assert {"epistemic", "social", "my free value"} == set(r.vocab.tolist())


def test_input_shapes_agree() -> None:
    wide = _units_by_raters(K2011_C)
    frame = pd.DataFrame(wide, columns=list("ABCD"))
    long = frame.stack().rename("label").reset_index()
    long.columns = ["conversation_id", "annotator", "label"]
    values = {coefficients.krippendorff_alpha(x).value for x in (wide, frame, long)}
    assert len(values) == 1


def test_bootstrap_is_seeded_and_brackets_the_value() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 400)
    rows = [(f"u{i}", r, int(truth[i] if rng.random() < 0.7 else rng.integers(0, 4)))
            for i in range(400) for r in "abc"]
    frame = _long(rows)
    one = coefficients.krippendorff_alpha(frame, n_boot=200, seed=11)
    two = coefficients.krippendorff_alpha(frame, n_boot=200, seed=11)
    other = coefficients.krippendorff_alpha(frame, n_boot=200, seed=12)
    assert (one.low, one.high) == (two.low, two.high)
    assert (one.low, one.high) != (other.low, other.high)
    assert one.low < one.value < one.high and one.high - one.low < 0.2
    # pattern bootstrap (multinomial over count patterns) and a plain unit bootstrap
    # estimate the same spread
    counts = coefficients._counts(shapes.as_long(frame), "label")
    per, pair = coefficients._alpha_terms(counts.patterns, counts.weights)
    unit_table = np.repeat(counts.patterns, counts.weights.astype(int), axis=0)
    n = unit_table.shape[0]
    draws = np.random.default_rng(5)
    sds = []
    for _ in range(300):
        idx = draws.integers(0, n, n)
        o, _p = coefficients._alpha_terms(unit_table[idx], np.ones(n))
        sds.append(coefficients._alpha_from(o.sum(0), "nominal", None)[0])
    width = np.percentile(sds, 97.5) - np.percentile(sds, 2.5)
    assert (one.high - one.low) == pytest.approx(width, rel=0.3)
    del per, pair


def test_set_alpha_bootstrap_and_budget() -> None:
    rows = [(f"u{i}", r, tuple(sorted({f"v{(i + k) % 7}" for k in range(1 + (i + j) % 3)})))
            for i in range(60) for j, r in enumerate("abc")]
    frame = _long(rows, "ai_values")
    with_ci = value_sets.set_alpha(frame, n_boot=50, seed=1)
    again = value_sets.set_alpha(frame, n_boot=50, seed=1)
    assert with_ci.low is not None and with_ci.low < with_ci.high
    assert (with_ci.low, with_ci.high) == (again.low, again.high)
    # duplicated units in a resample pair with themselves, which shifts alpha: the note says so
    # when the value falls outside; either way the interval sits near the value
    assert with_ci.low - 0.05 < with_ci.value < with_ci.high + 0.05
    skipped = value_sets.set_alpha(frame, n_boot=50, seed=1, boot_budget=10)
    assert skipped.low is None and "interval omitted" in skipped.reason
    assert skipped.value == with_ci.value


def test_per_value_alpha_matches_binary_alpha() -> None:
    rows = [("u1", "a", ("x", "y")), ("u1", "b", ("x",)), ("u2", "a", ("y",)),
            ("u2", "b", ("y",)), ("u3", "a", ("x",)), ("u3", "b", ()), ("u3", "c", ("x", "y"))]
    frame = _long(rows, "ai_values")
    per = value_sets.per_value_alpha(frame, top_k=2)
    assert set(per) == {"x", "y"}
    for value, stat in per.items():
        binary = frame.assign(label=frame.ai_values.map(lambda s, v=value: v in s))
        assert stat.value == pytest.approx(coefficients.krippendorff_alpha(binary).value, abs=1e-12)


def test_pairwise_kappa() -> None:
    frame = _long([("u1", "a", "x"), ("u1", "b", "x"), ("u1", "c", "y"),
                   ("u2", "a", "y"), ("u2", "b", "y"), ("u2", "c", "y"),
                   ("u3", "a", "x"), ("u3", "b", "y")])
    stats = coefficients.pairwise_cohen_kappa(frame)
    assert set(stats) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert stats[("a", "c")].n_units == 2


# --------------------------------------------------------------------------- model vs human


def test_model_scores_against_reference() -> None:
    ref = pd.DataFrame({
        "conversation_id": ["u1", "u2", "u3", "u4"],
        "response_type": ["neutral", "reframing", "neutral", None],
        "ai_values": [("a", "b"), ("c",), (), ("a",)],
    })
    model = pd.DataFrame({
        "conversation_id": ["u1", "u2", "u3", "u4", "u5"],
        "response_type": ["neutral", "neutral", "neutral", "neutral", "neutral"],
        "ai_values": [("a",), ("c", "d"), (), ("b",), ("a",)],
    })
    acc, kappa, table = model_scores.response_type_scores(model, ref)
    assert acc.value == pytest.approx(2 / 3) and acc.n_units == 3
    labels = list(shapes.RESPONSE_TYPE_LABELS)
    assert table[labels.index("reframing"), labels.index("neutral")] == 1
    # the model always says "neutral": p_o = p_e = 2/3, so kappa is exactly 0
    assert table.sum() == 3 and kappa.value == pytest.approx(0.0, abs=1e-12)
    scores = model_scores.value_scores(model, ref)
    # tp = 1 + 1 + 0 + 0, fp = 0 + 1 + 0 + 1, fn = 1 + 0 + 0 + 1
    assert scores["micro_precision"].value == pytest.approx(2 / 4)
    assert scores["micro_recall"].value == pytest.approx(2 / 4)
    # per-unit Jaccard 1/2, 1/2, 1 (both empty), 0
    assert scores["mean_jaccard"].value == pytest.approx(0.5)
    assert scores["micro_f1"].n_units == 4


def test_agreement_report_rows_and_json() -> None:
    rng = np.random.default_rng(0)
    labels = list(shapes.RESPONSE_TYPE_LABELS)
    leaves = ["honesty", "clarity", "care", "respect", "rigor", "free one"]
    level_maps = {1: {"honesty": "c1", "clarity": "c1", "care": "c2", "respect": "c2",
                      "rigor": "c1"},
                  2: {v: "k1" for v in leaves[:5]},
                  3: {v: "Practical values" for v in leaves[:5]}}
    ann, gold, ext = [], [], []
    for i in range(40):
        truth = labels[rng.integers(0, 7)]
        values = tuple(sorted(set(rng.choice(leaves, rng.integers(0, 3)).tolist())))
        gold.append((f"u{i}", truth, values))
        for r in ("ann-a", "ann-b", "ann-c"):
            if rng.random() < 0.1:
                continue
            rt = truth if rng.random() < 0.8 else labels[rng.integers(0, 7)]
            ann.append((f"u{i}", r, rt, values if rng.random() < 0.7 else values[:1]))
        for p in ("p1", "p2"):
            ext.append((f"u{i}", p, truth if rng.random() < 0.7 else "neutral", values[:2], "ok"))
    annotations = pd.DataFrame(ann, columns=["conversation_id", "annotator", "response_type",
                                             "ai_values"])
    gold_f = pd.DataFrame(gold, columns=["conversation_id", "response_type", "ai_values"])
    ext_f = pd.DataFrame(ext, columns=["conversation_id", "prompt_id", "response_type",
                                       "ai_values", "status"])
    report = agreement.agreement_report(annotations, gold_f, ext_f, level_maps, n_boot=30, seed=1)
    frame = report.to_frame()
    assert list(frame.columns) == ["scope", "metric", "field", "level", "value_name", "model",
                                   "reference", "value", "low", "high", "n_units", "note"]
    assert report.prompt_ids == ["p1", "p2"]
    assert set(frame.level.dropna()) == {0, 1, 2, 3}
    masi = frame[(frame.metric == "krippendorff_alpha_masi")].sort_values("level")
    assert len(masi) == 4 and masi.value.notna().all()
    assert {"model p1 vs gold", "model p2 vs annotator ann-a"} <= set(frame.scope)
    # what the scope and metric show is also in typed fields, for code to read without parsing
    vs_gold = frame[frame.scope == "model p1 vs gold"]
    assert set(vs_gold.model) == {"p1"} and set(vs_gold.reference) == {"gold"}
    per_value = [r for r in report.rows if r.metric == "value_alpha"]
    assert per_value and all(r.value_name and r.key.value == r.value_name for r in per_value)
    assert {r.pair for r in report.rows if r.metric == "cohen_kappa" and r.pair} == {
        ("ann-a", "ann-b"), ("ann-a", "ann-c"), ("ann-b", "ann-c")}
    assert len(report.confusion) == 2 * 4
    assert "accuracy" in set(frame.metric) and "gwet_ac1" in set(frame.metric)
    assert report.model_validate_json(report.model_dump_json()).rows[0].scope == "annotators"
    assert ".800" in report.how_to_read and "prevalence" in report.how_to_read
    # a level without a map is reported as skipped, not silently dropped
    partial = agreement.agreement_report(annotations, level_maps={1: level_maps[1]}, n_boot=0)
    skipped = partial.to_frame().query("metric == 'level skipped'")
    assert set(skipped.level) == {2, 3}
    # NaN rows survive JSON (written as null, read back as NaN)
    again = agreement.AgreementReport.model_validate_json(partial.model_dump_json())
    assert math.isnan(again.rows[0].value) and again.rows[0].note == "no map for level 2"


def test_module_imports_only_allowed_packages() -> None:
    source = Path(agreement.__file__).read_text()
    imported = {line.split()[1].split(".")[0] for line in source.splitlines()
                if line.startswith(("import ", "from "))}
    assert imported <= {"__future__", "math", "collections", "dataclasses", "itertools",
                        "typing", "enum", "numpy", "pandas", "pydantic", "scipy",
                        "annotator"}


def test_value_scores_of_pairs_equal_value_scores_level_by_level():
    from annotator.measure.model_scores import value_scores, value_scores_of_pairs

    model = pd.DataFrame(
        {"conversation_id": ["a", "b", "c"], "ai_values": [("x", "y"), ("y",), ()]}
    )
    ref = pd.DataFrame({"conversation_id": ["a", "b", "c"], "ai_values": [("x",), ("z",), ()]})
    maps = {0: None, 1: {"x": "X", "y": "X", "z": "Z"}}
    vocab = model_scores.Vocabulary()
    paired = model_scores.pair_sets(model_scores.encode_sets(model, "ai_values", vocab),
                          model_scores.encode_sets(ref, "ai_values", vocab), vocab.names())
    together = value_scores_of_pairs(paired, maps)
    for level, level_map in maps.items():
        alone = value_scores(model, ref, level_map=level_map)
        assert {k: s.value for k, s in together[level].items()} == pytest.approx(
            {k: s.value for k, s in alone.items()}, nan_ok=True
        )


def test_spearman_rho_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = x + rng.normal(0, 2, 40)
    assert model_scores.spearman_rho(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert model_scores.spearman_rho([1, 1, 1], [1, 2, 3]) is None
