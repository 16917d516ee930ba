"""A prompt version's scores against each annotator, from counts summed over conversations.

Every score of a model against a reference (`model_scores`) is made from counts to which each
conversation adds on its own: the response types' confusion table, how many conversations
have a response type on both sides, how many have each (tp, fp, fn) of their value sets at
each level, and each value's true positives and times named by either side. So after new
labels the scores against the annotators follow from the counts kept before them, minus the
changed conversations' counts as they were, plus theirs now (`ScoreCounts.after`), as
`report_counts` does for the study's report. The scores made so equal the ones made in one
pass: both come from equal integer counts, their means summed exactly
(`model_scores.value_point_scores`; `tests/test_score_counts.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from annotator.measure import model_scores
from annotator.measure.coefficients import (
    _distinct_rows,
    _table_stat,
    accuracy_from_table,
    kappa_from_table,
)
from annotator.measure.rating_counts import Inconsistent
from annotator.measure.shapes import (
    RESPONSE_TYPE,
    RESPONSE_TYPE_LABELS,
    VALUE_FIELDS,
    KnownScores,
    Stat,
    _is_missing,
    _nan,
)
from annotator.measure.value_sets import map_level
from annotator.taxonomy import LEVELS

# each frame of the counts: the columns a row is of, then the columns counted
CONFUSION = (["reference", "reference_type", "model_type"], ["count"])
SHARED = (["reference"], ["n"])  # conversations with a response type on both sides
PATTERNS = (["reference", "field", "level", "tp", "fp", "fn"], ["n"])
VALUES = (["reference", "field", "level", "key"], ["tp", "predicted", "referenced"])
SHAPES = {"confusion": CONFUSION, "shared": SHARED, "patterns": PATTERNS, "values": VALUES}
METRIC_COLUMNS = ["reference", "metric", "field", "level", "value", "low", "high", "n_units",
                  "note"]
# the names a summary stores them under: the confusion table is also what the Prompts page draws
FRAMES = ("confusion", "score_shared", "score_patterns", "score_values")


class ScoreCounts(NamedTuple):
    """The counts of one prompt version against each reference, one frame per kind
    (`SHAPES`: the columns a row is of, then its counts). `confusion` holds all of each
    reference's cells, zeros too, in the order the Prompts page draws them."""

    confusion: pd.DataFrame
    shared: pd.DataFrame
    patterns: pd.DataFrame
    values: pd.DataFrame

    def frames(self) -> dict[str, pd.DataFrame]:
        """The frames a summary stores, by name (`FRAMES`)."""
        return dict(zip(FRAMES, self, strict=True))

    @staticmethod
    def from_tables(tables: Sequence[pa.Table]) -> ScoreCounts:
        """The counts as a summary stored them (the tables of `FRAMES`, in that order)."""
        return ScoreCounts(*(_typed(table.to_pandas(), name)
                             for table, name in zip(tables, SHAPES, strict=True)))

    def after(self, minus: ScoreCounts, plus: ScoreCounts) -> ScoreCounts:
        """These counts, minus those of the changed conversations as they were, plus theirs
        now. Raises `Inconsistent` when a count falls below zero: these were not the counts
        of the rows before."""
        summed = []
        for name, (keys, counted) in SHAPES.items():
            kept, before, now = (getattr(c, name) for c in (self, minus, plus))
            signed = pd.concat([kept, before.assign(**{c: -before[c] for c in counted}), now],
                               ignore_index=True)
            total = signed.groupby(keys, sort=False, as_index=False)[counted].sum()
            if (total[counted] < 0).to_numpy().any():
                raise Inconsistent(f"a count of {name} below zero")
            if name != "confusion":  # a count of nothing is no row (the confusion: every cell)
                total = total[(total[counted] > 0).to_numpy().any(axis=1)]
            summed.append(_typed(total.reset_index(drop=True), name))
        return ScoreCounts(*summed)

    def canonical(self) -> dict[str, pd.DataFrame]:
        """Each frame sorted, for comparing two counts."""
        return {name: frame.sort_values(SHAPES[name][0]).reset_index(drop=True)
                for name, frame in zip(SHAPES, self, strict=True)}


