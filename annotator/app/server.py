"""Serve the Streamlit app for a study (`annotator app`).

The same app as `ANNOTATOR_DB=study.db streamlit run annotator/app/streamlit_app.py`, started in
this process after importing the app's modules: Streamlit imports them only when the first
visitor's page runs, and at paper scale that import (pandas, Altair, the agreement engine: about
1.3 s on 2 cores) was most of the first page's wait on a new server.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from annotator import config
from annotator.errors import AnnotatorError


def app_script() -> Path:
    """`streamlit_app.py`, in the package (`annotator/app/`)."""
    script = config.app_script()
    if not script.exists():
        raise AnnotatorError(
            f"the app is missing from this installation ({script}): reinstall annotator from "
            "a wheel or a clone of the project"
        )
    return script


def serve_app(
    db: Path, port: int, address: str = "127.0.0.1", open_browser: bool = True,
    gold_dir: Path | None = None,
) -> None:
    """Serve the app on `address`:`port` for the study `db`, until interrupted; its Gold page
    writes gold files to `gold_dir` (default: `gold/` beside the study)."""
    script = app_script()
    os.environ["ANNOTATOR_DB"] = str(Path(db).resolve())
    if gold_dir is not None:  # the app reads both through `config`, as it would from a shell
        os.environ["ANNOTATOR_GOLD_DIR"] = str(Path(gold_dir).expanduser().resolve())
    # the heavy imports, before the first visitor
    importlib.import_module("annotator.app.app_pages.common")
    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(
        ["run", str(script), "--server.port", str(port), "--server.address", address,
         "--server.headless", str(not open_browser).lower(),
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        prog_name="streamlit",
    )
