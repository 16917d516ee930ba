"""Agreement and findings: `agreement`, `report`, `eval`, `summarize`, `app`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from annotator import config
from annotator.cli.main import (
    PROMPT_REF,
    DbOption,
    JsonOption,
    PromptsDirOption,
    app,
    cli_errors,
    console,
    db_path,
    extract_bar,
    figure,
    precompute_summaries,
    print_json,
    rows_table,
    say,
    working,
    write_json,
)
from annotator.errors import NO_ANNOTATIONS, AnnotatorError
from annotator.measure.eval_metrics import metric_help


@app.command()
@cli_errors
def summarize(
    db: DbOption = None,
    n_boot: Annotated[
        int, typer.Option("--n-boot", help="Bootstrap resamples for the 95% intervals.")
    ] = 200,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes. Default: 1, or 2 from 20,000 conversations "
                     "(each needs about 2.5 GB at 300,000); after new labels alone, this "
                     "process and 1 (what is left is made from the change)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compute the summaries the app's pages open with (agreement, each prompt version's
    scores and its comparison with the version before, value frequencies), stored beside the
    study in .annotator-cache/.

    `extract`, `pull` and `adjudicate` do this when they finish (unless --no-summaries), so the
    app opens a large study at once; run it after changing the study some other way, or for
    another number of resamples. Only what changed is computed again.

    Example: annotator summarize --db study.db
    """
    from annotator.db import open_existing_db

    path = db_path(db)
    open_existing_db(path).conn.close()  # a missing study is an error, not a new one
    done = precompute_summaries(path, True, as_json, n_boot, workers, must_succeed=True)
    if as_json:
        print_json(done)


@app.command("app")
@cli_errors
def serve(
    db: DbOption = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, show_default=False,
                     help="Port to serve on. Default: the one the last start was given, "
                     "else 8501."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--host", "--address", show_default=False,
            help="Address to listen on. Default: the one the last start was given, else "
            "127.0.0.1. Both are kept beside the study, so a restart without them serves at "
            "the same URL. The app shows every reviewer's labels: beyond 127.0.0.1 it asks "
            "for a password first ($ANNOTATOR_APP_PASSWORD, else one made and kept beside "
            "the study, printed here).",
        ),
    ] = None,
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open a browser tab.")
    ] = True,
    gold_dir: Annotated[
        Path | None,
        typer.Option("--gold-dir", help="Where the Gold page writes the study's gold file "
                     "(`<study name>.jsonl`). Default: gold/ beside the study database.",
                     show_default=False),
    ] = None,
) -> None:
    """Serve the study's app: agreement, prompt versions, disagreements, gold and export.

    The same app as `ANNOTATOR_DB=study.db streamlit run streamlit_app.py` in a checkout, with
    its modules loaded before the server starts, so the first page does not wait for them. Stop
    with Ctrl-C.
    The Gold page writes the gold file beside the study (`gold/<study name>.jsonl`), or in
    --gold-dir.

    Example: annotator app --db study.db --port 8502
    """
    from annotator.app.server import serve_app
    from annotator.db import open_existing_db

    def started(url: str, password: str | None) -> None:
        say(f"App: {url}" + (f" (password: {password})" if password else ""))

    path = db_path(db)
    open_existing_db(path).conn.close()  # a missing or foreign file: one line, not a page
    serve_app(path, port=port, address=address, open_browser=browser, gold_dir=gold_dir,
              on_start=started)


METRIC_NAMES = {
    "krippendorff_alpha_nominal": "alpha nominal",
    "krippendorff_alpha_ordinal": "alpha ordinal",
    "krippendorff_alpha_masi": "alpha MASI",
    "krippendorff_alpha_jaccard": "alpha Jaccard",
    "value_alpha": "alpha",
    "fleiss_kappa": "Fleiss kappa",
    "gwet_ac1": "Gwet AC1",
    "percent_agreement": "% agreement",
    "cohen_kappa": "Cohen kappa",
}


