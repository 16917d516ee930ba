"""Push: conversations become Label Studio tasks with the model's labels as predictions (or none,
for the blind share that measures anchoring), in one project per study or, for isolated review,
one instance per reviewer; an interrupted push is reconciled from the server on the next one.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from annotator.db import dumps, loads, open_existing_db, row_to_extraction
from annotator.extract.prompts import NOT_SCRUB
from annotator.extract.scrub_pass import check_cleared
from annotator.extract.tasks import load_task_list
from annotator.models import Extraction, utc_now
from annotator.review import instances
from annotator.review import interface as lsc
from annotator.review.server import (
    Connection,
    LabelStudioError,
)
from annotator.review.sync import (
    BATCH_SIZE,
    BLIND_SEED,
    BLIND_SHARE,
    DEFAULT_PROJECT,
    NEUTRAL_ORDERING,
    TASK_PK,
    WRITE_ONCE,
    LabelNotInConfigError,
    LabelStudio,
    Progress,
    _errors,
    _no_cyclic_gc,
    _no_progress,
    _project_settings,
    client,
    connect,
    find_project,
)
from annotator.taxonomy import Taxonomy, load_taxonomy

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
    where, params = f"status = 'ok' and {NOT_SCRUB}", []  # a scrub pass has no labels
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
    task_list = load_task_list()
    if project is None:
        values = lsc.config_values(taxonomy, top_values, leaves)
        with _errors(conn, f"creating project {title!r}"):
            project = ls.projects.create(
                title=title,
                description="Values in conversations: review the model's proposed labels.",
                label_config=lsc.label_config(taxonomy, values, task_list),
                **settings,
            )
            ls.views.create(project=project.id, data=lsc.task_list_view())  # a readable list
        report.created_project = True
        report.project_id = project.id
        report.config_values = len(values)
        return lsc.parse_config(lsc.label_config(taxonomy, values, task_list))
    report.project_id = project.id
    schema = lsc.parse_config(project.label_config or "<View/>")
    wanted = lsc.config_values(taxonomy, top_values, leaves)
    had_tasks = schema.choices.get(lsc.TASK, set())
    if update_config and not (wanted <= schema.leaf_ids and set(task_list.names) <= had_tasks):
        # The config only grows: dropping a value (or a task category) could orphan
        # annotations that use it.
        values = schema.leaf_ids | wanted
        tasks = lsc.with_task_names(task_list, sorted(had_tasks))
        settings = {**settings, "label_config": lsc.label_config(taxonomy, values, tasks)}
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
    check_cleared(db, [i.conversation_id for i in items])  # before any server sees one
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
        f"select prompt_id from extractions where status = 'ok' and {NOT_SCRUB} "
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
