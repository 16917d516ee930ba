"""The `annotator` command line: a thin layer over library functions of the same name.

Library errors become CLI errors only here: `AnnotatorError` (and its subclasses) print one line
and exit non-zero, without a stack trace.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from annotator import config
from annotator.errors import NO_ANNOTATIONS, AnnotatorError
from annotator.measure.eval_metrics import metric_help

if TYPE_CHECKING:
    from annotator.extract.engine import ExtractProgress

app = typer.Typer(
    help=(
        "annotator: a human-in-the-loop workbench for the values an AI expresses in "
        "conversations.\n\nExample: annotator init && annotator ingest chats.jsonl"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal width
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Study database file. Default: $ANNOTATOR_DB, else ./annotator.db.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PromptsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--prompts",
        help="The study's prompt folder (<name>/<version>.md). Default: $ANNOTATOR_PROMPTS_DIR, "
        "else the prompts shipped with annotator.",
        show_default=False,
    ),
]
PROMPT_REF = ("id, any unique id prefix as printed (e.g. baseline-3d7), name/version, or a .md "
              "file")
SummariesOption = Annotated[
    bool,
    typer.Option(
        "--summaries/--no-summaries",
        help="Afterwards, compute the app's summaries for the changed data, so its pages open "
        "at once (a minute or two at 300,000 conversations).",
    ),
]


def db_path(db: Path | None) -> Path:
    return db if db is not None else config.default_db_path()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def cli_errors(func: F) -> F:
    """Turn library errors into one line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AnnotatorError as exc:
            # A message quotes paths and data: escaped, so brackets in them print as they are.
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


SHOWN_ITEMS = 20  # a listing in the terminal stops here; --json gives every item


def print_listed(items: list[tuple[str, str]], label: str, style: str = "yellow") -> None:
    """`label conversation: reason` lines for the first SHOWN_ITEMS items, then how many more.

    Conversation ids and reasons come from data (an annotator's name is in a reason): escaped,
    so that text in brackets is printed, not read as markup.
    """
    for conversation_id, reason in items[:SHOWN_ITEMS]:
        err_console.print(f"[{style}]{label}[/] {escape(conversation_id)}: {escape(reason)}",
                          highlight=False, soft_wrap=True)
    if len(items) > SHOWN_ITEMS:
        err_console.print(f"  … and {len(items) - SHOWN_ITEMS:,} more (all of them: --json)",
                          highlight=False)


def rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """A table of plain rows. Every string in it is escaped: table cells and titles are read
    as markup, and rows carry data (names, paths, queries)."""
    table = Table(title=escape(title))
    if rows:
        for key in rows[0]:
            table.add_column(escape(str(key)))
        for row in rows:
            table.add_row(*("" if v is None else escape(str(v)) for v in row.values()))
    return table


# --- study database ------------------------------------------------------------------------------


@app.command()
@cli_errors
def init(db: DbOption = None) -> None:
    """Create the study database (or bring an older one up to date).

    Example: annotator init --db study.db
    """
    from annotator.db import applied_migrations, open_db

    path = db_path(db)
    database = open_db(path)
    console.print(
        f"Study database ready: {escape(str(path))} "
        f"({len(applied_migrations(database))} migrations applied)"
    )


@app.command()
@cli_errors
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files to read: .jsonl, .json, .csv, .txt, each optionally .gz."),
    ],
    db: DbOption = None,
    no_scrub: Annotated[
        bool,
        typer.Option("--no-scrub", help="Store text as is (the database records that you did)."),
    ] = False,
    field: Annotated[
        str,
        typer.Option(
            "--field", help="JSONL field holding a Human:/Assistant: transcript (preference data)."
        ),
    ] = "chosen",
    source: Annotated[
        str | None, typer.Option("--source", help="Source name to record (default: file name).")
    ] = None,
    show_rejected: Annotated[
        int, typer.Option("--show-rejected", help="How many rejected records to list.")
    ] = 20,
    max_record_bytes: Annotated[
        int,
        typer.Option(
            "--max-record-bytes", min=1,
            help="Reject a record (a JSONL line, a CSV row, a transcript) larger than this.",
        ),
    ] = 8 << 20,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects", help="Write every rejected record (file, line, reason) to this JSONL "
            "file; the report keeps the first 1,000.", show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Read conversations into the study database, scrubbing personal data first.

    Formats: JSONL chat messages ({"messages": [{"role", "content"}]}), JSONL with Human:/Assistant:
    transcripts (--field, default "chosen"), plain-text transcripts (.txt), long-form CSV
    (conversation_id, turn, role, text; other columns kept as metadata), JSON arrays and Label
    Studio exports (.json); each may be gzipped.
    Ingesting the same file twice adds nothing. Bad records (malformed, over --max-record-bytes,
    nested too deeply, a broken CSV quote) are listed with file and line; the good ones still
    land, and the exit code is 1 when anything was rejected. --rejects keeps all of them.

    Example: annotator ingest chats.jsonl.gz hh-rlhf.jsonl --field chosen --rejects rejects.jsonl
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from annotator.db import open_db
    from annotator.ingest.pipeline import ingest as ingest_files

    database = open_db(db_path(db))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:  # a file name is data: never read as markup
                tasks[name] = bar.add_task(escape(Path(name).name), total=total)
            bar.update(tasks[name], completed=done)

        try:
            report = ingest_files(
                database,
                paths,
                scrub=not no_scrub,
                transcript_field=field,
                source=source,
                progress=progress,
                max_record_bytes=max_record_bytes,
                rejects=rejects,
            )
        except KeyboardInterrupt:
            err_console.print(
                "interrupted: every finished batch is saved; rerun the same command to complete "
                "it (nothing will be duplicated)"
            )
            raise typer.Exit(130) from None
    if as_json:
        data = report.model_dump(mode="json")
        print_json(data)
    else:
        _print_rejections(report, show_rejected)
        scrub_note = (
            ", ".join(f"{k} {v}" for k, v in report.scrub_counts.items()) or "nothing found"
            if report.scrubbed
            else "off (--no-scrub)"
        )
        console.print(
            f"landed {report.landed}, already present {report.duplicates}, "
            f"rejected {report.rejected_total} ({report.read} read in {report.seconds:.1f} s); "
            f"scrubbed: {scrub_note}",
            highlight=False,
        )
    if not report.ok:
        raise typer.Exit(1)


