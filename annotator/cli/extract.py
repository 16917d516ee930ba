"""`annotator prompts` and `annotator extract`: the model's proposals, priced."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from annotator.cli.main import (
    PROMPT_REF,
    DbOption,
    JsonOption,
    PromptsDirOption,
    SummariesOption,
    app,
    cli_errors,
    console,
    db_path,
    err_console,
    extract_bar,
    precompute_summaries,
    print_json,
    rows_table,
)

# Options `extract` and `scrub` share (both run the extraction engine).
ConcurrencyOption = Annotated[int, typer.Option(help="Calls in flight at once.")]
BatchOption = Annotated[
    bool, typer.Option("--batch", help="Use the Message Batches API (half price, slower).")
]
RetryErrorsOption = Annotated[
    bool, typer.Option("--retry-errors", help="Take conversations whose last try failed.")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print calls, estimated tokens and cost; spend nothing.")
]
PricesOption = Annotated[
    Path | None,
    typer.Option(help="JSON/TOML file of per-model prices (USD per million tokens)."),
]
ModelOption = Annotated[
    str | None, typer.Option(help="Model id. Default: the prompt's front matter.")
]


@app.command()
@cli_errors
def prompts(
    db: DbOption = None, prompts_dir: PromptsDirOption = None, as_json: JsonOption = False
) -> None:
    """List extraction prompt versions: on disk, and those used in the study database.

    A version's id is a hash of its file; a version shown only in the database had its file
    edited or removed after use. Every `--prompt` takes an id, any unique prefix of one,
    name/version or a file.

    Example: annotator prompts --db study.db --prompts my-prompts/
    """
    from annotator.extract.prompts import prompts as list_prompts

    rows = list_prompts(db_path(db), prompts_dir)
    if as_json:
        print_json(rows)
        return
    console.print(rows_table("Prompt versions", rows))


@app.command()
@cli_errors
def extract(
    db: DbOption = None,
    prompt: Annotated[
        str | None,
        typer.Option(help=f"Prompt version: {PROMPT_REF}. Default: the latest values/ file."),
    ] = None,
    prompts_dir: PromptsDirOption = None,
    extractor: Annotated[
        str | None,
        typer.Option(
            help="claude or baseline. Default: claude if ANTHROPIC_API_KEY is set, else baseline "
            "(a --dry-run without a key prices Claude with the prompt's model)."
        ),
    ] = None,
    model: ModelOption = None,
    limit: Annotated[
        int | None, typer.Option(help="Take at most this many pending conversations (each "
                                 "stage, with --only-subjective).")
    ] = None,
    only_subjective: Annotated[
        str | None,
        typer.Option("--only-subjective", metavar="SOURCE",
                     help="Two stages: run the prompt only on conversations SOURCE labels "
                     f"subjective. SOURCE: a prompt version ({PROMPT_REF}; e.g. subjective/v1, "
                     "run first with its own model on what it has not labelled), baseline (run "
                     "first, offline) or gold (the study's gold table). Conversations SOURCE has "
                     "not labelled are not sent, and are reported as not yet filtered.",
                     show_default=False),
    ] = None,
    concurrency: ConcurrencyOption = 8,
    batch: BatchOption = False,
    retry_errors: RetryErrorsOption = False,
    dry_run: DryRunOption = False,
    prices: PricesOption = None,
    allow_unscrubbed: Annotated[
        bool,
        typer.Option("--allow-unscrubbed", help="Also send conversations ingested unscrubbed."),
    ] = False,
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between polls of a batch's status.")
    ] = 30.0,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for one reply before retrying the request."),
    ] = 120.0,
    max_retries: Annotated[
        int,
        typer.Option(help="Retries of a request that got no usable reply (429, 5xx, timeout)."),
    ] = 4,
    busy_timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for another writer before backing off and retrying."),
    ] = 30.0,
    summaries: SummariesOption = True,
    as_json: JsonOption = False,
) -> None:
    """Propose labels (values, response type, subjective) for conversations not yet done.

    Results are cached per (conversation, prompt version, model): a rerun, or a rerun after an
    interruption, only calls for what is missing. Each call is recorded before it is sent; calls
    a killed run left without a reply are reported as possibly paid. Work another live run has
    claimed is skipped.

    Example: annotator extract --limit 20 --dry-run
    """
    from annotator.extract.engine import extract as run_extract

    with extract_bar(not as_json) as progress:
        report = run_extract(
            db_path(db),
            prompt=prompt,
            prompts_dir=prompts_dir,
            extractor=extractor,
            model=model,
            limit=limit,
            only_subjective=only_subjective,
            concurrency=concurrency,
            batch=batch,
            retry_errors=retry_errors,
            dry_run=dry_run,
            prices=prices,
            allow_unscrubbed=allow_unscrubbed,
            poll_interval=poll_interval,
            timeout=timeout,
            max_retries=max_retries,
            busy_timeout=busy_timeout,
            progress=progress,
        )
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    data = report.as_dict()
    changed = report.estimate is None and summaries
    if as_json:
        print_json({**data, "app_summaries": precompute_summaries(db_path(db), changed, True)})
        return
    _print_stages(report)
    if report.estimate is not None:
        known = " known subjective" if report.filter else ""
        console.print(
            f"Dry run: {report.todo}{known} conversations to label with "
            f"{escape(report.extractor)} {escape(report.model)}, prompt {escape(report.prompt)} "
            f"({report.prompt_id}); {report.cached} cached."
        )
        estimate = [{"": k, "value": v} for k, v in report.estimate.items()]
        console.print(rows_table("Estimate (nothing was sent)", estimate))
        _print_claims_and_ledger(report)
        return
    hidden = ("estimate", "error_reasons", "ledger", "held_by", "notes", "filter", "stage1")
    shown = [{"": k, "value": v} for k, v in data.items() if k not in hidden]
    console.print(rows_table("Extraction run", shown))
    _print_claims_and_ledger(report)
    for reason, count in report.error_reasons.items():
        console.print(f"[red]{count} errors:[/] {escape(reason)}", highlight=False)
    if report.errors:
        console.print("Error rows are kept; rerun with --retry-errors to take them again.")
    if not report.priced:
        console.print(f"[yellow]No price for {escape(report.model)}:[/] costs show as 0; "
                      "pass --prices.")
    precompute_summaries(db_path(db), changed, False)


def _print_stages(report: Any) -> None:
    """With --only-subjective: what the first stage did (or would do) and what the filter let
    through, in words."""
    if report.stage1:
        s = report.stage1
        if s.get("estimate") is not None:
            e = s["estimate"]
            said = (f"{e.get('calls', 0)} calls, estimated ${e.get('cost_usd', 0.0):.4f}; "
                    "nothing was sent")
        else:
            said = f"{s['ok']} labelled now, {s['errors']} errors, ${s['cost_usd']:.4f}"
        console.print(f"Stage 1: {escape(s['prompt'])} with {escape(s['extractor'])} "
                      f"{escape(s['model'])}: {s['cached']} cached; {said}.",
                      highlight=False, soft_wrap=True)
    if report.filter:
        f = report.filter
        console.print(
            f"Filter {escape(f['source'])}: of {f['conversations']} conversations, "
            f"{f['subjective']} subjective, {f['not_subjective']} not subjective, "
            f"{f['not_yet_filtered']} not yet filtered (not sent).",
            highlight=False, soft_wrap=True)


def _print_claims_and_ledger(report: Any) -> None:
    """Work skipped because another run holds it, and calls that may have been paid without a
    recorded reply: said in words, not only in the table."""
    if report.held_elsewhere:
        console.print(
            f"[yellow]Skipped {report.held_elsewhere} conversations:[/] another run is "
            f"extracting them ({escape(', '.join(report.held_by))}).",
            highlight=False, soft_wrap=True,
        )
    if report.settled_possibly_paid:
        console.print(
            f"[yellow]{report.settled_possibly_paid} calls[/] were in flight when an earlier run "
            "died: marked possibly paid.",
            highlight=False, soft_wrap=True,
        )
    ledger = report.ledger or {}
    if ledger.get("possibly_paid_calls"):
        console.print(
            f"Possibly paid: {ledger['possibly_paid_calls']} calls in this study were sent "
            "without a recorded reply (estimate "
            f"${ledger['possibly_paid_usd_estimate']:.4f}; recorded cost "
            f"${ledger['cost_usd']:.4f}).",
            highlight=False, soft_wrap=True,
        )


@app.command()
@cli_errors
def scrub(
    db: DbOption = None,
    prompt: Annotated[
        str | None,
        typer.Option(help=f"Scrub prompt version: {PROMPT_REF}. Default: the latest scrub/ file."),
    ] = None,
    prompts_dir: PromptsDirOption = None,
    model: ModelOption = None,
    limit: Annotated[
        int | None, typer.Option(help="Take at most this many conversations not yet cleared.")
    ] = None,
    require: Annotated[
        bool,
        typer.Option("--require", help="From now on, push refuses conversations this pass "
                     "has not cleared (a study setting; --no-require turns it off)."),
    ] = False,
    no_require: Annotated[
        bool, typer.Option("--no-require", help="Turn the study setting off.")
    ] = False,
    concurrency: ConcurrencyOption = 8,
    batch: BatchOption = False,
    retry_errors: RetryErrorsOption = False,
    dry_run: DryRunOption = False,
    prices: PricesOption = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for one reply before retrying the request.")
    ] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Model privacy pass: a small Claude model finds names and street addresses the offline
    scrubber left; they become [NAME] / [ADDRESS] in the stored conversations.

    Every call is recorded and priced like `extract`, cached per (conversation, prompt version,
    model), resumed after an interruption; --dry-run prices it (no API key needed). With
    --require, push sends only conversations the pass has cleared.

    Example: annotator scrub --dry-run; annotator scrub --require
    """
    from annotator.db import open_existing_db
    from annotator.extract.scrub_pass import scrub as run_scrub
    from annotator.extract.scrub_pass import set_required

    if no_require:
        database = open_existing_db(db_path(db))
        try:
            set_required(database, False)
        finally:
            database.conn.close()
        console.print("Push no longer requires the model privacy pass.")
        return
    with extract_bar(not as_json) as progress:
        report = run_scrub(
            db_path(db), prompt=prompt, prompts_dir=prompts_dir, model=model, limit=limit,
            require=require, concurrency=concurrency, batch=batch, retry_errors=retry_errors,
            dry_run=dry_run, prices=prices, timeout=timeout, progress=progress,
        )
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if as_json:
        print_json(report.as_dict())
        return
    run = report.run
    if run.get("estimate") is not None:
        console.print(f"Dry run: {run['todo']} conversations to check with {escape(run['model'])}, "
                      f"prompt {escape(run['prompt'])}; {run['cached']} cached.")
        rows = [{"": k, "value": v} for k, v in run["estimate"].items()]
        console.print(rows_table("Estimate (nothing was sent)", rows))
    else:
        console.print(
            f"Checked {run['ok']} conversations ({run['errors']} errors, {run['cached']} cached) "
            f"with {escape(run['model'])} for ${run['cost_usd']:.4f}; applied {report.applied}: "
            f"{report.replaced} spans replaced, {report.not_found} given but not in the text.",
            highlight=False, soft_wrap=True)
        if run["errors"]:
            console.print("Error rows are kept; rerun with --retry-errors to take them again.")
    console.print(
        f"Cleared by the model pass: {report.cleared}; not cleared: {report.uncleared}. Push "
        + ("requires it." if report.required else "does not require it (--require)."),
        highlight=False, soft_wrap=True)
