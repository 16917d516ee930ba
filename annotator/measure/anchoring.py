"""Anchoring: do reviewers who saw the model's proposals agree with it more than blind reviewers?
The same model-human figures, prefilled versus blind, and their paired difference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from annotator.measure.coefficients import (
    _distinct_rows,
)
from annotator.measure.intervals import (
    paired_stats,
)
from annotator.measure.model_scores import (
    _SET_TYPES,
    micro_scores,
)
from annotator.measure.shapes import (
    RESPONSE_TYPE,
    UNIT,
    Stat,
    _is_missing,
    _nan,
)

# --------------------------------------------------------------------------- anchoring

# Below this many annotated blind conversations the blind figure's interval is too wide to tell
# anchoring from noise: with 20 conversations a 95% interval on an accuracy near .5 spans about
# +-.2, as large as the effects worth knowing about.
MIN_BLIND_CONVERSATIONS = 20
ANCHORING_METRICS: tuple[tuple[str, str], ...] = (("accuracy", RESPONSE_TYPE),
                                                  ("micro_f1", "ai_values"))
_ANCHORING_NAMES = {"accuracy": "response-type accuracy", "micro_f1": "AI-value micro F1"}


class AnchoringMetric(BaseModel):
    """One model-human agreement figure on pre-filled and on blind tasks, and their difference."""

    metric: str  # "accuracy" (response type) or "micro_f1" (AI values)
    field: str
    prefilled: Stat
    blind: Stat
    anchoring: Stat  # prefilled - blind; interval from the same resamples of conversations
    reading: str


class AnchoringReport(BaseModel):
    """Does a pre-filled form pull reviewers towards the model? One prompt version's extractions
    against each human annotation, on tasks pre-filled (by any prediction) and on blind tasks."""

    prompt_id: str
    prefilled_conversations: int = 0
    blind_conversations: int = 0
    prefilled_annotations: int = 0
    blind_annotations: int = 0
    min_blind: int = MIN_BLIND_CONVERSATIONS
    enough_blind: bool = False
    metrics: list[AnchoringMetric] = Field(default_factory=list)
    statement: str = ""


def _value_set(cell: Any) -> set | None:
    """A value-set cell as a set; None when missing (an empty set is a real label)."""
    if type(cell) not in _SET_TYPES and _is_missing(cell):
        return None
    return set(cell)


def _pair_counts(model: pd.DataFrame, humans: pd.DataFrame) -> pd.DataFrame:
    """One row per (human annotation, model extraction) of a conversation: blind, and per field
    the counts micro scores add up (type: correct, compared; values: tp, fp, fn)."""
    last = model[[UNIT, RESPONSE_TYPE, "ai_values"]].drop_duplicates(UNIT, keep="last")
    both = humans[[UNIT, "blind", RESPONSE_TYPE, "ai_values"]].merge(
        last, on=UNIT, suffixes=("_ref", "_model"))
    rt_m = [getattr(x, "value", x) for x in both[f"{RESPONSE_TYPE}_model"].tolist()]
    rt_r = [getattr(x, "value", x) for x in both[f"{RESPONSE_TYPE}_ref"].tolist()]
    compared = [not (_is_missing(m) or _is_missing(r)) for m, r in zip(rt_m, rt_r, strict=True)]
    correct = [c and m == r for c, m, r in zip(compared, rt_m, rt_r, strict=True)]
    tp, fp, fn, valued = [], [], [], []
    for m, r in zip(both["ai_values_model"].tolist(), both["ai_values_ref"].tolist(),
                    strict=True):
        ms, rs = _value_set(m), _value_set(r)
        ok = ms is not None and rs is not None
        ms, rs = (ms, rs) if ok else (set(), set())
        tp.append(len(ms & rs))
        fp.append(len(ms - rs))
        fn.append(len(rs - ms))
        valued.append(ok)
    return pd.DataFrame({UNIT: both[UNIT].to_numpy(), "blind": both["blind"].astype(bool),
                         "correct": correct, "compared": compared, "tp": tp, "fp": fp, "fn": fn,
                         "valued": valued})


def _per_conversation(pairs: pd.DataFrame, columns: list[str], used: str) -> tuple[
    np.ndarray, int, int
]:
    """Conversations x (columns on pre-filled tasks, then on blind tasks), summed over their
    pairs; and how many conversations have a used pair on each side."""
    pairs = pairs.loc[pairs[used].to_numpy(bool)]
    sides = []
    for blind in (False, True):
        side = pairs.loc[pairs["blind"].to_numpy(bool) == blind]
        sides.append(side.groupby(UNIT)[columns].sum())
    table = sides[0].add_suffix("_pre").join(sides[1].add_suffix("_blind"), how="outer")
    table = table.fillna(0)
    return table.to_numpy(np.int64), len(sides[0]), len(sides[1])


def _accuracy_of(p: np.ndarray, w: np.ndarray) -> float:
    compared = float(w @ p[:, 1])
    return float(w @ p[:, 0]) / compared if compared > 0 else float("nan")


def _f1_of(p: np.ndarray, w: np.ndarray) -> float:
    return micro_scores(p[:, 0], p[:, 1], p[:, 2], w)["f1"]


def _split_stats(table: np.ndarray, width: int, ratio: Callable[[np.ndarray, np.ndarray], float],
                 n_pre: int, n_blind: int, n_boot: int, seed: int) -> tuple[Stat, Stat, Stat]:
    """The ratio on pre-filled and on blind tasks and their difference, each with a 95%
    interval over conversations, from the same resamples (`paired_stats`)."""
    if table.size == 0:
        none = _nan("no conversation annotated with an extraction")
        return none, none, none
    patterns, counts = _distinct_rows(table)
    return paired_stats(
        counts.astype(float),
        lambda w: ratio(patterns[:, :width], w),
        lambda w: ratio(patterns[:, width:], w),
        n_units=(n_pre, n_blind, len(table)),
        undefined=("no annotated pre-filled task", "no annotated blind task",
                   "needs both pre-filled and blind tasks"),
        n_boot=n_boot, seed=seed,
    )


def _reading(metric: str, anchoring: Stat) -> str:
    name = _ANCHORING_NAMES[metric]
    if not anchoring.defined:
        return f"{name}: no difference to read ({anchoring.reason})"
    figure = f"{anchoring.value:+.3f}"
    if anchoring.low is None or anchoring.high is None:
        return f"{name}: pre-filled minus blind {figure}, no interval ({anchoring.reason})"
    span = f"{figure}, 95% interval [{anchoring.low:+.3f}, {anchoring.high:+.3f}]"
    if anchoring.low > 0:
        return (f"{name}: anchoring, reviewers agree more with the model when its labels "
                f"pre-fill the form ({span})")
    if anchoring.high < 0:
        return f"{name}: reviewers agree less with the model on pre-filled tasks ({span})"
    return f"{name}: no anchoring detected, the interval includes 0 ({span})"


def anchoring(
    model: pd.DataFrame,
    humans: pd.DataFrame,
    *,
    prompt_id: str = "",
    min_blind: int = MIN_BLIND_CONVERSATIONS,
    n_boot: int = 200,
    seed: int = 0,
) -> AnchoringReport:
    """Model-human agreement on pre-filled and on blind tasks, and anchoring = the difference.

    model: one prompt version's extractions, conversation_id, response_type, ai_values (a
      conversation's last row counts);
    humans: one row per human annotation, conversation_id, blind (True: the task had no
      prediction), response_type, ai_values.
    Each annotation is compared with the model's labels: response-type accuracy and AI-value
    micro F1 over the (annotation, extraction) pairs of each side. A positive anchoring with an
    interval above 0 says reviewers agreed more with the model when they saw its labels. With
    fewer than `min_blind` annotated blind conversations the statement says it cannot tell.
    """
    report = AnchoringReport(prompt_id=prompt_id, min_blind=min_blind)
    pairs = _pair_counts(model, humans)
    blind = pairs["blind"].to_numpy(bool)
    report.prefilled_annotations, report.blind_annotations = int((~blind).sum()), int(blind.sum())
    report.prefilled_conversations = int(pairs.loc[~blind, UNIT].nunique())
    report.blind_conversations = int(pairs.loc[blind, UNIT].nunique())
    report.enough_blind = report.blind_conversations >= min_blind
    for metric, field, columns, used, ratio in (
        ("accuracy", RESPONSE_TYPE, ["correct", "compared"], "compared", _accuracy_of),
        ("micro_f1", "ai_values", ["tp", "fp", "fn"], "valued", _f1_of),
    ):
        table, n_pre, n_blind = _per_conversation(pairs, columns, used)
        pre, bl, diff = _split_stats(table, len(columns), ratio, n_pre, n_blind, n_boot, seed)
        report.metrics.append(AnchoringMetric(metric=metric, field=field, prefilled=pre,
                                              blind=bl, anchoring=diff,
                                              reading=_reading(metric, diff)))
    report.statement = _statement(report)
    return report


def _statement(report: AnchoringReport) -> str:
    if report.prefilled_conversations == 0:
        return ("No annotated pre-filled task with an extraction by this prompt version: "
                "nothing to compare the blind tasks with.")
    if not report.enough_blind:
        n = report.blind_conversations
        return (f"Too few blind tasks to tell: {n} annotated blind conversation"
                f"{'' if n == 1 else 's'} with an extraction by this prompt version, at least "
                f"{report.min_blind} needed to measure anchoring; push more blind tasks "
                "(`annotator push --blind-share`).")
    return "; ".join(m.reading for m in report.metrics) + "."