@app.command()
@cli_errors
def agreement(
    db: DbOption = None,
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", help=f"Prompt version(s) to score against gold, each an "
                     f"{PROMPT_REF} (repeatable). Default: every version used."),
    ] = None,
    level: Annotated[
        list[int] | None,
        typer.Option(
            "--level",
            min=0,
            max=3,
            help="Taxonomy level(s) for value sets: 0 value, 1-2 clusters, 3 top category.",
        ),
    ] = None,
    boot: Annotated[
        int, typer.Option("--boot", help="Bootstrap resamples for the 95% intervals (0: none).")
    ] = 200,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Per-value alpha for this many most used values.")
    ] = 10,
    as_json: JsonOption = False,
) -> None:
    """Inter-annotator and model-human agreement, with 95% intervals and the units behind each.

    Krippendorff's alpha (nominal, ordinal) for the response type, MASI and Jaccard alpha for
    value sets at each taxonomy level, Fleiss' kappa, Gwet's AC1, percent agreement, pairwise
    Cohen's kappa; per prompt version, accuracy, kappa and value precision/recall/F1 against gold
    and each annotator; and anchoring: the model's agreement with each Label Studio annotation on
    pre-filled minus blind tasks (reviewers pulled towards the pre-filled labels), or a note
    when too few blind tasks were annotated to tell.

    Example: annotator agreement --level 0 --level 3 --prompt 3f2a9c1b0d4e
    """
    import pandas as pd

    from annotator.app.precompute import (
        KEPT_INTER_ANNOTATOR,
        STORED_GOLD_SCORES,
        stored_inter_annotator,
    )
    from annotator.db import open_existing_db
    from annotator.measure.frames import study_agreement, study_anchoring

    database = open_existing_db(db_path(db))
    if not database["annotations"].count:
        raise AnnotatorError(NO_ANNOTATIONS)
    levels = tuple(sorted(set(level))) if level else (0, 1, 2, 3)
    # the figures take a minute at paper scale, in steps that are not counted
    with working("Computing agreement", not as_json):
        report = study_agreement(database, prompt_ids=prompt, levels=levels, n_boot=boot,
                                 top_k=top_k, stored_inter_annotator=stored_inter_annotator,
                                 kept_inter_annotator=KEPT_INTER_ANNOTATOR,
                                 stored_gold_scores=STORED_GOLD_SCORES)
        anchored = study_anchoring(database, prompt_ids=prompt, n_boot=boot)
    if as_json:
        # the report's own JSON (NaN as null), with anchoring added as one more key
        data = json.loads(report.model_dump_json())
        data["anchoring"] = [json.loads(a.model_dump_json()) for a in anchored]
        print_json(data)
        return
    from annotator.taxonomy import load_taxonomy

    tree = load_taxonomy()

    def metric_label(metric: str, value: str | None) -> str:
        node = tree.get(value) if value else None
        shown = METRIC_NAMES.get(metric, metric.replace("_", " "))
        return f"{shown}: {node.name if node else value}" if value else shown

    frame = report.to_frame()
    console.print(
        f"{report.n_conversations} conversations, annotators: "
        f"{escape(', '.join(report.annotators))}",
        highlight=False,
    )
    if aside := report.settings.get("set_aside_edited_by_other"):
        console.print(f"set aside {aside} annotations: {escape(report.settings['set_aside_why'])}",
                      highlight=False)
    for pid, n in report.settings.get("few_shot_left_out", {}).items():
        console.print(f"model {escape(pid)}: {n} conversations left out of its scores, its own "
                      "few-shot examples", highlight=False)
    for scope, rows in frame.groupby("scope", sort=False):
        table = Table(title=escape(str(scope)), title_justify="left")
        for column in ("metric", "labels", "value", "95% interval", "n", "note"):
            table.add_column(column, overflow="fold")
        for row in rows.itertuples():
            interval = "" if pd.isna(row.low) else f"{figure(row.low)}-{figure(row.high)}"
            level_text = "" if pd.isna(row.level) else f" L{row.level}"
            table.add_row(  # value names and notes come from data: escaped
                escape(metric_label(str(row.metric),
                                    None if pd.isna(row.value_name) else str(row.value_name))),
                escape(f"{row.field}{level_text}"),
                figure(row.value),
                interval,
                str(row.n_units),
                "" if pd.isna(row.note) else escape(str(row.note)),
            )
        console.print(table)
    for field, by_level in report.settings.get("free_values_not_listed", {}).items():
        for lv, n in by_level.items():
            if n:
                console.print(f"{escape(field)} L{lv}: {n} free values (not in the taxonomy) "
                              "are not clusters or top categories: not listed per value",
                              highlight=False)
    _print_anchoring(anchored)
    console.print(escape(report.how_to_read), style="dim", highlight=False)


