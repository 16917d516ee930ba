"""Serve the Streamlit app for a study (`annotator app`).

The same app as `ANNOTATOR_DB=study.db streamlit run annotator/app/streamlit_app.py`, started in
this process after importing the app's modules: Streamlit imports them only when the first
visitor's page runs, and at paper scale that import (pandas, Altair, the agreement engine: about
1.3 s on 2 cores) was most of the first page's wait on a new server.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from annotator import config
from annotator.errors import AnnotatorError
from annotator.private_files import read_private, write_private
from annotator.review import demo_serve, server

PASSWORD_FILE = "app-password"
ADDRESS_FILE = "app-address.json"
DEFAULT_PORT = 8501


def app_script() -> Path:
    """`streamlit_app.py`, in the package (`annotator/app/`)."""
    script = config.app_script()
    if not script.exists():
        raise AnnotatorError(
            f"the app is missing from this installation ({script}): reinstall annotator from "
            "a wheel or a clone of the project"
        )
    return script


def app_password(db: Path) -> str:
    """The study's app password: $ANNOTATOR_APP_PASSWORD, else one made at the first serve
    beyond loopback and kept (0600) beside the study's servers, so it survives a restart."""
    given = config.app_password()
    if given:
        return given
    path = server.server_dir(db) / PASSWORD_FILE
    kept = read_private(path, "app password")
    if kept and kept.strip():
        return kept.strip()
    password = secrets.token_urlsafe(12)
    write_private(path, password + "\n", "app password")
    return password


@dataclass(frozen=True)
class AppAddress:
    """Where a study's app listens."""

    address: str = server.LOOPBACK
    port: int = DEFAULT_PORT


def app_address(db: Path, address: str | None = None, port: int | None = None) -> AppAddress:
    """Where the study's app listens: `address` and `port` where given, and kept (0600, beside
    the study's servers) for the next start; where not given, those the last start was given;
    else 127.0.0.1:8501. A reviewer's bookmark then survives a restart of `annotator app`
    without its flags, as Label Studio's `start --host` does."""
    path = server.server_dir(db) / ADDRESS_FILE
    try:
        kept: AppAddress | None = _kept_address(path)
    except AnnotatorError:
        if not address or port is None:  # what is not given cannot be read: said
            raise
        kept = None  # both given: the damaged file is replaced
    base = kept or AppAddress()
    chosen = AppAddress(address or base.address, port if port is not None else base.port)
    server.check_host(chosen.address)  # an address this machine no longer has: said now
    if chosen != kept:
        write_private(path, json.dumps(asdict(chosen), indent=2) + "\n", "app address")
    return chosen


def _kept_address(path: Path) -> AppAddress:
    text = read_private(path, "app address")
    if text is None:
        return AppAddress()
    try:
        data = json.loads(text)
        kept = AppAddress(str(data["address"]), int(data["port"]))
        if not 0 < kept.port < 65536:
            raise ValueError(f"port {kept.port}")
    except (ValueError, TypeError, KeyError) as exc:
        raise AnnotatorError(f"{path} is unreadable ({type(exc).__name__}): remove it, or "
                             "start again with --address and --port") from None
    return kept


def serve_app(
    db: Path, port: int | None = None, address: str | None = None, open_browser: bool = True,
    gold_dir: Path | None = None, on_start: Callable[[str, str | None], None] | None = None,
) -> None:
    """Serve the app on `address`:`port` for the study `db`, until interrupted; its Gold page
    writes gold files to `gold_dir` (default: `gold/` beside the study). Not given, the
    address and port are those the study's last start was given (`app_address`).

    The app shows every reviewer's labels: beyond loopback it asks for the study's password
    (`app_password`) before it shows anything. `on_start` is told the URL and the password
    (None on loopback) just before the server starts."""
    script = app_script()
    db = Path(db).resolve()
    where = app_address(db, address, port)
    address, port = where.address, where.port
    os.environ["ANNOTATOR_DB"] = str(db)
    if gold_dir is not None:  # the app reads both through `config`, as it would from a shell
        os.environ["ANNOTATOR_GOLD_DIR"] = str(Path(gold_dir).expanduser().resolve())
    password = None if address in server.LOOPBACK_HOSTS else app_password(db)
    if password:
        os.environ["ANNOTATOR_APP_PASSWORD"] = password
    if not server.port_free(address, port):
        owner = server.port_owner(port) or "another program"
        raise AnnotatorError(f"port {port} is taken by {owner}: stop it or pass --port")
    # the heavy imports, before the first visitor
    importlib.import_module("annotator.app.app_pages.common")
    from streamlit.web import cli as streamlit_cli

    # `labelstudio stop` stops the app too: it finds it by this note
    url = server.http_url(server.shown_host(address), port)
    demo_serve.record_app(db, os.getpid(), url)
    if on_start is not None:
        on_start(url, password)
    # Opening a browser (not headless), Streamlit first asks for an e-mail address on an
    # account where it never ran, from standard input: with no terminal (a script, `&`) that
    # ended the app, and in one it asked the person something that is not the study's.
    streamlit_cli.main(
        ["run", str(script), "--server.port", str(port), "--server.address", address,
         "--server.headless", str(not open_browser).lower(),
         "--server.showEmailPrompt", "false",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        prog_name="streamlit",
    )
