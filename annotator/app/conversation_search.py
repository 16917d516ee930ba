"""Find conversations by what a person remembers of them: an id prefix (as printed anywhere),
a Label Studio task number, the source's own id, or words from the dialogue; each hit with a
short snippet to recognise it by.

Built for the app's picker on a study of 300,000 conversations: every lookup is one SQL query
with a LIMIT, so nothing is loaded whole. An id prefix is a range on the primary key; a task
number is read from the tasks table; words are matched in the stored JSON of the turns (with
the query encoded as that JSON encodes text, so quotes and newlines match too) and the
scan stops at the LIMIT-th candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import orjson
import sqlite_utils
from pydantic import BaseModel

from annotator.db import stored_turns

SNIPPET_CHARS = 90
_ID_CHARS = re.compile(r"^[0-9a-fA-F:_-]+$")
_SPACE = re.compile(r"\s+")


class ConversationHit(BaseModel):
    """One conversation a search found, and how."""

    conversation_id: str
    matched: Literal["task", "id", "external id", "text"]
    task_id: int | None = None
    snippet: str = ""


def _flat(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def snippet(turns: Sequence[dict], query: str = "", width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of the dialogue, as plain text on one line: around the first
    occurrence of `query` (ignoring case) when there is one, else from the start."""
    texts = [(str(t.get("role", "")), _flat(str(t.get("text", "")))) for t in turns]
    needle = _flat(query)
    if needle:
        for role, text in texts:
            # lower(), not casefold(): it keeps positions (casefold turns ß into ss)
            folded = text.lower()
            at = folded.find(needle.lower()) if len(folded) == len(text) else text.find(needle)
            if at >= 0:
                start = max(0, at - (width - len(needle)) // 2)
                piece = text[start:start + width]
                return (f"{role}: " + ("…" if start else "") + piece
                        + ("…" if start + width < len(text) else ""))
    role, text = next(((r, t) for r, t in texts if t), ("", ""))
    cut = text[:width]
    return f"{role}: {cut}{'…' if len(text) > width else ''}" if text else ""


def _like(text: str) -> str:
    """`text` as it appears inside the stored JSON of a turn, as a LIKE pattern."""
    encoded = orjson.dumps(text).decode()[1:-1]
    escaped = encoded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _tasks(db: sqlite_utils.Database, ids: Sequence[str]) -> dict[str, int]:
    if not ids or "tasks" not in db.table_names():
        return {}
    marks = ",".join("?" * len(ids))
    out: dict[str, int] = {}
    # one task per server (each reviewer's instance numbers its own): the first is shown
    for cid, task in db.execute(
        f"select conversation_id, task_id from tasks where conversation_id in ({marks}) "
        "order by server, project_id", list(ids)):
        out.setdefault(cid, task)
    return out


def search_conversations(
    db: sqlite_utils.Database, query: str, limit: int = 50
) -> list[ConversationHit]:
    """Up to `limit` conversations matching `query`: by task number and id prefix; when
    neither matches, by the source's id and text. An empty query finds nothing."""
    query = query.strip()
    if not query or limit < 1:
        return []
    found: dict[str, ConversationHit] = {}
    rows: dict[str, str] = {}

    def add(cid: str, how: str, turns: str | None = None, task: int | None = None) -> None:
        if cid not in found and len(found) < limit:
            found[cid] = ConversationHit(conversation_id=cid, matched=how, task_id=task)
            if turns is not None:
                rows[cid] = turns

    number = query.removeprefix("#").strip()
    if number.isdigit() and "tasks" in db.table_names():
        for cid, task in db.execute(
            "select conversation_id, task_id from tasks where task_id = ? limit ?",
            [int(number), limit],
        ):
            add(cid, "task", task=task)
    if _ID_CHARS.match(query):
        low = query.lower()
        # a range on the primary key: the index answers it, however large the study
        for cid, turns in db.execute(
            "select id, turns from conversations where id >= ? and id < ? order by id limit ?",
            [low, low + "\U0010ffff", limit],
        ):
            add(cid, "id", turns)
    if not found:
        # Only when no id or task matched (a hex prefix is rarely a word): one pass over the
        # table that stops at the limit. LIKE ignores case for ASCII; the turns' JSON keys
        # ("role", "text") can match too, so candidates are checked below.
        for cid, turns, external in db.execute(
            "select id, turns, external_id from conversations "
            "where external_id = ? or turns like ? escape '\\' limit ?",
            [query, _like(query), 2 * limit],
        ):
            if external == query:
                add(cid, "external id", turns)
            elif any(query.casefold() in str(t.get("text", "")).casefold()
                     for t in stored_turns(cid, turns)):
                add(cid, "text", turns)
    missing = [cid for cid in found if cid not in rows]
    if missing:
        marks = ",".join("?" * len(missing))
        rows.update(db.execute(f"select id, turns from conversations where id in ({marks})",
                               missing).fetchall())
    tasks = _tasks(db, list(found))
    for cid, hit in found.items():
        hit.task_id = hit.task_id if hit.task_id is not None else tasks.get(cid)
        hit.snippet = snippet(stored_turns(cid, rows.get(cid)),
                              query if hit.matched == "text" else "")
    return list(found.values())


def conversation_snippets(
    db: sqlite_utils.Database, conversation_ids: Sequence[str]
) -> dict[str, ConversationHit]:
    """The snippet and task number of each given conversation (those in the study)."""
    ids = list(dict.fromkeys(conversation_ids))
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = dict(db.execute(f"select id, turns from conversations where id in ({marks})",
                           ids).fetchall())
    tasks = _tasks(db, ids)
    return {cid: ConversationHit(conversation_id=cid, matched="id", task_id=tasks.get(cid),
                                 snippet=snippet(stored_turns(cid, rows[cid])))
            for cid in ids if cid in rows}