def _print_anchoring(anchored: list[Any]) -> None:
    """Per prompt version: agreement on pre-filled and on blind tasks, and the difference."""
    if not anchored:
        console.print("anchoring: no annotations pulled from Label Studio yet", style="dim")
        return
    for result in anchored:
        table = Table(title=f"anchoring: model {escape(result.prompt_id)} vs each Label Studio "
                      "annotation, pre-filled vs blind tasks", title_justify="left")
        for column in ("metric", "pre-filled", "blind", "anchoring", "95% interval",
                       "conversations"):
            table.add_column(column, overflow="fold")
        for m in result.metrics:
            a = m.anchoring
            interval = "" if a.low is None else f"{a.low:+.3f} to {a.high:+.3f}"
            table.add_row(escape(f"{m.metric} ({m.field})"), figure(m.prefilled.value),
                          figure(m.blind.value),
                          "n/a" if not a.defined else f"{a.value:+.3f}", interval,
                          f"{m.prefilled.n_units} / {m.blind.n_units}")
        console.print(table)
        console.print(escape(result.statement), highlight=False, soft_wrap=True)


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"


def _rho(correlation: Any) -> str:
    if correlation.rho is None:
        return f"Spearman rank correlation: n/a over {correlation.n} ({correlation.note})"
    return (f"Spearman rank correlation with the released figures: {correlation.rho:+.3f} "
            f"over {correlation.n} compared")


@app.command()
@cli_errors
def report(
    db: DbOption = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help=f"gold, annotations (combined per conversation by "
                     f"majority, as adjudicate does) or a prompt version ({PROMPT_REF}) for its "
                     "extractions. Default: gold if any, else annotations, else the newest "
                     "prompt version.", show_default=False),
    ] = None,
    opposing: Annotated[
        list[str] | None,
        typer.Option("--opposing", help="A value that flags a conversation as a possible "
                     "jailbreak when the AI holds it (repeatable). Default: "
                     "$ANNOTATOR_OPPOSING_VALUES (comma-separated), else "
                     f"{', '.join(config.DEFAULT_OPPOSING_VALUES)}.",
                     show_default=False),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", min=1, help="Rows shown per table (--json has every row).")
    ] = 15,
    as_json: JsonOption = False,
) -> None:
    """The study's findings, laid out as the published study reports them.

    From one source of labels: the share of subjective conversations; each AI value, and each
    cluster at every taxonomy level, as a percent of conversations, beside the released
    frequencies (values: pct_convos of values_frequencies.csv; clusters: the tree's share of
    occurrences), with Spearman's rank correlation and how many were compared; the response
    types beside the published shares (those not published are marked so); mirroring (how often
    an AI value equals a value the user stated in the same conversation); and the
    conversations whose AI values include an opposing value, flagged as possible jailbreaks,
    each with `annotator show ID`, the app's link and its Label Studio task.

    Example: annotator report --source annotations --opposing dominance --opposing amorality
    """
    from annotator.db import open_existing_db
    from annotator.measure.findings import study_findings

    path = db_path(db)
    found = study_findings(open_existing_db(path), source, opposing, db_path=path)
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    _print_findings(found, top)


