"""A model against people: response-type accuracy, Cohen's kappa and confusion matrix; value
precision, recall and F1 (micro and macro, macro as scikit-learn's `zero_division=0`) and mean
Jaccard (two empty sets count 1), with bootstrap intervals; Spearman's rho for rankings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel
from scipy import sparse

from annotator.measure.coefficients import (
    _category_codes,
    _distinct_rows,
    _table_stat,
    accuracy_from_table,
    kappa_from_table,
)
from annotator.measure.intervals import (
    _boot_patterns,
    _pattern_draws,
    _with_interval,
)
from annotator.measure.shapes import (
    RESPONSE_TYPE,
    RESPONSE_TYPE_LABELS,
    UNIT,
    Stat,
    _is_missing,
    _nan,
)
from annotator.measure.value_sets import (
    SetRatings,
    _csr,
    _ranges,
    map_level,
    sorted_sets,
)

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
    model: pd.DataFrame | LastLabels,
    reference: pd.DataFrame | LastLabels,
    *,
    label: str = RESPONSE_TYPE,
    n_boot: int = 0,
    seed: int = 0,
) -> tuple[Stat, Stat, np.ndarray]:
    """Accuracy, Cohen's kappa and the confusion matrix (rows reference, columns model) over
    conversations both labelled, in the order of RESPONSE_TYPE_LABELS. Both sides are frames,
    or both `last_labels` coded over one `UnitCodes` (one model against several references
    codes each frame once)."""
    if not isinstance(model, LastLabels) or not isinstance(reference, LastLabels):
        if isinstance(model, LastLabels) or isinstance(reference, LastLabels):
            raise TypeError("response_type_scores: both sides frames, or both coded")
        units = UnitCodes()
        model, reference = (last_labels(last_rows(frame, units), label, RESPONSE_TYPE_LABELS)
                            for frame in (model, reference))
    table, shared = paired_last_labels(model, reference, len(RESPONSE_TYPE_LABELS))
    if not shared:
        z = np.zeros((len(RESPONSE_TYPE_LABELS),) * 2, dtype=np.int64)
        return _nan("no shared conversations"), _nan("no shared conversations"), z
    acc = _table_stat(table, accuracy_from_table, n_boot, seed)
    kap = _table_stat(table, kappa_from_table, n_boot, seed)
    return acc, kap, table


@dataclass(frozen=True)
class LastLabels:
    """One labeller's last label of each unit (a re-submitted label replaces the earlier
    one), as positions in a list of categories (-1: missing or not listed), the units coded
    in `UnitCodes` shared by the frames to be paired. Built once per frame: pairing two is
    then array gathers, not a merge of frames and a lookup per row."""

    units: np.ndarray  # unit codes, distinct
    codes: np.ndarray
    present: np.ndarray  # the label is not missing (it may still be a category not listed)


@dataclass(frozen=True)
class LastRows:
    """A frame's last row of each unit (a re-submitted label replaces the earlier one), and
    those units' codes in `UnitCodes` shared by the frames to be paired: found and coded once
    per frame, whichever of its labels are then scored."""

    frame: pd.DataFrame
    keep: np.ndarray  # the rows kept
    unit_codes: np.ndarray  # their units' codes, in row order

    def column(self, label: str) -> pd.DataFrame:
        return self.frame.loc[self.keep, [UNIT, label]]


def last_rows(frame: pd.DataFrame, units: UnitCodes) -> LastRows:
    """The frame's last row of each unit, its units coded in `units`."""
    keep = ~frame[UNIT].duplicated(keep="last").to_numpy(bool)
    return LastRows(frame, keep, units.encode(frame[UNIT].to_numpy(dtype=object)[keep]))


def last_labels(rows: LastRows, label: str, categories: Sequence[Any]) -> LastLabels:
    """The last `label` of each unit, coded as `coefficients._paired_table` codes it."""
    column = rows.column(label)[label]
    # each distinct label looked up once (hashed in C): a Python call per row cost 0.1 s per
    # frame at 300,000 conversations
    codes, distinct = pd.factorize(column)
    lookup = _category_codes([getattr(x, "value", x) for x in distinct], categories)
    return LastLabels(rows.unit_codes, np.append(lookup, -1)[codes],
                      ~column.isna().to_numpy(bool))


def paired_last_labels(model: LastLabels, reference: LastLabels, n: int
                       ) -> tuple[np.ndarray, int]:
    """The (reference, model) table of the units both labelled with a listed category, and
    how many units have a label on both sides: what joining the two frames on the unit gives,
    missing labels out, then unlisted ones (counts, so the order of units does not matter)."""
    pos = _positions(reference.units, model.units)
    matched = np.flatnonzero(pos >= 0)
    at = pos[matched]
    shared = int((reference.present[at] & model.present[matched]).sum())
    ref, mod = reference.codes[at], model.codes[matched]
    keep = (ref >= 0) & (mod >= 0)
    return np.bincount(ref[keep] * n + mod[keep], minlength=n * n).reshape(n, n), shared


