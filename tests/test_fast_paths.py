"""The fast paths the paper-scale commands take give the same figures and frames as the
straightforward code they replaced, kept here (or in the library) as the oracle.

Unit tests on generated data (no fakes: the real statistics code and real SQLite files):
- model against references: each frame's value sets encoded once and carried over to each
  pair's vocabulary (`paired_ratings`) against encoding the pair afresh (`_model_ref_ratings`);
- the macro bootstrap in chunked sparse products (`_macro_samples`) against the loop over
  resamples it replaced;
- the whole agreement report's model rows against value scores computed pair by pair;
- the frames read from a study (JSON label columns, hostile names included) against parsing
  each row with `orjson` as before;
- adjudication written in one transaction against writing each conversation's gold alone;
- every command sets the cycle collector's threshold (`db.collect_garbage_rarely`);
- the majority rule counted with plain dicts against counting with `Counter`;
- annotations and gold walked side by side against dict lookups;
- labels coded by a dict lookup of each distinct label against `pd.Categorical`, and
  against a lookup of each label;
- response types and value sets coded once per frame (shared unit codes) against merging the
  two frames of each pair;
- the inter-annotator figures taken from a report computed with more of them (the app's stored
  summary) against computing them with the settings asked for;
- value sets of name lists left in Arrow (the frame store's dictionary, chunk by chunk)
  against the same cells as tuples, and frames read either way scored alike;
- a version's scores against gold taken as known (the app's stored summary, read back)
  against computing them, and only where they apply (one model, every level asked for);
- each set's codes sorted and merged per set (scipy) against Python's `sorted(set(...))`;
- distinct keys by a stable sort against `np.unique`, and names kept as the strings they are
  against `str` on each name.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from annotator.db import open_db
from annotator.measure import agreement, frames, model_scores
from annotator.measure.shapes import RATER, RESPONSE_TYPE_LABELS, UNIT

NAMES = ["honesty", "care", "Ünïcode ☃", "a \"quoted\" name", "", "x" * 300, "emoji 🙂",
         "new\nline", "back\\slash", "free value"]


def _sets(rng: np.random.Generator, n: int, empty: float = 0.2) -> list[object]:
    out: list[object] = []
    for _ in range(n):
        if rng.random() < 0.05:
            out.append(None)  # a missing cell
        elif rng.random() < empty:
            out.append(())
        else:
            k = int(rng.integers(1, 5))
            picked = rng.choice(len(NAMES), size=k, replace=True)  # duplicates within a set
            cells = [NAMES[i] for i in picked]
            out.append(list(cells) if rng.random() < 0.3 else tuple(cells))
    return out


def _study_frames(seed: int = 3, n: int = 1_500) -> tuple[pd.DataFrame, ...]:
    rng = np.random.default_rng(seed)
    ids = [f"c{i:05d}" for i in range(n)]
    labels = np.array(RESPONSE_TYPE_LABELS, dtype=object)
    ann = []
    for a in range(3):
        keep = rng.random(n) > 0.1
        ann.append(pd.DataFrame({
            UNIT: np.array(ids, dtype=object)[keep], RATER: f"annotator-{a}",
            "response_type": labels[rng.integers(0, 7, int(keep.sum()))],
            "ai_values": [s for s, k in zip(_sets(rng, n), keep, strict=True) if k],
            "human_values": [s for s, k in zip(_sets(rng, n, 0.8), keep, strict=True) if k],
        }))
    annotations = pd.concat(ann, ignore_index=True)
    # a re-submitted label: the unit's last row counts
    annotations = pd.concat([annotations, annotations.iloc[:40]], ignore_index=True)
    gold = pd.DataFrame({UNIT: ids, "response_type": labels[rng.integers(0, 7, n)],
                         "ai_values": _sets(rng, n), "human_values": [()] * n})
    ext = pd.concat([pd.DataFrame({
        UNIT: ids, "prompt_id": pid, "model": "m", "status": "ok",
        "response_type": labels[rng.integers(0, 7, n)], "ai_values": _sets(rng, n),
        "human_values": _sets(rng, n, 0.95)}) for pid in ("p1", "p2")], ignore_index=True)
    # a field nobody used: no macro figure, and no interval to draw
    ext.loc[ext["prompt_id"] == "p2", "human_values"] = pd.Series(
        [()] * n, index=ext.index[ext["prompt_id"] == "p2"], dtype=object)
    return annotations, gold, ext


def _level_maps() -> dict[int, dict[str, str]]:
    return {1: {name: f"group-{i % 3}" for i, name in enumerate(NAMES)},
            3: {name: "top" for name in NAMES[:4]}}


def test_paired_ratings_equal_pairs_encoded_afresh() -> None:
    annotations, gold, ext = _study_frames()
    model = ext.loc[ext["prompt_id"] == "p1"]
    for ref in (gold, annotations.loc[annotations[RATER] == "annotator-1"]):
        for field in ("ai_values", "human_values"):
            oracle = model_scores._model_ref_ratings(model, ref, field)
            columns = []
            for frame in (model, ref):
                vocab = model_scores.Vocabulary()
                columns += [model_scores.encode_sets(frame, field, vocab), vocab.names()]
            fast = model_scores.paired_ratings(*columns)
            for name in ("unit", "indptr", "indices", "vocab", "units", "raters"):
                assert np.array_equal(getattr(fast, name), getattr(oracle, name)), name


def _hostile_types(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Response types as a study may hold them: missing (None, NaN), a category not listed,
    an enum member instead of its value, and units only one side labelled."""
    from annotator.models import ResponseType

    types = frame["response_type"].to_numpy(dtype=object).copy()
    odd = [None, float("nan"), "not a response type", list(ResponseType)[2], ""]
    for i in rng.choice(len(types), size=len(types) // 5, replace=False):
        types[i] = odd[int(rng.integers(len(odd)))]
    return frame.assign(response_type=types).iloc[: int(len(frame) * 0.9)]


def _response_type_scores_merged(model: pd.DataFrame, reference: pd.DataFrame, n_boot: int,
                                 seed: int) -> tuple:
    """`response_type_scores` as it was: the two frames merged on the unit, then a lookup per
    row (`_aligned`, `_paired_table`)."""
    from annotator.measure.coefficients import (
        _paired_table,
        _table_stat,
        accuracy_from_table,
        kappa_from_table,
    )
    from annotator.measure.shapes import _nan

    both = model_scores._aligned(model, reference, "response_type")
    if both.empty:
        z = np.zeros((len(RESPONSE_TYPE_LABELS),) * 2, dtype=np.int64)
        return _nan("no shared conversations"), _nan("no shared conversations"), z
    table, _ = _paired_table(both["response_type_ref"].tolist(),
                             both["response_type_model"].tolist(), RESPONSE_TYPE_LABELS)
    return (_table_stat(table, accuracy_from_table, n_boot, seed),
            _table_stat(table, kappa_from_table, n_boot, seed), table)


def test_frames_coded_once_pair_as_frames_merged_pair_by_pair() -> None:
    """Response types and value sets coded once per frame over shared unit codes
    (`last_rows`, then `last_labels` and `encode_sets`) give the tables and pairs that merging
    the two frames gives, re-submitted labels, missing and unlisted types included; a pair
    with no shared conversation, or no labelled one, says so as before."""
    rng = np.random.default_rng(11)
    annotations, gold, ext = _study_frames()
    model = _hostile_types(ext.loc[ext["prompt_id"] == "p1"], rng)
    refs = [_hostile_types(gold, rng), annotations.loc[annotations[RATER] == "annotator-1"],
            gold.iloc[:0], gold.assign(response_type=None),
            pd.DataFrame({UNIT: ["elsewhere"], "response_type": ["neutral"],
                          "ai_values": [("care",)], "human_values": [()]})]
    units = model_scores.UnitCodes()
    model_rows = model_scores.last_rows(model, units)
    coded = model_scores.last_labels(model_rows, "response_type", RESPONSE_TYPE_LABELS)
    for ref in refs:
        ref_rows = model_scores.last_rows(ref, units)
        slow = _response_type_scores_merged(model, ref, n_boot=30, seed=2)
        fast = model_scores.response_type_scores(
            coded, model_scores.last_labels(ref_rows, "response_type", RESPONSE_TYPE_LABELS),
            n_boot=30, seed=2)
        of_frames = model_scores.response_type_scores(model, ref, n_boot=30, seed=2)
        for scores in (fast, of_frames):
            assert np.array_equal(scores[2], slow[2])
            assert scores[0].model_dump_json() == slow[0].model_dump_json()
            assert scores[1].model_dump_json() == slow[1].model_dump_json()
    with pytest.raises(TypeError):
        model_scores.response_type_scores(coded, gold)
        for field in ("ai_values", "human_values"):
            vocab = model_scores.Vocabulary()
            oracle = model_scores.pair_sets(model_scores.encode_sets(model, field, vocab),
                                            model_scores.encode_sets(ref, field, vocab),
                                            vocab.names())
            vocab = model_scores.Vocabulary()
            fast_pair = model_scores.pair_sets(
                model_scores.encode_sets(model_rows, field, vocab),
                model_scores.encode_sets(ref_rows, field, vocab), vocab.names())
            assert (fast_pair is None) == (oracle is None)
            if oracle is not None:
                for name in ("unit", "indptr", "indices", "vocab", "units", "raters"):
                    assert np.array_equal(getattr(fast_pair, name), getattr(oracle, name))


def _macro_loop(tp, pred, ref, n: int, n_boot: int, seed: int) -> dict[str, list[float]]:
    """The bootstrap of macro scores as it was: one resample at a time."""
    samples: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        tpv, pv, rv = tp.T @ w, pred.T @ w, ref.T @ w
        used = (pv > 0) | (rv > 0)
        if not used.any():
            for k in samples:
                samples[k].append(float("nan"))
            continue
        scores = model_scores.per_value_scores(tpv[used], pv[used], rv[used], 0.0)
        for k, val in zip(("precision", "recall", "f1"), scores, strict=True):
            samples[k].append(float(val.mean()))
    return samples


@pytest.mark.parametrize("n_boot", [1, 31, 70])
def test_macro_samples_equal_the_loop_over_resamples(n_boot: int) -> None:
    annotations, gold, ext = _study_frames(seed=n_boot)
    leaf = model_scores._model_ref_ratings(ext.loc[ext["prompt_id"] == "p2"], gold, "ai_values")
    c = model_scores.set_counts(leaf)
    n = leaf.units.size
    fast = model_scores._macro_samples(c.hits, c.predicted, c.reference, n, n_boot, 5)
    slow = _macro_loop(c.hits, c.predicted, c.reference, n, n_boot, 5)
    assert fast == slow  # exactly: integer sums in floating point, in any order


def test_agreement_report_model_rows_equal_pair_by_pair_scores(monkeypatch) -> None:
    annotations, gold, ext = _study_frames()
    maps = _level_maps()
    report = agreement.agreement_report(annotations, gold, ext, maps, n_boot=40, seed=2,
                                        top_k=5)
    # the oracle: every pair encoded afresh and the macro bootstrap one resample at a time
    monkeypatch.setattr(model_scores, "_macro_samples", _macro_loop)
    refs = [("gold", gold)] + [
        (f"annotator {a}", annotations.loc[annotations[RATER] == a])
        for a in sorted(annotations[RATER].unique())]
    seen = 0
    rows = {(r.scope, r.metric, r.field, r.level): r for r in report.rows}
    for pid, group in ext.groupby(["prompt_id", "model"]):
        for ref_name, ref in refs:
            for field in ("ai_values", "human_values"):
                by_level = model_scores.value_scores_of_pairs(
                    model_scores._model_ref_ratings(group, ref, field),
                    {lv: maps.get(lv) for lv in (0, 1, 3)}, n_boot=40, seed=2)
                for lv, scores in by_level.items():
                    for metric, s in scores.items():
                        row = rows[(f"model {' '.join(pid)} vs {ref_name}", metric, field, lv)]
                        for got, want in ((row.value, s.value), (row.low, s.low),
                                          (row.high, s.high)):
                            assert got == want or (got is None and want is None) or (
                                math.isnan(got) and math.isnan(want)), (row, s)
                        assert (row.n_units, row.note) == (s.n_units, s.reason)
                        seen += 1
    assert seen == 2 * 4 * 2 * 3 * 7


# --- frames read from a study -------------------------------------------------------------------


def _names_oracle(values: list) -> tuple[str, ...]:
    return tuple(v["name"] if isinstance(v, dict) else str(v) for v in values)


def test_frames_equal_row_by_row_parsing(tmp_path: Path) -> None:
    db = open_db(tmp_path / "study.db")
    rng = np.random.default_rng(9)
    stored = []
    for i in range(400):
        pick = [NAMES[j] for j in rng.integers(0, len(NAMES), int(rng.integers(0, 4)))]
        # names as plain strings, as ValueRef objects, and (hostile) numbers and booleans
        ai = [{"name": v, "node_id": None, "path": [v, "x"], "evidence": "q \u0000"}
              if k % 2 else v for k, v in enumerate(pick)] + ([7, True] if i % 50 == 0 else [])
        human = [] if i % 3 else pick[:1]
        stored.append((f"c{i:04d}", orjson.dumps(ai).decode(), orjson.dumps(human).decode()))
    with db.conn:
        db.conn.executemany(
            "insert into extractions (conversation_id, prompt_id, model, extractor, subjective, "
            "ai_values, human_values, response_type, status, input_tokens, output_tokens, "
            "cache_read_tokens, cache_write_tokens, cost_usd, attempts, created_at) values "
            "(?, 'p', 'm', 'x', 1, ?, ?, 'neutral', 'ok', 0, 0, 0, 0, 0.0, 1, 't')", stored)
        db.conn.executemany(
            "insert into gold (conversation_id, ai_values, human_values, response_type, "
            "subjective, decided_by, decided_at, from_annotations, history) values "
            "(?, ?, ?, 'neutral', 1, 'majority', 't', '[]', '[]')", stored)
    ext = frames.extractions_frame(db)
    gold = frames.gold_frame(db)
    want = {cid: (_names_oracle(orjson.loads(ai)), _names_oracle(orjson.loads(human)))
            for cid, ai, human in stored}
    for frame in (ext, gold):
        got = {cid: (ai, human) for cid, ai, human in
               frame[["conversation_id", "ai_values", "human_values"]].itertuples(index=False)}
        assert got == want


def test_macro_scores_of_a_field_nobody_used_say_so_not_interval_omitted() -> None:
    """Within the bootstrap budget, a macro figure with no values on either side is NaN with
    "no values used", as when every resample was drawn (their intervals were never shown)."""
    annotations, gold, ext = _study_frames()
    report = agreement.agreement_report(annotations, gold, ext, _level_maps(), n_boot=20,
                                        top_k=2)
    rows = [r for r in report.rows if r.scope == "model p2 m vs gold"
            and r.field == "human_values" and r.metric.startswith("macro_")]
    assert len(rows) == 3 * 3
    assert all(math.isnan(r.value) and r.note == "no values used" for r in rows)


def test_every_command_runs_the_cycle_collector_rarely(tmp_path: Path) -> None:
    """`annotator` sets the collector's threshold before any command runs (half of
    `adjudicate`'s time at 300,000 conversations was the collector walking what it read)."""
    import gc

    from typer.testing import CliRunner

    from annotator.cli import app
    from annotator.db import BULK_GC_THRESHOLD

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        result = CliRunner().invoke(app, ["init", "--db", str(tmp_path / "s.db")])
        assert result.exit_code == 0, result.output
        assert gc.get_threshold()[0] == BULK_GC_THRESHOLD
    finally:
        gc.set_threshold(*before)


def _majority_by_counter(annotations: list) -> tuple | None:
    """The majority rule as `gold.majority_label` wrote it with `Counter` (the oracle)."""
    from collections import Counter

    need = len(annotations) // 2 + 1
    for field in ("response_type", "subjective"):
        votes = Counter(getattr(a, field) for a in annotations if getattr(a, field) is not None)
        if not votes or votes.most_common(1)[0][1] < need:
            return None

    def agreed(field: str) -> list[str]:
        counts = Counter(v for a in annotations for v in dict.fromkeys(getattr(a, field)))
        first_seen = list(dict.fromkeys(v for a in annotations for v in getattr(a, field)))
        return [v for v in first_seen if counts[v] >= need]

    def decided(field: str) -> object:
        return Counter(getattr(a, field) for a in annotations).most_common(1)[0][0]

    return (agreed("ai_values"), agreed("human_values"), decided("response_type"),
            decided("subjective"))


def test_majority_rule_equals_counting_with_counter() -> None:
    """Deciding gold with plain dicts gives the labels, value order included, that counting
    with `Counter` gave, on random annotations with ties, repeats and missing fields."""
    from annotator.datasets.gold import majority_label
    from annotator.models import AnnotatorLabels

    rng = np.random.default_rng(21)
    values = ["honesty", "care", "autonomy", "Ünïcode ☃", "x"]
    types = [None, "strong support", "neutral", "reframing"]
    compared = decided = 0
    for _ in range(3000):
        annotations = [
            AnnotatorLabels(
                annotator=f"a{i}",
                ai_values=[values[j] for j in rng.integers(0, 5, rng.integers(0, 5))],
                human_values=[values[j] for j in rng.integers(0, 5, rng.integers(0, 3))],
                response_type=types[rng.integers(0, 4)],
                subjective=[None, True, False][rng.integers(0, 3)],
            )
            for i in range(int(rng.integers(1, 6)))
        ]
        label = majority_label(annotations)
        expected = _majority_by_counter(annotations)
        got = None if label is None else (label.ai_values, label.human_values,
                                          label.response_type, label.subjective)
        assert got == expected
        compared += 1
        decided += label is not None
    assert compared == 3000 and 300 < decided < 2700  # both outcomes were exercised


def testside_by_side_visits_every_id_once_in_order() -> None:
    """Adjudication and export walk annotations and gold together: every id of either stream,
    once, in order, with each side's item or None (the dict lookups they replaced)."""
    from annotator.datasets.gold import side_by_side

    rng = np.random.default_rng(5)
    for _ in range(200):
        ids = [f"{i:04x}" for i in range(int(rng.integers(0, 40)))]
        left = {i: f"a{i}" for i in ids if rng.random() < 0.6}
        right = {i: f"g{i}" for i in ids if rng.random() < 0.6}
        walked = list(side_by_side(iter(sorted(left.items())), iter(sorted(right.items()))))
        assert walked == [(i, left.get(i), right.get(i)) for i in sorted(set(left) | set(right))]


def test_category_codes_equal_pandas_categorical() -> None:
    """Confusion tables code labels by a dict lookup: the codes `pd.Categorical` gives, for
    listed, unlisted and missing labels (None, NaN) alike."""
    import warnings

    from annotator.measure.coefficients import _category_codes

    rng = np.random.default_rng(8)
    pool = [*RESPONSE_TYPE_LABELS, "not a type", None, float("nan"), "", "Ünïcode ☃"]
    values = [pool[i] for i in rng.integers(0, len(pool), 5000)]
    with warnings.catch_warnings():  # pandas deprecates unlisted values: the lookup has none
        warnings.simplefilter("ignore")
        expected = pd.Categorical(values, categories=list(RESPONSE_TYPE_LABELS)).codes
    assert _category_codes(values, RESPONSE_TYPE_LABELS).tolist() == expected.tolist()
    assert (expected == -1).sum() > 1000  # unlisted and missing labels were exercised
    # each distinct label looked up once: as each label looked up, for labels pandas takes
    # for one (None, NaN, pd.NA; 1, 1.0, True) and categories that hold some of them
    mixed = [None, float("nan"), pd.NA, 1, 1.0, True, 2, "2", "a", "", False, 0]
    labels = [mixed[i] for i in rng.integers(0, len(mixed), 5000)]
    for categories in ([None, "a", 1], ["a", "2", 0], [float("nan"), 2], []):
        position = {c: i for i, c in enumerate(categories)}
        assert _category_codes(labels, categories).tolist() == [
            position.get(v, -1) for v in labels]


def test_no_majority_counted_at_once_equals_the_group_by() -> None:
    """The conversation table's `rt_split` counted over (conversation, type) codes at once
    (`summaries._no_majority`) against the pandas group-by it replaced, with missing types
    (None, NaN), types outside the list, one-annotation conversations and ties."""
    from annotator.measure import summaries

    rng = np.random.default_rng(4)
    annotations, _, _ = _study_frames(seed=8, n=2_000)
    annotations = pd.concat([_hostile_types(annotations, rng),
                             annotations.iloc[:300].assign(response_type="neutral")])
    ann = annotations.sort_values(["conversation_id", "annotator"], kind="stable")
    ids, starts, ends = summaries._groups(ann, "conversation_id")
    labelled = ann.loc[ann["response_type"].notna(), ["conversation_id", "response_type"]]
    votes = labelled.groupby(["conversation_id", "response_type"], sort=False).size()
    top = votes.groupby(level=0).max()
    n_lab = labelled.groupby("conversation_id").size()
    split = (n_lab >= 2) & (top.reindex(n_lab.index) <= n_lab // 2)
    oracle = pd.Series(ids).map(split).fillna(False).astype(bool).to_numpy()
    fast = summaries._no_majority(ann["response_type"], starts, ends)
    assert 0 < oracle.sum() < len(oracle)
    assert np.array_equal(fast, oracle)


# settings `inter_annotator_part` must answer from a report with every level, both distances,
# the pairs and the 6 most used values: fewer of each, levels out of order, a level without a map
TAKEN = [{"top_k": 6}, {"top_k": 2, "distances": ("jaccard",)},
         {"levels": (3, 0), "top_k": 0, "pairwise": False, "distances": ("masi",)},
         {"levels": (2,), "top_k": 1},
         {"levels": (1,), "distances": ("jaccard", "masi"), "top_k": 4},
         {"levels": (0,), "top_k": 3, "pairwise": False}]
# settings it must refuse: figures the stored report does not hold, or drew differently
NOT_HELD = [{"top_k": 7}, {"n_boot": 31}, {"seed": 1}, {"masi_weights": "nltk"}]


def test_inter_annotator_figures_taken_from_a_fuller_report_equal_those_computed() -> None:
    annotations, _, _ = _study_frames()
    maps = _level_maps()  # level 2 has no map: its "level skipped" row is carried over too
    stored = agreement.agreement_report(annotations, level_maps=maps, top_k=6, n_boot=30)
    assert any(r.metric == "level skipped" for r in stored.rows)
    for settings in TAKEN:
        direct = agreement.agreement_report(annotations, level_maps=maps, n_boot=30, **settings)
        taken = agreement.inter_annotator_part(stored, n_boot=30, **settings)
        assert taken is not None, settings
        assert taken.model_dump_json() == direct.model_dump_json(), settings
    for settings in NOT_HELD:
        assert agreement.inter_annotator_part(stored, **{"n_boot": 30, **settings}) is None
    some_levels = agreement.agreement_report(annotations, level_maps=maps, levels=(0, 1),
                                             n_boot=30)
    assert agreement.inter_annotator_part(some_levels, levels=(0, 3), n_boot=30) is None
    no_pairs = agreement.agreement_report(annotations, level_maps=maps, n_boot=30,
                                          pairwise=False)
    assert agreement.inter_annotator_part(no_pairs, n_boot=30) is None
    assert agreement.inter_annotator_part(no_pairs, n_boot=30, pairwise=False) is not None


@pytest.mark.parametrize("level", ["nominal", "interval", "ordinal"])
def test_alpha_resamples_in_one_product_equal_the_loop_over_resamples(level: str) -> None:
    """Every resample's alpha from one matrix product (`_alpha_samples`) against the loop
    that made one product a resample, on the same draws: equal but for the last bits of a sum
    taken in another order; undefined resamples (one category) NaN in both."""
    from annotator.measure import coefficients

    rng = np.random.default_rng(4)
    for categories, units in ((1, 5), (2, 3), (3, 40), (5, 200)):  # one category: NaN
        table = rng.integers(0, 3, size=(units, categories))
        table[0] = 0  # a unit no one rated
        counts = coefficients.counts_from_table(table)
        per, pair = coefficients._alpha_terms(counts.patterns, counts.weights)
        draws = rng.multinomial(int(counts.weights.sum()), counts.weights / counts.weights.sum(),
                                size=60)[:, pair].astype(float)
        fast = coefficients._alpha_samples(draws, per, level, None)
        slow = np.array([coefficients._alpha_from(np.tensordot(w, per, axes=1), level, None)[0]
                         for w in draws])
        assert np.array_equal(np.isnan(fast), np.isnan(slow))
        assert np.allclose(fast, slow, rtol=0, atol=1e-12, equal_nan=True)


def test_set_alpha_resampled_pair_counts_equal_one_resample_at_a_time() -> None:
    """Alpha for sets' bootstrap: every resample's pair counts gathered for a few resamples
    at once (`resampled_hists`) equal the counts of that resample alone (`hist`), exactly,
    with the unit weights a loop over resamples draws (sets of 0 to 5 values, one rater's
    missing, hostile names)."""
    from annotator.measure import value_sets

    rng = np.random.default_rng(1)
    rows = []
    for u in range(200):
        for rater in ("a", "b \u2603", "=c"):
            if rng.random() < 0.85:
                k = int(rng.integers(0, 6))
                rows.append((f"u{u}", rater, tuple(rng.choice(NAMES, k, replace=False))))
    frame = pd.DataFrame(rows, columns=[UNIT, RATER, "ai_values"])
    prepared = value_sets._prepare_sets(value_sets.set_ratings(frame, "ai_values"))
    n = prepared.m_unit.size
    loop = np.random.default_rng(3)
    got = list(prepared.resampled_hists(n, 70, 3))
    assert len(got) == 70
    for weights, hist in got:
        drawn = np.bincount(loop.integers(0, n, n), minlength=n).astype(float)
        assert np.array_equal(weights, drawn)
        assert np.array_equal(hist, prepared.hist(drawn))


# --- name lists left in Arrow (`read_frame(..., arrow_lists=True)`) --------------------------

HOSTILE_NAMES = [*NAMES, "\u202eevil", "=1+1", "<b>markup</b>", "nul\x00inside", " care "]


def _arrow_lists(cells: list, how: str) -> pd.Series:
    """Cells (tuples, lists, None) as an Arrow list column: `dictionary`, names coded as the
    frame store keeps them, in chunks with different dictionaries; `strings`, plain names in
    one chunk."""
    import pyarrow as pa

    lists = [None if c is None else list(c) for c in cells]
    if how == "strings":
        return pd.Series(pd.arrays.ArrowExtensionArray(
            pa.chunked_array([pa.array(lists, type=pa.large_list(pa.string()))])))
    chunks = []
    for start in range(0, len(lists), 97):  # chunk after chunk, each its own dictionary
        part = pa.array(lists[start:start + 97], type=pa.large_list(pa.string()))
        chunks.append(pa.LargeListArray.from_arrays(
            part.offsets, part.values.dictionary_encode(), mask=part.is_null()))
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array(chunks)))


