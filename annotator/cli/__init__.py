"""The command line (`annotator`): Typer commands over the library functions of the same name.

`main` holds the Typer app and what every command shares (the `--db` option, one-line errors,
tables, progress bars); each other module is one command group and registers its commands on
import: `study` (init, status, demo, taxonomy, show), `ingest`, `extract` (prompts, extract),
`review` (labelstudio, push, pull), `measure` (summarize, app, agreement, report, eval) and
`datasets` (import-labels, adjudicate, gold, export). The only importer of Typer and rich.
"""

import importlib
import os

# Before anything imports numpy: numpy asks the kernel to back each large array with huge
# pages (madvise). Where the kernel then compacts memory synchronously to find one (Debian's
# default, transparent_hugepage/defrag "madvise"), the commands spent more time in the kernel
# than computing: the inter-annotator figures at 300,000 conversations took 11.4 s, 5 s of it
# in the kernel, and 7.6 s without the advice (numpy/numpy#31590). Set before any worker is
# spawned, so the workers inherit it; a user's own setting of the variable wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from annotator.cli.main import app  # noqa: E402 - after the setting above

# Imported in the pipeline's order, which is the order `annotator --help` lists them in.
for _group in ("study", "ingest", "extract", "review", "measure", "datasets"):
    importlib.import_module(f"annotator.cli.{_group}")

__all__ = ["app"]
