"""Isolated review: one local Label Studio instance per reviewer, so no reviewer can see another's.

Label Studio Community has one organization and no roles: any user can open any task of any
project with every annotation on it, call the API or export, edit another's annotation and
delete a project. One project per reviewer is therefore no boundary; a separate instance is.
Each reviewer gets `<study folder>/.labelstudio/reviewers/<slug>/` with a data directory of its
own, copied from the migrated template (so it starts in seconds, not the 25 s of a first
migration), a port of its own, and the reviewer as its user. The tool talks to it with that
user's token, kept in the instance's state file (mode 0600) like the main server's.

This module manages the instances (no SDK); `push` and `pull` push to and pull from
them, and names their label sources `labelstudio:reviewer:<email>:<project id>`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotator.review import server
from annotator.review.server import Connection, LabelStudioError, ServerState, ServerStatus

REVIEWERS_DIR = "reviewers"
ANCHOR = "instance.db"  # never created: `server_dir()` of this path is the instance's folder


@dataclass(frozen=True)
class ReviewerInstance:
    """A reviewer's own Label Studio: their email and the path its server functions take."""

    email: str
    anchor: Path

    @property
    def key(self) -> str:
        return f"reviewer:{self.email}"


def reviewers_dir(db_path: Path | str) -> Path:
    return server.server_dir(db_path) / REVIEWERS_DIR


def _slug(email: str) -> str:
    # Readable, filesystem-safe and unique: two emails that clean to the same text still differ.
    clean = re.sub(r"[^a-z0-9]+", "-", email.lower()).strip("-")[:40] or "reviewer"
    return f"{clean}-{hashlib.sha256(email.lower().encode()).hexdigest()[:6]}"


def instance(db_path: Path | str, email: str) -> ReviewerInstance:
    return ReviewerInstance(email=email, anchor=reviewers_dir(db_path) / _slug(email) / ANCHOR)


def reviewers(db_path: Path | str) -> list[ReviewerInstance]:
    """Every reviewer instance of the study, in email order."""
    root = reviewers_dir(db_path)
    found: list[ReviewerInstance] = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        anchor = folder / ANCHOR
        state = server.read_state(anchor)
        if state is not None:
            found.append(ReviewerInstance(email=state.username, anchor=anchor))
    return sorted(found, key=lambda r: r.email.lower())


def isolated(db_path: Path | str) -> bool:
    """Whether the study reviews in isolated instances: a local server with reviewers of its own.

    With LABEL_STUDIO_URL set the team's server is used instead (shared mode).
    """
    return server.external_connection() is None and bool(reviewers(db_path))


def add_reviewer(
    db_path: Path | str,
    email: str,
    password: str | None = None,
    venv: Path | str | None = None,
    echo: server.Echo = server.quiet,
) -> tuple[ReviewerInstance, ServerStatus, str, bool]:
    """Create (or reuse) the reviewer's instance and start it; returns its password.

    A new instance is a copy of the migrated template's data directory; starting it creates
    the reviewer as its user (Label Studio's own `start --username`), with a token the tool
    keeps. An existing one keeps its password unless a new one is given.
    """
    if server.external_connection() is not None:
        raise LabelStudioError(
            "isolated reviewers need the study's own Label Studio; with LABEL_STUDIO_URL set, "
            "invite reviewers on that server (shared mode) instead"
        )
    inst = instance(db_path, email)
    state = server.read_state(inst.anchor)
    created = state is None
    venv_path = Path(venv) if venv else server.default_venv()
    if state is None:
        template = server.ensure_template(venv_path, echo=echo)
        target = server.data_dir(inst.anchor)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(template / server.SERVER_DIR / "data", target)
        state = ServerState(
            username=email,
            password=password or secrets.token_urlsafe(9),
            token=secrets.token_hex(20),
            secret_key=secrets.token_urlsafe(40),
            venv=str(venv_path),
        )
        server.write_state(inst.anchor, state)
    status = start(db_path, inst, venv=venv_path, echo=echo)
    if password and not created and password != state.password:
        server.set_password(connection(inst), email, password)
        state = server.read_state(inst.anchor) or state
        state.password = password
        server.write_state(inst.anchor, state)
    return inst, status, state.password, created


