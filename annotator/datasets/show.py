"""Everything the study knows about one conversation, for `annotator show`.

`find_conversation` turns what a person types (a full id, a unique id prefix) into one id;
`conversation_record` gathers the turns, every prompt version's proposal, every annotation
(deleted, skipped and flagged ones too, each marked, with its note), the gold label (flagged
when labels changed after it), a majority decision new labels re-opened, and the Label Studio
tasks, with a link to each task when its server's address is known.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import sqlite_utils

from annotator.datasets.gold import (
    MAJORITY,
    majority_out_of_date,
    new_labels_since,
    reopened,
)
from annotator.db import loads, row_to_annotation, row_to_gold, stored_turns
from annotator.errors import (
    InputError,
    annotation_row,
    conversation_row,
    extraction_row,
    gold_row,
    reading_row,
)
from annotator.models import Annotation
from annotator.review.instances import task_url

SHOWN_CANDIDATES = 5
# Above every character of an id: `id >= p and id < p || TOP` is "starts with p", on the index.
_TOP = "\U0010ffff"


def id_candidates(db: sqlite_utils.Database, prefix: str, limit: int) -> list[str]:
    """Conversation ids starting with `prefix` (at most `limit`), in id order."""
    return [
        row[0]
        for row in db.execute(
            "select id from conversations where id >= ? and id < ? order by id limit ?",
            [prefix, prefix + _TOP, limit],
        )
    ]


def _listing(ids: list[str], more: bool) -> str:
    return ", ".join(ids[:SHOWN_CANDIDATES]) + (" …" if more else "")


def find_conversation(db: sqlite_utils.Database, ref: str) -> str:
    """The one conversation `ref` names: its full id, its external id (the source's id, or
    file:line) or a unique prefix of its id.

    Unknown or ambiguous: an InputError of one line, naming at most SHOWN_CANDIDATES candidates.
    """
    text = ref.strip()
    if not text:
        raise InputError("no conversation id given")
    if db.execute("select 1 from conversations where id = ?", [text]).fetchone():
        return text
    # the source's own id (or file:line), as a researcher knows the conversation
    named = [cid for (cid,) in db.execute(
        "select id from conversations where external_id = ? order by id limit ?",
        [text, SHOWN_CANDIDATES + 1])]
    if len(named) == 1:
        return named[0]
    if named:
        raise InputError(
            f"external id {text!r} names several conversations: "
            f"{_listing(named, len(named) > SHOWN_CANDIDATES)}; give one of their ids"
        )
    hits = id_candidates(db, text, SHOWN_CANDIDATES + 1)
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise InputError(
            f"conversation id prefix {text!r} is ambiguous: "
            f"{_listing(hits, len(hits) > SHOWN_CANDIDATES)}; type more of it"
        )
    guess = nearest_conversation(db, text)
    if guess is not None:
        raise InputError(f"no conversation {text!r} in this study; did you mean {guess} ?")
    near = id_candidates(db, text[:4], SHOWN_CANDIDATES + 1) if len(text) > 4 else []
    hint = f"; ids starting {text[:4]!r}: {_listing(near, len(near) > SHOWN_CANDIDATES)}" if (
        near) else ""
    raise InputError(f"no conversation {text!r} in this study{hint}")


NEAR_PREFIX = 3  # a guess shares this many first characters with what was typed
NEAR_POOL = 2000  # ids and external ids compared, at most, of each
NEAR_CUTOFF = 0.75


def nearest_conversation(db: sqlite_utils.Database, text: str) -> str | None:
    """The id or external id most like a mistyped `text` (difflib's ratio, at least
    NEAR_CUTOFF), among those sharing its first NEAR_PREFIX characters; a typed prefix is
    compared with as much of each candidate. None when nothing is that close."""
    if len(text) < NEAR_PREFIX:
        return None
    head = text[:NEAR_PREFIX]
    pool = id_candidates(db, head, NEAR_POOL) + [row[0] for row in db.execute(
        "select external_id from conversations where external_id >= ? and external_id < ? "
        "limit ?", [head, head + _TOP, NEAR_POOL])]
    best, best_ratio = None, NEAR_CUTOFF
    matcher = difflib.SequenceMatcher(b=text, autojunk=False)
    for candidate in dict.fromkeys(pool):
        matcher.set_seq1(candidate[:len(text)] if len(candidate) > len(text) else candidate)
        if matcher.ratio() >= best_ratio and (best is None or matcher.ratio() > best_ratio):
            best, best_ratio = candidate, matcher.ratio()
    return best


def prompt_names(db: sqlite_utils.Database) -> dict[str, str]:
    """Each prompt version as reviewers see it in Label Studio: "values/v1 · 83a3bb"."""
    names: dict[str, str] = {}
    for pid, name, version in db.execute("select id, name, version from prompts"):
        short = pid.removeprefix("baseline-")[:6]
        label = f"offline baseline {version}" if name == "baseline" else f"{name}/{version}"
        names[pid] = f"{label} · {short}"
    return names


def _listed(values: Any) -> list[Any]:
    """Stored values, which must be a list: a text would show as its characters and an
    object as its keys, values no one gave (refused, as the models refuse them)."""
    if not isinstance(values, list):
        raise TypeError(f"value names are a list, not {type(values).__name__}")
    return values


def _values(raw: str | None) -> list[dict[str, Any]]:
    return [v if isinstance(v, dict) else {"name": str(v)} for v in _listed(loads(raw, []))]


def _proposal(row: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {
        "prompt_id": row["prompt_id"],
        "prompt": names.get(row["prompt_id"], row["prompt_id"]),
        "model": row["model"],
        "extractor": row["extractor"],
        "status": row["status"],
        "error": row["error"],
        "response_type": row["response_type"],
        "subjective": None if row["subjective"] is None else bool(row["subjective"]),
        "task": row.get("task"),
        "task_description": row.get("task_description"),
        "ai_values": _values(row["ai_values"]),
        "human_values": _values(row["human_values"]),
        "cost_usd": row["cost_usd"],
        "created_at": row["created_at"],
    }


def _annotation(row: dict[str, Any]) -> dict[str, Any]:
    labels = loads(row["labels"], {})
    return {
        "id": row["id"],
        "annotator": row["annotator"],
        "source": row.get("source") or "",
        "response_type": labels.get("response_type"),
        "subjective": labels.get("subjective"),
        "task": labels.get("task"),
        "task_description": labels.get("task_description"),
        "ai_values": _listed(labels.get("ai_values") or []),
        "human_values": _listed(labels.get("human_values") or []),
        "notes": labels.get("notes"),
        "missing": loads(row.get("missing"), []),
        "cancelled": bool(row["cancelled"]),
        "flag": row.get("flag"),
        # counted by adjudication and agreement (`db.VOTES`); a flag raised instead of
        # labels, a skip or a deletion is listed here but is no vote
        "vote": not (row["deleted"] or row["cancelled"]
                     or (row.get("flag") is not None and loads(row.get("missing"), []))),
        "deleted": bool(row["deleted"]),
        "edited_by": row.get("edited_by"),
        "updated_at": row["updated_at"],
    }


def _gold(row: dict[str, Any], live: list[Annotation]) -> dict[str, Any]:
    decided = row_to_gold(row)
    return {
        "ai_values": loads(row["ai_values"], []),
        "human_values": loads(row["human_values"], []),
        "response_type": row["response_type"],
        "subjective": None if row["subjective"] is None else bool(row["subjective"]),
        "task": row.get("task"),
        "task_description": row.get("task_description"),
        "decided_by": row["decided_by"],
        "decided_at": row["decided_at"],
        "from_annotations": loads(row["from_annotations"], []),
        # a person's decision made before the current labels; a majority label they no
        # longer give (not decided: export leaves it out, `adjudicate` re-opens it)
        "new_labels_since": row["decided_by"] != MAJORITY and new_labels_since(
            row.get("labels_seen"), decided.decided_at, live),
        "majority_out_of_date": majority_out_of_date(decided, live)
        if row["decided_by"] == MAJORITY else None,
    }


def conversation_record(
    db: sqlite_utils.Database, ref: str, db_path: Path | None = None
) -> dict[str, Any]:
    """One conversation with everything about it (see the module's docstring). A stored row
    it cannot read (changed by another program) is a one-line error naming the row."""
    cid = find_conversation(db, ref)
    conv = db["conversations"].get(cid)
    names = prompt_names(db)
    proposals = []
    for row in db.query(
        "select * from extractions where conversation_id = ? order by created_at, prompt_id",
        [cid],
    ):
        with reading_row(extraction_row(cid, row["prompt_id"])):
            proposals.append(_proposal(row, names))
    annotations = []
    live = []
    for row in db.query(
        "select * from annotations where conversation_id = ? order by annotator, source, id",
        [cid],
    ):
        with reading_row(annotation_row(row["id"], cid)):
            if not (row["deleted"] or row["cancelled"]):
                live.append(row_to_annotation(row))
            annotations.append(_annotation(row))
    gold = None
    for row in db.query("select * from gold where conversation_id = ?", [cid]):
        with reading_row(gold_row(cid)):
            gold = _gold(row, live)
    tasks = []
    for row in db.query(
        "select * from tasks where conversation_id = ? order by server, project_id", [cid]
    ):
        prefilled = row.get("prefilled_by")
        tasks.append({
            "server": row.get("server") or "local",
            "project_id": row["project_id"],
            "task_id": row["task_id"],
            "pushed_at": row["pushed_at"],
            "blind": bool(row.get("blind")),
            "prefilled_by": prefilled,
            "prefilled_by_name": names.get(prefilled, prefilled) if prefilled else None,
            "url": task_url(db_path, row),
        })
    turns = stored_turns(cid, conv["turns"])
    with reading_row(conversation_row(cid)):
        metadata = loads(conv["metadata"], {})
    return {
        "id": cid,
        "source": conv["source"],
        "external_id": conv["external_id"],
        "scrubbed": bool(conv["scrubbed"]),
        "ingested_at": conv["ingested_at"],
        "metadata": metadata,
        "turns": turns,
        "proposals": proposals,
        "annotations": annotations,
        "gold": gold,
        "reopened": None if gold else reopened(db, cid),
        "tasks": tasks,
    }