def _print_findings(f: Any, top: int) -> None:
    """`annotator report` as text: every name from data escaped (`rows_table`, `say`)."""
    src = f.source
    say(f"Source: {src.label}" + (f" (default: {src.why})" if src.chosen_by_default else ""))
    left = f"; {f.left_out} left out ({f.left_out_reason})" if f.left_out else ""
    say(f"{f.conversations} labelled conversations{left}; shares below are of the "
         f"{f.base_conversations} not labelled non-subjective")
    say(f"Subjective: {f.subjective} of {f.subjective_labelled} labelled "
         f"({_pct(f.subjective_pct)}); published study: {_pct(f.published_subjective_pct)}")
    values = f.level(0)
    rows = [{"value": s.name, "conversations": s.conversations, "pct_convos": _pct(s.pct_convos),
             "95% interval": s.interval_text(),
             "released pct_convos": "free value" if s.free else _pct(s.released_pct_convos, 3),
             "category": s.top_category or "-"} for s in values.rows[:top]]
    console.print(rows_table(f"AI values (top {min(top, len(values.rows))} of "
                             f"{len(values.rows)}; {f.free_values} free)", rows))
    say(_rho(values.correlation))
    for level in (1, 2, 3):
        shares = f.level(level)
        rows = [{"name": s.name, "conversations": s.conversations,
                 "pct_convos": _pct(s.pct_convos), "95% interval": s.interval_text(),
                 "pct occurrences": _pct(s.pct_occurrences),
                 "released pct occurrences": _pct(s.released_pct_occurrences, 3)}
                for s in shares.rows[:top]]
        console.print(rows_table(f"{shares.kind} (top {min(top, len(shares.rows))} of "
                                 f"{len(shares.rows)})", rows))
        say(_rho(shares.correlation))
    say("Headline figures: share [95% Wilson interval] (k of n, the denominator); published "
        "(the app's Overview and the dataset card print the same)")
    for h in f.headline():
        say(f"  {h.figure}: {h.text}; published: {h.published}")
    say(f"Published: {f.published}")
    m = f.mirroring
    say(f"Mirroring: {m.mirrored} of {m.conversations_with_human_values} conversations with "
         f"user values have an AI value equal to one the user stated ({_pct(m.pct)})")
    if m.per_value:
        rows = [{"value": v.value, "AI holds it": v.conversations, "user stated it too":
                 v.mirrored, "share": _pct(v.pct)} for v in m.per_value[:top]]
        console.print(rows_table("Mirrored values", rows))
    missing = (f"; not in the taxonomy: {', '.join(f.opposing_not_in_taxonomy)}"
               if f.opposing_not_in_taxonomy else "")
    say(f"Possible jailbreaks: {len(f.flagged)} conversations with an opposing AI value "
         f"({', '.join(f.opposing_values)}{missing})")
    for flagged in f.flagged[:top]:
        links = " · ".join([flagged.show_command, f"app: {flagged.app_link}",
                            *flagged.task_urls])
        external = f" ({flagged.external_id})" if flagged.external_id else ""
        say(f"  {flagged.conversation_id}{external}: {', '.join(flagged.opposing_values)} "
             f"(response type {flagged.response_type or '-'}) · {links}")
    if len(f.flagged) > top:
        say(f"  … and {len(f.flagged) - top} more (all of them: --json)")
    if f.by_response_type is not None:
        _print_by_response_type(f.by_response_type, top)
    if f.values_by_task is not None:
        _print_values_by_task(f.values_by_task)


def _print_by_response_type(b: Any, top: int) -> None:
    """Values by response type as text (`measure.response_types`)."""
    s = b.stance
    say(f"\nAI values by stance: {s.resisting_conversations} resisting (mild + strong "
        f"resistance), {s.supporting_conversations} supporting (strong + mild support); "
        f"values in {s.min_value_conversations}+ of them compared")
    if s.note:
        say(f"  {s.note}")
    for title, chosen in (("more when resisting", s.most_resisting),
                          ("more when supporting", s.most_supporting)):
        rows = [{"value": v.value, "when resisting": v.resisting.short(),
                 "when supporting": v.supporting.short(),
                 "z": "-" if v.z is None else f"{v.z:+.2f}"} for v in chosen[:top]]
        if rows:
            console.print(rows_table(f"AI values {title} (two-proportion z; shares of "
                                     f"{s.resisting_conversations} resisting and "
                                     f"{s.supporting_conversations} supporting conversations)",
                                     rows))
    rows = [{"user value": v.value, "conversations": v.share.k, "share": v.share.short()}
            for v in b.before_strong_resistance[:top]]
    if rows:
        console.print(rows_table(f"User values before strong resistance "
                                 f"({b.strong_resistance_conversations} conversations)", rows))
    rows = [{"response type": m.response_type, "mirroring": m.share.text(),
             "published": m.share.published_text()} for m in b.mirroring]
    console.print(rows_table("Mirroring by response type (an AI value equal to one the user "
                             "stated; \"support\" is strong + mild support)", rows))
    rows = [{"a": p.a, "b": p.b, "together": p.together, "a in": p.a_conversations,
             "b in": p.b_conversations, "lift": f"{p.lift:.2f}"} for p in b.pairs[:top]]
    if rows:
        console.print(rows_table(f"AI values held together (in {b.min_pair_conversations}+ of "
                                 f"{b.conversations} conversations), by lift", rows))
    else:
        say(b.pairs_note or "")


