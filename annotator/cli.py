"""The `annotator` command line: a thin layer over library functions of the same name.

Library errors become CLI errors only here: `AnnotatorError` (and its subclasses) print one line
and exit non-zero, without a stack trace.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from . import config
from .errors import AnnotatorError

app = typer.Typer(
    help=(
        "annotator: a human-in-the-loop workbench for the values an AI expresses in "
        "conversations.\n\nExample: annotator init && annotator ingest chats.jsonl"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
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
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    if rows:
        for key in rows[0]:
            table.add_column(str(key))
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
    return table


# --- study database ------------------------------------------------------------------------------


@app.command()
@cli_errors
def init(db: DbOption = None) -> None:
    """Create the study database (or bring an older one up to date).

    Example: annotator init --db study.db
    """
    from .db import applied_migrations, open_db

    path = db_path(db)
    database = open_db(path)
    console.print(
        f"Study database ready: {path} ({len(applied_migrations(database))} migrations applied)"
    )


@app.command()
@cli_errors
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files to read: .jsonl, .csv, .txt, each optionally .gz."),
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
    as_json: JsonOption = False,
) -> None:
    """Read conversations into the study database, scrubbing personal data first.

    Formats: JSONL chat messages ({"messages": [{"role", "content"}]}), JSONL with Human:/Assistant:
    transcripts (--field, default "chosen"), plain-text transcripts (.txt), long-form CSV
    (conversation_id, turn, role, text; other columns kept as metadata); each may be gzipped.
    Ingesting the same file twice adds nothing. Bad records are listed with file and line;
    the good ones still land, and the exit code is 1 when anything was rejected.

    Example: annotator ingest chats.jsonl.gz hh-rlhf.jsonl --field chosen
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from .db import open_db
    from .ingest import ingest as ingest_files

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
            if name not in tasks:
                tasks[name] = bar.add_task(Path(name).name, total=total)
            bar.update(tasks[name], completed=done)

        try:
            report = ingest_files(
                database,
                paths,
                scrub=not no_scrub,
                transcript_field=field,
                source=source,
                progress=progress,
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
        for rejected in report.rejected[:show_rejected]:
            err_console.print(
                f"[red]rejected[/] {rejected.file}:{rejected.line}: {rejected.reason}",
                highlight=False,
            )
        if len(report.rejected) > show_rejected:
            err_console.print(f"... and {len(report.rejected) - show_rejected} more rejected")
        scrub_note = (
            ", ".join(f"{k} {v}" for k, v in report.scrub_counts.items()) or "nothing found"
            if report.scrubbed
            else "off (--no-scrub)"
        )
        console.print(
            f"landed {report.landed}, already present {report.duplicates}, "
            f"rejected {len(report.rejected)} ({report.read} read in {report.seconds:.1f} s); "
            f"scrubbed: {scrub_note}",
            highlight=False,
        )
    if report.rejected:
        raise typer.Exit(1)


@app.command()
@cli_errors
def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show what the study holds at each stage.

    Example: annotator status --db study.db --json
    """
    from .db import open_db
    from .report import study_summary

    path = db_path(db)
    if not path.exists():
        raise AnnotatorError(f"{path}: no study database here; run `annotator init` first")
    summary = study_summary(open_db(path))
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
) -> None:
    """Build a demo study from the bundled gold set and print what it holds.

    Example: annotator demo --db demo/annotator.db
    """
    from .db import open_db
    from .gold import import_gold
    from .report import study_summary

    database = open_db(db)
    report = import_gold(database, [gold or config.gold_dir()])
    console.print(
        f"Imported {report.conversations} gold conversations with {report.annotations} "
        f"annotations from {', '.join(report.files)}"
    )
    for rejected in report.rejected:
        err_console.print(f"[red]rejected[/] {rejected.file}:{rejected.line}: {rejected.reason}")
    rows = [{"stage": stage, "count": count} for stage, count in study_summary(database).items()]
    console.print(rows_table(f"Demo study {db}", rows))
    if report.rejected:
        raise typer.Exit(1)


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
    from .taxonomy import ATTRIBUTION, load_taxonomy

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
        console.print(f"No value or cluster matches {query!r}.")
        return
    console.print(rows_table(f"Taxonomy matches for {query!r}", rows))
