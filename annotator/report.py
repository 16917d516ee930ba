"""Read-only queries over the study database, as plain rows and DataFrames."""

from __future__ import annotations

import sqlite_utils


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
