"""Review progress for the lead: per reviewer what was assigned, done, skipped and flagged, when
they last worked and when the study last pulled their annotations; and every flagged or skipped
conversation with its note, so that none is silently lost (`annotator status`, the app's
Annotators page).

What counts (read-only, from the `tasks`, `annotations` and `pulls` tables):

- **assigned**: the tasks pushed to the reviewer. In isolated review each reviewer has a Label
  Studio of their own (server `reviewer:<email>`), so its tasks are theirs. On a shared server
  no task is pushed to anyone in particular: every task of a project counts as assigned to
  each reviewer who has an annotation in that project (Label Studio's overlap may hand them
  fewer); a reviewer with no annotation pulled yet is not known to the study there.
- **done**: submitted annotations (live, not skipped); **skipped**: skipped in Label Studio;
  **flagged**: flagged for the lead, submitted or skipped; **flag only**: flagged with a
  required field empty, which adjudication and agreement do not count as a vote (`db.VOTES`).
- **remaining**: assigned tasks the reviewer has no live annotation of.
- **last activity**: their newest annotation's `updated_at`; **last pulled**: the newest pull
  of a server and project holding their tasks.

Only annotations pulled from Label Studio count towards a reviewer; the flagged and skipped list
holds every live flagged or skipped annotation of any source.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import orjson
import sqlite_utils
from pydantic import BaseModel, Field

from annotator.db import FLAGGED_INSTEAD
from annotator.errors import UNREADABLE_ROW, annotation_row, unreadable_row
from annotator.models import utc_now

LABEL_STUDIO = "labelstudio:"
ISOLATED = "reviewer:"


class ReviewerProgress(BaseModel):
    """One reviewer's progress (see the module's docstring for what each count means)."""

    reviewer: str
    servers: list[str] = Field(default_factory=list)
    assigned: int = 0
    done: int = 0
    skipped: int = 0
    flagged: int = 0
    flag_only: int = 0
    remaining: int = 0
    last_activity: str | None = None
    last_pulled: str | None = None


class FlaggedAnnotation(BaseModel):
    """A flagged or skipped annotation, for the lead: who, why, and whether it is a vote."""

    conversation_id: str
    annotator: str
    source: str
    flag: str | None = None
    skipped: bool = False
    note: str | None = None
    vote: bool = False  # counted by adjudication and agreement (flagged beside full labels)
    updated_at: str | None = None


class ReviewProgress(BaseModel):
    last_pulled: str | None = None
    reviewers: list[ReviewerProgress] = Field(default_factory=list)
    flagged: int = 0
    skipped: int = 0
    by_flag: dict[str, int] = Field(default_factory=dict)
    flagged_or_skipped: list[FlaggedAnnotation] = Field(default_factory=list)


def last_pulled(db: sqlite_utils.Database) -> datetime | None:
    """When the study last pulled annotations from Label Studio (any server), or None."""
    if "pulls" not in db.table_names():
        return None
    row = db.execute("select max(pulled_at) from pulls").fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


def ago(when: datetime | str | None, now: datetime | None = None) -> str:
    """"3 min ago", "2 h ago", "5 days ago", "just now"; "never" for None."""
    if when is None:
        return "never"
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    seconds = max(0.0, ((now or utc_now()) - when).total_seconds())
    if seconds < 60:
        return "just now"
    for size, unit in ((86_400, "day"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''} ago"
    return "just now"  # unreachable: seconds >= 60 here


def _server_project(source: str) -> tuple[str, int] | None:
    """(server key, project id) of a `labelstudio:<server>:<project>` source; keys may hold
    colons (`reviewer:<email>`, a URL with a port), the project id never does."""
    if not source.startswith(LABEL_STUDIO):
        return None
    key, _, project = source[len(LABEL_STUDIO):].rpartition(":")
    return (key, int(project)) if key and project.isdigit() else None


def review_progress(db: sqlite_utils.Database) -> ReviewProgress:
    """Per reviewer progress and the flagged and skipped annotations (module docstring)."""
    tasks: dict[tuple[str, int], set[str]] = defaultdict(set)
    for server, project_id, conversation_id in db.execute(
        "select coalesce(server, 'local'), project_id, conversation_id from tasks"
    ):
        tasks[(server, project_id)].add(conversation_id)
    pulled: dict[tuple[str, int], str] = {}
    if "pulls" in db.table_names():
        pulled = {(s, p): at for s, p, at in db.execute(
            "select server, project_id, max(pulled_at) from pulls group by server, project_id")}

    people: dict[str, ReviewerProgress] = {}
    projects: dict[str, set[tuple[str, int]]] = defaultdict(set)
    touched: dict[str, set[tuple[str, int, str]]] = defaultdict(set)

    def person(email: str) -> ReviewerProgress:
        return people.setdefault(email, ReviewerProgress(reviewer=email))

    for server, project_id in tasks:  # isolated: a reviewer's instance holds only their tasks
        if server.startswith(ISOLATED):
            email = server[len(ISOLATED):]
            person(email)
            projects[email].add((server, project_id))
    for annotator, source, conversation_id, cancelled, flag, flag_only, updated in db.execute(
        f"select annotator, source, conversation_id, cancelled, flag, {FLAGGED_INSTEAD}, "
        "updated_at from annotations where deleted = 0 and source like 'labelstudio:%'"
    ):
        where = _server_project(source or "")
        if where is None:
            continue
        p = person(annotator)
        projects[annotator].add(where)
        touched[annotator].add((*where, conversation_id))
        p.skipped += bool(cancelled)
        p.done += not cancelled
        p.flagged += flag is not None
        p.flag_only += bool(flag_only) and not cancelled
        if updated and (p.last_activity is None or updated > p.last_activity):
            p.last_activity = updated
    for email, p in people.items():
        own = projects[email]
        assigned = {(s, pid, c) for s, pid in own for c in tasks.get((s, pid), ())}
        p.assigned = len(assigned)
        p.remaining = len(assigned - touched[email])
        p.servers = sorted({s for s, _ in own})
        times = [pulled[k] for k in own if k in pulled]
        p.last_pulled = max(times) if times else None

    listed = [_flagged(row) for row in db.query(
        "select id, conversation_id, annotator, source, flag, cancelled, missing, labels, "
        "updated_at from annotations where deleted = 0 and (flag is not null or cancelled = 1) "
        "order by updated_at desc, conversation_id, annotator")]
    by_flag: dict[str, int] = defaultdict(int)
    for item in listed:
        if item.flag is not None:
            by_flag[item.flag] += 1
    newest = last_pulled(db)
    return ReviewProgress(
        last_pulled=newest.isoformat() if newest else None,
        reviewers=sorted(people.values(), key=lambda r: r.reviewer.lower()),
        flagged=sum(i.flag is not None for i in listed),
        skipped=sum(i.skipped for i in listed),
        by_flag=dict(sorted(by_flag.items())),
        flagged_or_skipped=listed,
    )


def _flagged(row: dict) -> FlaggedAnnotation:
    try:
        note = orjson.loads(row["labels"] or "{}").get("notes")
    except UNREADABLE_ROW as exc:
        raise unreadable_row(annotation_row(row["id"], row["conversation_id"]), exc) from exc
    skipped = bool(row["cancelled"])
    incomplete = (row["missing"] or "[]") != "[]"
    return FlaggedAnnotation(
        conversation_id=row["conversation_id"],
        annotator=row["annotator"],
        source=row["source"] or "",
        flag=row["flag"],
        skipped=skipped,
        note=note,
        vote=not skipped and not incomplete,
        updated_at=row["updated_at"],
    )
