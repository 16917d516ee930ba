"""Label Studio: push tasks with model predictions, pull annotations back. The only SDK import.

`push` and `pull` are idempotent. A task's `data.conversation_id` is the client-side key: the
`tasks` table maps it to Label Studio's task id, and a push that finds the server holding tasks
the table lacks (a crash between import and commit) reads them back before importing anything.
Annotations are keyed by Label Studio's annotation id; an edit keeps the replaced version in
`history`, and an annotation gone from the server is marked `deleted`, never dropped.

Server lifecycle (install, start, stop) is in `labelstudio_server`; the interface and the
translation of labels in `labelstudio_config`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlite_utils
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.request_options import RequestOptions

from annotator.db import dumps, loads, open_existing_db, row_to_extraction
from annotator.models import Extraction, Labels, utc_now
from annotator.review import instances
from annotator.review import interface as lsc
from annotator.review.server import (
    Connection,
    LabelStudioError,
    connection,
    external_connection,
    set_password,
)
from annotator.taxonomy import Taxonomy, load_taxonomy

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


# --- push ---------------------------------------------------------------------------------------


@dataclass
class PushReport:
    project: str
    project_id: int
    url: str
    created_project: bool = False
    config_updated: bool = False
    config_values: int = 0
    tasks_created: int = 0
    tasks_existing: int = 0
    tasks_recovered: int = 0
    blind_tasks: int = 0
    prefilled_by: str | None = None
    server: str = "local"
    overlap: int | None = None
    views_reset: int = 0
    tasks_refreshed: int = 0
    reviewers: list[PushReport] = field(default_factory=list)
    predictions_added: int = 0
    predictions_skipped: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Item:
    conversation_id: str
    data: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    prompt_ids: list[str] = field(default_factory=list)
    blind: bool = False
    prefilled_by: str | None = None
    uncertainty: float = 1.0


def _load_extractions(
    db: sqlite_utils.Database, prompt_id: str | None
) -> dict[str, list[Extraction]]:
    where, params = "status = 'ok'", []
    if prompt_id is not None:
        where += " and prompt_id = ?"
        params.append(prompt_id)
    out: dict[str, list[Extraction]] = defaultdict(list)
    for row in db["extractions"].rows_where(where, params, order_by="created_at, model"):
        out[row["conversation_id"]].append(row_to_extraction(row))
    return out


def is_blind(conversation_id: str, share: float, seed: str = BLIND_SEED) -> bool:
    """Whether a conversation is pushed without predictions: a stable, seeded draw.

    The same (seed, conversation) always draws the same number, so a rerun, a later push of
    new conversations or another machine picks the same blind set, and about `share` of any
    subset is blind.
    """
    digest = hashlib.sha256(f"{seed}:{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def prediction_names(db: sqlite_utils.Database) -> dict[str, str]:
    """What reviewers see for each prompt version: "values/v1 · 83a3bb", "offline baseline v1 · …".

    Label Studio shows a prediction's model_version as its tab name, so this is what a push
    sends as model_version (not the hash the study keys on).
    """
    names: dict[str, str] = {}
    if "prompts" not in db.table_names():
        return names
    for row in db.query("select id, name, version from prompts"):
        short = row["id"].removeprefix("baseline-")[:6]
        if row["name"] == "baseline":
            names[row["id"]] = f"offline baseline {row['version']} · {short}"
        else:
            names[row["id"]] = f"{row['name']}/{row['version']} · {short}"
    return names


def _uncertainty(extractions: list[Extraction]) -> float:
    """How unsure the model is about a conversation, 0 (sure) to 1: low value scores, and
    disagreement between prompt versions or extractors on the response type and the values."""
    if not extractions:
        return 1.0
    scores = [v.score for e in extractions for v in e.ai_values if v.score is not None]
    doubt = 1.0 - (sum(scores) / len(scores) if scores else 0.5)
    if len(extractions) > 1:
        types = {e.response_type for e in extractions}
        value_sets = [frozenset(v.name for v in e.ai_values) for e in extractions]
        union = frozenset().union(*value_sets)
        common = frozenset.intersection(*value_sets)
        overlap = len(common) / len(union) if union else 1.0
        split = (len(types) - 1) / (len(extractions) - 1)
        doubt = (doubt + split + (1.0 - overlap)) / 3
    return doubt


def _items(
    db: sqlite_utils.Database,
    taxonomy: Taxonomy,
    prompt_id: str | None,
    prefill_id: str | None,
    blind_share: float,
    blind_seed: str,
) -> tuple[list[_Item], set[str]]:
    """What to push, most uncertain first; and the leaves the predictions use.

    A blind conversation gets no prediction at all (anchoring is measured on these); every
    other gets each version's prediction, and the form is pre-filled by `prefill_id`'s.
    """
    extractions = _load_extractions(db, prompt_id)
    if prompt_id is not None and not extractions:
        raise LabelStudioError(
            f"no successful extractions for prompt {prompt_id!r}: run `annotator extract` with "
            "that prompt first, or push without --prompt"
        )
    if prompt_id is None:
        ids = [r["id"] for r in db.query("select id from conversations order by id")]
    else:
        ids = sorted(extractions)
    if not ids:
        raise LabelStudioError("the study has no conversations: run `annotator ingest` first")
    names = prediction_names(db)
    leaves: set[str] = set()
    items: list[_Item] = []
    for start in range(0, len(ids), 900):  # sqlite's limit on bound parameters
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        sql = f"select id, turns, source from conversations where id in ({marks}) order by id"
        for row in db.query(sql, chunk):
            cid = row["id"]
            mine = extractions.get(cid, [])
            blind = is_blind(cid, blind_share, blind_seed)
            prefill = None if blind else next((e for e in mine if e.prompt_id == prefill_id), None)
            item = _Item(
                cid,
                lsc.task_data(
                    cid, loads(row["turns"], []), row["source"] or "",
                    prefill=prefill, prefill_name=_name(names, prefill_id) if prefill else None,
                ),  # fmt: skip
                blind=blind,
                prefilled_by=prefill.prompt_id if prefill else None,
                uncertainty=_uncertainty(mine),
            )
            if not blind:
                for extraction in mine:
                    leaves |= lsc.prediction_leaves(taxonomy, extraction)
                    item.predictions.append(
                        lsc.prediction(taxonomy, extraction, _name(names, extraction.prompt_id))
                    )
                    item.prompt_ids.append(extraction.prompt_id)
            items.append(item)
    # Task ids follow import order, and a reviewer's stream follows task ids ("Sequential"):
    # the conversations the model is least sure of are reviewed first.
    items.sort(key=lambda i: (-i.uncertainty, i.conversation_id))
    return items, leaves


def _name(names: dict[str, str], prompt_id: str | None) -> str:
    return names.get(prompt_id or "", prompt_id or "")


def _ensure_project(
    ls: LabelStudio,
    conn: Connection,
    title: str,
    taxonomy: Taxonomy,
    leaves: set[str],
    top_values: int | None,
    update_config: bool,
    settings: dict[str, Any],
    report: PushReport,
) -> lsc.ConfigSchema:
    project = find_project(ls, conn, title)
    if project is None:
        values = lsc.config_values(taxonomy, top_values, leaves)
        with _errors(conn, f"creating project {title!r}"):
            project = ls.projects.create(
                title=title,
                description="Values in conversations: review the model's proposed labels.",
                label_config=lsc.label_config(taxonomy, values),
                **settings,
            )
            ls.views.create(project=project.id, data=lsc.task_list_view())  # a readable list
        report.created_project = True
        report.project_id = project.id
        report.config_values = len(values)
        return lsc.parse_config(lsc.label_config(taxonomy, values))
    report.project_id = project.id
    schema = lsc.parse_config(project.label_config or "<View/>")
    wanted = lsc.config_values(taxonomy, top_values, leaves)
    if update_config and not wanted <= schema.leaf_ids:
        # The config only grows: dropping a value could orphan annotations that use it.
        values = schema.leaf_ids | wanted
        settings = {**settings, "label_config": lsc.label_config(taxonomy, values)}
        schema = lsc.parse_config(settings["label_config"])
        report.config_updated = True
    report.config_values = len(schema.leaf_ids)
    with _errors(conn, f"updating project {title!r}"):
        ls.projects.update(id=project.id, **settings)
    return schema


def _mapped(
    db: sqlite_utils.Database, conn: Connection, project_id: int
) -> dict[str, dict[str, Any]]:
    return {
        r["conversation_id"]: r
        for r in db["tasks"].rows_where("server = ? and project_id = ?", [conn.key, project_id])
    }


def _task_key(conn: Connection, project_id: int, conversation_id: str) -> tuple[str, int, str]:
    return (conn.key, project_id, conversation_id)


def _recover(
    db: sqlite_utils.Database,
    ls: LabelStudio,
    conn: Connection,
    project_id: int,
    names: dict[str, str],
) -> int:
    """Make the tasks table match the server when their counts differ; return rows changed."""
    with _errors(conn, "counting the project's tasks"):
        on_server = ls.projects.get(id=project_id).task_number or 0
    mapped = _mapped(db, conn, project_id)
    if on_server == len(mapped):
        return 0
    server: dict[str, dict[str, Any]] = {}
    ids_by_name = {name: pid for pid, name in names.items()}  # model_version -> prompt id
    with _errors(conn, "reading the project's tasks"):
        for task in ls.tasks.list(project=project_id, page_size=1000, fields="all"):
            cid = (task.data or {}).get("conversation_id")
            if cid is None or cid in server:
                continue
            versions = sorted({
                ids_by_name.get(v, v) for p in (task.predictions or []) if (v := _model_version(p))
            })  # fmt: skip
            server[cid] = {"server": conn.key, "conversation_id": cid, "project_id": project_id,
                           "task_id": task.id, "pushed_at": utc_now().isoformat(),
                           "prompt_versions": dumps(versions), "blind": int(not versions)}
    gone = [cid for cid in mapped if cid not in server]
    fresh = [row for cid, row in server.items()
             if cid not in mapped or mapped[cid]["task_id"] != row["task_id"]]
    with db.conn:
        for cid in gone:
            db["tasks"].delete(_task_key(conn, project_id, cid))
        db["tasks"].upsert_all(fresh, pk=TASK_PK)
    return len(gone) + len(fresh)


def _model_version(prediction: Any) -> str | None:
    if isinstance(prediction, dict):
        return prediction.get("model_version")
    return getattr(prediction, "model_version", None)


def push(
    db_path: Path | str,
    prompt_id: str | None = None,
    project: str = DEFAULT_PROJECT,
    overlap: int | None = None,
    top_values: int | None = lsc.DEFAULT_TOP_VALUES,
    update_config: bool = True,
    batch_size: int = BATCH_SIZE,
    blind_share: float = BLIND_SHARE,
    blind_seed: str = BLIND_SEED,
    progress: Progress = _no_progress,
) -> PushReport:
    """Create or update the project and import tasks with predictions; safe to rerun.

    `prompt_id` limits the push to that prompt version's extractions (and their conversations);
    without it every conversation goes, with every successful extraction as a prediction.
    Each prediction's model_version is its prompt version's name for reviewers
    (`prediction_names`). A conversation already in the project gets only the predictions of
    prompt versions it lacks. Every label is checked against the project's config before
    anything is sent. A stable `blind_share` of conversations (`is_blind`) goes without any
    prediction, then and in later pushes, so anchoring on the pre-filled form can be measured.
    Tasks are imported most uncertain first (`_uncertainty`), the order reviewers get them.
    """
    started = time.perf_counter()
    if overlap is not None and overlap < 1:
        raise LabelStudioError("--overlap must be at least 1")
    if not 0.0 <= blind_share <= 1.0:
        raise LabelStudioError(f"--blind-share must be between 0 and 1, not {blind_share}")
    db = open_existing_db(db_path)
    taxonomy = load_taxonomy()
    if prompt_id is not None:
        prompt_id = resolve_prompt(db, prompt_id)
    newest = prompt_id or _newest_prompt(db)
    names = prediction_names(db)
    with _no_cyclic_gc():
        items, leaves = _items(db, taxonomy, prompt_id, newest, blind_share, blind_seed)
    if instances.isolated(db_path):
        report = _push_isolated(
            db, db_path, project, overlap, items, leaves, taxonomy, top_values, update_config,
            batch_size, newest, names, progress,
        )  # fmt: skip
    else:
        conn, ls = connect(db_path)
        target = _prepare(db, conn, ls, project, _project_settings(overlap), items, leaves,
                          taxonomy, top_values, update_config, names)  # fmt: skip
        report = target.report
        _send(db, target, items, batch_size, newest, names, progress)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


@dataclass
class _Target:
    """One server's project, ready to receive tasks: its connection, client and mapping."""

    conn: Connection
    ls: LabelStudio
    report: PushReport
    mapped: dict[str, dict[str, Any]]


