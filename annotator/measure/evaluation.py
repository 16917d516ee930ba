"""A prompt gate: a prompt version's agreement with gold, its difference from a baseline
version, its worst conversations, and thresholds that pass or fail (`annotator eval`).

The gold conversations are extracted through the extraction engine (`extract`): cached per
(conversation, prompt version, model), so a rerun pays for nothing already done; claims and
the call ledger as in any run. A dry run only estimates the calls and their cost. A version's
few-shot examples (`prompts.few_shot_ids`) are neither extracted nor scored for it.

Scores are the app's (`summaries.prompt_bundle` against gold, 95% bootstrap intervals over
conversations), with the version's `subjective` as a filter (`model_scores.subjectivity_scores`:
precision, recall, accuracy); a subjectivity-only version (`labels: subjective`) is scored on
those alone. The difference from the baseline is `summaries.compare_versions` (paired bootstrap
over the conversations both versions were scored on). Nothing here computes a statistic of its
own. Gates: a figure's point value or its interval's lower bound (`--fail-under`), and, with
`fail_on_regression`, every paired difference whose whole interval lies below 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlite_utils
from pydantic import BaseModel, Field

from annotator import config
from annotator.db import external_ids, open_existing_db, provenance
from annotator.errors import InputError
from annotator.extract.engine import choose_extractor, extract_async
from annotator.extract.prompts import few_shot_ids, resolve_prompt
from annotator.extract.run_report import ProgressFn
from annotator.measure.eval_metrics import (
    DELTA_NAMES,
    LEVEL,
    METRICS,
    SUBJECTIVE,
    Threshold,
    parse_threshold,
)
from annotator.measure.model_scores import jaccard_index, subjectivity_scores
from annotator.measure.shapes import Stat
from annotator.models import PromptVersion, Provenance

AGAINST_GOLD = "gold"
DEFAULT_WORST = 5


class Figure(BaseModel):
    name: str
    description: str
    value: float | None  # None: undefined here (the note says why)
    low: float | None = None
    high: float | None = None
    n: int = 0
    note: str | None = None


class Difference(BaseModel):
    """The prompt minus the baseline on the conversations both were scored on."""

    name: str
    baseline: float | None
    prompt: float | None
    delta: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0


class Worst(BaseModel):
    conversation_id: str
    external_id: str | None = None  # its id in the source file, to join back
    disagreement: float  # response type wrong (1) + 1 - Jaccard of the AI values; 2 if failed
    reason: str


class Gate(BaseModel):
    """One test: `bound` "value" (the point value at least `minimum`), "low" (the 95%
    interval's lower bound at least `minimum`) or "regression" (`metric` is a difference,
    prompt minus baseline; `value` its interval's upper bound: it fails below 0)."""

    metric: str
    minimum: float
    value: float | None
    passed: bool
    bound: str = "value"


class Run(BaseModel):
    """One version's extraction for the evaluation: what it cost, or would cost."""

    prompt_id: str
    label: str
    model: str
    extractor: str
    in_scope: int  # gold conversations it is scored on (few-shot examples excluded)
    few_shot_left_out: int  # gold conversations left out: its own few-shot examples
    cached: int
    extracted: int
    errors: int
    skipped_unscrubbed: int
    calls: int
    cost_usd: float
    estimate: dict[str, Any] | None = None  # a dry run's


class EvalReport(BaseModel):
    against: str
    gold_conversations: int
    dry_run: bool = False
    prompt: Run
    baseline: Run | None = None
    figures: list[Figure] = Field(default_factory=list)
    differences: list[Difference] = Field(default_factory=list)
    compared: int = 0  # conversations behind the differences
    worst: list[Worst] = Field(default_factory=list)
    gates: list[Gate] = Field(default_factory=list)
    passed: bool = True
    notes: list[str] = Field(default_factory=list)
    provenance: Provenance | None = None


# --- the reference ---------------------------------------------------------------------------


def _reference(db: sqlite_utils.Database, against: str) -> pd.DataFrame:
    """Gold labels to score against: the study's (`gold`), or a gold file's whose
    conversations the study holds (`annotator gold load FILE` puts them there)."""
    from annotator.measure.frames import GOLD_COLUMNS, gold_frame

    if against == AGAINST_GOLD:
        gold = gold_frame(db)
        if gold.empty:
            raise InputError("no gold labels in this study: `annotator gold load FILE`, "
                             "`annotator adjudicate`, or decide them in the app")
        return gold
    from annotator.gold_file import read_gold
    from annotator.models import RejectedRecord

    path = Path(against).expanduser()
    if not path.is_file():
        raise InputError(f"--against {against!r}: neither `gold` nor a gold file")
    rows, bad = [], []
    for record in read_gold(path):
        if isinstance(record, RejectedRecord):
            bad.append(f"line {record.line}: {record.reason}")
        elif not record.gold.missing_fields():
            g = record.gold
            rows.append((record.conversation_id, str(g.response_type), tuple(g.ai_values),
                         tuple(g.human_values), g.subjective, g.decided_by, g.decided_at,
                         g.task))
    if bad:
        raise InputError(f"{path}: {len(bad)} lines do not parse ({bad[0]})")
    gold = pd.DataFrame.from_records(rows, columns=GOLD_COLUMNS)
    if gold.empty:
        raise InputError(f"{path}: no adjudicated conversations")
    known = _known_ids(db, gold["conversation_id"].tolist())
    missing = len(gold) - len(known)
    if missing:
        raise InputError(f"{missing} of the {len(gold)} conversations of {path} are not in this "
                         f"study: load them first (`annotator gold load {path}`)")
    return gold


def _known_ids(db: sqlite_utils.Database, ids: list[str]) -> set[str]:
    import orjson

    return {cid for (cid,) in db.execute(
        "select id from conversations where id in (select value from json_each(?))",
        [orjson.dumps(ids).decode()])}


# --- the runs --------------------------------------------------------------------------------


def _runnable(version: PromptVersion, label: str, extractor: str | None,
              api_key: str | None, dry_run: bool = False
              ) -> tuple[str, PromptVersion | None, str | None]:
    """(extractor, prompt to pass `extract`, note) for evaluating `version`. A dry run without
    a key prices the version as Claude (`extract` says which model it assumed)."""
    from annotator.extract.baseline import BaselineExtractor

    if version.front_matter.get("extractor") == "baseline":
        current = BaselineExtractor.baseline_prompt()
        if version.id != current.id:
            raise InputError(f"prompt {label} is an earlier version of the baseline's rules; "
                             f"only the current one ({current.id}) can run")
        return "baseline", None, None
    name = choose_extractor(extractor, api_key)
    if dry_run and extractor is None and not api_key:
        return "claude", version, None
    if name == "baseline":
        why = "--extractor baseline" if extractor else "no ANTHROPIC_API_KEY"
        return name, None, (f"{why}: the offline baseline's rules stand in for {label}, and "
                            "are what is scored")
    return name, version, None


def _label(version: PromptVersion) -> str:
    return f"{version.name}/{version.version}" if version.name else version.id


async def _extract(
    db_path: Path, version: PromptVersion, gold_ids: list[str], *, extractor: str | None,
    api_key: str | None, dry_run: bool, options: dict[str, Any], notes: list[str],
) -> tuple[Run, list[str]]:
    """Extract the gold conversations `version` is scored on (all but its own few-shot
    examples); the run, and those conversations."""
    label = _label(version)
    name, prompt, note = _runnable(version, label, extractor, api_key, dry_run)
    if note:
        notes.append(note)
    examples = few_shot_ids(version) if prompt is not None else frozenset()
    scope = [cid for cid in gold_ids if cid not in examples]
    report = await extract_async(db_path, prompt=prompt, extractor=name, dry_run=dry_run,
                                 api_key=api_key, conversation_ids=scope, **options)
    notes.extend(report.notes)
    if report.skipped_unscrubbed:
        notes.append(f"{label}: {report.skipped_unscrubbed} gold conversations were ingested "
                     "unscrubbed and are not sent to a model (`annotator extract "
                     "--allow-unscrubbed` sends them)")
    run = Run(
        prompt_id=report.prompt_id, label=report.prompt, model=report.model,
        extractor=report.extractor, in_scope=report.in_scope,
        few_shot_left_out=len(gold_ids) - len(scope), cached=report.cached,
        extracted=report.ok, errors=report.errors, skipped_unscrubbed=report.skipped_unscrubbed,
        calls=report.calls, cost_usd=round(report.cost_usd, 6), estimate=report.estimate,
    )
    return run, scope


# --- scores ----------------------------------------------------------------------------------


def _scored(db: sqlite_utils.Database, run: Run, scope: list[str]) -> pd.DataFrame:
    """The run's extractions (ok or not) of the conversations it is scored on."""
    from annotator.measure.frames import extractions_frame

    frame = extractions_frame(db, run.prompt_id, include_errors=True)
    return frame.loc[(frame["model"] == run.model) & frame["conversation_id"].isin(scope)]


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _figure(name: str, description: str, stat: Stat) -> Figure:
    return Figure(name=name, description=description, value=_number(stat.value),
                  low=stat.low, high=stat.high, n=stat.n_units, note=stat.reason)


def _figures(metrics: pd.DataFrame | None, subjectivity: dict[str, Stat]) -> list[Figure]:
    """Each gate metric's figure; only the subjectivity ones without `metrics` (a
    subjectivity-only version)."""
    out = [_figure(m.name, m.description, subjectivity[m.metric])
           for m in METRICS.values() if m.field == SUBJECTIVE]
    if metrics is None:
        return out
    gold = metrics.loc[metrics["reference"] == AGAINST_GOLD]
    for m in METRICS.values():
        if m.field == SUBJECTIVE:
            continue
        hit = gold.loc[(gold["metric"] == m.metric) & (gold["field"] == m.field)]
        hit = hit.loc[hit["level"].isna()] if m.level is None else hit.loc[hit["level"] == m.level]
        if hit.empty:
            out.append(Figure(name=m.name, description=m.description, value=None,
                              note="not computed"))
            continue
        r = hit.iloc[0]
        out.append(Figure(name=m.name, description=m.description, value=_number(r["value"]),
                          low=_number(r["low"]), high=_number(r["high"]), n=int(r["n_units"]),
                          note=None if pd.isna(r["note"]) else str(r["note"])))
    return out


def _names(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "none"


def _worst(outcomes: pd.DataFrame, errors: pd.DataFrame, limit: int) -> list[Worst]:
    """The conversations most at odds with gold, with a short reason; failed ones first."""
    found = [Worst(conversation_id=r.conversation_id, disagreement=2.0,
                   reason=f"extraction failed: {str(r.error or 'error')[:120]}")
             for r in errors.itertuples()]
    jaccard = jaccard_index(*(outcomes[f"{k}_{LEVEL}"].to_numpy(float) for k in ("tp", "fp", "fn")))
    for r, similarity in zip(outcomes.itertuples(), jaccard, strict=True):
        score = (0.0 if r.type_match else 1.0) + 1.0 - float(similarity)
        if score <= 0:
            continue
        parts = []
        if not r.type_match:
            parts.append(f"response type {r.model_type or 'none'}, gold {r.gold_type}")
        model, gold = set(r.model_values), set(r.gold_values)
        if gold - model:
            parts.append(f"missed {_names(sorted(gold - model))}")
        if model - gold:
            parts.append(f"extra {_names(sorted(model - gold))}")
        found.append(Worst(conversation_id=r.conversation_id, disagreement=round(score, 4),
                           reason="; ".join(parts)))
    found.sort(key=lambda w: (-w.disagreement, w.conversation_id))
    return found[:limit]


def _differences(deltas: pd.DataFrame) -> list[Difference]:
    return [Difference(name=DELTA_NAMES.get(r.metric, r.metric), baseline=_number(r.a),
                       prompt=_number(r.b), delta=_number(r.delta), low=_number(r.low),
                       high=_number(r.high), n=int(r.n_units))
            for r in deltas.itertuples()]


def _subjective_worst(scored: pd.DataFrame, gold: pd.DataFrame, limit: int) -> list[Worst]:
    """A subjectivity-only version's misses: failed extractions, then every disagreement."""
    found = [Worst(conversation_id=r.conversation_id, disagreement=2.0,
                   reason=f"extraction failed: {str(r.error or 'error')[:120]}")
             for r in scored.loc[scored["status"] != "ok"].itertuples()]
    truth = {r.conversation_id: r.subjective for r in gold.itertuples()
             if r.subjective is not None and not pd.isna(r.subjective)}
    for r in scored.loc[scored["status"] == "ok"].itertuples():
        if r.conversation_id in truth and bool(r.subjective) != bool(truth[r.conversation_id]):
            said = "subjective" if r.subjective else "not subjective"
            found.append(Worst(conversation_id=r.conversation_id, disagreement=1.0,
                               reason=f"labelled {said}, gold the opposite"))
    found.sort(key=lambda w: (-w.disagreement, w.conversation_id))
    return found[:limit]


def _gates(figures: list[Figure], thresholds: list[Threshold]) -> list[Gate]:
    by_name = {f.name: f for f in figures}
    gates = []
    for t in thresholds:
        found = by_name.get(t.metric)
        value = None if found is None else (found.low if t.bound == "low" else found.value)
        gates.append(Gate(metric=t.metric, minimum=t.minimum, value=value, bound=t.bound,
                          passed=value is not None and value >= t.minimum))
    return gates


def _regressions(differences: list[Difference]) -> list[Gate]:
    """A paired difference whose whole 95% interval lies below 0 fails; one without an interval
    (undefined on these conversations) is not tested."""
    return [Gate(metric=d.name, minimum=0.0, value=d.high, bound="regression",
                 passed=d.high >= 0)
            for d in differences if d.high is not None]


# --- the evaluation --------------------------------------------------------------------------


async def evaluate_async(
    db_path: str | Path | None = None,
    prompt: str | None = None,
    *,
    against: str = AGAINST_GOLD,
    baseline: str | None = None,
    fail_under: Sequence[str] = (),
    fail_on_regression: bool = False,
    dry_run: bool = False,
    extractor: str | None = None,
    prompts_dir: str | Path | None = None,
    api_key: str | None = None,
    n_boot: int = 200,
    worst: int = DEFAULT_WORST,
    progress: ProgressFn | None = None,
    **extract_options: Any,
) -> EvalReport:
    """`evaluate`, for callers already inside an event loop."""
    from annotator.measure import summaries
    from annotator.measure.frames import ANNOTATION_COLUMNS

    thresholds = [parse_threshold(t) for t in fail_under]  # a typo fails before any spending
    if fail_on_regression and not baseline:
        raise InputError("--fail-on-regression needs --baseline: the version it must not fall "
                         "behind")
    if n_boot <= 0 and (fail_on_regression or any(t.bound == "low" for t in thresholds)):
        raise InputError("a gate on an interval (METRIC.low, --fail-on-regression) needs "
                         "intervals: give --boot more than 0")
    settings = config.settings()
    path = Path(db_path) if db_path is not None else settings.db_path
    api_key = api_key or settings.anthropic_api_key
    folder = Path(prompts_dir) if prompts_dir else None
    db = open_existing_db(path)
    try:
        version = resolve_prompt(prompt, folder, db)
        base_version = resolve_prompt(baseline, folder, db) if baseline else None
        gold = _reference(db, against)
        made = provenance(db, [v.id for v in (version, base_version) if v is not None],
                          f"gold ({against})")
    finally:
        db.conn.close()
    gold_ids = sorted(gold["conversation_id"].unique())
    notes: list[str] = []
    options = {"progress": progress, **extract_options}
    runs = []
    for v in (version, base_version):
        if v is not None:
            runs.append(await _extract(path, v, gold_ids, extractor=extractor, api_key=api_key,
                                       dry_run=dry_run, options=options, notes=notes))
    run = runs[0][0]
    base_run = runs[1][0] if len(runs) > 1 else None
    report = EvalReport(against=against, gold_conversations=len(gold_ids), dry_run=dry_run,
                        prompt=run, baseline=base_run, notes=list(dict.fromkeys(notes)),
                        provenance=made)
    if dry_run:
        if thresholds or fail_on_regression:
            report.notes.append("a dry run scores nothing: the thresholds were not tested")
        return report
    db = open_existing_db(path)
    try:
        frames = [_scored(db, r, scope) for r, scope in runs]
        external = external_ids(db, gold_ids)
    finally:
        db.conn.close()
    subjectivity = subjectivity_scores(frames[0].loc[frames[0]["status"] == "ok"], gold,
                                       n_boot=n_boot)
    if _only_subjective(version, run):
        report.figures = _figures(None, subjectivity)
        report.worst = _named(_subjective_worst(frames[0], gold, worst), external)
        if base_run is not None:
            report.notes.append(f"{run.label} labels only subjective: no paired difference "
                                "from --baseline (its response types and values are unset)")
        report.gates = _gates(report.figures, thresholds)
        report.passed = all(g.passed for g in report.gates)
        return report
    no_annotations = pd.DataFrame(columns=ANNOTATION_COLUMNS)
    bundles = [summaries.prompt_bundle(f.loc[f["status"] == "ok"], gold, no_annotations, n_boot)
               for f in frames]
    report.figures = _figures(bundles[0].frames["metrics"], subjectivity)
    report.worst = _named(_worst(bundles[0].frames["outcomes"],
                                 frames[0].loc[frames[0]["status"] != "ok"], worst), external)
    if base_run is not None:
        if base_run.prompt_id == run.prompt_id and base_run.model == run.model:
            report.notes.append("the prompt and --baseline are the same version here: no "
                                "difference to measure")
        changes, deltas = summaries.compare_versions(
            bundles[1].frames["outcomes"], bundles[0].frames["outcomes"], LEVEL, n_boot)
        report.compared = len(changes)
        report.differences = _differences(deltas)
    report.gates = _gates(report.figures, thresholds)
    if fail_on_regression:
        report.gates += _regressions(report.differences)
    report.passed = all(g.passed for g in report.gates)
    return report


def _named(worst: list[Worst], external: dict[str, str | None]) -> list[Worst]:
    for w in worst:
        w.external_id = external.get(w.conversation_id)
    return worst


def _only_subjective(version: PromptVersion, run: Run) -> bool:
    """Whether the run labelled only `subjective` (a `labels: subjective` version run by a
    model, not the baseline standing in for it)."""
    return run.extractor == "claude" and version.front_matter.get("labels") == SUBJECTIVE


def evaluate(db_path: str | Path | None = None, prompt: str | None = None,
             **options: Any) -> EvalReport:
    """Extract the gold conversations with `prompt` (cached), score it against gold with 95%
    intervals, compare it with `baseline` (paired), list its worst conversations and test the
    `fail_under` thresholds (`METRIC=VALUE` on the point value, `METRIC.low=VALUE` on the 95%
    interval's lower bound; names in `METRICS`) and, with `fail_on_regression`, fail when a
    paired difference from `baseline` has its whole interval below 0.

    `prompt` and `baseline` are any reference `prompts.resolve_prompt` takes. `against`: `gold`
    (the study's gold labels) or a gold file whose conversations the study holds. `dry_run`:
    estimate the calls and their cost, send none, score nothing. `extractor`: as `extract`'s
    (default claude with an API key, else the offline baseline, which then stands in for the
    prompt, as a note says; a dry run without a key prices Claude with the prompt's model).
    Other options go to `extract.extract_async` (concurrency, prices, timeout, batch and
    poll_interval for the Message Batches API, ...).
    """
    return asyncio.run(evaluate_async(db_path, prompt, **options))
