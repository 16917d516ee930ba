"""The agreement report: every statistic, inter-annotator and model-human, on each taxonomy
level, as rows that name the figure, its n and its 95% interval (`agreement_report`).

The statistics are pure functions over numpy arrays and pandas frames (no database, no taxonomy
loader), one module per concern: `shapes` (inputs and `Stat`), `intervals` (the bootstrap),
`coefficients` (one label per rating), `value_sets` (sets of values), `model_scores` (a model
against people) and `anchoring`. What they share is described here.

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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from annotator.measure.coefficients import (
    _alpha_counts,
    _Counts,
    _counts,
    _table_stat,
    fleiss_kappa,
    gwet_ac1,
    kappa_from_table,
    pairwise_cohen_kappa,
    percent_agreement,
    response_type_alpha,
)
from annotator.measure.model_scores import (
    ConfusionMatrix,
    LastLabels,
    LastRows,
    SetColumn,
    UnitCodes,
    Vocabulary,
    encode_sets,
    last_labels,
    last_rows,
    paired_ratings,
    response_type_scores,
    value_scores_of_pairs,
)
from annotator.measure.rating_counts import Patterns, RatingCounts, SetCounts, rating_counts
from annotator.measure.shapes import (
    HOW_TO_READ,
    MASI_WEIGHTS,
    RATER,
    RESPONSE_TYPE,
    RESPONSE_TYPE_LABELS,
    RESPONSE_TYPE_ORDER,
    UNIT,
    VALUE_FIELDS,
    KnownScores,
    MasiWeights,
    SetDistance,
    Stat,
    _nan,
    _null_to_nan,
    as_long,
    by_rater,
)
from annotator.measure.shares import MIN_CONVERSATIONS
from annotator.measure.value_sets import (
    _hist_similarity,
    _prepare_sets,
    _set_similarity,
    map_level,
    most_used,
    per_value_alpha,
    set_alpha_prepared,
    set_ratings,
)

# Resamples x (subset records, ratings, units) beyond which a value-set alpha gets no interval
# (`value_sets.set_alpha_prepared`), when a call names no budget: read at each call.
BOOT_BUDGET = 1e8

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
    boot_budget: float | None = None,
    pairwise: bool = True,
    per_annotator: bool = True,
    inter_annotator: bool = True,
    counts: RatingCounts | None = None,
    pair_counts: dict[tuple[str, int], np.ndarray] | None = None,
    kept_counts: list[RatingCounts] | None = None,
    known_scores: Mapping[tuple[str, str], KnownScores] | None = None,
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

    Each figure draws its resamples from `seed` alone, so parts may be computed apart and
    `joined`: `inter_annotator=False` leaves out the annotators' own figures (the model rows
    still use the annotations, as references).

    Alpha for sets counts pairs of sets (`value_sets`); `pair_counts`, when given, receives
    each (field, level)'s point counts. A study whose value-set intervals are over the
    budget gets its inter-annotator figures from counts summed over conversations
    (`rating_counts`): `counts`, when given, are those (made from the ones stored before a
    change of the annotations), and `kept_counts` receives the counts used, to be stored.

    `known_scores[(prompt id, reference)]`: a version's scores against a reference ("gold",
    "annotator <name>") as computed before from the same rows with these resamples and seed
    (the app's stored summary); its rows are taken from them, in the order computing gives,
    when the version has one model (its rows are then the version's rows) and they hold
    every field and level asked for.
    """
    maps = dict(level_maps or {})
    boot_budget = BOOT_BUDGET if boot_budget is None else boot_budget
    report = AgreementReport(
        settings={"n_boot": n_boot, "seed": seed, "masi_weights": masi_weights,
                  "masi_weight_values": list(MASI_WEIGHTS[masi_weights]), "top_k": top_k,
                  "levels": list(levels), "distances": list(distances)}
    )
    ann = annotations
    report.n_conversations = int(ann[UNIT].nunique()) if len(ann) else 0
    report.annotators = sorted(map(str, ann[RATER].unique())) if len(ann) else []
    usable_levels = [lv for lv in levels if lv == 0 or lv in maps]
    if inter_annotator:
        _inter_annotator_rows(report, ann, maps, levels, usable_levels, value_fields,
                              distances, masi_weights, top_k, n_boot, seed, boot_budget,
                              pairwise, counts, pair_counts, kept_counts)
    _model_rows(report, ann, gold, extractions, maps, usable_levels, prompt_ids, value_fields,
                n_boot, seed, boot_budget, per_annotator, known_scores or {})
    return report