def _prepare(
    db: sqlite_utils.Database,
    conn: Connection,
    ls: LabelStudio,
    project: str,
    settings: dict[str, Any],
    items: Sequence[_Item],
    leaves: set[str],
    taxonomy: Taxonomy,
    top_values: int | None,
    update_config: bool,
    names: dict[str, str],
) -> _Target:
    """Create or update the project, check every label against its config, reconcile tasks."""
    report = PushReport(project=project, project_id=0, url=conn.url, server=conn.key)
    schema = _ensure_project(
        ls, conn, project, taxonomy, leaves, top_values, update_config, settings, report
    )
    _check_labels(items, schema, project)
    report.tasks_recovered = _recover(db, ls, conn, report.project_id, names)
    report.views_reset = _neutral_views(ls, conn, report.project_id)
    return _Target(conn, ls, report, _mapped(db, conn, report.project_id))


def _neutral_views(ls: LabelStudio, conn: Connection, project_id: int) -> int:
    """Clear the filters and ordering of the project's Data Manager tabs; return how many.

    Tabs are shared by every user of a project, and "Label All Tasks" follows the open tab's
    filter and ordering: one reviewer's sort would reorder everyone's queue. Other settings of
    a tab (its title, hidden columns) are kept.
    """
    changed = 0
    with _errors(conn, "resetting the Data Manager tabs"):
        for view in ls.views.list(project=project_id):
            data = dict(view.data or {})
            items = (data.get("filters") or {}).get("items") or []
            if not items and data.get("ordering") in (None, [], NEUTRAL_ORDERING):
                continue
            data["filters"] = {"conjunction": "and", "items": []}
            # Label Studio 1.23 ignores an empty ordering on update (`if ordering and ...` in
            # its ViewSerializer), so neutral is spelled out: by task id, the push order.
            data["ordering"] = NEUTRAL_ORDERING
            ls.views.update(str(view.id), data=data, project=project_id)  # type: ignore[arg-type]
            changed += 1
    return changed