@pytest.mark.parametrize("how", ["dictionary", "strings"])
def test_value_sets_of_arrow_lists_equal_those_of_tuples(how: str) -> None:
    """`encode_sets` of a column of Arrow lists (the frame store's, read with `arrow_lists`)
    gives the sets, units and vocabulary that the same cells as Python tuples give: new names
    coded in order of first appearance across columns coded one after another, duplicates
    within a set merged, missing cells left out, hostile names as any other."""
    rng = np.random.default_rng(5)
    global NAMES
    kept, NAMES = NAMES, HOSTILE_NAMES
    try:
        annotations, gold, ext = _study_frames(seed=8, n=700)
    finally:
        NAMES = kept
    frames = [ext.loc[ext["prompt_id"] == "p1"], gold,
              annotations.loc[annotations[RATER] == "annotator-2"]]
    for field in ("ai_values", "human_values"):
        tuples, arrows = model_scores.Vocabulary(), model_scores.Vocabulary()
        units_t, units_a = model_scores.UnitCodes(), model_scores.UnitCodes()
        for frame in frames:
            as_arrow = frame.assign(**{field: _arrow_lists(frame[field].tolist(), how).set_axis(
                frame.index)})
            order = rng.permutation(len(frame))  # any order of rows
            frame, as_arrow = frame.iloc[order], as_arrow.iloc[order]
            want = model_scores.encode_sets(model_scores.last_rows(frame, units_t), field,
                                            tuples)
            got = model_scores.encode_sets(model_scores.last_rows(as_arrow, units_a), field,
                                           arrows)
            for name in ("units", "indptr", "codes", "unit_codes"):
                assert np.array_equal(getattr(got, name), getattr(want, name)), name
        assert arrows.codes == tuples.codes