def connection(inst: ReviewerInstance) -> Connection:
    """The reviewer's instance as a server to talk to (their token, their data directory)."""
    state = server.read_state(inst.anchor)
    if state is None or not server.process_alive(state.pid):
        raise LabelStudioError(
            f"the Label Studio of reviewer {inst.email} is not running: run `annotator "
            "labelstudio start`"
        )
    return Connection(
        url=state.url, api_key=state.token, external=False, key=inst.key,
        username=state.username, password=state.password,
        data_dir=server.data_dir(inst.anchor), venv=Path(state.venv) if state.venv else None,
    )  # fmt: skip


def public_url(db_path: Path | str, inst: ReviewerInstance) -> str | None:
    """Where the reviewer opens their instance behind the study's public URL: its own path,
    `<public URL>/<instance folder>`, which the team's proxy forwards to the instance's port."""
    base = server.read_network(db_path).public_url
    return f"{base}/{inst.anchor.parent.name}" if base else None


def start(
    db_path: Path | str, inst: ReviewerInstance, venv: Path | str | None = None,
    echo: server.Echo = server.quiet,
) -> ServerStatus:
    """Start the reviewer's instance where the study's servers listen (`server.read_network`)."""
    return server.start(
        inst.anchor, venv=venv, echo=echo, host=server.read_network(db_path).host,
        public_url=public_url(db_path, inst) or "", what=f"the Label Studio of {inst.email}",
    )  # fmt: skip


def start_all(db_path: Path | str, echo: server.Echo = server.quiet) -> list[ServerStatus]:
    """Start every reviewer's instance, all at once: each start is mostly waiting for Django."""
    found = reviewers(db_path)
    if not found:
        return []
    with ThreadPoolExecutor(max_workers=len(found)) as pool:
        return list(pool.map(lambda r: start(db_path, r, echo=echo), found))


def stop_all(db_path: Path | str) -> list[ServerStatus]:
    """Stop every reviewer's instance, all at once (each waits for its process to end)."""
    found = reviewers(db_path)
    if not found:
        return []
    with ThreadPoolExecutor(max_workers=len(found)) as pool:
        return list(pool.map(lambda r: server.stop(r.anchor), found))


def statuses(db_path: Path | str) -> list[tuple[ReviewerInstance, ServerStatus]]:
    return [(r, server.status(r.anchor)) for r in reviewers(db_path)]


def login(inst: ReviewerInstance) -> dict[str, str]:
    """URL, email and password a reviewer logs in with (asked for only)."""
    info = server.login_info(inst.anchor)
    return {"email": inst.email, "url": info["url"], "password": info["password"]}


def _server_url(db_path: Path | None, key: str | None) -> str | None:
    """The base URL of the server a task row names, if known (never a secret)."""
    if not key:
        return None
    if key.startswith(("http://", "https://")):
        return key.rstrip("/")  # an external server is named by its URL
    if db_path is None:
        return None
    try:
        if key == "local":
            state = server.read_state(db_path)
        elif key.startswith("reviewer:"):
            found = [r for r in reviewers(db_path) if r.key == key]
            state = server.read_state(found[0].anchor) if found else None
        else:
            return None
    except Exception:  # noqa: BLE001 - an unreadable state file only means "no link"
        return None
    return state.url if state is not None and state.port else None


def task_url(db_path: Path | None, task: dict[str, Any]) -> str | None:
    """Label Studio's address of a `tasks` row (the project's data manager opened on the
    task), when its server's address is known; else None."""
    base = _server_url(db_path, task.get("server"))
    if not base or task.get("task_id") is None:
        return None
    return f"{base}/projects/{task['project_id']}/data?task={task['task_id']}"