def _typed(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    keys, counted = SHAPES[name]
    types: dict[str, Any] = {c: np.int64 for c in counted}
    types.update({c: np.int64 if c in ("level", "tp", "fp", "fn") else object for c in keys})
    return frame[[*keys, *counted]].astype(types)


def score_counts(extractions: pd.DataFrame, references: Mapping[str, pd.DataFrame],
                 maps: Mapping[int, Mapping[str, str]]) -> ScoreCounts:
    """The counts of a version's extractions against each reference (name: its rows), over
    the conversations both labelled (each side's last row of a conversation)."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SHAPES}
    units = model_scores.UnitCodes()  # every frame's conversations coded alike
    vocabs = {fld: model_scores.Vocabulary() for fld in VALUE_FIELDS}
    model = model_scores.last_rows(extractions, units)
    model_sets = {fld: model_scores.encode_sets(model, fld, vocabs[fld]) for fld in VALUE_FIELDS}
    model_types = model_scores.last_labels(model, RESPONSE_TYPE, RESPONSE_TYPE_LABELS)
    for name, frame in references.items():
        ref = model_scores.last_rows(frame, units)
        table, shared = model_scores.paired_last_labels(
            model_types, model_scores.last_labels(ref, RESPONSE_TYPE, RESPONSE_TYPE_LABELS),
            len(RESPONSE_TYPE_LABELS))
        rows["confusion"] += confusion_rows(name, table)
        if shared:  # as `after` leaves them: a count of nothing is no row
            rows["shared"].append({"reference": name, "n": shared})
        for fld in VALUE_FIELDS:
            leaf = model_scores.pair_sets(
                model_sets[fld], model_scores.encode_sets(ref, fld, vocabs[fld]),
                vocabs[fld].names())
            if leaf is None:
                continue
            for lv in LEVELS:
                r = map_level(leaf, maps.get(lv))
                c = model_scores.set_counts(r)
                patterns, n = _distinct_rows(np.stack([c.tp, c.fp, c.fn], 1).astype(np.int64))
                of = {"reference": name, "field": fld, "level": lv}
                rows["patterns"] += [{**of, "tp": tp, "fp": fp, "fn": fn, "n": k} for
                                     (tp, fp, fn), k in zip(patterns.tolist(), n.tolist(),
                                                            strict=True)]
                tpv, pv, rv = model_scores.value_sums(c)
                used = np.flatnonzero((pv > 0) | (rv > 0))
                rows["values"] += [
                    {**of, "key": key, "tp": t, "predicted": p, "referenced": q}
                    for key, t, p, q in zip(r.vocab[used].tolist(), tpv[used].tolist(),
                                            pv[used].tolist(), rv[used].tolist(), strict=True)]
    return ScoreCounts(*(_typed(pd.DataFrame(rows[name], columns=[*keys, *counted]), name)
                         for name, (keys, counted) in SHAPES.items()))


def confusion_rows(reference: str, table: np.ndarray) -> list[dict[str, Any]]:
    """A (reference, model) table of response types as rows, every cell."""
    return [{"reference": reference, "reference_type": ref_label, "model_type": model_label,
             "count": int(table[i][j])}
            for i, ref_label in enumerate(RESPONSE_TYPE_LABELS)
            for j, model_label in enumerate(RESPONSE_TYPE_LABELS)]


def _confusion_table(cells: pd.DataFrame | None) -> np.ndarray:
    """A (reference, model) table of response types from `confusion_rows`' rows (None: no
    rows, zeros); a label off the scale raises KeyError."""
    position = {label: i for i, label in enumerate(RESPONSE_TYPE_LABELS)}
    table = np.zeros((len(position), len(position)), dtype=np.int64)
    if cells is not None:
        table[[position[t] for t in cells["reference_type"]],
              [position[t] for t in cells["model_type"]]] = cells["count"].to_numpy()
    return table


def scores_of_counts(counts: ScoreCounts, references: Sequence[str]
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The metrics rows (`summaries`' layout) and the confusion rows of each reference, in
    order: what `summaries._reference_scores` gives without resamples."""
    metrics: list[dict[str, Any]] = []
    confusion: list[dict[str, Any]] = []
    cells = counts.confusion.groupby("reference", sort=False)
    shared = dict(zip(counts.shared["reference"], counts.shared["n"], strict=True))
    patterns = {key: group for key, group in counts.patterns.groupby(
        ["reference", "field", "level"], sort=False)}
    values = {key: group for key, group in counts.values.groupby(
        ["reference", "field", "level"], sort=False)}
    for ref in references:
        table = _confusion_table(cells.get_group(ref) if ref in cells.groups else None)
        if shared.get(ref, 0):
            acc = _table_stat(table, accuracy_from_table, 0, 0)
            kappa = _table_stat(table, kappa_from_table, 0, 0)
        else:
            acc = kappa = _nan("no shared conversations")
        metrics.append(metric_row(ref, "accuracy", RESPONSE_TYPE, None, acc))
        metrics.append(metric_row(ref, "cohen_kappa", RESPONSE_TYPE, None, kappa))
        confusion += confusion_rows(ref, table)
        for fld in VALUE_FIELDS:
            for lv in LEVELS:
                for metric, stat in _value_scores(patterns.get((ref, fld, lv)),
                                                  values.get((ref, fld, lv))).items():
                    metrics.append(metric_row(ref, metric, fld, lv, stat))
    return (pd.DataFrame(metrics, columns=METRIC_COLUMNS),
            pd.DataFrame(confusion, columns=[*CONFUSION[0], *CONFUSION[1]]))