def _send(
    db: sqlite_utils.Database,
    target: _Target,
    items: Sequence[_Item],
    batch_size: int,
    newest: str | None,
    names: dict[str, str],
    progress: Progress,
) -> None:
    """Import the items the project lacks and the predictions its tasks lack."""
    conn, ls, report, mapped = target.conn, target.ls, target.report, target.mapped
    new_items = [i for i in items if i.conversation_id not in mapped]
    extra: list[tuple[_Item, dict[str, Any], list[int]]] = []
    for item in items:
        row = mapped.get(item.conversation_id)
        if row is None:
            continue
        report.tasks_existing += 1
        if row["blind"]:
            report.blind_tasks += 1
            continue  # blind once, blind for good: a prediction now would anchor its reviewers
        have = set(loads(row["prompt_versions"], []))
        todo = [k for k, p in enumerate(item.prompt_ids) if p not in have]
        report.predictions_skipped += len(item.prompt_ids) - len(todo)
        if todo:
            extra.append((item, row, todo))
    total = len(new_items) + len(extra)
    done = 0
    progress(done, total)
    for batch in _batches(new_items, batch_size):
        report.tasks_created += _import_batch(db, ls, conn, report.project_id, batch)
        report.predictions_added += sum(len(i.predictions) for i in batch)
        report.blind_tasks += sum(i.blind for i in batch)
        done += len(batch)
        progress(done, total)
    for batch in _batches(extra, batch_size):
        report.predictions_added += _add_predictions(db, ls, conn, report.project_id, batch)
        done += len(batch)
        progress(done, total)
    # A task that just got the pre-filling version's prediction shows a new pre-fill: its
    # data (which version pre-filled it, that version's evidence) must say so too.
    stale = [(item, row) for item, row, todo in extra
             if newest in (item.prompt_ids[k] for k in todo) and row["prefilled_by"] != newest]
    with _errors(conn, "updating what the tasks say pre-filled them"):
        for item, row in stale:
            ls.tasks.update(id=row["task_id"], data=item.data)
    report.tasks_refreshed = len(stale)
    if newest and any(newest in i.prompt_ids for i in items):
        # The version whose prediction pre-fills a reviewer's form; Label Studio accepts only
        # a version it already holds predictions of, so this comes after the import.
        with _errors(conn, "selecting the predictions shown to reviewers"):
            ls.projects.update(id=report.project_id, model_version=_name(names, newest))
        with db.conn:
            db.execute(
                "update tasks set prefilled_by = ? where server = ? and project_id = ? and "
                "blind = 0 and exists (select 1 from json_each(tasks.prompt_versions) "
                "where value = ?)",
                [newest, conn.key, report.project_id, newest],
            )
        report.prefilled_by = _name(names, newest)