def test_frames_read_with_arrow_lists_score_as_tuples(tmp_path: Path) -> None:
    """A frame stored and read back with its names as Arrow lists scores exactly as the one
    read as tuples: every model row of the agreement report."""
    from annotator.measure.frame_store import read_frame, store_table, to_arrow

    annotations, gold, ext = _study_frames(seed=4, n=600)
    for frame in (annotations, gold, ext):  # the store holds tuples, never a missing cell
        for field in ("ai_values", "human_values"):
            frame[field] = [tuple(c) if c is not None else () for c in frame[field]]
    read = {}
    for name, frame in (("annotations", annotations), ("gold", gold), ("extractions", ext)):
        store_table(tmp_path / "study.db", name, "sig", to_arrow(frame))
        read[name] = [read_frame(tmp_path / "study.db", name, "sig", arrow_lists=lists)
                      for lists in (False, True)]
    assert isinstance(read["gold"][1]["ai_values"].dtype, pd.ArrowDtype)
    tuples, arrows = (agreement.agreement_report(
        read["annotations"][i], read["gold"][i], read["extractions"][i], _level_maps(),
        n_boot=20, inter_annotator=False) for i in (0, 1))
    assert len(tuples.rows) > 100
    assert arrows.model_dump_json() == tuples.model_dump_json()