def _value_scores(patterns: pd.DataFrame | None, values: pd.DataFrame | None
                  ) -> dict[str, Stat]:
    if patterns is None:
        return {k: _nan("no shared conversations") for k in model_scores.VALUE_SCORE_KEYS}
    empty = np.zeros(0, dtype=np.int64)
    tpv, pv, rv = ((empty,) * 3 if values is None else
                   (values[c].to_numpy(np.int64) for c in ("tp", "predicted", "referenced")))
    return model_scores.value_point_scores(
        patterns[["tp", "fp", "fn"]].to_numpy(np.int64), patterns["n"].to_numpy(np.int64),
        tpv, pv, rv)


def metric_row(reference: str, metric: str, fld: str, level: int | None, stat: Stat
               ) -> dict[str, Any]:
    """One row of a version's metrics table (the Prompts page's layout)."""
    return {"reference": reference, "metric": metric, "field": fld, "level": level,
            "value": stat.value, "low": stat.low, "high": stat.high, "n_units": stat.n_units,
            "note": stat.reason}


def known_scores(metrics: pd.DataFrame, confusion: pd.DataFrame, reference: str
                 ) -> KnownScores | None:
    """One reference's scores as `metric_row` and `confusion_rows` laid them out (a stored
    summary's frames), back as the statistics they were made from; None when the reference
    has no rows or its confusion table is not whole. A bound is None or a finite number (a
    percentile of the defined resamples), so a stored NaN bound was None."""
    rows = metrics.loc[metrics["reference"] == reference]
    cells = confusion.loc[confusion["reference"] == reference]
    if not len(rows) or len(cells) != len(RESPONSE_TYPE_LABELS) ** 2:
        return None
    table = _confusion_table(cells).tolist()
    stats: dict[tuple[str, int | None], dict[str, Stat]] = {}
    for metric, fld, level, value, low, high, n_units, note in zip(
            *(rows[c].tolist() for c in METRIC_COLUMNS[1:]), strict=True):
        key = (fld, None if _is_missing(level) else int(level))
        stats.setdefault(key, {})[metric] = Stat(
            value=float(value), low=None if _is_missing(low) else float(low),
            high=None if _is_missing(high) else float(high), n_units=int(n_units),
            reason=None if _is_missing(note) else str(note))
    return KnownScores(stats, table)
