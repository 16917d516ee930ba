"""Gold and datasets: `import-labels`, `adjudicate`, `gold load|save`, `export`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from annotator.cli.main import (
    SHOWN_ITEMS,
    DbOption,
    JsonOption,
    SummariesOption,
    app,
    cli_errors,
    console,
    db_path,
    err_console,
    precompute_summaries,
    print_json,
    print_listed,
    progress_bar,
    say,
)
from annotator.errors import AnnotatorError


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
    no), notes, task (a category of the study's task list, prompts/tasks.yaml) and
    task_description (all three optional). Value names resolve against the taxonomy as `pull`
    does; names outside it are kept as free values and counted. A row without a response type
    or subjective is kept as incomplete. Each file is its own source (`import:<file name>`):
    importing it again changes only its own rows. Bad lines are listed with file, line and
    reason while the good ones land; the exit code is then 1. Then `annotator adjudicate` and
    `annotator agreement` work as after a pull.

    Example: annotator import-labels labels.csv --annotator alice --db study.db
    """
    from annotator.datasets.import_labels import import_labels as run_import
    from annotator.db import open_existing_db

    database = open_existing_db(db_path(db))
    report = run_import(database, paths, annotator=annotator)
    if as_json:
        print_json({**report.model_dump(), "landed": report.landed,
                    "app_summaries": precompute_summaries(db_path(db), summaries, True)})
    else:
        print_listed([(f"{bad.file}:{bad.line}", bad.reason) for bad in report.rejected],
                     "rejected")
        say(f"{report.read} rows read from {len(report.files)} files: {report.new} new, "
             f"{report.updated} updated, {report.unchanged} unchanged, {len(report.rejected)} "
             f"rejected; {report.incomplete} incomplete (no response type or subjective); "
             f"{report.free_values} values outside the taxonomy kept as free values")
        if report.free_value_names:
            shown = list(report.free_value_names.items())[:SHOWN_ITEMS]
            say("  free values: " + ", ".join(f"{name} ({n})" for name, n in shown))
        precompute_summaries(db_path(db), summaries, False)
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
    New labels re-open a majority decision they no longer give (listed, and kept in the gold
    history); a person's decision made before the current labels is listed as "new labels
    since". An annotation last changed by someone other than its author counts as no vote.

    Example: annotator adjudicate --write gold/study.jsonl
    """
    from annotator.datasets.gold import adjudicate as adjudicate_study
    from annotator.datasets.gold import write_gold_file
    from annotator.db import open_db

    database = open_db(db_path(db))
    with progress_bar("Adjudicating", not as_json) as bar:  # on stderr, only on a terminal
        job = bar.add_task("adjudicate", total=None)
        report = adjudicate_study(
            database, min_annotations=min_annotations,
            progress=lambda read, total: bar.update(job, completed=read, total=total))
    written = write_gold_file(database, gold_file) if gold_file else None
    if as_json:
        print_json({**report.model_dump(), "written": written,
                    "app_summaries": precompute_summaries(db_path(db), summaries, True)})
        return
    console.print(
        f"decided {report.decided}, unchanged {report.unchanged}, person decisions kept "
        f"{report.kept_person_decisions}, need a person {len(report.need_a_person)}"
    )
    print_listed([(r.conversation_id, r.reason) for r in report.reasons], "needs a person")
    if report.reopened:
        console.print(f"re-opened {len(report.reopened)} majority decisions the live annotations "
                      "no longer give (new labels since; each kept in its gold history)",
                      highlight=False)
        print_listed([(r.conversation_id, r.reason) for r in report.reopened], "re-opened")
    if report.new_labels_since:
        console.print(f"{len(report.new_labels_since)} person decisions kept with new labels "
                      "since (the annotations changed after them)", highlight=False)
        print_listed([(c, "new labels since this person's decision")
                      for c in report.new_labels_since], "new labels since")
    if report.set_aside:
        console.print(f"set aside {report.set_aside} annotations: {escape(report.set_aside_why)}",
                      highlight=False)
    if written is not None:
        console.print(f"wrote {written} gold records to {escape(str(gold_file))}")
    precompute_summaries(db_path(db), summaries, False)


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
        say(f"{len(report.files)} files: {report.conversations} conversations, "
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
    say(f"wrote {written} gold records to {path}")


@app.command()
@cli_errors
def export(
    path: Annotated[
        Path,
        typer.Argument(help="Output file (.jsonl, .jsonl.gz, .csv, .parquet), a folder for "
                       "--format hf, or - for standard output (jsonl, jsonl.gz or csv)."),
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
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file (or earlier hf folder).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Export the validated, adjudicated dataset (or gold alone, or the model's proposals).

    The format comes from the file name or --format. JSONL, JSONL.gz and Parquet keep the data
    exactly (Parquet with typed columns); CSV cells that a spreadsheet would run as a formula
    (starting with =, +, -, @, tab or carriage return) get a leading single quote. The file is
    written beside its name and renamed into place; an existing file is replaced only with
    --force, a link is written through (it stays a link), a device or pipe is refused, and -
    writes to standard output (not a terminal). An export that would be empty is an error
    that says why. Records that fail validation are listed and left out, never silently
    changed; so is every annotated conversation without gold, with why (incomplete or split
    annotations, or not adjudicated yet). The first 20 are printed; --json lists all.

    Example: annotator export validated.jsonl --category Protective --subjective-only

    One example for each other format and content:

    - annotator export gold.csv --what gold
    - annotator export proposals.parquet --what proposals
    - annotator export validated.jsonl.gz
    - annotator export values-dataset --format hf --license cc-by-4.0
    - annotator export - --format csv | head
    """
    from annotator.app.precompute import STORED_FIGURES
    from annotator.datasets.export import ExportFilter, ExportWhat
    from annotator.datasets.export import export as export_dataset
    from annotator.datasets.writers import STDOUT, is_stdout
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
    stream = None
    if is_stdout(path):
        if sys.stdout.isatty():  # data is never control: records are not for a terminal
            raise AnnotatorError(
                f"{STDOUT} writes the export to standard output, which is a terminal here: "
                "pipe it (| less) or name a file"
            )
        stream = sys.stdout.buffer
    with progress_bar("Exporting", not as_json) as bar:  # on stderr, only on a terminal
        job = bar.add_task("export", total=None)
        report = export_dataset(
            open_existing_db(db_path(db)), path, fmt, filters, what, license_id, force, stream,
            stored=STORED_FIGURES,
            progress=lambda read, total: bar.update(job, completed=read, total=total),
        )
    if as_json:
        print_json(report.model_dump(mode="json"), to_stderr=stream is not None)
        return
    print_listed([(x.conversation_id, x.reason) for x in report.left_out], "left out", "red")
    noun = "proposals" if report.what is ExportWhat.proposals else "conversations"
    (err_console if stream else console).print(
        f"exported {report.exported} {noun} ({report.what}) to {escape(str(report.path))} "
        f"({report.format}); filtered out {report.filtered_out}; left out "
        f"{len(report.left_out)} (invalid {len(report.invalid)})",
        highlight=False,
    )
    if report.invalid:
        raise typer.Exit(1)