def _print_rejections(report: Any, shown: int) -> None:
    """The first `shown` rejections, then how many more and where each file's went. File names
    and reasons come from data (a reason quotes a role, a file name may hold brackets): escaped,
    so they are printed, never read as markup or a hyperlink."""
    for rejected in report.rejected[:shown]:
        err_console.print(
            f"[red]rejected[/] {escape(rejected.file)}:{rejected.line}: {escape(rejected.reason)}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    more = report.rejected_total - min(shown, len(report.rejected))
    if more > 0:
        where = (
            f"all of them in {escape(report.rejects_file)}"
            if report.rejects_file else "all of them: --rejects FILE"
        )  # fmt: skip
        err_console.print(f"... and {more:,} more rejected ({where})", highlight=False)
    if len(report.rejected_per_file) > 1:
        for name, count in report.rejected_per_file.items():
            err_console.print(f"  {escape(name)}: {count:,} rejected", highlight=False)


@app.command()
@cli_errors
def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show what the study holds at each stage.

    Example: annotator status --db study.db --json
    """
    from annotator.db import open_existing_db
    from annotator.measure.frames import study_summary

    path = db_path(db)
    summary = study_summary(open_existing_db(path))
    if as_json:
        print_json(summary)
        return
    rows = [{"stage": stage, "count": count} for stage, count in summary.items()]
    console.print(rows_table(f"Study {path}", rows))


@app.command()
@cli_errors
def demo(
    db: Annotated[Path, typer.Option("--db", help="Where to build the demo study.")] = Path(
        "demo/annotator.db"
    ),
    gold: Annotated[
        Path | None, typer.Option("--gold", help="Gold folder (default: the project's gold/).")
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Then start a local Label Studio for two reviewers (one each) with the demo "
            "tasks pre-filled by the baseline, serve the app, print both addresses and the "
            "logins, and run until Ctrl-C, which stops both. Needs `annotator labelstudio "
            "install` once.",
        ),
    ] = False,
    app_port: Annotated[
        int, typer.Option("--app-port", help="With --serve: the port the app is served on.")
    ] = 8501,
) -> None:
    """Run the main job on the bundled data: import gold/, extract with the offline baseline,
    adjudicate, measure agreement and export the validated dataset, then print what it holds.

    Needs no API key and no network. Run it again: nothing is done twice. With --serve, the
    whole loop follows: review in Label Studio, explore in the app.

    Example: annotator demo --db demo/annotator.db --serve
    """
    from annotator.datasets.export import export as export_dataset
    from annotator.datasets.gold import adjudicate as adjudicate_study
    from annotator.datasets.gold import import_gold
    from annotator.db import open_db
    from annotator.extract.engine import extract as run_extract
    from annotator.measure.frames import study_agreement, study_summary

    if serve:  # before the study is built: a missing Label Studio is said at once
        from annotator.review.demo_serve import check_ready

        check_ready(app_port)
    database = open_db(db)
    report = import_gold(database, [gold or config.gold_dir()])
    console.print(
        f"1. imported {report.conversations} gold conversations with {report.annotations} "
        f"annotations from {escape(', '.join(report.files))}"
    )
    for rejected in report.rejected:
        err_console.print(f"[red]rejected[/] {escape(rejected.file)}:{rejected.line}: "
                          f"{escape(rejected.reason)}", highlight=False)
    with _extract_bar(True) as progress:
        extracted = run_extract(db, extractor="baseline", progress=progress)
    console.print(
        f"2. baseline extractor (offline, prompt {extracted.prompt_id[:12]}): "
        f"{extracted.ok} proposed now, {extracted.cached} already done, {extracted.errors} errors"
    )
    decided = adjudicate_study(database)
    console.print(
        f"3. adjudicated: {decided.decided} decided by majority, {decided.unchanged} unchanged, "
        f"{decided.kept_person_decisions} person decisions kept, "
        f"{len(decided.need_a_person)} need a person"
    )
    rows = study_agreement(database, levels=(0, 3), n_boot=100, top_k=0).rows
    wanted = {
        ("annotators", "krippendorff_alpha_nominal", "response_type"): "annotators, response type",
        ("annotators", "krippendorff_alpha_masi", "ai_values"): "annotators, AI values (MASI)",
    }
    lines = []
    for row in rows:
        label = wanted.get((row.scope, row.metric, row.field))
        if (
            row.reference == "gold"
            and row.field != "human_values"
            and row.metric in ("accuracy", "micro_f1")
        ):
            label = f"baseline vs gold, {row.field} {row.metric}"
        if label:
            level = "" if row.level is None else f" level {row.level}"
            lines.append(f"   {label}{level}: {_figure(row.value)} (n={row.n_units})")
    console.print("4. agreement:\n" + "\n".join(lines))
    exported = export_dataset(database, Path(db).parent / "validated.jsonl")
    console.print(f"5. exported {exported.exported} validated conversations to "
                  f"{escape(str(exported.path))}; "
                  f"{len(exported.left_out)} left out")
    print_listed([(x.conversation_id, x.reason) for x in exported.left_out], "left out", "red")
    done = _precompute_summaries(Path(db), True, True) or {}
    if "computed" in done:
        console.print(f"6. the app's summaries: {len(done['computed'])} computed, "
                      f"{done['already_stored']} already up to date ({done['seconds']:.1f} s)")
    rows = [{"stage": stage, "count": count} for stage, count in study_summary(database).items()]
    console.print(rows_table(f"Demo study {db}", rows))
    if serve and not report.rejected:
        database.conn.close()  # the app and `annotator pull` use the study while it runs
        _serve_demo(db, app_port)
        return
    console.print(
        f"Next: `annotator agreement --db {escape(str(db))}` for every figure, or "
        f"`annotator app --db {escape(str(db))}` to explore them in the browser "
        "(`annotator demo --serve` adds Label Studio)."
    )
    if report.rejected:
        raise typer.Exit(1)


def _serve_demo(db: Path, app_port: int) -> None:
    """`demo --serve` after the study is built: print the addresses and logins, wait for Ctrl-C."""
    from annotator.review.demo_serve import Stopped, serving, wait

    try:
        with serving(db, app_port=app_port, echo=_say) as running:
            _say("")
            _say("The demo is running. Stop it (the app and Label Studio) with Ctrl-C.")
            _say(f"App: {running.app_url}")
            for i, reviewer in enumerate(running.reviewers, 1):
                _say(f"Reviewer {i}: open {reviewer.url} and log in as {reviewer.email} with "
                     f"password {reviewer.password}")
            _say(f"Each reviewer has a Label Studio of their own with the demo tasks "
                 f"({running.tasks_created + running.tasks_existing} tasks: "
                 f"{running.tasks_created} new; {running.blind_tasks} without predictions, to "
                 f"measure anchoring). After labelling: `annotator pull --db {db}`, then "
                 "reload the app.")
            wait(running)
    except (KeyboardInterrupt, Stopped):
        pass
    _say("Stopped the app and Label Studio.")


@app.command()
@cli_errors
def taxonomy(
    query: Annotated[
        str | None, typer.Argument(help="Search value and cluster names (omit for counts).")
    ] = None,
    level: Annotated[
        int | None,
        typer.Option("--level", min=0, max=3, help="Only this level: 0 values .. 3 categories."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many matches to show.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Show the released value taxonomy: counts per level, or the names matching a query.

    Example: annotator taxonomy "honest" --level 0
    """
    from annotator.taxonomy import ATTRIBUTION, load_taxonomy

    tree = load_taxonomy()
    if query is None:
        rows = tree.summary()
        if as_json:
            print_json({"levels": rows, "attribution": ATTRIBUTION})
            return
        console.print(rows_table("Value taxonomy", rows))
        console.print(ATTRIBUTION, style="dim", highlight=False)
        return
    rows = []
    for node in tree.search(query, limit=limit, level=level):
        rows.append(
            {
                "level": node.level,
                "name": node.name,
                "under": " > ".join(tree.path(node)[:-1]),
                "pct_convos": node.pct_convos,
                "id": node.id,
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"No value or cluster matches {escape(repr(query))}.")
        return
    console.print(rows_table(f"Taxonomy matches for {query!r}", rows))


# --- prompts and extraction (issue 3) ------------------------------------------------------------


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
            help="claude or baseline. Default: claude if ANTHROPIC_API_KEY is set, else baseline."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model id. Default: the prompt's front matter.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Take at most this many pending conversations.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Calls in flight at once.")] = 8,
    batch: Annotated[
        bool, typer.Option("--batch", help="Use the Message Batches API (half price, slower).")
    ] = False,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Take conversations whose last try failed.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print calls, estimated tokens and cost; spend nothing."),
    ] = False,
    prices: Annotated[
        Path | None,
        typer.Option(help="JSON/TOML file of per-model prices (USD per million tokens)."),
    ] = None,
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

    with _extract_bar(not as_json) as progress:
        report = run_extract(
            db_path(db),
            prompt=prompt,
            prompts_dir=prompts_dir,
            extractor=extractor,
            model=model,
            limit=limit,
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
        print_json({**data, "app_summaries": _precompute_summaries(db_path(db), changed, True)})
        return
    if report.estimate is not None:
        console.print(
            f"Dry run: {report.todo} conversations to label with {escape(report.extractor)} "
            f"{escape(report.model)}, prompt {escape(report.prompt)} ({report.prompt_id}); "
            f"{report.cached} cached."
        )
        estimate = [{"": k, "value": v} for k, v in report.estimate.items()]
        console.print(rows_table("Estimate (nothing was sent)", estimate))
        _print_claims_and_ledger(report)
        return
    hidden = ("estimate", "error_reasons", "ledger", "held_by", "notes")
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
    _precompute_summaries(db_path(db), changed, False)


@contextmanager
def _extract_bar(enabled: bool) -> Iterator[Callable[[ExtractProgress], None] | None]:
    """The extraction's progress bar on stderr: conversations, rate, cost, errors, time left.
    Yields the callback `extract` takes (None when disabled)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    # Only on a terminal (a redirected stderr gets no spinner frames), and only from the first
    # progress report: an error found before any work (an unknown prompt) is not printed under
    # an empty bar.
    if not (enabled and err_console.is_terminal):
        yield None
        return
    rate = TextColumn("{task.fields[rate]}", style="cyan")
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
        MofNCompleteColumn(), rate, TextColumn("[green]${task.fields[cost]:.4f}"),
        TextColumn("[red]{task.fields[errors]} err"), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(), console=err_console, transient=False,
    )  # fmt: skip
    job = bar.add_task("", total=None, cost=0.0, errors=0, rate="– conv/s")

    def update(at: ExtractProgress) -> None:
        if not bar.live.is_started:
            bar.start()
        speed = bar.tasks[job].finished_speed or bar.tasks[job].speed
        bar.update(
            job, description=escape(at.what), completed=at.done, total=at.total,
            cost=at.cost_usd, errors=at.errors,
            rate=f"{speed:.1f} conv/s" if speed else "– conv/s",
        )  # fmt: skip

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


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


# --- Label Studio (issue 4) ----------------------------------------------------------------------

labelstudio_app = typer.Typer(
    help=(
        "Run a local Label Studio for the study, or use yours (LABEL_STUDIO_URL and "
        "LABEL_STUDIO_API_KEY).\n\nExample: annotator labelstudio install && annotator "
        "labelstudio start"
    ),
    no_args_is_help=True,
)
app.add_typer(labelstudio_app, name="labelstudio")

VenvOption = Annotated[
    Path | None,
    typer.Option(
        "--venv",
        help="Virtual environment for label-studio. Default: ~/.cache/annotator/labelstudio-venv.",
        show_default=False,
    ),
]
ProjectOption = Annotated[str, typer.Option("--project", help="Label Studio project title.")]


def _say(line: str) -> None:
    # soft_wrap: a URL, password or token must stay on one line to be copied. No markup: every
    # line here carries names, URLs and messages from a server or from data.
    console.print(line, highlight=False, soft_wrap=True, markup=False)


def _server_lines(st: Any) -> None:
    where = "external server" if st.external else "local server"
    state = ("answering" if st.answering else "not answering") if st.url else ""
    _say(f"Label Studio ({where}): {st.message}; {st.url or '-'} {state}".rstrip())
    if st.data_dir and not st.external:
        _say(f"  data: {st.data_dir}")


@labelstudio_app.command("install")
@cli_errors
def labelstudio_install(
    venv: VenvOption = None,
    version: Annotated[str, typer.Option(help="label-studio version to install.")] = "1.23.2",
) -> None:
    """Install label-studio from PyPI into its own virtual environment (reused if present).

    Example: annotator labelstudio install --venv ~/.cache/annotator/labelstudio-venv
    """
    from annotator.review.server import external_connection, install

    external = external_connection()
    if external is not None:
        _say(f"LABEL_STUDIO_URL is set: using {external.url}; nothing to install.")
        return
    install(venv, version=version, echo=_say)


@labelstudio_app.command("start")
@cli_errors
def labelstudio_start(
    db: DbOption = None,
    venv: VenvOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 240.0,
    as_json: JsonOption = False,
) -> None:
    """Start the study's Label Studio on 127.0.0.1, data next to the database; print the login.

    Example: annotator labelstudio start --db study/annotator.db
    """
    from annotator.review.instances import start_all
    from annotator.review.server import login_info, start

    echo = (lambda _: None) if as_json else _say
    st = start(db_path(db), venv=venv, timeout=timeout, echo=echo)
    login = None if st.external else login_info(db_path(db))
    reviewers = [] if st.external else start_all(db_path(db), echo=echo)
    if as_json:
        data = st.as_dict()
        if login:
            data.update(username=login["username"], password=login["password"])
        data["reviewers"] = [r.as_dict() for r in reviewers]
        print_json(data)
        return
    _server_lines(st)
    if login:
        _say(f"  open {login['url']}, log in as {login['username']}, password {login['password']}")
        _say("  API token: `annotator labelstudio status --login`")
    for reviewer in reviewers:
        _say(f"  reviewer {reviewer.username}: {reviewer.url} ({reviewer.message})")


@labelstudio_app.command("stop")
@cli_errors
def labelstudio_stop(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Stop the study's local Label Studio (projects and annotations stay in its data folder).

    Example: annotator labelstudio stop --db study/annotator.db
    """
    from annotator.review.instances import stop_all
    from annotator.review.server import stop

    st = stop(db_path(db))
    reviewers = [] if st.external else stop_all(db_path(db))
    if as_json:
        print_json({**st.as_dict(), "reviewers": [r.as_dict() for r in reviewers]})
        return
    _server_lines(st)
    if reviewers:
        _say(f"  and the Label Studio of {len(reviewers)} reviewers")


@labelstudio_app.command("status")
@cli_errors
def labelstudio_status(
    db: DbOption = None,
    login: Annotated[
        bool, typer.Option("--login", help="Also print the admin login and API token.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Whether the study's Label Studio (or yours) is running and answering.

    Example: annotator labelstudio status --login
    """
    from annotator.review.instances import login as reviewer_login
    from annotator.review.instances import statuses
    from annotator.review.server import login_info, status

    st = status(db_path(db))
    info = login_info(db_path(db)) if login and not st.external else None
    reviewers = [] if st.external else statuses(db_path(db))
    if as_json:
        data = st.as_dict()
        if info:
            data.update(info)
        data["reviewers"] = [
            {**r_st.as_dict(), **(reviewer_login(r) if login else {})} for r, r_st in reviewers
        ]
        print_json(data)
        return
    _server_lines(st)
    if reviewers and not st.running:
        _say("  (isolated review needs no main server: each reviewer has their own)")
    for reviewer, r_st in reviewers:
        where = r_st.url if r_st.running else "not running"
        secret = f", password {reviewer_login(reviewer)['password']}" if login else ""
        _say(f"  reviewer {reviewer.email} (isolated): {where}{secret}")
    if login and st.external:
        _say("  login: the one your team gave you (LABEL_STUDIO_API_KEY is set)")
    if info:
        _say(f"  username: {info['username']}")
        _say(f"  password: {info['password']}")
        _say(f"  API token: {info['api_key']}")
        _say(f"  export LABEL_STUDIO_URL={info['url']} LABEL_STUDIO_API_KEY={info['api_key']}")


@labelstudio_app.command("add-user")
@cli_errors
def labelstudio_add_user(
    email: Annotated[str, typer.Argument(help="The reviewer's email (their login).")],
    password: Annotated[
        str | None, typer.Option(help="Password to set. Default: a random one, printed.")
    ] = None,
    shared: Annotated[
        bool,
        typer.Option(
            "--shared",
            help="Add the reviewer to the study's main server, where every user can open "
            "every task and see others' labels, instead of an instance of their own.",
        ),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a reviewer who can log in; print their login.

    By default each reviewer gets a Label Studio of their own (isolated review: started now,
    from a migrated template, on its own port), so no reviewer can see another's labels;
    `annotator push` then sends each conversation to --overlap reviewers' instances and
    `annotator pull` reads them all back.

    Example: annotator labelstudio add-user ada@example.org
    """
    from annotator.review.sync import add_user

    reviewer = add_user(db_path(db), email, password=password, shared=shared)
    if as_json:
        print_json(
            {"email": reviewer.email, "user_id": reviewer.user_id, "url": reviewer.url,
             "password": reviewer.password, "created": reviewer.created,
             "isolated": reviewer.isolated}
        )  # fmt: skip
        return
    verb = "Created" if reviewer.created else "Updated"
    where = "their own Label Studio" if reviewer.isolated else "the shared Label Studio"
    _say(
        f"{verb} reviewer {reviewer.email} on {where}: open {reviewer.url} and log in with "
        f"password {reviewer.password}"
    )


def _progress_bar(label: str, enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        f"[bold]{label}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=not (enabled and err_console.is_terminal), transient=True,
    )  # fmt: skip


@app.command()
@cli_errors
def push(
    db: DbOption = None,
    prompt: Annotated[
        str | None,
        typer.Option(help=f"Push only this prompt version: {PROMPT_REF}."),
    ] = None,
    project: ProjectOption = "annotator",
    overlap: Annotated[
        int | None,
        typer.Option(
            help="Reviewers per task (K). Default: 2 with isolated reviewers (1 if there is "
            "one), else keep the project's."
        ),
    ] = None,
    values: Annotated[
        int,
        typer.Option(
            help="List this many most frequent values (plus all predicted ones) in the value "
            "picker; any other value is typed into Other AI values. More makes each task "
            "slower to open (300: about 0.55 s instead of 0.47 s)."
        ),
    ] = 100,
    all_values: Annotated[
        bool, typer.Option("--all-values", help="List the whole tree (slower task switching).")
    ] = False,
    keep_config: Annotated[
        bool,
        typer.Option("--keep-config", help="Never change the labeling config; fail instead."),
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Tasks per import request.")] = 1000,
    blind_share: Annotated[
        float,
        typer.Option(
            help="Share of conversations pushed without any prediction, so `annotator "
            "agreement` can measure how much the pre-filled form anchors reviewers. The draw "
            "is stable: a conversation blind once stays blind."
        ),
    ] = 0.1,
    blind_seed: Annotated[
        str, typer.Option(help="Seed of the blind draw (the same seed picks the same set).")
    ] = "annotator-blind",
    as_json: JsonOption = False,
) -> None:
    """Send conversations to Label Studio as tasks, with model predictions; safe to rerun.

    The newest prompt version's prediction pre-fills each form, except on a blind share of
    tasks (`--blind-share`, default 0.1), which reviewers label from scratch. Tasks are queued
    with the conversations the model is least sure of first.

    Example: annotator push --prompt 3f2a --project pilot --overlap 2
    """
    from annotator.review.sync import push as run_push

    with _progress_bar("Pushing", not as_json) as bar:
        job = bar.add_task("push", total=None)
        r = run_push(
            db_path(db), prompt_id=prompt, project=project, overlap=overlap,
            top_values=None if all_values else values, update_config=not keep_config,
            batch_size=batch_size, blind_share=blind_share, blind_seed=blind_seed,
            progress=lambda done, total: bar.update(job, completed=done, total=total),
        )  # fmt: skip
    if as_json:
        print_json(r.as_dict())
        return
    config = "created" if r.created_project else "extended" if r.config_updated else "unchanged"
    _say(
        f"Project {r.project!r} {_where(r)}: {r.tasks_created} tasks created, "
        f"{r.tasks_existing} already there ({r.tasks_recovered} recovered from the server); "
        f"{r.predictions_added} predictions added, {r.predictions_skipped} already there; "
        f"labeling config {config}, {r.config_values} values listed; {r.seconds:.1f} s"
    )
    _say(
        f"Pre-filled by {r.prefilled_by or 'no prediction'}; {r.blind_tasks} tasks are blind "
        "(no prediction), to measure anchoring; most uncertain conversations first."
    )
    for sub in r.reviewers:
        _say(
            f"  {sub.server.removeprefix('reviewer:')} ({sub.url}): {sub.tasks_created} tasks "
            f"created, {sub.tasks_existing} already there"
        )


@app.command()
@cli_errors
def pull(
    db: DbOption = None,
    project: ProjectOption = "annotator",
    summaries: SummariesOption = True,
    as_json: JsonOption = False,
) -> None:
    """Bring every annotation back from Label Studio into the study; safe to rerun.

    Example: annotator pull --project pilot
    """
    from annotator.review.sync import pull as run_pull

    with _progress_bar("Pulling", not as_json) as bar:
        job = bar.add_task("pull", total=None)
        r = run_pull(
            db_path(db), project=project,
            progress=lambda done, total: bar.update(job, completed=done, total=total),
        )  # fmt: skip
    if as_json:
        print_json({**r.as_dict(),
                    "app_summaries": _precompute_summaries(db_path(db), summaries, True)})
        return
    _say(
        f"Project {r.project!r} {_where(r)}: {r.annotations} annotations "
        f"({r.cancelled} skipped): {r.new} new, {r.updated} updated, {r.unchanged} unchanged, "
        f"{r.deleted} marked deleted, {r.restored} restored; {r.free_values} values outside "
        f"the taxonomy kept as free values; {r.seconds:.1f} s. Only annotations pulled from "
        f"{'these projects' if r.reviewers else r.source} were touched."
    )
    if r.incomplete:
        _say(
            f"{r.incomplete} annotations leave a required field (response type or subjective) "
            "empty: kept as incomplete; `annotator adjudicate` lists their conversations for a "
            "person"
        )
    if r.edited_by_other:
        _say(
            f"{r.edited_by_other} annotations were last changed by someone other than their "
            "author (a shared server lets any user edit any annotation): kept, with the "
            "editor recorded in each one's edited_by"
        )
    _precompute_summaries(db_path(db), summaries, False)


def _where(report: Any) -> str:
    """Where a push or pull went: one server, or each reviewer's own (isolated review)."""
    if report.reviewers:
        return f"on {len(report.reviewers)} reviewers' own Label Studio"
    return f"(id {report.project_id}) at {report.url}"


def _precompute_summaries(
    path: Path, enabled: bool, quiet: bool, n_boot: int | None = None,
    workers: int | None = None, must_succeed: bool = False,
) -> dict[str, Any] | None:
    """The app's summaries for what a command changed (see `annotator summarize`).

    After `extract`, `pull` or `adjudicate` their work is saved whatever happens here: a
    failure is reported (the app then computes them when opened), not raised.
    """
    if not enabled:
        return None
    from annotator.app.precompute import DEFAULT_BOOT, precompute

    try:
        with _progress_bar("App summaries", not quiet) as bar:
            job = bar.add_task("summaries", total=None)
            done = precompute(
                path, n_boot=DEFAULT_BOOT if n_boot is None else n_boot, workers=workers,
                progress=lambda what, i, total: bar.update(job, completed=i, total=total),
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - reported; the command's own work is saved
        reason = f"{type(exc).__name__}: {exc}"
        if must_succeed:
            if isinstance(exc, OSError):  # a full disk or an unwritable folder: say so plainly
                raise AnnotatorError(f"could not compute the app's summaries ({reason})") from exc
            raise
        err_console.print(f"[yellow]Could not compute the app's summaries[/] "
                          f"({escape(reason)}); the "
                          "app computes them when opened, or run `annotator summarize`.",
                          highlight=False)
        return {"error": reason}
    if not quiet:
        console.print(
            f"App summaries: {len(done.computed)} computed, {done.already_stored} of "
            f"{done.summaries} already up to date ({done.seconds:.1f} s)"
        )
    return done.model_dump()


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
                     "(each needs about 2.5 GB at 300,000)."),
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
    done = _precompute_summaries(path, True, as_json, n_boot, workers, must_succeed=True)
    if as_json:
        print_json(done)


@app.command("app")
@cli_errors
def serve(
    db: DbOption = None,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open a browser tab.")
    ] = True,
    gold_dir: Annotated[
        Path | None,
        typer.Option("--gold-dir", help="Where the Gold page writes the study's gold file "
                     "(<study name>.jsonl). Default: gold/ beside the study database.",
                     show_default=False),
    ] = None,
) -> None:
    """Serve the study's app: agreement, prompt versions, disagreements, gold and export.

    The same app as `ANNOTATOR_DB=study.db streamlit run annotator/app/streamlit_app.py`, with
    its modules loaded before the server starts, so the first page does not wait for them. Stop
    with Ctrl-C.
    The Gold page writes the gold file beside the study (gold/<study name>.jsonl), or in
    --gold-dir.

    Example: annotator app --db study.db --port 8502
    """
    from annotator.app.server import serve_app
    from annotator.db import open_existing_db

    path = db_path(db)
    open_existing_db(path).conn.close()  # a missing or foreign file: one line, not a page
    serve_app(path, port=port, address=address, open_browser=browser, gold_dir=gold_dir)

# --- one conversation ----------------------------------------------------------------------------


@app.command()
@cli_errors
def show(
    conversation: Annotated[
        str, typer.Argument(help="A conversation id, any unique prefix of one, or its external "
                            "id (the source's id, or file:line for records without one).")
    ],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Everything the study holds about one conversation: its turns, each prompt version's
    proposal (values with their evidence quotes, cost), every annotation (deleted, cancelled
    and incomplete ones flagged), the gold label, and its Label Studio tasks with links.

    Example: annotator show 3f9a2c --db study.db
    """
    from annotator.datasets.show import conversation_record
    from annotator.db import open_existing_db

    path = db_path(db)
    database = open_existing_db(path)
    record = conversation_record(database, conversation, db_path=path)
    if as_json:
        print_json(record)
        return
    _print_conversation(record)


def _heading(text: str) -> None:
    console.print(f"\n[bold]{escape(text)}[/]", highlight=False, soft_wrap=True)


def _yes_no(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _print_conversation(r: dict[str, Any]) -> None:
    """The record of `annotator show`, as text: every data string printed as it is."""
    where = f"source {r['source'] or '-'}" + (
        f", external id {r['external_id']}" if r["external_id"] else "")
    _say(f"Conversation {r['id']} ({where}; {len(r['turns'])} turns)")
    _heading("Turns")
    for i, turn in enumerate(r["turns"], start=1):
        _say(f"[{i}] {turn.get('role')}: {turn.get('text')}")
    _heading(f"Proposals ({len(r['proposals'])})")
    for p in r["proposals"]:
        cost = f"${p['cost_usd']:.4f}" if p["cost_usd"] is not None else "-"
        _say(f"{p['prompt']} · model {p['model']} · {p['status']} · response type "
             f"{p['response_type'] or '-'} · subjective {_yes_no(p['subjective'])} · cost {cost}")
        if p["error"]:
            _say(f"  error: {p['error']}")
        for v in p["ai_values"]:
            quote = f' — "{v["evidence"]}"' if v.get("evidence") else ""
            free = " (free value)" if v.get("node_id") is None and "node_id" in v else ""
            _say(f"  AI value: {v.get('name')}{free}{quote}")
        if p["human_values"]:
            _say("  human values: " + ", ".join(str(v.get("name")) for v in p["human_values"]))
    _heading(f"Annotations ({len(r['annotations'])})")
    for a in r["annotations"]:
        flags = [f for f, on in (("deleted", a["deleted"]), ("cancelled", a["cancelled"])) if on]
        if a["missing"]:
            flags.append("incomplete: no " + " and no ".join(a["missing"]))
        if a["edited_by"]:
            flags.append(f"edited by {a['edited_by']}")
        _say(f"{a['annotator']} ({a['source'] or 'no source'})"
             + (f" [{'; '.join(flags)}]" if flags else ""))
        _say(f"  response type {a['response_type'] or '-'} · subjective "
             f"{_yes_no(a['subjective'])}")
        _say("  AI values: " + (", ".join(a["ai_values"]) or "-"))
        _say("  human values: " + (", ".join(a["human_values"]) or "-"))
        if a["notes"]:
            _say(f"  notes: {a['notes']}")
    g = r["gold"]
    _heading("Gold")
    if g is None:
        _say("not decided")
    else:
        _say(f"decided by {g['decided_by']} at {g['decided_at'] or '-'}")
        _say(f"  response type {g['response_type'] or '-'} · subjective "
             f"{_yes_no(g['subjective'])}")
        _say("  AI values: " + (", ".join(g["ai_values"]) or "-"))
        _say("  human values: " + (", ".join(g["human_values"]) or "-"))
    _heading(f"Label Studio tasks ({len(r['tasks'])})")
    for t in r["tasks"]:
        how = "blind" if t["blind"] else f"pre-filled by {t['prefilled_by_name'] or '-'}"
        _say(f"{t['server']} · project {t['project_id']} · task {t['task_id']} · {how}"
             + (f" · {t['url']}" if t["url"] else ""))


# --- adjudication and export ----------------------------------------------------------------


@app.command("import-labels")
@cli_errors
def import_labels(
    paths: Annotated[
        list[Path], typer.Argument(help="Label files: .jsonl (one object a line) or .csv.")
    ],
    annotator: Annotated[
        str | None,
        typer.Option("--annotator", help="Annotator of rows that name none.",
                     show_default=False),
    ] = None,
    db: DbOption = None,
    summaries: SummariesOption = True,
    as_json: JsonOption = False,
) -> None:
    """Read labels made outside Label Studio into the study, as annotations; safe to rerun.

    Fields (JSONL keys or CSV columns): conversation (the full id, a unique id prefix, or the
    conversation's external id), annotator, ai_values and human_values (JSON lists; in CSV,
    names separated by `;`), response_type (one of the seven), subjective (true, false, yes,
    no), notes (optional). Value names resolve against the taxonomy as `pull` does; names outside
    it are kept as free values and counted. A row without a response type or subjective is kept
    as incomplete. Each file is its own source (`import:<file name>`): importing it again
    changes only its own rows. Bad lines are listed with file, line and reason while the good
    ones land; the exit code is then 1. Then `annotator adjudicate` and `annotator agreement`
    work as after a pull.

    Example: annotator import-labels labels.csv --annotator alice --db study.db
    """
    from annotator.datasets.import_labels import import_labels as run_import
    from annotator.db import open_existing_db

    database = open_existing_db(db_path(db))
    report = run_import(database, paths, annotator=annotator)
    if as_json:
        print_json({**report.model_dump(), "landed": report.landed,
                    "app_summaries": _precompute_summaries(db_path(db), summaries, True)})
    else:
        print_listed([(f"{bad.file}:{bad.line}", bad.reason) for bad in report.rejected],
                     "rejected")
        _say(f"{report.read} rows read from {len(report.files)} files: {report.new} new, "
             f"{report.updated} updated, {report.unchanged} unchanged, {len(report.rejected)} "
             f"rejected; {report.incomplete} incomplete (no response type or subjective); "
             f"{report.free_values} values outside the taxonomy kept as free values")
        if report.free_value_names:
            shown = list(report.free_value_names.items())[:SHOWN_ITEMS]
            _say("  free values: " + ", ".join(f"{name} ({n})" for name, n in shown))
        _precompute_summaries(db_path(db), summaries, False)
    if report.rejected:
        raise typer.Exit(1)


@app.command()
@cli_errors
def adjudicate(
    db: DbOption = None,
    min_annotations: Annotated[
        int, typer.Option("--min-annotations", help="Only conversations with this many.")
    ] = 2,
    gold_file: Annotated[
        Path | None,
        typer.Option("--write", help="Also write the study's gold labels to this JSONL file."),
    ] = None,
    summaries: SummariesOption = True,
    as_json: JsonOption = False,
) -> None:
    """Decide gold labels by majority where the annotators agree.

    A value, the response type and `subjective` go to gold when more than half of the annotators
    gave them. A person's decision (from the app's Gold page) is never overwritten; conversations
    whose annotators split on the response type or on `subjective`, or with an incomplete
    annotation (a required field left empty), are listed for a person, with the reason.

    Example: annotator adjudicate --write gold/study.jsonl
    """
    from annotator.datasets.gold import adjudicate as adjudicate_study
    from annotator.datasets.gold import write_gold_file
    from annotator.db import open_db

    database = open_db(db_path(db))
    report = adjudicate_study(database, min_annotations=min_annotations)
    written = write_gold_file(database, gold_file) if gold_file else None
    if as_json:
        print_json({**report.model_dump(), "written": written,
                    "app_summaries": _precompute_summaries(db_path(db), summaries, True)})
        return
    console.print(
        f"decided {report.decided}, unchanged {report.unchanged}, person decisions kept "
        f"{report.kept_person_decisions}, need a person {len(report.need_a_person)}"
    )
    print_listed([(r.conversation_id, r.reason) for r in report.reasons], "needs a person")
    if written is not None:
        console.print(f"wrote {written} gold records to {escape(str(gold_file))}")
    _precompute_summaries(db_path(db), summaries, False)


gold_app = typer.Typer(
    help=(
        "Gold files (JSONL, one conversation a line: turns, annotations, gold label): load one "
        "into the study, or save the study's gold labels.\n\nExample: annotator gold load "
        "gold/ && annotator gold save gold/study.jsonl"
    ),
    no_args_is_help=True,
)
app.add_typer(gold_app, name="gold")


@gold_app.command("load")
@cli_errors
def gold_load(
    paths: Annotated[
        list[Path], typer.Argument(help="Gold .jsonl files, or folders of them.")
    ],
    db: DbOption = None,
    no_scrub: Annotated[
        bool,
        typer.Option("--no-scrub", help="Store the turns as they are (not scrubbed)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Load gold files into the study: their conversations, each annotator's labels (source
    `gold:<file source>`) and the gold labels; safe to rerun.

    A gold label without a response type or subjective is not loaded (its conversation and
    annotations are) and is listed, like a line that does not parse; the exit code is then 1.

    Example: annotator gold load gold/ --db study.db
    """
    from annotator.datasets.gold import import_gold
    from annotator.db import open_db

    report = import_gold(open_db(db_path(db)), paths, scrub=not no_scrub)
    if as_json:
        print_json(report.model_dump())
    else:
        print_listed([(f"{bad.file}:{bad.line}", bad.reason) for bad in report.rejected],
                     "rejected")
        _say(f"{len(report.files)} files: {report.conversations} conversations, "
             f"{report.annotations} annotations, {report.gold_labels} gold labels loaded; "
             f"{len(report.rejected)} rejected")
    if report.rejected:
        raise typer.Exit(1)


@gold_app.command("save")
@cli_errors
def gold_save(
    path: Annotated[Path, typer.Argument(help="The gold .jsonl file to write (replaced).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the study's gold labels to a JSONL file, one conversation a line, sorted by id:
    its turns, its live annotations and its gold label (the file `gold load` reads).

    Example: annotator gold save gold/study.jsonl --db study.db
    """
    from annotator.datasets.gold import write_gold_file
    from annotator.db import open_existing_db

    written = write_gold_file(open_existing_db(db_path(db)), path)
    if as_json:
        print_json({"written": written, "path": str(path)})
        return
    _say(f"wrote {written} gold records to {path}")


@app.command()
@cli_errors
def export(
    path: Annotated[
        Path,
        typer.Argument(help="Output file (.jsonl, .jsonl.gz, .csv, .parquet), or a folder for "
                       "--format hf."),
    ],
    db: DbOption = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="jsonl, jsonl.gz, csv, parquet or hf (a Hugging Face "
                     "dataset folder). Default: from the file name."),
    ] = None,
    what: Annotated[
        str,
        typer.Option("--what", help="validated (gold with each annotator's labels), gold (gold "
                     "labels only) or proposals (every model extraction)."),
    ] = "validated",
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only these sources (repeatable).")
    ] = None,
    response_type: Annotated[
        list[str] | None,
        typer.Option("--response-type", help="Only these response types (repeatable)."),
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option("--category", help="Only with an AI value in this top category: "
                     "Practical, Epistemic, Social, Protective or Personal (repeatable)."),
    ] = None,
    person_only: Annotated[
        bool, typer.Option("--person-only", help="Only gold decided by a person.")
    ] = False,
    subjective_only: Annotated[
        bool, typer.Option("--subjective-only", help="Only subjective conversations.")
    ] = False,
    min_annotations: Annotated[
        int, typer.Option("--min-annotations", help="Only with at least this many annotations.")
    ] = 0,
    no_annotations: Annotated[
        bool,
        typer.Option("--no-annotations", help="Leave each annotator's labels out (the same as "
                     "--what gold; n_annotations still counts them)."),
    ] = False,
    license_id: Annotated[
        str,
        typer.Option("--license", help="License id for the hf dataset card (e.g. cc-by-4.0); "
                     "unknown unless you choose one."),
    ] = "unknown",
    as_json: JsonOption = False,
) -> None:
    """Export the validated, adjudicated dataset (or gold alone, or the model's proposals).

    The format comes from the file name or --format. JSONL, JSONL.gz and Parquet keep the data
    exactly (Parquet with typed columns); CSV cells that a spreadsheet would run as a formula
    (starting with =, +, -, @, tab or carriage return) get a leading single quote. The file is
    written beside its name and renamed into place. An export that would be empty is an error
    that says why. Records that fail validation are listed and left out, never silently
    changed; so is every annotated conversation without gold, with why (incomplete or split
    annotations, or not adjudicated yet). The first 20 are printed; --json lists all.

    Example: annotator export validated.jsonl --category Protective --subjective-only

    One example for each other format and content:

    - annotator export gold.csv --what gold
    - annotator export proposals.parquet --what proposals
    - annotator export validated.jsonl.gz
    - annotator export values-dataset --format hf --license cc-by-4.0
    """
    from annotator.datasets.export import ExportFilter, ExportWhat
    from annotator.datasets.export import export as export_dataset
    from annotator.db import open_existing_db
    from annotator.models import ResponseType

    if what not in set(ExportWhat):
        raise AnnotatorError(f"unknown --what {what!r}: choose validated, gold or proposals")
    try:
        types = [ResponseType(t) for t in response_type or []]
    except ValueError as exc:
        raise AnnotatorError(
            f"{exc}; response types: " + ", ".join(t.value for t in ResponseType)
        ) from None
    filters = ExportFilter(
        sources=source or [],
        response_types=types,
        categories=category or [],
        decided_by_person_only=person_only,
        subjective_only=subjective_only,
        min_annotations=min_annotations,
        include_annotations=not no_annotations,
    )
    report = export_dataset(
        open_existing_db(db_path(db)), path, fmt, filters, what, license_id
    )
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    print_listed([(x.conversation_id, x.reason) for x in report.left_out], "left out", "red")
    noun = "proposals" if report.what is ExportWhat.proposals else "conversations"
    console.print(
        f"exported {report.exported} {noun} ({report.what}) to {escape(str(report.path))} "
        f"({report.format}); filtered out {report.filtered_out}; left out "
        f"{len(report.left_out)} (invalid {len(report.invalid)})",
        highlight=False,
    )
    if report.invalid:
        raise typer.Exit(1)


# --- agreement ---------------------------------------------------------------------------------


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


def _figure(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"  # NaN != NaN


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

    from annotator.db import open_existing_db
    from annotator.measure.frames import study_agreement, study_anchoring

    database = open_existing_db(db_path(db))
    if not database["annotations"].count:
        raise AnnotatorError(NO_ANNOTATIONS)
    levels = tuple(sorted(set(level))) if level else (0, 1, 2, 3)
    report = study_agreement(database, prompt_ids=prompt, levels=levels, n_boot=boot, top_k=top_k)
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
    for pid, n in report.settings.get("few_shot_left_out", {}).items():
        console.print(f"model {escape(pid)}: {n} conversations left out of its scores, its own "
                      "few-shot examples", highlight=False)
    for scope, rows in frame.groupby("scope", sort=False):
        table = Table(title=escape(str(scope)), title_justify="left")
        for column in ("metric", "labels", "value", "95% interval", "n", "note"):
            table.add_column(column, overflow="fold")
        for row in rows.itertuples():
            interval = "" if pd.isna(row.low) else f"{_figure(row.low)}-{_figure(row.high)}"
            level_text = "" if pd.isna(row.level) else f" L{row.level}"
            table.add_row(  # value names and notes come from data: escaped
                escape(metric_label(str(row.metric),
                                    None if pd.isna(row.value_name) else str(row.value_name))),
                escape(f"{row.field}{level_text}"),
                _figure(row.value),
                interval,
                str(row.n_units),
                "" if pd.isna(row.note) else escape(str(row.note)),
            )
        console.print(table)
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
            table.add_row(escape(f"{m.metric} ({m.field})"), _figure(m.prefilled.value),
                          _figure(m.blind.value),
                          "n/a" if not a.defined else f"{a.value:+.3f}", interval,
                          f"{m.prefilled.n_units} / {m.blind.n_units}")
        console.print(table)
        console.print(escape(result.statement), highlight=False, soft_wrap=True)


# --- the study's report ------------------------------------------------------------------------


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
    """`annotator report` as text: every name from data escaped (`rows_table`, `_say`)."""
    src = f.source
    _say(f"Source: {src.label}" + (f" (default: {src.why})" if src.chosen_by_default else ""))
    left = f"; {f.left_out} left out ({f.left_out_reason})" if f.left_out else ""
    _say(f"{f.conversations} labelled conversations{left}; shares below are of the "
         f"{f.base_conversations} not labelled non-subjective")
    _say(f"Subjective: {f.subjective} of {f.subjective_labelled} labelled "
         f"({_pct(f.subjective_pct)}); published study: {_pct(f.published_subjective_pct)}")
    values = f.level(0)
    rows = [{"value": s.name, "conversations": s.conversations, "pct_convos": _pct(s.pct_convos),
             "released pct_convos": "free value" if s.free else _pct(s.released_pct_convos, 3),
             "category": s.top_category or "-"} for s in values.rows[:top]]
    console.print(rows_table(f"AI values (top {min(top, len(values.rows))} of "
                             f"{len(values.rows)}; {f.free_values} free)", rows))
    _say(_rho(values.correlation))
    for level in (1, 2, 3):
        shares = f.level(level)
        rows = [{"name": s.name, "conversations": s.conversations,
                 "pct_convos": _pct(s.pct_convos), "pct occurrences": _pct(s.pct_occurrences),
                 "released pct occurrences": _pct(s.released_pct_occurrences, 3)}
                for s in shares.rows[:top]]
        console.print(rows_table(f"{shares.kind} (top {min(top, len(shares.rows))} of "
                                 f"{len(shares.rows)})", rows))
        _say(_rho(shares.correlation))
    rows = [{"response type": r.response_type, "conversations": r.conversations,
             "share": _pct(r.pct),
             "published": _pct(r.published_pct) if r.published else "not published"}
            for r in f.response_types]
    console.print(rows_table(f"Response types ({f.response_types_labelled} labelled)", rows))
    _say(f"Published: {f.published}")
    m = f.mirroring
    _say(f"Mirroring: {m.mirrored} of {m.conversations_with_human_values} conversations with "
         f"user values have an AI value equal to one the user stated ({_pct(m.pct)})")
    if m.per_value:
        rows = [{"value": v.value, "AI holds it": v.conversations, "user stated it too":
                 v.mirrored, "share": _pct(v.pct)} for v in m.per_value[:top]]
        console.print(rows_table("Mirrored values", rows))
    missing = (f"; not in the taxonomy: {', '.join(f.opposing_not_in_taxonomy)}"
               if f.opposing_not_in_taxonomy else "")
    _say(f"Possible jailbreaks: {len(f.flagged)} conversations with an opposing AI value "
         f"({', '.join(f.opposing_values)}{missing})")
    for flagged in f.flagged[:top]:
        links = " · ".join([flagged.show_command, f"app: {flagged.app_link}",
                            *flagged.task_urls])
        _say(f"  {flagged.conversation_id}: {', '.join(flagged.opposing_values)} "
             f"(response type {flagged.response_type or '-'}) · {links}")
    if len(f.flagged) > top:
        _say(f"  … and {len(f.flagged) - top} more (all of them: --json)")


# --- the prompt gate (issue 11, item 5) ----------------------------------------------------------


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
                     help="Exit 1 if METRIC (its point value) is below VALUE; repeatable. "
                     f"Metrics: {metric_help()}.", show_default=False),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the calls it would make and their estimated "
                     "cost; send none, score nothing."),
    ] = False,
    prompts_dir: PromptsDirOption = None,
    extractor: Annotated[
        str | None,
        typer.Option(help="claude or baseline. Default: claude if ANTHROPIC_API_KEY is set, "
                     "else the offline baseline (which then stands in for the prompt)."),
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
    conversations it gets most wrong; exit 1 when a `--fail-under` threshold fails, else 0.

    A version's few-shot examples are left out of its scores (and not extracted), and counted.

    Example: annotator eval values/v2 --baseline values/v1 --fail-under response_kappa=0.6
    """
    from annotator.measure.evaluation import evaluate

    with _extract_bar(not as_json) as progress:
        report = evaluate(
            db_path(db), prompt, against=against, baseline=baseline,
            fail_under=fail_under or [], dry_run=dry_run, extractor=extractor,
            prompts_dir=prompts_dir, n_boot=boot, worst=worst, concurrency=concurrency,
            prices=prices, progress=progress,
        )
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
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
        interval = "" if f.low is None else f"{_figure(f.low)}-{_figure(f.high)}"
        table.add_row(f.name, _figure(f.value), interval, str(f.n), escape(f.note or ""))
    console.print(table)
    if report.baseline is not None:
        table = Table(title=f"prompt minus baseline, on the {report.compared} conversations "
                      "both were scored on (paired 95% interval)", title_justify="left")
        for column in ("metric", "baseline", "prompt", "difference", "95% interval"):
            table.add_column(column)
        for d in report.differences:
            interval = "" if d.low is None else f"{d.low:+.3f} to {d.high:+.3f}"
            delta = "n/a" if d.delta is None or d.delta != d.delta else f"{d.delta:+.3f}"
            table.add_row(d.name, _figure(d.baseline), _figure(d.prompt), delta, interval)
        console.print(table)
    if report.worst:
        table = Table(title="most at odds with gold", title_justify="left")
        for column in ("conversation", "disagreement", "why"):
            table.add_column(column, overflow="fold")
        for w in report.worst:
            table.add_row(escape(w.conversation_id), f"{w.disagreement:.2f}", escape(w.reason))
        console.print(table)
    for gate in report.gates:
        verdict = "[green]pass[/]" if gate.passed else "[bold red]FAIL[/]"
        console.print(f"{verdict} {gate.metric} = {_figure(gate.value)} (at least "
                      f"{gate.minimum:g})", highlight=False)
    if report.gates:
        console.print("gate passed" if report.passed else "gate failed: exit 1",
                      style="green" if report.passed else "bold red")