# --- scores known before (the app's stored scores against gold) -------------------------------


def test_known_scores_are_taken_for_a_version_of_one_model_and_equal_those_computed() -> None:
    """A version's scores against gold, given as known (`known_scores`, made from the rows
    `scores_of_counts`' layout stores: `score_counts.known_scores`), give the report computing
    them gives; they are taken only for a version whose rows all name one model, and only
    when they hold every level asked for."""
    from annotator.measure import score_counts, summaries

    annotations, gold, ext = _study_frames(seed=6, n=500)
    maps = _level_maps()
    computed = agreement.agreement_report(annotations, gold, ext, maps, n_boot=25, seed=3,
                                          top_k=4, levels=(0, 1, 3))
    known = {}
    for pid in ("p1", "p2"):
        metrics, confusion = summaries._reference_scores(
            ext.loc[ext["prompt_id"] == pid], [("gold", gold, 25)], maps, 3)
        known[(pid, "gold")] = score_counts.known_scores(metrics, confusion, "gold")
    taken = agreement.agreement_report(annotations, gold, ext, maps, n_boot=25, seed=3,
                                       top_k=4, levels=(0, 1, 3), known_scores=known)
    assert taken.model_dump_json() == computed.model_dump_json()

    # a figure marked, to see where the known ones are taken
    marked = {key: value._replace(stats={
        where: {m: s.model_copy(update={"value": 123.0}) for m, s in stats.items()}
        for where, stats in value.stats.items()}) for key, value in known.items()}
    used = agreement.agreement_report(annotations, gold, ext, maps, n_boot=25, seed=3, top_k=4,
                                      levels=(0, 1), known_scores=marked)
    assert {r.scope for r in used.rows if r.value == 123.0} == {
        "model p1 m vs gold", "model p2 m vs gold"}
    two_models = ext.assign(model=np.where(np.arange(len(ext)) % 2, "m", "n"))
    none_named = ext.assign(model=np.where(np.arange(len(ext)) % 7, "m", None))
    for frame in (two_models, none_named):
        direct = agreement.agreement_report(annotations, gold, frame, maps, n_boot=25, seed=3,
                                            top_k=4)
        given = agreement.agreement_report(annotations, gold, frame, maps, n_boot=25, seed=3,
                                           top_k=4, known_scores=marked)
        assert given.model_dump_json() == direct.model_dump_json()
    # a level the known scores lack: computed
    lacking = {key: value._replace(stats={where: stats for where, stats in value.stats.items()
                                          if where[1] != 1}) for key, value in marked.items()}
    short = agreement.agreement_report(annotations, gold, ext, maps, n_boot=25, seed=3,
                                       top_k=4, levels=(0, 1, 3), known_scores=lacking)
    assert short.model_dump_json() == computed.model_dump_json()
    assert score_counts.known_scores(metrics, confusion.iloc[:-1], "gold") is None
    assert score_counts.known_scores(metrics, confusion, "annotator x") is None