def _positions(of: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each code in `wanted`, its position in `of` (distinct codes of one vocabulary), or
    -1: `pd.Index(of).get_indexer(wanted)` over integers, by one dense array."""
    size = int(max(of.max(initial=-1), wanted.max(initial=-1))) + 1
    where = np.full(size, -1, dtype=np.int64)
    where[of] = np.arange(of.size, dtype=np.int64)
    return where[wanted]


def _subjective_precision(t: np.ndarray) -> tuple[float, str | None]:
    said = t[0, 1] + t[1, 1]  # the model said subjective
    return (float(t[1, 1] / said), None) if said else (float("nan"), "never said subjective")


def _subjective_recall(t: np.ndarray) -> tuple[float, str | None]:
    truly = t[1, 0] + t[1, 1]  # the reference says subjective
    return (float(t[1, 1] / truly), None) if truly else (float("nan"), "none subjective")


def subjectivity_scores(
    model: pd.DataFrame, reference: pd.DataFrame, *, n_boot: int = 0, seed: int = 0
) -> dict[str, Stat]:
    """The model's `subjective` as a filter, against the reference's, over conversations both
    labelled: precision (of those it lets through, the share truly subjective), recall (of the
    truly subjective, the share it lets through: what a two-stage run keeps) and accuracy, each
    with a 95% bootstrap interval over conversations."""
    both = _aligned(model, reference, "subjective")
    if both.empty:
        return {k: _nan("no shared conversations") for k in ("precision", "recall", "accuracy")}
    ref = both["subjective_ref"].astype(bool).to_numpy()
    said = both["subjective_model"].astype(bool).to_numpy()
    table = np.array([[np.sum(~ref & ~said), np.sum(~ref & said)],
                      [np.sum(ref & ~said), np.sum(ref & said)]], dtype=np.int64)
    return {"precision": _table_stat(table, _subjective_precision, n_boot, seed),
            "recall": _table_stat(table, _subjective_recall, n_boot, seed),
            "accuracy": _table_stat(table, accuracy_from_table, n_boot, seed)}


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


def _macro(tpv: np.ndarray, pv: np.ndarray, rv: np.ndarray) -> dict[str, float]:
    """Macro precision, recall and F1 from each value's true positives and the times the model
    and the reference name it; the mean over values summed exactly (`math.fsum`): the same
    whatever order the values come in."""
    used = (pv > 0) | (rv > 0)
    if not used.any():
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan")}
    p, r, f = per_value_scores(tpv[used], pv[used], rv[used], 0.0)
    k = int(used.sum())
    return {"precision": math.fsum(p) / k, "recall": math.fsum(r) / k, "f1": math.fsum(f) / k}


def exact_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """The mean of `values`, each `weights` times (integers), summed exactly and rounded once:
    equal for equal counts however they were added up."""
    n = int(weights.sum())
    if n == 0:
        return float("nan")
    total = sum((Fraction(float(v)) * int(w) for v, w in zip(values, weights, strict=True)),
                Fraction(0))
    return float(total / n)


def _macro_samples(tp: sparse.csr_matrix, pred: sparse.csr_matrix, ref: sparse.csr_matrix,
                   n: int, n_boot: int, seed: int, chunk: int = 32) -> dict[str, list[float]]:
    """`_macro` of `n_boot` resamples of the n units (each drawn as `rng.integers(0, n, n)`,
    in order, from `seed`): the per-value sums of a chunk of resamples in one sparse product
    (sums of integer counts: exact in any order, so the figures equal a loop over resamples)."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
    by_value = [m.T.tocsr() for m in (tp, pred, ref)]  # values x units, transposed once
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        w = np.empty((n, k))
        for j in range(k):
            w[:, j] = np.bincount(rng.integers(0, n, n), minlength=n)
        tpv, pv, rv = (m @ w for m in by_value)  # values x k
        for j in range(k):
            used = (pv[:, j] > 0) | (rv[:, j] > 0)
            if not used.any():
                for name in samples:
                    samples[name].append(float("nan"))
                continue
            p, r, f = per_value_scores(tpv[used, j], pv[used, j], rv[used, j], 0.0)
            samples["precision"].append(float(p.mean()))
            samples["recall"].append(float(r.mean()))
            samples["f1"].append(float(f.mean()))
    return samples


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


def paired_ratings(model: SetColumn, model_names: np.ndarray, reference: SetColumn,
                   reference_names: np.ndarray) -> SetRatings | None:
    """`_model_ref_ratings` of two columns each encoded once over its own `Vocabulary`
    (`encode_sets`): the reference's codes are carried over to the pair's vocabulary (the
    model's names, then the reference's new ones, in order of first appearance, as
    `_model_ref_ratings` numbers them), so one model is scored against several references, and
    one reference against several models, without encoding a frame twice."""
    vocab = Vocabulary()
    vocab.codes = {name: i for i, name in enumerate(model_names.tolist())}
    return pair_sets(model, recode(reference, vocab.encode(reference_names.tolist()),
                                   len(vocab.codes)), vocab.names())


def recode(column: SetColumn, mapping: np.ndarray, n_codes: int) -> SetColumn:
    """The column with code c replaced by mapping[c], each set sorted again."""
    if column.codes.size == 0:
        return column
    rows = np.repeat(np.arange(column.units.size, dtype=np.int64), np.diff(column.indptr))
    key = np.sort(rows * max(n_codes, 1) + mapping[column.codes])
    return SetColumn(column.units, column.indptr, key % max(n_codes, 1), column.unit_codes)


class UnitCodes:
    """Unit labels -> integer codes shared by the frames to be paired (`last_rows`), so that
    pairing two of them is an array gather (`_positions`). Only equality of codes means
    anything: new labels get the next codes, looked up in C (a hash index over those seen)."""

    def __init__(self) -> None:
        self.known = pd.Index([], dtype=object)

    def encode(self, units: np.ndarray) -> np.ndarray:
        """Codes of `units`, distinct labels (each frame's last row per unit)."""
        codes = self.known.get_indexer(units) if len(self.known) else np.full(len(units), -1)
        new = np.flatnonzero(codes < 0)
        if new.size:
            codes[new] = len(self.known) + np.arange(new.size)
            self.known = self.known.append(pd.Index(units[new], dtype=object))
        return codes.astype(np.int64)


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
    unit_codes: np.ndarray | None = None  # `units` in UnitCodes shared by the columns paired


def encode_sets(frame: pd.DataFrame | LastRows, label: str, vocab: Vocabulary) -> SetColumn:
    """The last row of each unit (a re-submitted label replaces the earlier one), as the
    model-vs-reference scores align them; a unit whose last cell is missing is left out.
    Given `last_rows`, the units keep its codes: columns coded over one `UnitCodes` are
    paired by array gathers instead of hashing their units again for every pair."""
    if isinstance(frame, LastRows):
        last, unit_codes = frame.column(label), frame.unit_codes
    else:
        last, unit_codes = frame[[UNIT, label]].drop_duplicates(UNIT, keep="last"), None
    units = last[UNIT].to_numpy(dtype=object)
    coded = _arrow_coded(last[label], vocab)
    if coded is None:
        cells = _python_cells(last[label])
        present = None
        if not set(map(type, cells)) <= set(_SET_TYPES):  # else every cell is a set
            present = np.fromiter((type(c) in _SET_TYPES or not _is_missing(c) for c in cells),
                                  dtype=bool, count=len(cells))
            cells = [c for c, keep in zip(cells, present, strict=True) if keep]
        lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
        codes = vocab.encode(list(chain.from_iterable(cells)))
    else:
        lengths, codes, present = coded
        lengths = lengths[present]  # a missing cell has no names
    if present is not None and not present.all():
        units = units[present]
        unit_codes = None if unit_codes is None else unit_codes[present]
    indptr, codes = sorted_sets(lengths, codes, max(len(vocab.codes), 1))
    return SetColumn(units, indptr, codes, unit_codes)


def _python_cells(column: pd.Series) -> list[Any]:
    """The cells as Python values: an Arrow list column's as lists of names (None: missing)."""
    if isinstance(column.dtype, pd.ArrowDtype):
        return column.array.__arrow_array__().to_pylist()
    return column.tolist()


def _arrow_coded(column: pd.Series, vocab: Vocabulary
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """An Arrow list column of names (`frame_store.read_frame`'s `arrow_lists`) as each cell's
    length, its names' codes in `vocab` (cell after cell, as `Vocabulary.encode` codes them:
    new names in order of first appearance) and whether each cell is present (not null),
    with no Python object per name: only each distinct name is looked up. None: not such a
    column, or a name is missing (coded from Python values instead)."""
    if not isinstance(column.dtype, pd.ArrowDtype):
        return None
    lists = column.array.__arrow_array__()
    if not (pa.types.is_list(lists.type) or pa.types.is_large_list(lists.type)):
        return None
    lengths, codes, present = [], [], []
    for chunk in lists.chunks:
        names = chunk.flatten()  # the names of the cells present, cell after cell
        if names.null_count:
            return None
        if not pa.types.is_dictionary(names.type):
            names = names.dictionary_encode()
        index = names.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        in_order = pd.unique(index)  # in order of first appearance
        mapping = np.zeros(len(names.dictionary), dtype=np.int64)
        mapping[in_order] = [vocab.codes.setdefault(name, len(vocab.codes))
                             for name in names.dictionary.take(pa.array(in_order)).to_pylist()]
        codes.append(mapping[index])
        lengths.append(pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False))
        present.append(chunk.is_valid().to_numpy(zero_copy_only=False))
    if not lengths:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    return (np.concatenate(lengths).astype(np.int64, copy=False), np.concatenate(codes),
            np.concatenate(present))


def pair_sets(model: SetColumn, reference: SetColumn, names: np.ndarray) -> SetRatings | None:
    """The units both labelled, in the model's order, as one SetRatings: for each unit the
    model's set, then the reference's. None when they share no unit."""
    if model.unit_codes is not None and reference.unit_codes is not None:
        pos = _positions(reference.unit_codes, model.unit_codes)
    else:
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


def value_point_scores(patterns: np.ndarray, weights: np.ndarray, tpv: np.ndarray,
                       pv: np.ndarray, rv: np.ndarray) -> dict[str, Stat]:
    """Micro and macro precision, recall and F1 and mean Jaccard (keys as VALUE_SCORE_KEYS,
    no intervals) from counts that add over units: the distinct (tp, fp, fn) rows of the
    units (`patterns`) and how many units have each (`weights`); and per value its true
    positives and the times the model and the reference name it. Sums of integers, and means
    summed exactly: the scores of equal counts are equal, however the counts were made (all
    units at once, or counts kept and changed by new labels: `score_counts`)."""
    n = int(weights.sum())
    out: dict[str, Stat] = {}
    for name, v in micro_scores(patterns[:, 0], patterns[:, 1], patterns[:, 2],
                                weights.astype(float)).items():
        out[f"micro_{name}"] = Stat(value=v, n_units=n, reason=None if not math.isnan(v)
                                    else "no values on either side")
    jaccard = jaccard_index(patterns[:, 0], patterns[:, 1], patterns[:, 2])
    out["mean_jaccard"] = Stat(value=exact_mean(jaccard, weights), n_units=n)
    for name, v in _macro(tpv, pv, rv).items():
        out[f"macro_{name}"] = Stat(value=v, n_units=n,
                                    reason=None if not math.isnan(v) else "no values used")
    return out


def _value_scores(r: SetRatings, n_boot: int, seed: int, boot_budget: float) -> dict[str, Stat]:
    n = r.units.size
    c = set_counts(r)
    pm, pr, tp_m, tp, fp, fn = c.predicted, c.reference, c.hits, c.tp, c.fp, c.fn
    pats, pw = _distinct_rows(np.stack([tp, fp, fn], 1).astype(np.int64))
    out = value_point_scores(pats, pw, *value_sums(c))
    if n_boot <= 0:
        return out
    # micro scores: a unit enters through (tp, fp, fn) only -> pattern bootstrap. The three
    # see the same resamples (one seed): drawn and scored once for all three.
    w = pw.astype(float)
    micro = [micro_scores(pats[:, 0], pats[:, 1], pats[:, 2], d.astype(float))
             for d in _pattern_draws(w, n_boot, seed)]
    for name in ("precision", "recall", "f1"):
        out[f"micro_{name}"] = _with_interval(out[f"micro_{name}"],
                                              np.array([m[name] for m in micro]))
    jp, jinv = np.unique(jaccard_index(pats[:, 0], pats[:, 1], pats[:, 2]), return_inverse=True)
    jw = np.bincount(jinv.ravel(), weights=w, minlength=jp.size)
    out["mean_jaccard"] = _with_interval(
        out["mean_jaccard"], _boot_patterns(jw, lambda w: float(w @ jp / w.sum()), n_boot, seed)
    )
    cost = float(n + pm.nnz + pr.nnz + tp_m.nnz) * n_boot
    macro = [f"macro_{name}" for name in ("precision", "recall", "f1")]
    if cost > boot_budget:
        for key in macro:
            out[key] = out[key].model_copy(update={
                "reason": f"interval omitted: {cost:.1e} operations over the budget "
                          f"{boot_budget:.0e}"})
    elif any(out[key].defined for key in macro):  # NaN: no interval anyway
        samples = _macro_samples(tp_m, pm, pr, n, n_boot, seed)
        for key in macro:
            out[key] = _with_interval(out[key], np.asarray(samples[key.removeprefix("macro_")]))
    return out


def value_sums(c: SetCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per value of the vocabulary: its true positives, and the times the model and the
    reference name it."""
    return tuple(np.asarray(m.sum(0)).ravel().astype(np.int64)
                 for m in (c.hits, c.predicted, c.reference))