def joined(annotators: AgreementReport, models: AgreementReport) -> AgreementReport:
    """One report from its inter-annotator part and its model part (`inter_annotator=False`),
    computed apart with the same settings: the rows in the order one call gives them."""
    return annotators.model_copy(update={"rows": annotators.rows + models.rows,
                                         "confusion": models.confusion,
                                         "prompt_ids": models.prompt_ids})


def settings_cover(had: Mapping[str, Any], asked: Mapping[str, Any]) -> bool:
    """Whether an inter-annotator report computed with the settings `had` (a report's
    `settings`) holds the figures `asked` for, drawn alike: the same resamples, seed and
    weights, and at least these levels, distances and most used values. `asked`: settings
    of `inter_annotator_part` by name (one not given: its default; `pairwise` is not read)."""
    wanted = {**(inter_annotator_part.__kwdefaults__ or {}), **asked}
    if (had.get("n_boot"), had.get("seed"), had.get("masi_weights")) != (
            wanted["n_boot"], wanted["seed"], wanted["masi_weights"]):
        return False
    return (set(wanted["levels"]) <= set(had.get("levels", ()))
            and wanted["top_k"] <= had.get("top_k", -1)
            and set(wanted["distances"]) <= set(had.get("distances", ())))


def inter_annotator_part(
    stored: AgreementReport,
    *,
    levels: Sequence[int] = (0, 1, 2, 3),
    distances: Sequence[SetDistance] = ("masi", "jaccard"),
    masi_weights: MasiWeights = "exact",
    top_k: int = 50,
    n_boot: int = 200,
    seed: int = 0,
    pairwise: bool = True,
) -> AgreementReport | None:
    """The report `agreement_report(annotations, ..., these settings)` gives without models,
    taken from `stored`: the same annotations' inter-annotator report computed with the same
    resamples, seed and weights (and the default budget), on at least these levels, distances,
    most used values and pairs. None when `stored` does not hold them all.

    Each figure draws its resamples from the seed alone and the most used values are listed in
    one stable order, so a figure is the same whether computed among more or fewer; the rows
    and settings are laid out in the order one call with these settings gives them."""
    had = stored.settings
    if not settings_cover(had, {"levels": levels, "distances": distances, "top_k": top_k,
                                "masi_weights": masi_weights, "n_boot": n_boot, "seed": seed}):
        return None
    skipped: dict[Any, AgreementRow] = {}
    types: list[AgreementRow] = []
    pairs: list[AgreementRow] = []
    sets: dict[tuple[str, Any, str], AgreementRow] = {}
    per_value: dict[tuple[str, Any], list[AgreementRow]] = {}
    fields: dict[str, None] = {}
    for row in stored.rows:
        if row.metric == "level skipped":
            skipped[row.level] = row
        elif row.field == RESPONSE_TYPE:
            (pairs if row.pair is not None else types).append(row)
        elif row.metric == "value_alpha":
            per_value.setdefault((row.field, row.level), []).append(row)
        else:
            fields[row.field] = None
            sets[(row.field, row.level, row.metric)] = row
    if pairwise and not pairs and len(stored.annotators) > 1:
        return None  # computed without the pairs
    rows = [skipped[lv] for lv in levels if lv in skipped]
    rows += types + (pairs if pairwise else [])
    free_had = had.get("free_values_not_listed", {})
    free: dict[str, dict[str, int]] = {}
    for field in fields:
        for lv in levels:
            if lv in skipped:
                continue
            rows += [sets[(field, lv, f"krippendorff_alpha_{dist}")] for dist in distances]
            rows += per_value.get((field, lv), [])[:top_k]
            if str(lv) in free_had.get(field, {}):
                free.setdefault(field, {})[str(lv)] = free_had[field][str(lv)]
    settings = {"n_boot": n_boot, "seed": seed, "masi_weights": masi_weights,
                "masi_weight_values": list(MASI_WEIGHTS[masi_weights]), "top_k": top_k,
                "levels": list(levels), "distances": list(distances)}
    if free:
        settings["free_values_not_listed"] = free
    return AgreementReport(rows=rows, n_conversations=stored.n_conversations,
                           annotators=list(stored.annotators), settings=settings)