def test_sets_sorted_per_set_equal_python_sets() -> None:
    """`sorted_sets` (each set's codes sorted and merged by scipy) and `_csr` (ratings given
    in any order) give each set's distinct codes in order, as Python's `sorted(set(...))`:
    empty sets and repeated codes included."""
    from annotator.measure.value_sets import _csr, sorted_sets

    rng = np.random.default_rng(12)
    for width in (1, 7, 3_000):
        lengths = rng.integers(0, 7, 2_000)
        codes = rng.integers(0, width, int(lengths.sum()))
        indptr, got = sorted_sets(lengths, codes, width)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        want = [sorted(set(codes[a:b].tolist())) for a, b in zip(bounds[:-1], bounds[1:],
                                                                    strict=True)]
        assert [got[a:b].tolist() for a, b in zip(indptr[:-1], indptr[1:], strict=True)] == want
        assert indptr.dtype == got.dtype == np.int64
        rating_of = np.repeat(np.arange(lengths.size), lengths)
        order = rng.permutation(rating_of.size)  # codes listed in no rating order
        ratings = _csr(np.arange(lengths.size), rating_of[order], codes[order],
                       np.arange(width).astype(object), np.arange(lengths.size).astype(object),
                       np.array(["a"] * lengths.size, dtype=object))
        assert [ratings.indices[a:b].tolist() for a, b in zip(
            ratings.indptr[:-1], ratings.indptr[1:], strict=True)] == want
    indptr, got = sorted_sets(np.zeros(0, np.int64), np.zeros(0, np.int64), 1)
    assert indptr.tolist() == [0] and got.size == 0