def _print_values_by_task(v: Any) -> None:
    """Values by task as text: the top values per task, then the context-invariant ones."""
    no_task = f"; {v.without_task} without a task left out" if v.without_task else ""
    say(f"\nValues by task: {v.conversations} conversations with a task{no_task}; "
        f"{v.values_tested} values in {v.min_value_conversations}+ of them tested, "
        f"Bonferroni over {v.cells_tested} cells (alpha {v.alpha:g})")
    if v.note:
        say(f"  {v.note}")
    rows = [{"task": t.task, "n": t.conversations, "value": x.value,
             "residual": f"{x.residual:+.2f}" + (" *" if x.significant else ""),
             "count": x.conversations,
             "share (95% CI)": f"{_pct(100 * x.share)} ({_pct(100 * x.low)}-{_pct(100 * x.high)})"}
            for t in v.tasks for x in t.top]
    if rows:
        console.print(rows_table("Values most disproportionately in each task (top 5 by "
                                 "adjusted residual; * significant after Bonferroni)", rows))
    if v.small_expected_pct:
        say(f"  {_pct(v.small_expected_pct)} of tested cells expect fewer than 5 conversations: "
            "the chi-square approximation is rough there")
    rows = [{"value": r.value, "tasks": r.tasks, "mean share": _pct(100 * r.mean_share),
             "CV (95% CI)": f"{r.cv:.2f}" + (f" ({r.low:.2f}-{r.high:.2f})"
                                             if r.low is not None else ""),
             "published CV": f"{r.published_cv:.2f}" if r.published_cv else "-"}
            for r in v.invariant]
    if rows:
        console.print(rows_table("Context-invariant values (lowest coefficient of variation of "
                                 "the share across tasks first)", rows))
    say("Published CV (lowest across tasks): " + ", ".join(
        f"{name} {cv:.2f}" for name, cv in v.published_cv.items()))