def _units_and_raters_as_categories(ann: pd.DataFrame) -> pd.DataFrame:
    """Units and raters as categories: the figures take them apart again and again
    (`as_long`, `set_ratings`, `_counts`), and a category's codes are read where strings
    were hashed (3.9 s of the figures' 23 s at 700,000 conversations, over 35 calls)."""
    if not len(ann) or not {UNIT, RATER} <= set(ann.columns):
        return ann
    kinds = {c: "category" for c in (UNIT, RATER)
             if not isinstance(ann[c].dtype, pd.CategoricalDtype)}
    return ann.astype(kinds) if kinds else ann


def _inter_annotator_rows(
    report: AgreementReport, ann: pd.DataFrame, maps: dict[int, Mapping[str, str]],
    levels: Sequence[int], usable_levels: list[int], value_fields: Sequence[str],
    distances: Sequence[SetDistance], masi_weights: MasiWeights, top_k: int, n_boot: int,
    seed: int, boot_budget: float, pairwise: bool,
    counts: RatingCounts | None = None,
    pair_counts: dict[tuple[str, int], np.ndarray] | None = None,
    kept_counts: list[RatingCounts] | None = None,
) -> None:
    for lv in levels:
        if lv not in usable_levels:
            report.rows.append(AgreementRow(scope="annotators", metric="level skipped",
                                            field="*", level=lv, value=float("nan"),
                                            note=f"no map for level {lv}"))
    # the fields labelled: the frame's, and with counts theirs (a frame of the annotations'
    # other columns will do then: `rating_counts` holds what the figures need of the labels)
    fields = [f for f in value_fields if f in ann.columns
              or (counts is not None and any(f == key[0] for key in counts.sets))]
    if counts is not None and not {(f, lv) for f in fields for lv in usable_levels} <= set(
            counts.sets):
        counts = None  # counted for other fields or levels: counted again
    # a study whose value-set intervals are over the budget (decided by its ratings and
    # units: rows and conversations bound them) gets every figure from its counts
    if (counts is None and n_boot > 0
            and (len(ann) + report.n_conversations) * n_boot > boot_budget):
        ann = _units_and_raters_as_categories(ann)
        counts = rating_counts(ann, maps, usable_levels, fields)
    if counts is not None and counts.over_budget(n_boot, boot_budget):
        _rows_from_counts(report, counts, maps, usable_levels, fields, distances,
                          masi_weights, top_k, n_boot, seed, boot_budget, pairwise, pair_counts)
        if kept_counts is not None:
            kept_counts.append(counts)
        return
    ann = _units_and_raters_as_categories(ann)

    # ---- inter-annotator: response type
    if RESPONSE_TYPE in ann.columns:
        scope = "annotators"
        long = as_long(ann, RESPONSE_TYPE)
        for lvl in ("nominal", "ordinal"):
            report.rows.append(_row(scope, f"krippendorff_alpha_{lvl}", RESPONSE_TYPE,
                                    response_type_alpha(long, lvl, n_boot=n_boot, seed=seed)))
        type_counts = _counts(long, RESPONSE_TYPE, RESPONSE_TYPE_LABELS)
        report.rows.append(_row(scope, "fleiss_kappa", RESPONSE_TYPE,
                                fleiss_kappa(type_counts, n_boot=n_boot, seed=seed)))
        report.rows.append(_row(scope, "gwet_ac1", RESPONSE_TYPE,
                                gwet_ac1(type_counts, n_boot=n_boot, seed=seed)))
        report.rows.append(_row(scope, "percent_agreement", RESPONSE_TYPE,
                                percent_agreement(type_counts, n_boot=n_boot, seed=seed)))
        if pairwise:
            for (a, b), s in pairwise_cohen_kappa(long, label=RESPONSE_TYPE,
                                                  labels=RESPONSE_TYPE_LABELS,
                                                  n_boot=n_boot, seed=seed).items():
                report.rows.append(_row(f"annotators {a}~{b}", "cohen_kappa", RESPONSE_TYPE, s,
                                        pair=(a, b)))

    # ---- inter-annotator: value sets at each level
    for field in fields:
        leaf = set_ratings(ann, field)
        for lv in usable_levels:
            ratings = map_level(leaf, maps.get(lv))
            prepared = _prepare_sets(ratings)
            for dist in distances:
                s = set_alpha_prepared(prepared, dist, masi_weights, n_boot, seed, boot_budget)
                report.rows.append(_row("annotators", f"krippendorff_alpha_{dist}", field, s, lv))
            if pair_counts is not None:
                pair_counts[(field, lv)] = prepared.point_hist()
            nodes = _level_nodes(maps, lv)
            if nodes is not None:
                _note_free(report, field, lv, (str(v) for v in ratings.vocab.tolist()), nodes)
            for value, s in per_value_alpha(ratings, top_k=top_k, n_boot=n_boot, seed=seed,
                                            only=nodes,
                                            min_conversations=MIN_CONVERSATIONS).items():
                report.rows.append(_row("annotators", "value_alpha", field, s, lv,
                                        value_name=str(value)))
            # a level's subset counts take hundreds of MB at paper scale: freed before the
            # next level's are built, not after
            del prepared