def test_micro_intervals_drawn_once_equal_one_draw_per_score() -> None:
    """The micro precision, recall and F1 intervals, their resamples drawn once and each
    scored for all three, equal drawing them again for each score as before, to the bit."""
    from annotator.measure.coefficients import _distinct_rows
    from annotator.measure.intervals import _boot_patterns, _with_interval

    annotations, gold, ext = _study_frames(seed=9, n=800)
    for field in ("ai_values", "human_values"):
        leaf = model_scores._model_ref_ratings(ext.loc[ext["prompt_id"] == "p1"], gold, field)
        scores = model_scores._value_scores(leaf, 60, 4, 1e8)
        c = model_scores.set_counts(leaf)
        pats, pw = _distinct_rows(np.stack([c.tp, c.fp, c.fn], 1).astype(np.int64))
        for name in ("precision", "recall", "f1"):
            def one(w: np.ndarray, name: str = name, pats: np.ndarray = pats) -> float:
                return model_scores.micro_scores(pats[:, 0], pats[:, 1], pats[:, 2], w)[name]
            point = model_scores.value_point_scores(pats, pw, *model_scores.value_sums(c))
            want = _with_interval(point[f"micro_{name}"],
                                  _boot_patterns(pw.astype(float), one, 60, 4))
            assert scores[f"micro_{name}"].model_dump_json() == want.model_dump_json()
            assert want.low is not None or field == "human_values"  # gold names none


