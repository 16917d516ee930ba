"""The connection to a Label Studio: the client, its errors in one line, projects and reviewers.
The only importer of `label_studio_sdk` (`push` and `pull` take its types from here).

`push` and `pull` are idempotent. A task's `data.conversation_id` is the client-side key: the
`tasks` table maps it to Label Studio's task id, and a push that finds the server holding tasks
the table lacks (a crash between import and commit) reads them back before importing anything.
Annotations are keyed by Label Studio's annotation id; an edit keeps the replaced version in
`history`, and an annotation gone from the server is marked `deleted`, never dropped.

Server lifecycle (install, start, stop) is in `server`; the interface and the translation of
labels in `interface`; pushing and pulling in `push` and `pull`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.request_options import RequestOptions

from annotator.review import instances
from annotator.review import interface as lsc
from annotator.review.server import (
    Connection,
    LabelStudioError,
    connection,
    external_connection,
    read_state,
    set_password,
)

DEFAULT_PROJECT = "annotator"
TASK_PK = ("server", "project_id", "conversation_id")
BLIND_SHARE = 0.1  # of conversations pushed without predictions, to measure anchoring
BLIND_SEED = "annotator-blind"
NEUTRAL_ORDERING = ["tasks:id"]
BATCH_SIZE = 1000
EXPORT_TIMEOUT = 900.0
# Imports are sent once, never retried (the SDK retries a timeout or a 5xx unless told not to):
# a retry after a timeout could import a batch twice (the next push reconciles the mapping
# from the server instead).
IMPORT_TIMEOUT = 900.0
WRITE_ONCE: RequestOptions = {"timeout_in_seconds": int(IMPORT_TIMEOUT), "max_retries": 0}

Progress = Callable[[int, int], None]


class LabelNotInConfigError(LabelStudioError):
    """A prediction uses a label the project's labeling config does not have."""


class ProjectMissingError(LabelStudioError):
    """The named project is not on the server."""


def _no_progress(done: int, total: int) -> None:
    pass


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building large acyclic payloads.

    10,000 tasks with predictions are about a million small dicts and lists; the collector
    rescans them again and again as they pile up (60% of the build time, measured). They hold
    no cycles, so reference counting frees them all the same.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- client and errors ------------------------------------------------------------------------


def _what_to_do(conn: Connection) -> str:
    if conn.external:
        return "check LABEL_STUDIO_URL and that the server is up"
    return "run `annotator labelstudio start`"


@contextlib.contextmanager
def _errors(conn: Connection, doing: str) -> Iterator[None]:
    """SDK and network failures as one-line LabelStudioErrors that never carry the key."""
    try:
        yield
    except LabelStudioError:
        raise
    except httpx.TimeoutException:
        raise LabelStudioError(
            f"Label Studio at {conn.url} did not answer in time while {doing}: "
            "try again, or with a smaller --batch-size"
        ) from None
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.UnsupportedProtocol,
            httpx.InvalidURL) as exc:  # fmt: skip
        raise LabelStudioError(
            f"cannot reach Label Studio at {conn.url} ({type(exc).__name__}) while {doing}: "
            f"{_what_to_do(conn)}"
        ) from None
    except ApiError as exc:
        raise _api_error(conn, exc, doing) from None


def _api_error(conn: Connection, exc: ApiError, doing: str) -> LabelStudioError:
    code = exc.status_code
    if code in (401, 403):
        key = "LABEL_STUDIO_API_KEY" if conn.external else "the token in .labelstudio/server.json"
        return LabelStudioError(
            f"Label Studio at {conn.url} rejected the API key ({code}) while {doing}: check "
            f"{key} (a legacy token, or a personal access token from Account & Settings)"
        )
    detail = _detail(exc.body)
    if code == 404:
        return LabelStudioError(
            f"{conn.url} answered 404 while {doing}: is this the Label Studio URL? "
            f"({_what_to_do(conn)}){': ' + detail if detail else ''}"
        )
    return LabelStudioError(
        f"Label Studio at {conn.url} refused {doing} ({code}){': ' + detail if detail else ''}"
    )


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("validation_errors", "detail", "message", "error"):
            if body.get(key):
                return str(body[key])[:300]
        return str(body)[:300]
    if isinstance(body, str) and body.lstrip().startswith("<"):
        return "an HTML page, not the API"
    return str(body or "")[:200]