def _level_nodes(maps: Mapping[int, Mapping[str, str]], level: int) -> set[str] | None:
    """At a cluster level, the level's clusters: only they are listed. A free value stays
    itself in the sets but is not a cluster or a top category: counted apart."""
    return set(maps[level].values()) if level and maps.get(level) else None


def _note_free(report: AgreementReport, field: str, level: int, names: Iterable[str],
               nodes: set[str]) -> None:
    free = sum(1 for name in names if name not in nodes)
    report.settings.setdefault("free_values_not_listed", {}).setdefault(field, {})[
        str(level)] = free


def _rows_from_counts(
    report: AgreementReport, counts: RatingCounts, maps: Mapping[int, Mapping[str, str]],
    usable_levels: list[int], fields: list[str], distances: Sequence[SetDistance],
    masi_weights: MasiWeights, top_k: int, n_boot: int, seed: int, boot_budget: float,
    pairwise: bool, pair_counts: dict[tuple[str, int], np.ndarray] | None,
) -> None:
    """`_inter_annotator_rows` of a study over the budget, from its counts: the same rows,
    in the same order, with the same values and intervals."""
    types = counts.types
    if types is not None:
        scope = "annotators"
        every = _pattern_counts(types.every_label, RESPONSE_TYPE_LABELS)
        scales = (("nominal", RESPONSE_TYPE_LABELS, types.outside,
                   {p: n for p, n in types.every_label.items() if any(p)}),
                  ("ordinal", RESPONSE_TYPE_ORDER, types.unordered, types.ordered))
        for level, scale, outside, patterns in scales:
            stat = _alpha_counts(_pattern_counts(patterns, scale), level, None, n_boot, seed)
            if outside:  # as `krippendorff_alpha` notes the ratings it left out
                note = f"{outside} ratings outside the scale treated as missing"
                stat = stat.model_copy(update={"reason": "; ".join(
                    x for x in (stat.reason, note) if x)})
            report.rows.append(_row(scope, f"krippendorff_alpha_{level}", RESPONSE_TYPE, stat))
        for metric, fn in (("fleiss_kappa", fleiss_kappa), ("gwet_ac1", gwet_ac1),
                           ("percent_agreement", percent_agreement)):
            report.rows.append(_row(scope, metric, RESPONSE_TYPE,
                                    fn(every, n_boot=n_boot, seed=seed)))
        if pairwise:
            raters = sorted(types.raters)
            v = len(RESPONSE_TYPE_LABELS)
            for x, a in enumerate(raters):
                for b in raters[x + 1:]:
                    table = types.pairs.get((a, b), np.zeros((v, v), np.int64))
                    stat = (_table_stat(table, kappa_from_table, n_boot, seed) if table.any()
                            else _nan("no shared units"))
                    report.rows.append(_row(f"annotators {a}~{b}", "cohen_kappa",
                                            RESPONSE_TYPE, stat, pair=(a, b)))
    for field in fields:
        for lv in usable_levels:
            sets, hist = counts.sets[(field, lv)], counts.pair_counts[(field, lv)]
            for dist in distances:
                report.rows.append(_row("annotators", f"krippendorff_alpha_{dist}", field,
                                        _set_alpha_of_counts(sets, hist, dist, masi_weights,
                                                             n_boot, boot_budget), lv))
            if pair_counts is not None:
                pair_counts[(field, lv)] = hist
            nodes = _level_nodes(maps, lv)
            if nodes is not None:
                _note_free(report, field, lv, (name for name, used in
                                               zip(sets.names, sets.usage, strict=True)
                                               if used > 0), nodes)
            for value, s in _per_value_of_counts(sets, top_k, n_boot, seed, nodes).items():
                report.rows.append(_row("annotators", "value_alpha", field, s, lv,
                                        value_name=value))


