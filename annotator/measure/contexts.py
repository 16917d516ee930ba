"""Values by task: which AI values come up disproportionately in which tasks, and which hold
steady across them, read as the published study reads them ("how values manifest in
different contexts").

For each value tested (held in at least `min_value_conversations` conversations with a task),
a 2 x T table: per task, the conversations with the value and those without. Its chi-square
(T - 1 degrees of freedom) says whether the value's share differs between tasks; each cell
(value, task) gets its adjusted standardised (Pearson) residual

    (O - E) / sqrt(E (1 - r/N) (1 - c/N)),   E = r c / N,

O the task's conversations with the value, r the value's conversations, c the task's, N all.
A residual is about standard normal under independence; its two-sided p is Bonferroni-
corrected over every cell tested. Per task: the five values with the largest positive
residuals, each with its count and its share of the task's conversations (Wilson 95%
interval). Context-invariant values: the coefficient of variation (population standard
deviation over mean) of a value's share across tasks, lowest first, with a 95% interval from a
seeded parametric bootstrap (each task's count drawn binomially), beside the published figures.

Everything here is numpy and the standard library; tests check it against `scipy.stats` and
`statsmodels`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field

from annotator.measure.shares import wilson

TOP_PER_TASK = 5
MIN_VALUE_CONVERSATIONS = 3  # a value in fewer conversations says nothing about tasks
MIN_TASK_CONVERSATIONS = 3  # a task's share of a value over fewer is noise (CV only)
ALPHA = 0.05
BOOTSTRAP = 2000
SEED = 0
SHOWN_INVARIANT = 10
# The published study's most context-invariant values (lowest coefficient of variation across
# tasks): Huang et al. (2025), "Values in the Wild".
PUBLISHED_CV: dict[str, float] = {"transparency": 1.23, "helpfulness": 1.30,
                                  "thoroughness": 1.42}


class TaskValue(BaseModel):
    """One value in one task: counts, share with its interval, and its adjusted residual."""

    value: str
    conversations: int = Field(description="the task's conversations with the value")
    task_conversations: int = Field(description="the share's denominator")
    share: float = Field(description="conversations / task_conversations")
    low: float
    high: float
    expected: float = Field(description="E = value's conversations x task's / all")
    residual: float = Field(description="adjusted standardised Pearson residual")
    p_bonferroni: float = Field(description="two-sided, times the cells tested (at most 1)")
    significant: bool


class TaskValues(BaseModel):
    task: str
    conversations: int
    top: list[TaskValue]


class ValueTest(BaseModel):
    """One value's 2 x T chi-square across tasks."""

    value: str
    conversations: int
    chi2: float
    dof: int
    p_value: float


class InvariantValue(BaseModel):
    value: str
    tasks: int = Field(description="tasks the CV is over (each with enough conversations)")
    mean_share: float
    cv: float
    low: float | None = None
    high: float | None = None
    published_cv: float | None = None


class ValuesByTask(BaseModel):
    """Values by task for one source of labels (see the module's docstring)."""

    conversations: int = Field(description="conversations with a task (N)")
    without_task: int = Field(description="conversations the source gives no task")
    tasks: list[TaskValues]
    values_tested: int
    cells_tested: int
    alpha: float = ALPHA
    min_value_conversations: int = MIN_VALUE_CONVERSATIONS
    tests: list[ValueTest]
    small_expected_pct: float | None = Field(
        None, description="percent of tested cells with an expected count under 5 (the "
        "chi-square approximation is rough there)")
    invariant: list[InvariantValue]
    published_cv: dict[str, float] = Field(default_factory=lambda: dict(PUBLISHED_CV))
    published_in_study: list[InvariantValue] = Field(default_factory=list)
    note: str | None = None


# --- the statistics -----------------------------------------------------------------------


def expected_counts(table: np.ndarray) -> np.ndarray:
    """Row total x column total / grand total, per cell."""
    table = np.asarray(table, dtype=float)
    return np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()


