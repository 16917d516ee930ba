"""The figures `annotator eval --fail-under METRIC=VALUE` (or `METRIC.low=VALUE`) can test, and
reading a threshold.

Apart from `evaluation` so that the command line can list the names in its help without
loading the statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from annotator.errors import InputError

LEVEL = 0  # value scores at the leaf, unless a metric says otherwise
SUBJECTIVE = "subjective"  # the subjectivity figures (`model_scores.subjectivity_scores`)


@dataclass(frozen=True)
class Metric:
    """A figure a gate can test: where it is in `summaries.prompt_bundle`'s metrics."""

    name: str
    metric: str
    field: str
    level: int | None
    description: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric(name="response_accuracy", metric="accuracy", field="response_type", level=None,
           description="share of conversations whose response type equals gold's"),
    Metric(name="response_kappa", metric="cohen_kappa", field="response_type", level=None,
           description="Cohen's kappa of the response type against gold"),
    Metric(name="values_precision", metric="micro_precision", field="ai_values", level=LEVEL,
           description="AI values micro precision, the share of proposed values in gold"),
    Metric(name="values_recall", metric="micro_recall", field="ai_values", level=LEVEL,
           description="AI values micro recall, the share of gold values proposed"),
    Metric(name="values_f1", metric="micro_f1", field="ai_values", level=LEVEL,
           description="AI values micro F1"),
    Metric(name="values_macro_f1", metric="macro_f1", field="ai_values", level=LEVEL,
           description="AI values macro F1 over the values either side used"),
    Metric(name="values_jaccard", metric="mean_jaccard", field="ai_values", level=LEVEL,
           description="AI values mean Jaccard of the two sets per conversation"),
    Metric(name="category_f1", metric="micro_f1", field="ai_values", level=3,
           description="AI values micro F1 with each value mapped to its top category"),
    Metric(name="human_values_f1", metric="micro_f1", field="human_values", level=LEVEL,
           description="human values micro F1"),
    Metric(name="subjective_precision", metric="precision", field=SUBJECTIVE, level=None,
           description="of the conversations it labels subjective, the share gold does"),
    Metric(name="subjective_recall", metric="recall", field=SUBJECTIVE, level=None,
           description="of the conversations gold labels subjective, the share it does (what "
           "a two-stage run keeps)"),
    Metric(name="subjective_accuracy", metric="accuracy", field=SUBJECTIVE, level=None,
           description="share of conversations whose subjective equals gold's"),
)}
BOUNDS = ("value", "low")  # METRIC=VALUE tests the point value, METRIC.low=VALUE the interval's
# compare_versions' delta metrics, by gate metric name
DELTA_NAMES: dict[str, str] = {"accuracy": "response_accuracy", "cohen_kappa": "response_kappa",
                               "micro_f1": "values_f1", "mean_jaccard": "values_jaccard"}


@dataclass(frozen=True)
class Threshold:
    metric: str
    minimum: float
    bound: str = "value"  # "value": the point value; "low": the 95% interval's lower bound


def parse_threshold(text: str) -> Threshold:
    """`METRIC=VALUE` (e.g. `response_kappa=0.6`: the point value) or `METRIC.low=VALUE` (the
    95% interval's lower bound, so a small gold set cannot pass by luck); an unknown metric
    names the valid ones."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InputError(f"--fail-under {text!r}: write METRIC=VALUE, e.g. response_kappa=0.6")
    name, dot, bound = name.partition(".")
    bound = bound.strip() if dot else "value"
    if bound not in BOUNDS:
        raise InputError(f"--fail-under {text!r}: after the metric only `.low` (the 95% "
                         "interval's lower bound) may follow")
    if name not in METRICS:
        raise InputError(f"--fail-under: unknown metric {name!r}; valid: {', '.join(METRICS)}")
    try:
        minimum = float(value)
    except ValueError:
        raise InputError(f"--fail-under {text!r}: {value.strip()!r} is not a number") from None
    if math.isnan(minimum):
        raise InputError(f"--fail-under {text!r}: the threshold must be a number")
    return Threshold(metric=name, minimum=minimum, bound=bound)


def metric_help() -> str:
    """Every metric with what it measures, for --help."""
    return "; ".join(f"{m.name}: {m.description}" for m in METRICS.values())
