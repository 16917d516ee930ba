"""`annotator ingest`: files into the study, scrubbed, bad records named by line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from annotator.cli.main import (
    DbOption,
    JsonOption,
    app,
    cli_errors,
    console,
    db_path,
    err_console,
    live,
    print_json,
    terminal_safe,
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
        disable=not live(not as_json),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:  # a file name is data: never read as markup
                tasks[name] = bar.add_task(escape(terminal_safe(Path(name).name)), total=total)
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