def chi_square(table: np.ndarray) -> tuple[float, int]:
    """Pearson's chi-square of a contingency table and its degrees of freedom (no continuity
    correction); rows or columns that are all zero are dropped first."""
    table = np.asarray(table, dtype=float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.size == 0 or min(table.shape) < 2:
        return 0.0, 0
    expected = expected_counts(table)
    stat = float(((table - expected) ** 2 / expected).sum())
    return stat, (table.shape[0] - 1) * (table.shape[1] - 1)


def adjusted_residuals(table: np.ndarray) -> np.ndarray:
    """(O - E) / sqrt(E (1 - row/N) (1 - col/N)) per cell; NaN where undefined."""
    table = np.asarray(table, dtype=float)
    total = table.sum()
    rows = table.sum(axis=1, keepdims=True) / total
    cols = table.sum(axis=0, keepdims=True) / total
    expected = expected_counts(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (table - expected) / np.sqrt(expected * (1 - rows) * (1 - cols))


def _gamma_q(a: float, x: float) -> float:
    """The regularised upper incomplete gamma Q(a, x): series below a + 1, else Lentz's
    continued fraction (Numerical Recipes, 6.2)."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def chi2_sf(stat: float, dof: int) -> float:
    """P(chi-square with `dof` degrees of freedom >= stat)."""
    if dof <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, stat / 2.0)


def normal_two_sided(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def coefficient_of_variation(shares: np.ndarray) -> float:
    """Population standard deviation over mean (NaN when the mean is 0)."""
    shares = np.asarray(shares, dtype=float)
    mean = shares.mean()
    return float(shares.std() / mean) if mean > 0 else float("nan")


def _cv_interval(counts: np.ndarray, sizes: np.ndarray, rng: np.random.Generator
                 ) -> tuple[float | None, float | None]:
    """A 95% percentile interval of the CV: each task's count drawn Binomial(size, share)."""
    draws = rng.binomial(sizes, counts / sizes, size=(BOOTSTRAP, len(sizes))) / sizes
    means = draws.mean(axis=1)
    keep = means > 0
    if keep.sum() < BOOTSTRAP // 2:
        return None, None
    cvs = draws[keep].std(axis=1) / means[keep]
    low, high = np.percentile(cvs, [2.5, 97.5])
    return float(low), float(high)


# --- the report ---------------------------------------------------------------------------


def values_by_task(
    tasks: Sequence[str | None],
    values: Sequence[Sequence[str]],
    order: Sequence[str] = (),
    min_value_conversations: int = MIN_VALUE_CONVERSATIONS,
    min_task_conversations: int = MIN_TASK_CONVERSATIONS,
    top: int = TOP_PER_TASK,
    alpha: float = ALPHA,
) -> ValuesByTask:
    """Values by task from one row per conversation: its task (None: none) and its AI values
    (names as the report shows them, each counted once per conversation). `order`: the task
    list's order, in which tasks are listed (others after, by name)."""
    sizes: dict[str, int] = {}
    counts: dict[tuple[str, str], int] = {}
    without = 0
    for task, names in zip(tasks, values, strict=True):
        if not task:
            without += 1
            continue
        sizes[str(task)] = sizes.get(str(task), 0) + 1
        for name in set(names):
            counts[(str(task), name)] = counts.get((str(task), name), 0) + 1
    return values_by_task_of_counts(sizes, counts, without, order, min_value_conversations,
                                    min_task_conversations, top, alpha)


def values_by_task_of_counts(
    task_sizes: Mapping[str, int],
    task_values: Mapping[tuple[str, str], int],
    without: int,
    order: Sequence[str] = (),
    min_value_conversations: int = MIN_VALUE_CONVERSATIONS,
    min_task_conversations: int = MIN_TASK_CONVERSATIONS,
    top: int = TOP_PER_TASK,
    alpha: float = ALPHA,
) -> ValuesByTask:
    """`values_by_task` from counts: each task's conversations, each (task, value)'s, and
    the conversations without a task."""
    rank = {name: i for i, name in enumerate(order)}
    task_names = sorted((t for t, n in task_sizes.items() if n),
                        key=lambda n: (rank.get(n, len(rank)), n))
    column = {name: j for j, name in enumerate(task_names)}
    value_names = sorted({v for (_, v), n in task_values.items() if n})
    index = {name: k for k, name in enumerate(value_names)}
    counts = np.zeros((len(value_names), len(task_names)), dtype=np.int64)
    for (task, name), n in task_values.items():
        if n:
            counts[index[name], column[task]] = n
    sizes = np.array([task_sizes[t] for t in task_names], dtype=np.int64)
    n = int(sizes.sum())
    totals = counts.sum(axis=1)
    tested = np.flatnonzero(totals >= min_value_conversations) if len(task_names) >= 2 else []
    cells = len(tested) * len(task_names)
    tests: list[ValueTest] = []
    residuals = np.full(counts.shape, np.nan)
    expected = np.zeros(counts.shape)
    small = 0
    for k in tested:
        table = np.vstack([counts[k], sizes - counts[k]])
        stat, dof = chi_square(table)
        tests.append(ValueTest(value=value_names[k], conversations=int(totals[k]), chi2=stat,
                               dof=dof, p_value=chi2_sf(stat, dof)))
        residuals[k] = adjusted_residuals(table)[0]
        expected[k] = expected_counts(table)[0]
        small += int((expected[k] < 5).sum())
    by_task = []
    for j, task in enumerate(task_names):
        rows = [k for k in tested if np.isfinite(residuals[k, j]) and residuals[k, j] > 0]
        rows.sort(key=lambda k: (-residuals[k, j], -counts[k, j], value_names[k]))
        chosen = []
        for k in rows[:top]:
            low, high = wilson(int(counts[k, j]), int(sizes[j]))
            p = min(1.0, normal_two_sided(float(residuals[k, j])) * cells)
            chosen.append(TaskValue(
                value=value_names[k], conversations=int(counts[k, j]),
                task_conversations=int(sizes[j]), share=float(counts[k, j] / sizes[j]),
                low=low, high=high, expected=float(expected[k, j]),
                residual=float(residuals[k, j]), p_bonferroni=p, significant=p < alpha))
        by_task.append(TaskValues(task=task, conversations=int(sizes[j]), top=chosen))
    invariant = _invariant(counts, sizes, tested, value_names, min_task_conversations)
    published = [row for row in invariant if row.value in PUBLISHED_CV]
    shown = invariant[:SHOWN_INVARIANT]
    shown += [row for row in published if row not in shown]
    note = None
    if len(task_names) < 2:
        note = "values by task need conversations in at least two tasks"
    elif not len(tested):
        note = f"no value is in {min_value_conversations} or more conversations with a task"
    return ValuesByTask(
        conversations=n, without_task=without, tasks=by_task, values_tested=len(tested),
        cells_tested=cells, alpha=alpha, min_value_conversations=min_value_conversations,
        tests=sorted(tests, key=lambda t: (t.p_value, t.value)),
        small_expected_pct=100.0 * small / cells if cells else None,
        invariant=shown, published_in_study=published, note=note)


def _invariant(counts: np.ndarray, sizes: np.ndarray, tested: Sequence[int],
               names: list[str], min_task: int) -> list[InvariantValue]:
    """Each tested value's CV of its share across the tasks with at least `min_task`
    conversations, lowest first (values absent from every such task are left out)."""
    usable = sizes >= min_task
    if usable.sum() < 2:
        return []
    rng = np.random.default_rng(SEED)
    out = []
    for k in tested:
        shares = counts[k, usable] / sizes[usable]
        cv = coefficient_of_variation(shares)
        if not math.isfinite(cv):
            continue
        low, high = _cv_interval(counts[k, usable], sizes[usable], rng)
        out.append(InvariantValue(value=names[k], tasks=int(usable.sum()),
                                  mean_share=float(shares.mean()), cv=cv, low=low, high=high,
                                  published_cv=PUBLISHED_CV.get(names[k])))
    out.sort(key=lambda r: (r.cv, r.value))
    return out


__all__ = [
    "PUBLISHED_CV",
    "InvariantValue",
    "TaskValue",
    "TaskValues",
    "ValueTest",
    "ValuesByTask",
    "adjusted_residuals",
    "chi2_sf",
    "chi_square",
    "coefficient_of_variation",
    "expected_counts",
    "normal_two_sided",
    "values_by_task",
    "values_by_task_of_counts",
    "wilson",
]