def _rank(conversation_id: str, email: str) -> bytes:
    # Rendezvous hashing: each conversation ranks the reviewers in its own stable order, so
    # assignments are balanced and a reviewer added later takes over only new work.
    return hashlib.sha256(f"{conversation_id}:{email.lower()}".encode()).digest()


def assign(
    conversation_ids: Sequence[str],
    emails: Sequence[str],
    overlap: int,
    holders: dict[str, set[str]],
) -> dict[str, list[str]]:
    """Which reviewers get each conversation: `overlap` of them, keeping those who hold it."""
    out: dict[str, list[str]] = {}
    for cid in conversation_ids:
        have = [e for e in emails if e in holders.get(cid, set())]
        others = sorted((e for e in emails if e not in have), key=lambda e: _rank(cid, e))
        out[cid] = have + others[: max(0, overlap - len(have))]
    return out


def _push_isolated(
    db: sqlite_utils.Database,
    db_path: Path | str,
    project: str,
    overlap: int | None,
    items: Sequence[_Item],
    leaves: set[str],
    taxonomy: Taxonomy,
    top_values: int | None,
    update_config: bool,
    batch_size: int,
    newest: str | None,
    names: dict[str, str],
    progress: Progress,
) -> PushReport:
    """Each conversation to `overlap` reviewers' own instances (default 2, or 1 reviewer)."""
    reviewers = instances.reviewers(db_path)
    k = overlap if overlap is not None else min(2, len(reviewers))
    if k > len(reviewers):
        raise LabelStudioError(
            f"--overlap {k} needs {k} reviewers, and the study has {len(reviewers)}: add them "
            "with `annotator labelstudio add-user EMAIL`"
        )
    # One annotation per task in a reviewer's own project: the overlap is across instances.
    settings = _project_settings(1)
    targets: dict[str, _Target] = {}
    for reviewer in reviewers:
        conn = instances.connection(reviewer)
        targets[reviewer.email] = _prepare(
            db, conn, client(conn), project, settings, items, leaves, taxonomy, top_values,
            update_config, names,
        )  # fmt: skip
    holders: dict[str, set[str]] = defaultdict(set)
    for email, target in targets.items():
        for cid in target.mapped:
            holders[cid].add(email)
    plan = assign([i.conversation_id for i in items], [r.email for r in reviewers], k, holders)
    total = PushReport(project=project, project_id=0, url="", server="isolated reviewers",
                       overlap=k)  # fmt: skip
    for reviewer in reviewers:
        target = targets[reviewer.email]
        mine = [i for i in items if reviewer.email in plan[i.conversation_id]]
        _send(db, target, mine, batch_size, newest, names, progress)
        total.reviewers.append(target.report)
        for name in ("tasks_created", "tasks_existing", "tasks_recovered", "blind_tasks",
                     "predictions_added", "predictions_skipped"):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(target.report, name))
        total.config_values = target.report.config_values
        total.prefilled_by = total.prefilled_by or target.report.prefilled_by
        total.created_project |= target.report.created_project
        total.config_updated |= target.report.config_updated
    return total