def client(conn: Connection) -> LabelStudio:
    """An SDK client; checks that the URL is Label Studio and the key is accepted."""
    with _errors(conn, "connecting"):
        try:
            ls = LabelStudio(base_url=conn.url, api_key=conn.api_key, timeout=120)
        except ApiError as exc:  # an expired or malformed personal access token
            raise LabelStudioError(
                f"the Label Studio API key is not usable ({_detail(exc.body)}): set a valid "
                "LABEL_STUDIO_API_KEY"
            ) from None
        try:
            version = ls.versions.get()
        except ApiError as exc:
            if exc.status_code in (401, 403):
                raise
            raise LabelStudioError(
                f"{conn.url} does not look like Label Studio (GET /api/version answered "
                f"{exc.status_code}): {_what_to_do(conn)}"
            ) from None
        if not getattr(version, "release", None):
            raise LabelStudioError(
                f"{conn.url} does not look like Label Studio (no release in /api/version): "
                f"{_what_to_do(conn)}"
            )
        ls.users.whoami()  # the version endpoint is public: this is where a bad key shows
    return ls


def connect(db_path: Path | str) -> tuple[Connection, LabelStudio]:
    conn = connection(db_path)
    return conn, client(conn)


# --- projects ---------------------------------------------------------------------------------


def find_project(ls: LabelStudio, conn: Connection, title: str) -> Any | None:
    """The project with this title (the oldest if several), or None."""
    with _errors(conn, f"looking up project {title!r}"):
        matches = [p for p in ls.projects.list(title=title, page_size=100) if p.title == title]
        if not matches:
            return None
        return ls.projects.get(id=min(p.id for p in matches))


def require_project(ls: LabelStudio, conn: Connection, title: str) -> Any:
    project = find_project(ls, conn, title)
    if project is None:
        raise ProjectMissingError(
            f"project {title!r} is not on {conn.url}: run `annotator push --project "
            f"{title!r}` first, or pass the right --project"
        )
    return project


def _project_settings(overlap: int | None) -> dict[str, Any]:
    # Sequential: the first reviewer of a task gets tasks in id order, which push makes the
    # most uncertain first (later reviewers of a shared project get Label Studio's breadth-
    # first order: tasks others finished, at random). No annotation history in the stream.
    settings: dict[str, Any] = {
        "show_collab_predictions": True,
        "sampling": "Sequential sampling",
        "show_annotation_history": False,
        # The guidelines open when a reviewer starts and stay behind the Instructions button.
        "show_instruction": True,
        "expert_instruction": lsc.instructions_html(),
    }
    if overlap is not None:
        # K reviewers per task: every task in the overlap cohort, K annotations each.
        settings.update(maximum_annotations=overlap, overlap_cohort_percentage=100)
    return settings


# --- reviewers ----------------------------------------------------------------------------------


@dataclass
class Reviewer:
    email: str
    user_id: int
    url: str
    password: str = field(repr=False)
    created: bool = True
    isolated: bool = False


def add_user(
    db_path: Path | str, email: str, password: str | None = None, shared: bool = False
) -> Reviewer:
    """Add a reviewer who can log in; reuses one that exists.

    By default (isolated review) the reviewer gets a Label Studio instance of their own,
    started now, where no other reviewer's labels exist to be seen. With `shared` they are a
    user of the study's main local server instead, where every user can open every task.
    Users made through the API cannot log in until their password is set with `label-studio
    reset_password`, which needs the server's data directory: so this works on the study's
    local servers only.
    """
    import secrets

    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise LabelStudioError(f"{email!r} is not an email address: reviewers log in with one")
    external = external_connection()
    if external is not None:
        raise LabelStudioError(
            f"add-user sets passwords through the local server's data directory; on "
            f"{external.url} invite reviewers from Organization > Add People instead"
        )
    if not shared:
        inst, status, password, created = instances.add_reviewer(db_path, email, password)
        conn = instances.connection(inst)
        with _errors(conn, f"reading the account of {email}"):
            user_id = client(conn).users.whoami().id
        return Reviewer(email=email, user_id=user_id, url=status.shown_url or conn.url,
                        password=password, created=created, isolated=True)  # fmt: skip
    conn, ls = connect(db_path)
    password = password or secrets.token_urlsafe(9)
    with _errors(conn, f"creating user {email}"):
        found = [u for u in ls.users.list() if (u.email or "").lower() == email.lower()]
        created = not found
        if found:
            user_id = found[0].id
        else:
            username = email.split("@", 1)[0][:30] + "-" + secrets.token_hex(2)
            user_id = ls.users.create(username=username, email=email, password=password).id
    set_password(conn, email, password)
    state = read_state(db_path)  # the address people open, not the one this tool talks to
    return Reviewer(email=email, user_id=user_id, url=state.url if state else conn.url,
                    password=password, created=created)
