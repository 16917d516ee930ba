"""Read-only queries over the study database, as plain rows and DataFrames.

The CLI, the Streamlit app and `bench/` read the study only through these functions. Value
lists come back as tuples of names (hashable, what `agreement` takes); the taxonomy node of each
name is resolved by the caller through `taxonomy`, so this module stays a plain reader.
"""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd
import sqlite_utils

ANNOTATION_COLUMNS = [
    "annotation_id",
    "conversation_id",
    "annotator",
    "response_type",
    "ai_values",
    "human_values",
    "subjective",
    "lead_time",
    "cancelled",
    "updated_at",
]
GOLD_COLUMNS = [
    "conversation_id",
    "response_type",
    "ai_values",
    "human_values",
    "subjective",
    "decided_by",
    "decided_at",
]
EXTRACTION_COLUMNS = [
    "conversation_id",
    "prompt_id",
    "model",
    "extractor",
    "status",
    "response_type",
    "ai_values",
    "human_values",
    "subjective",
    "error",
    "cost_usd",
    "created_at",
]


def _count(db: sqlite_utils.Database, sql: str) -> int:
    return int(db.execute(sql).fetchone()[0])


def study_summary(db: sqlite_utils.Database) -> dict[str, int]:
    """How many conversations stand at each stage of the study."""
    return {
        "conversations": _count(db, "select count(*) from conversations"),
        "scrubbed": _count(db, "select count(*) from conversations where scrubbed = 1"),
        "extracted (ok)": _count(db, "select count(*) from extractions where status = 'ok'"),
        "extraction errors": _count(db, "select count(*) from extractions where status = 'error'"),
        "prompt versions used": _count(db, "select count(distinct prompt_id) from extractions"),
        "pushed to Label Studio": _count(db, "select count(*) from tasks"),
        "annotations": _count(db, "select count(*) from annotations where deleted = 0"),
        "annotated conversations": _count(
            db, "select count(distinct conversation_id) from annotations where deleted = 0"
        ),
        "adjudicated (gold)": _count(db, "select count(*) from gold"),
    }


def _names(values: list[Any]) -> tuple[str, ...]:
    """Value names from a JSON list of names or of ValueRef objects, in stored order."""
    return tuple(v["name"] if isinstance(v, dict) else str(v) for v in values)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def annotations_frame(db: sqlite_utils.Database, include_cancelled: bool = False) -> pd.DataFrame:
    """One row per live annotation: who labelled which conversation how."""
    sql = (
        "select id, conversation_id, annotator, labels, lead_time, cancelled, updated_at "
        "from annotations where deleted = 0"
    )
    if not include_cancelled:
        sql += " and cancelled = 0"
    rows = []
    for ident, conv, annotator, labels, lead, cancelled, updated in db.execute(sql):
        data = orjson.loads(labels)
        rows.append(
            (
                ident,
                conv,
                annotator,
                data.get("response_type"),
                _names(data.get("ai_values") or []),
                _names(data.get("human_values") or []),
                data.get("subjective"),
                lead,
                bool(cancelled),
                updated,
            )
        )
    return pd.DataFrame.from_records(rows, columns=ANNOTATION_COLUMNS)


def gold_frame(db: sqlite_utils.Database) -> pd.DataFrame:
    """One row per adjudicated conversation."""
    rows = [
        (
            conv,
            response_type,
            _names(orjson.loads(ai or "[]")),
            _names(orjson.loads(human or "[]")),
            _bool(subjective),
            decided_by,
            decided_at,
        )
        for conv, response_type, ai, human, subjective, decided_by, decided_at in db.execute(
            "select conversation_id, response_type, ai_values, human_values, subjective, "
            "decided_by, decided_at from gold"
        )
    ]
    return pd.DataFrame.from_records(rows, columns=GOLD_COLUMNS)


def extractions_frame(
    db: sqlite_utils.Database, prompt_id: str | None = None, include_errors: bool = False
) -> pd.DataFrame:
    """One row per extraction (conversation x prompt version x model)."""
    sql = (
        "select conversation_id, prompt_id, model, extractor, status, response_type, ai_values, "
        "human_values, subjective, error, cost_usd, created_at from extractions where 1 = 1"
    )
    params: list[Any] = []
    if prompt_id is not None:
        sql += " and prompt_id = ?"
        params.append(prompt_id)
    if not include_errors:
        sql += " and status = 'ok'"
    rows = [
        (
            conv,
            prompt,
            model,
            extractor,
            status,
            response_type,
            _names(orjson.loads(ai or "[]")),
            _names(orjson.loads(human or "[]")),
            _bool(subjective),
            error,
            cost,
            created,
        )
        for (
            conv,
            prompt,
            model,
            extractor,
            status,
            response_type,
            ai,
            human,
            subjective,
            error,
            cost,
            created,
        ) in db.execute(sql, params)
    ]
    return pd.DataFrame.from_records(rows, columns=EXTRACTION_COLUMNS)


def prompt_versions(db: sqlite_utils.Database) -> pd.DataFrame:
    """Every prompt version with extractions: how many, how many failed, cost, first use."""
    return pd.DataFrame.from_records(
        list(
            db.execute(
                "select e.prompt_id, coalesce(p.name, ''), coalesce(p.version, ''), e.model, "
                "e.extractor, sum(e.status = 'ok'), sum(e.status = 'error'), "
                "round(sum(e.cost_usd), 4), min(e.created_at) "
                "from extractions e left join prompts p on p.id = e.prompt_id "
                "group by e.prompt_id, e.model, e.extractor order by min(e.created_at)"
            )
        ),
        columns=[
            "prompt_id",
            "name",
            "version",
            "model",
            "extractor",
            "ok",
            "errors",
            "cost_usd",
            "first_used",
        ],
    )


def conversation_rows(db: sqlite_utils.Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored conversations with these ids (turns decoded), keyed by id."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in db.query(f"select * from conversations where id in ({marks})", chunk):
            row["turns"] = orjson.loads(row["turns"])
            row["metadata"] = orjson.loads(row["metadata"] or "{}")
            found[row["id"]] = row
    return found