def resolve_prompt(db: sqlite_utils.Database, ref: str) -> str:
    """The id of a prompt version with extractions in the study, named any way `--prompt`
    accepts (`prompts.resolve_prompt`: id, id prefix, name/version, file)."""
    from annotator.extract.prompts import resolve_prompt as resolve

    return resolve(ref, db=db, used=True).id


def _newest_prompt(db: sqlite_utils.Database) -> str | None:
    rows = list(db.query(
        "select prompt_id from extractions where status = 'ok' "
        "order by created_at desc limit 1"
    ))
    return rows[0]["prompt_id"] if rows else None


def _check_labels(items: Sequence[_Item], schema: lsc.ConfigSchema, project: str) -> None:
    for item in items:
        for pred in item.predictions:
            problems = lsc.validate(pred, schema)
            if problems:
                raise LabelNotInConfigError(
                    f"{problems[0]} of project {project!r} (conversation "
                    f"{item.conversation_id}, prompt {pred['model_version']}): push without "
                    "--keep-config to add it, or fix the extraction; nothing was sent"
                )


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _import_batch(
    db: sqlite_utils.Database,
    ls: LabelStudio,
    conn: Connection,
    project_id: int,
    batch: Sequence[_Item],
) -> int:
    payload = [{"data": i.data, "predictions": i.predictions} for i in batch]
    with _errors(conn, "importing tasks"):
        response = ls.projects.import_tasks(
            id=project_id, request=payload, return_task_ids=True, request_options=WRITE_ONCE
        )
    # `task_ids` is not among the SDK model's declared fields; the model keeps extra ones
    task_ids = list(response.model_dump().get("task_ids") or [])
    if len(task_ids) != len(batch):
        raise LabelStudioError(
            f"Label Studio returned {len(task_ids)} task ids for {len(batch)} tasks: run "
            "`annotator push` again to reconcile"
        )
    now = utc_now().isoformat()
    rows = [
        {"server": conn.key, "conversation_id": i.conversation_id, "project_id": project_id,
         "task_id": tid, "pushed_at": now, "prompt_versions": dumps(sorted(set(i.prompt_ids))),
         "blind": int(i.blind), "prefilled_by": i.prefilled_by}
        for i, tid in zip(batch, task_ids, strict=True)
    ]  # fmt: skip
    with db.conn:
        db["tasks"].upsert_all(rows, pk=TASK_PK)
    return len(rows)


