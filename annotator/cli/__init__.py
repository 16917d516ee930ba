"""The command line (`annotator`): Typer commands over the library functions of the same name.

`main` holds the Typer app and what every command shares (the `--db` option, one-line errors,
tables, progress bars); each other module is one command group and registers its commands on
import: `study` (init, status, demo, taxonomy, show), `ingest`, `extract` (prompts, extract),
`review` (labelstudio, push, pull), `measure` (summarize, app, agreement, report, eval) and
`datasets` (import-labels, adjudicate, gold, export). The only importer of Typer and rich.
"""

import importlib

from annotator import config

config.memory_without_huge_pages()  # before numpy or Arrow is loaded, and before any worker

from annotator.cli.main import app  # noqa: E402 - after the setting above

# Imported in the pipeline's order, which is the order `annotator --help` lists them in.
for _group in ("study", "ingest", "extract", "review", "measure", "datasets"):
    importlib.import_module(f"annotator.cli.{_group}")

__all__ = ["app"]