def _pattern_counts(patterns: Patterns, categories: Sequence[str]) -> _Counts:
    """`coefficients._counts` of the conversations counted in `patterns`: the patterns in the
    order `_distinct_rows` gives them."""
    v = len(categories)
    if not patterns:
        return _Counts(np.zeros((0, v), int), np.zeros(0), tuple(categories), 0)
    rows = np.array(list(patterns), dtype=np.int64).reshape(-1, v)
    weights = np.array(list(patterns.values()), dtype=np.int64)
    base = int(rows.max()) + 1
    # `_distinct_rows` sorts one key (the last column first) when it fits in 62 bits
    keys = rows.T if v * math.log2(base + 1) < 62 else rows.T[::-1]
    order = np.lexsort(keys)
    return _Counts(rows[order], weights[order].astype(float), tuple(categories),
                   int(weights.sum()))


def _set_alpha_of_counts(c: SetCounts, hist: np.ndarray, distance: SetDistance,
                         masi_weights: MasiWeights, n_boot: int, boot_budget: float) -> Stat:
    """`set_alpha_prepared` of a study over the bootstrap budget, from its counts."""
    n = float(c.n)
    if n <= 1 or c.pairable == 0:
        return Stat(value=float("nan"), n_units=c.pairable,
                    reason="no unit has two or more ratings")
    # the pairs' terms in one order whatever the table's shape (one made from a change is
    # larger), so that both sum to the same float
    mm, aa, bb, tt = np.nonzero(c.within)
    sim = _set_similarity(aa, bb, tt, distance, masi_weights)
    observed = float((c.within[mm, aa, bb, tt] * 2.0 * (1.0 - sim) / (mm - 1.0)).sum())
    e = float(c.empties)
    expected = n * n - (e * e + _hist_similarity(hist, distance, masi_weights))
    if expected <= 1e-12 * n * n:
        return Stat(value=float("nan"), n_units=c.pairable,
                    reason="no variation: every pairable rating is the same set (0/0)")
    stat = Stat(value=1.0 - (n - 1.0) * observed / expected, n_units=c.pairable)
    if n_boot <= 0:
        return stat
    note = (f"interval omitted: ({c.n_records:,} subset records + {c.ratings:,} ratings + "
            f"{c.units:,} units) x {n_boot} resamples exceeds the budget {boot_budget:.0e}")
    return stat.model_copy(update={"reason": note})


def _per_value_of_counts(c: SetCounts, top_k: int, n_boot: int, seed: int,
                         only: set[str] | None) -> dict[str, Stat]:
    """`per_value_alpha` from the counts."""
    usage = c.usage
    if only is not None:
        usage = np.where([name in only for name in c.names], usage, -1)
    out: dict[str, Stat] = {}
    for v in most_used(usage, c.names, top_k).tolist():
        held = c.hits[v]
        if int(held.sum()) < MIN_CONVERSATIONS:  # conversations where any rating holds it
            out[c.names[v]] = _nan(f"too few conversations: {int(held.sum())}", c.units)
            continue
        grid = held.copy()
        grid[:, 0] = c.base - held.sum(1)
        mm, hh = np.nonzero(grid)
        patterns = np.stack([mm - hh, hh], axis=1)
        counts = _Counts(patterns, grid[mm, hh].astype(float), ("absent", "present"), c.units)
        out[c.names[v]] = _alpha_counts(counts, "nominal", None, n_boot, seed)
    return out


def _versions_of_one_model(extractions: pd.DataFrame) -> set[str]:
    """The prompt versions whose rows all name one model (or none has a model column): the
    rows `_model_rows` scores under the version's one key are then all the version's rows."""
    ids = extractions["prompt_id"].astype(str)
    if "model" not in extractions.columns:
        return set(ids.unique())
    models = extractions["model"]
    one = models.groupby(ids).nunique(dropna=True) == 1
    whole = ~models.isna().groupby(ids).any()
    return set(one.index[one & whole])


def _known_rows(report: AgreementReport, known: KnownScores, scope: str,
                where: Mapping[str, str], model: pd.DataFrame, reference: pd.DataFrame,
                value_fields: Sequence[str], levels: Sequence[int]) -> bool:
    """Add one pair's rows and confusion table from `known`, in the order `_model_rows`
    computes them; False (nothing added) when it lacks a figure that would be computed."""
    rows: list[AgreementRow] = []
    typed = RESPONSE_TYPE in model.columns and RESPONSE_TYPE in reference.columns
    if typed:
        types = known.stats.get((RESPONSE_TYPE, None), {})
        if not {"accuracy", "cohen_kappa"} <= set(types):
            return False
        rows += [_row(scope, metric, RESPONSE_TYPE, types[metric], **where)
                 for metric in ("accuracy", "cohen_kappa")]
    for field in value_fields:
        if field not in model.columns or field not in reference.columns:
            continue
        for lv in levels:
            stats = known.stats.get((field, lv))
            if not stats:
                return False
            rows += [_row(scope, metric, field, stat, lv, **where)
                     for metric, stat in stats.items()]
    if typed:
        report.confusion.append(ConfusionMatrix(scope=scope, labels=list(RESPONSE_TYPE_LABELS),
                                                counts=known.confusion))
    report.rows += rows
    return True