def _add_predictions(
    db: sqlite_utils.Database,
    ls: LabelStudio,
    conn: Connection,
    project_id: int,
    batch: Sequence[tuple[_Item, dict[str, Any], list[int]]],
) -> int:
    payload = [
        {"task": row["task_id"], **item.predictions[k]}
        for item, row, todo in batch
        for k in todo
    ]
    with _errors(conn, "adding predictions"):
        ls.projects.import_predictions(id=project_id, request=payload, request_options=WRITE_ONCE)
    now = utc_now().isoformat()
    with db.conn:
        for item, row, todo in batch:
            versions = set(loads(row["prompt_versions"], []))
            versions.update(item.prompt_ids[k] for k in todo)
            db["tasks"].update(
                _task_key(conn, project_id, item.conversation_id),
                {"prompt_versions": dumps(sorted(versions)), "pushed_at": now},
            )
    return len(payload)


# --- pull ---------------------------------------------------------------------------------------


@dataclass
class PullReport:
    project: str
    project_id: int
    url: str
    source: str = ""
    annotations: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    restored: int = 0
    cancelled: int = 0
    incomplete: int = 0
    edited_by_other: int = 0
    free_values: int = 0
    foreign_tasks: int = 0
    seconds: float = 0.0
    reviewers: list[PullReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COMPARED = ("conversation_id", "annotator", "labels", "missing", "edited_by", "lead_time",
             "cancelled", "updated_at")  # fmt: skip


def label_source(conn: Connection, project_id: int) -> str:
    """The source of annotations pulled from this project: pull touches only these rows."""
    return f"labelstudio:{conn.key}:{project_id}"


def _export(ls: LabelStudio, conn: Connection, project_id: int) -> list[dict[str, Any]]:
    """Every task with an annotation (skipped ones included), annotators as emails."""
    with _errors(conn, "exporting annotations"):
        snapshot = ls.projects.exports.create(
            project_id,
            title="annotator pull",
            task_filter_options={"only_with_annotations": True},
            annotation_filter_options={"usual": True, "skipped": True, "ground_truth": True},
            serialization_options={
                "predictions": {"only_id": True},
                "drafts": {"only_id": True},
                "annotations__completed_by": {"only_id": False},
            },
        )
        try:
            deadline = time.monotonic() + EXPORT_TIMEOUT
            while snapshot.status not in ("completed", "failed"):
                if time.monotonic() > deadline:
                    raise LabelStudioError(
                        f"the export of project {project_id} on {conn.url} did not finish in "
                        f"{EXPORT_TIMEOUT:.0f} s: try `annotator pull` again later"
                    )
                time.sleep(0.5)
                snapshot = ls.projects.exports.get(project_id, export_pk=snapshot.id)
            if snapshot.status == "failed":
                raise LabelStudioError(
                    f"Label Studio failed to export project {project_id}: see the server log"
                )
            chunks = ls.projects.exports.download(
                project_id, export_pk=snapshot.id, export_type="JSON",
                request_options={"timeout_in_seconds": EXPORT_TIMEOUT},
            )  # fmt: skip
            return orjson.loads(b"".join(chunks))
        finally:
            with contextlib.suppress(ApiError, httpx.HTTPError):
                ls.projects.exports.delete(project_id, export_pk=snapshot.id)


def _user_id(user: Any) -> int | None:
    if isinstance(user, dict):
        return user.get("id")
    return user if isinstance(user, int) else None


def _annotator(completed_by: Any, emails: dict[int, str]) -> str:
    if isinstance(completed_by, dict):
        return completed_by.get("email") or str(completed_by.get("id"))
    return emails.get(completed_by, str(completed_by))


def _user_emails(ls: LabelStudio, conn: Connection) -> dict[int, str]:
    with _errors(conn, "listing users"):
        return {u.id: u.email for u in ls.users.list()}


def _iso(text: str | None) -> str | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()


def _annotation_row(
    ann: dict[str, Any],
    conversation_id: str,
    source: str,
    taxonomy: Taxonomy,
    emails: dict[int, str],
) -> tuple[dict[str, Any], list[str]]:
    parsed = lsc.parse_result(taxonomy, ann.get("result") or [])
    labels: Labels = parsed.labels
    if parsed.notes is not None and "notes" in Labels.model_fields:
        labels = labels.model_copy(update={"notes": parsed.notes})
    cancelled = bool(ann.get("was_cancelled"))
    # Label Studio accepts an empty result through its API (and through forms without
    # `required`): such an annotation is kept, marked incomplete, and never decides gold alone.
    missing = [] if cancelled else labels.missing_fields()
    author = _user_id(ann.get("completed_by"))
    editor = _user_id(ann.get("updated_by"))
    # On a shared server anyone can change anyone's annotation: say who, when it was not the
    # author (the study's own tool account only reads).
    edited_by = emails.get(editor, str(editor)) if editor is not None and editor != author else None
    row = {
        "id": f"{source}:{ann['id']}",
        "conversation_id": conversation_id,
        "annotator": _annotator(ann.get("completed_by"), emails),
        "labels": labels.model_dump_json(),
        "source": source,
        "source_id": str(ann["id"]),
        "missing": dumps(missing),
        "edited_by": edited_by,
        "lead_time": ann.get("lead_time"),
        "cancelled": int(cancelled),
        "deleted": 0,
        "updated_at": _iso(ann.get("updated_at") or ann.get("created_at")),
    }
    return row, parsed.free_values


def _snapshot(row: dict[str, Any], replaced_at: str) -> dict[str, Any]:
    entry = {k: row[k] for k in _COMPARED if k != "conversation_id"}
    entry["labels"] = loads(row["labels"], {})
    entry["missing"] = loads(row["missing"], [])
    entry["deleted"] = bool(row["deleted"])
    entry["replaced_at"] = replaced_at
    return entry


def pull(
    db_path: Path | str,
    project: str = DEFAULT_PROJECT,
    progress: Progress = _no_progress,
) -> PullReport:
    """Bring every annotation of the project into the annotations table; safe to rerun.

    Only rows of this project's source are touched (`label_source`): new ones are inserted; a
    changed one is updated with the replaced version appended to its history; one that is no
    longer on the server is marked deleted (and restored if it returns). Annotations from gold
    files, imports or other projects are never changed.
    """
    started = time.perf_counter()
    db = open_existing_db(db_path)
    taxonomy = load_taxonomy()
    if not instances.isolated(db_path):
        conn, ls = connect(db_path)
        report = _pull_from(db, conn, ls, require_project(ls, conn, project), taxonomy, progress)
        report.seconds = round(time.perf_counter() - started, 3)
        return report
    total = PullReport(project=project, project_id=0, url="", source="isolated reviewers")
    for reviewer in instances.reviewers(db_path):
        conn = instances.connection(reviewer)
        ls = client(conn)
        proj = find_project(ls, conn, project)
        if proj is None:
            continue  # nothing pushed to this reviewer yet
        sub = _pull_from(db, conn, ls, proj, taxonomy, progress)
        total.reviewers.append(sub)
        for name in ("annotations", "new", "updated", "unchanged", "deleted", "restored",
                     "cancelled", "incomplete", "edited_by_other", "free_values",
                     "foreign_tasks"):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(sub, name))
    if not total.reviewers:
        raise ProjectMissingError(
            f"project {project!r} is on no reviewer's Label Studio: run `annotator push "
            f"--project {project!r}` first, or pass the right --project"
        )
    total.seconds = round(time.perf_counter() - started, 3)
    return total