@app.command("eval")
@cli_errors
def eval_command(
    prompt: Annotated[
        str, typer.Argument(metavar="PROMPT", help=f"The version to evaluate: {PROMPT_REF}.")
    ],
    db: DbOption = None,
    against: Annotated[
        str,
        typer.Option(help="gold: the study's gold labels; or a gold JSONL file whose "
                     "conversations the study holds (`annotator gold load FILE`)."),
    ] = "gold",
    baseline: Annotated[
        str | None,
        typer.Option(help=f"A version to compare with ({PROMPT_REF}): the difference, prompt "
                     "minus baseline, with a paired 95% bootstrap interval.", show_default=False),
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option("--fail-under", metavar="METRIC=VALUE",
                     help="Exit 1 if METRIC (its point value) is below VALUE, or with "
                     "METRIC.low=VALUE if the lower bound of its 95% interval is; repeatable. "
                     f"Metrics: {metric_help()}.", show_default=False),
    ] = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option("--fail-on-regression", help="With --baseline: exit 1 if a paired "
                     "difference (prompt minus baseline) has its whole 95% interval below 0."),
    ] = False,
    batch: Annotated[
        bool, typer.Option("--batch", help="Extract through the Message Batches API (half "
                           "price, slower), as `extract --batch`.")
    ] = False,
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between polls of a batch's status (--batch).")
    ] = 30.0,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the calls it would make and their estimated "
                     "cost; send none, score nothing."),
    ] = False,
    prompts_dir: PromptsDirOption = None,
    extractor: Annotated[
        str | None,
        typer.Option(help="claude or baseline. Default: claude if ANTHROPIC_API_KEY is set, "
                     "else the offline baseline (which then stands in for the prompt; a "
                     "--dry-run without a key prices Claude with the prompt's model)."),
    ] = None,
    worst: Annotated[
        int, typer.Option(min=0, help="List this many conversations most at odds with gold.")
    ] = 5,
    boot: Annotated[
        int, typer.Option("--boot", help="Bootstrap resamples for the 95% intervals (0: none).")
    ] = 200,
    concurrency: Annotated[int, typer.Option(help="Calls in flight at once.")] = 8,
    prices: Annotated[
        Path | None,
        typer.Option(help="JSON/TOML file of per-model prices (USD per million tokens)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Gate a prompt version on its agreement with gold: extract the gold conversations with it
    (cached per conversation, version and model: a rerun pays for nothing done), print its
    agreement with gold with 95% intervals, the difference from `--baseline`, and the
    conversations it gets most wrong; exit 1 when a `--fail-under` threshold fails (or, with
    `--fail-on-regression`, a difference from the baseline is wholly below 0), else 0.

    Every version is also scored as a filter: its `subjective` against gold's (precision,
    recall, accuracy); a subjectivity-only version (e.g. subjective/v1) is scored on those alone.
    A version's few-shot examples are left out of its scores (and not extracted), and counted.

    Example: annotator eval values/v2 --baseline values/v1 --fail-under response_kappa.low=0.6
    --fail-on-regression
    """
    from annotator.measure.evaluation import evaluate

    with extract_bar(not as_json) as progress:
        report = evaluate(
            db_path(db), prompt, against=against, baseline=baseline,
            fail_under=fail_under or [], fail_on_regression=fail_on_regression,
            dry_run=dry_run, extractor=extractor, prompts_dir=prompts_dir, n_boot=boot,
            worst=worst, concurrency=concurrency, prices=prices, progress=progress, batch=batch,
            poll_interval=poll_interval,
        )
    if as_json:
        write_json(report.model_dump_json(indent=2))
    else:
        _print_eval(report)
    if not report.passed:
        raise typer.Exit(1)


def _print_eval(report: Any) -> None:
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    runs = [("prompt", report.prompt)] + ([("baseline", report.baseline)]
                                           if report.baseline else [])
    for role, run in runs:
        left_out = (f"; {run.few_shot_left_out} left out as its own few-shot examples"
                    if run.few_shot_left_out else "")
        console.print(
            f"{role}: {escape(run.label)} ({escape(run.prompt_id)}), {escape(run.extractor)} "
            f"{escape(run.model)}: {run.in_scope} of {report.gold_conversations} gold "
            f"conversations{left_out}",
            highlight=False, soft_wrap=True)
        if report.dry_run:
            estimate = run.estimate or {}
            console.print(
                f"  dry run: {estimate.get('calls', 0)} calls to make, {run.cached} cached; "
                f"estimated ${estimate.get('cost_usd', 0.0):.4f} "
                f"({estimate.get('input_tokens', 0):,} input, "
                f"{estimate.get('cache_read_tokens', 0):,} cache-read, "
                f"{estimate.get('output_tokens', 0):,} output tokens); nothing was sent",
                highlight=False, soft_wrap=True)
        else:
            console.print(f"  {run.cached} cached, {run.extracted} extracted now, {run.errors} "
                          f"errors; {run.calls} calls, ${run.cost_usd:.4f}", highlight=False)
    if report.dry_run:
        return
    table = Table(title=f"agreement with {escape(report.against)}", title_justify="left")
    for column in ("metric", "value", "95% interval", "n", "note"):
        table.add_column(column, overflow="fold")
    for f in report.figures:
        interval = "" if f.low is None else f"{figure(f.low)}-{figure(f.high)}"
        table.add_row(f.name, figure(f.value), interval, str(f.n), escape(f.note or ""))
    console.print(table)
    if report.baseline is not None:
        table = Table(title=f"prompt minus baseline, on the {report.compared} conversations "
                      "both were scored on (paired 95% interval)", title_justify="left")
        for column in ("metric", "baseline", "prompt", "difference", "95% interval"):
            table.add_column(column)
        for d in report.differences:
            interval = "" if d.low is None else f"{d.low:+.3f} to {d.high:+.3f}"
            delta = "n/a" if d.delta is None or d.delta != d.delta else f"{d.delta:+.3f}"
            table.add_row(d.name, figure(d.baseline), figure(d.prompt), delta, interval)
        console.print(table)
    if report.worst:
        table = Table(title="most at odds with gold", title_justify="left")
        for column in ("conversation", "external id", "disagreement", "why"):
            table.add_column(column, overflow="fold")
        for w in report.worst:
            table.add_row(escape(w.conversation_id), escape(w.external_id or "-"),
                          f"{w.disagreement:.2f}", escape(w.reason))
        console.print(table)
    for gate in report.gates:
        verdict = "[green]pass[/]" if gate.passed else "[bold red]FAIL[/]"
        if gate.bound == "regression":
            said = (f"{gate.metric} minus baseline: 95% interval up to {gate.value:+.3f}"
                    + (", wholly below 0 (a regression)" if not gate.passed else ""))
        else:
            what = f"{gate.metric}.low" if gate.bound == "low" else gate.metric
            said = f"{what} = {figure(gate.value)} (at least {gate.minimum:g})"
        console.print(f"{verdict} {said}", highlight=False)
    if report.gates:
        console.print("gate passed" if report.passed else "gate failed: exit 1",
                      style="green" if report.passed else "bold red")