def _model_rows(
    report: AgreementReport, ann: pd.DataFrame, gold: pd.DataFrame | None,
    extractions: pd.DataFrame | None, maps: dict[int, Mapping[str, str]],
    usable_levels: list[int], prompt_ids: Sequence[str] | None, value_fields: Sequence[str],
    n_boot: int, seed: int, boot_budget: float, per_annotator: bool,
    known_scores: Mapping[tuple[str, str], KnownScores],
) -> None:
    """Model against human, per prompt version (and model, when given); a pair in
    `known_scores` is taken from it (`agreement_report`)."""
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
            refs += [(f"annotator {name}", rows) for name, rows in by_rater(ann).items()]
        columns: dict[tuple[Any, ...], tuple[SetColumn, Any]] = {}
        types: dict[tuple[Any, ...], LastLabels] = {}
        last: dict[tuple[Any, ...], LastRows] = {}
        units = UnitCodes()  # every frame's conversations coded alike: pairs are gathers

        def rows(who: tuple[Any, ...], frame: pd.DataFrame) -> LastRows:
            """Each frame's last row per conversation, found and coded once."""
            if who not in last:
                last[who] = last_rows(frame, units)
            return last[who]

        def encoded(who: tuple[Any, ...], frame: pd.DataFrame, field: str
                    ) -> tuple[SetColumn, Any]:
            """Each frame's sets encoded once, whatever it is scored against."""
            if (who, field) not in columns:
                vocab = Vocabulary()
                columns[(who, field)] = (encode_sets(rows(who, frame), field, vocab),
                                         vocab.names())
            return columns[(who, field)]

        def typed(who: tuple[Any, ...], frame: pd.DataFrame) -> LastLabels:
            """Each frame's response types coded once."""
            if who not in types:
                types[who] = last_labels(rows(who, frame), RESPONSE_TYPE, RESPONSE_TYPE_LABELS)
            return types[who]

        one_model = _versions_of_one_model(ext) if known_scores else set()
        for key, group in ext.groupby(keys, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            if str(key[0]) not in pids:
                continue
            who = " ".join(str(k) for k in key)
            for ref_name, ref in refs:
                scope = f"model {who} vs {ref_name}"
                where = {"model": who, "reference": ref_name}
                known = (known_scores.get((str(key[0]), ref_name))
                         if str(key[0]) in one_model else None)
                if known is not None and _known_rows(report, known, scope, where, group, ref,
                                                     value_fields, usable_levels):
                    continue
                if RESPONSE_TYPE in group.columns and RESPONSE_TYPE in ref.columns:
                    acc, kap, table = response_type_scores(
                        typed(("model", key), group), typed(("ref", ref_name), ref),
                        n_boot=n_boot, seed=seed)
                    report.rows.append(_row(scope, "accuracy", RESPONSE_TYPE, acc, **where))
                    report.rows.append(_row(scope, "cohen_kappa", RESPONSE_TYPE, kap, **where))
                    report.confusion.append(ConfusionMatrix(
                        scope=scope, labels=list(RESPONSE_TYPE_LABELS), counts=table.tolist()))
                for field in value_fields:
                    if field not in group.columns or field not in ref.columns:
                        continue
                    by_level = value_scores_of_pairs(
                        paired_ratings(*encoded(("model", key), group, field),
                                       *encoded(("ref", ref_name), ref, field)),
                        {lv: maps.get(lv) for lv in usable_levels},
                        n_boot=n_boot, seed=seed, boot_budget=boot_budget)
                    for lv, scores in by_level.items():
                        for metric, s in scores.items():
                            report.rows.append(_row(scope, metric, field, s, lv, **where))
            # a model's frame and codings serve its own pairs only: freed before the next
            # model's (at 700,000 conversations they held 200 MB past their use)
            for cache in (last, types):
                cache.pop(("model", key), None)
            for field in value_fields:
                columns.pop((("model", key), field), None)