def _pull_from(
    db: sqlite_utils.Database,
    conn: Connection,
    ls: LabelStudio,
    proj: Any,
    taxonomy: Taxonomy,
    progress: Progress,
) -> PullReport:
    source = label_source(conn, proj.id)
    report = PullReport(project=proj.title, project_id=proj.id, url=conn.url, source=source)
    with _no_cyclic_gc():
        tasks = _export(ls, conn, proj.id)
    emails: dict[int, str] = {}
    if any(
        not isinstance(a.get("completed_by"), dict) or a.get("updated_by") is not None
        for t in tasks for a in t["annotations"]
    ):  # fmt: skip
        emails = _user_emails(ls, conn)  # an older server that ignores the serializer option
    incoming: dict[str, dict[str, Any]] = {}
    task_rows: list[dict[str, Any]] = []
    mapped = _mapped(db, conn, proj.id)
    total = len(tasks)
    progress(0, total)
    for n, task in enumerate(tasks, start=1):
        cid = (task.get("data") or {}).get("conversation_id")
        if cid is None:
            report.foreign_tasks += 1  # made on the server, not by push: no conversation
            continue
        if cid not in mapped:
            task_rows.append({"server": conn.key, "conversation_id": cid, "project_id": proj.id,
                              "task_id": task["id"], "pushed_at": None,
                              "prompt_versions": dumps([])})
        for ann in task["annotations"]:
            row, free = _annotation_row(ann, cid, source, taxonomy, emails)
            incoming[row["id"]] = row
            report.free_values += len(free)
            report.cancelled += row["cancelled"]
            report.incomplete += row["missing"] != "[]"
            report.edited_by_other += row["edited_by"] is not None
        if n % 1000 == 0:
            progress(n, total)
    report.annotations = len(incoming)
    _store(db, source, incoming, task_rows, report)
    progress(total, total)
    return report


