"""Pull: reviewers' annotations back into the study, each row under its project's source; a
change keeps what it replaced in the row's history, and only the project's own rows are
marked deleted.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlite_utils

from annotator.db import dumps, loads, open_existing_db
from annotator.models import Labels, utc_now
from annotator.review import instances
from annotator.review import interface as lsc
from annotator.review.push import (
    _mapped,
)
from annotator.review.server import (
    Connection,
    LabelStudioError,
)
from annotator.review.sync import (
    DEFAULT_PROJECT,
    EXPORT_TIMEOUT,
    TASK_PK,
    ApiError,
    LabelStudio,
    Progress,
    ProjectMissingError,
    _errors,
    _no_cyclic_gc,
    _no_progress,
    client,
    connect,
    find_project,
    require_project,
)
from annotator.taxonomy import Taxonomy, load_taxonomy

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
    flagged: int = 0
    incomplete: int = 0
    edited_by_other: int = 0
    free_values: int = 0
    foreign_tasks: int = 0
    seconds: float = 0.0
    reviewers: list[PullReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COMPARED = ("conversation_id", "annotator", "labels", "missing", "edited_by", "lead_time",
             "cancelled", "updated_at", "flag")  # fmt: skip


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
    # Flagged as well, it is a flag raised instead of labels (`db.FLAGGED_INSTEAD`): no vote.
    # A skipped task keeps its result too: the flag and the note typed before Skip.
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
        "flag": parsed.flag,
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
    entry["flag"] = row.get("flag")
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
                     "cancelled", "flagged", "incomplete", "edited_by_other", "free_values",
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
            report.flagged += row["flag"] is not None
            report.incomplete += row["missing"] != "[]"
            report.edited_by_other += row["edited_by"] is not None
        if n % 1000 == 0:
            progress(n, total)
    report.annotations = len(incoming)
    _store(db, source, incoming, task_rows, report, (conn.key, proj.id))
    progress(total, total)
    return report


def _store(
    db: sqlite_utils.Database,
    source: str,
    incoming: dict[str, dict[str, Any]],
    task_rows: list[dict[str, Any]],
    report: PullReport,
    server_project: tuple[str, int],
) -> None:
    """Write what one project's export brought, and record the pull (the `pulls` table: when
    the study last heard from that server, per reviewer in isolated review)."""
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
        # Labels compare as labels: a row stored before a field existed (the task) is the same.
        same = all(old[k] == row[k] for k in _COMPARED if k != "labels") and Labels.same_json(
            old["labels"], row["labels"])
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
        db["pulls"].insert({
            "server": server_project[0], "project_id": server_project[1], "source": source,
            "pulled_at": now, "annotations": report.annotations, "new": report.new,
            "updated": report.updated, "deleted": report.deleted,
        })