def test_category_lookup_gives_each_category_once_in_order_of_its_first_value() -> None:
    """`summaries._CategoryLookup` (names mapped in C) against a name-by-name reading of the
    taxonomy: free values and hostile names have no category, a category listed twice comes
    once, at its first value."""
    from annotator.measure.summaries import _CategoryLookup, level_key, level_maps
    from annotator.taxonomy import load_taxonomy

    maps, tree = level_maps(), load_taxonomy()
    leaves = [node.name for node in tree._by_level[0][:400]]
    names = [*leaves[::37], "=HYPERLINK(\"x\")", "\u202eevil", "", *leaves[::53], leaves[0]]

    def category(name: str) -> str | None:
        node = tree.get(level_key(name, 3, maps))
        return node.short_name if node is not None and node.level == 3 else None

    lookup = _CategoryLookup(maps)
    for row in (names, names[::-1], names[5:9], [], ["free value"], names[:1] * 3):
        want = []
        for name in row:
            if (found := category(name)) is not None and found not in want:
                want.append(found)
        assert lookup(tuple(row)) == tuple(want), row
    assert len(lookup(tuple(names))) > 1  # the rows reach several categories


@given(st.lists(st.integers(-(2**40), 2**40), max_size=300), st.integers(1, 5))
@hypothesis_settings(max_examples=80, deadline=None)
def test_distinct_keys_by_a_stable_sort_equal_np_unique(keys: list[int], runs: int) -> None:
    """`sorted_keys.distinct` and `distinct_counts`, on keys in a few sorted runs (how the
    frames give them) and in any order: `np.unique`'s results, dtype included."""
    from annotator.measure.sorted_keys import distinct, distinct_counts

    given_keys = np.array(keys, dtype=np.int64)
    in_runs = np.concatenate([np.sort(part) for part in np.array_split(given_keys, runs)])
    for arr in (given_keys, in_runs):
        assert np.array_equal(distinct(arr), np.unique(arr))
        assert distinct(arr).dtype == np.unique(arr).dtype
        values, counts = distinct_counts(arr)
        expected_values, expected_counts = np.unique(arr, return_counts=True)
        assert np.array_equal(values, expected_values)
        assert np.array_equal(counts, expected_counts)


def test_row_names_equal_each_name_made_a_string() -> None:
    """`report_counts.row_names` keeps names that are all strings as they are, and makes
    every name a string when one is not (numbers, booleans, numpy strings): as `str` on each
    name, the rows alike."""
    from annotator.measure.report_counts import row_names

    cases = [
        [("honesty", "care"), None, (), ["care"], float("nan"), np.array(["rigor"])],
        [("honesty", 1), (1.0, True), None, (np.str_("care"), "care")],
        [("x\u202eevil", ""), ("",)],
        [(["a", "list"], "care"), ("honesty",)],
        [],
    ]
    for cells in cases:
        rows, flat = row_names(cells)
        expected = [str(v) for c in cells if isinstance(c, (tuple, list, np.ndarray)) for v in c]
        assert flat == expected and all(type(name) is str for name in flat)
        assert rows.tolist() == [i for i, c in enumerate(cells)
                                 if isinstance(c, (tuple, list, np.ndarray)) for _ in c]