def _store(
    db: sqlite_utils.Database,
    source: str,
    incoming: dict[str, dict[str, Any]],
    task_rows: list[dict[str, Any]],
    report: PullReport,
) -> None:
    now = utc_now().isoformat()
    # Every row this source ever wrote, and nothing else: ids carry the source as a prefix, and
    # the deleted-check below reads only rows whose source is this one.
    existing = {r["id"]: r for r in db["annotations"].rows_where("source = ?", [source])}
    writes: list[dict[str, Any]] = []
    for aid, row in incoming.items():
        old = existing.get(aid)
        if old is None:
            row["history"] = dumps([])
            writes.append(row)
            report.new += 1
            continue
        same = all(old[k] == row[k] for k in _COMPARED)
        if same and not old["deleted"]:
            report.unchanged += 1
            continue
        history = loads(old["history"], [])
        if same:
            report.restored += 1
            history.append({"event": "restored", "at": now})
        else:
            report.updated += 1
            history.append(_snapshot(old, now))
        row["history"] = dumps(history)
        writes.append(row)
    with db.conn:
        if task_rows:
            db["tasks"].upsert_all(task_rows, pk=TASK_PK)
        if writes:
            db["annotations"].upsert_all(writes, pk="id")
        for aid, old in existing.items():
            if aid in incoming or old["deleted"]:
                continue
            history = loads(old["history"], [])
            history.append({"event": "deleted", "at": now})
            db["annotations"].update(aid, {"deleted": 1, "history": dumps(history)})
            report.deleted += 1


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
        return Reviewer(email=email, user_id=user_id, url=conn.url, password=password,
                        created=created, isolated=True)  # fmt: skip
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
    return Reviewer(email=email, user_id=user_id, url=conn.url, password=password,
                    created=created)
