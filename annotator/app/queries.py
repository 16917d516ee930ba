"""Read-only queries for the app's pages and cache, beside `annotator.measure.frames`: the
app holds no SQL, what it shows comes from those frames and from these functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlite_utils

from annotator.datasets.gold import MAJORITY, new_labels_since, reopened
from annotator.db import VOTES, loads, row_to_annotation, row_to_extraction, row_to_gold
from annotator.errors import annotation_row, extraction_row, gold_row, reading_row
from annotator.measure.frames import conversation_rows, scalar

StageRow = tuple[str, str, int]  # stage, detail, conversations


def _ingested(db: sqlite_utils.Database) -> list[StageRow]:
    return [("ingested", "", scalar(db, "select count(*) from conversations"))]


def _extracted(db: sqlite_utils.Database) -> list[StageRow]:
    rows: list[StageRow] = []
    for prompt, name, version, n in db.execute(
        "select e.prompt_id, p.name, p.version, count(*) from extractions e "
        "left join prompts p on p.id = e.prompt_id where e.status = 'ok' group by e.prompt_id "
        "order by min(e.created_at)"
    ):
        label = f"{name} {version}".strip() or prompt
        rows.append(("extracted", f"{label} ({prompt})" if label != prompt else prompt, n))
    return rows


def _pushed(db: sqlite_utils.Database) -> list[StageRow]:
    return [("pushed to Label Studio", "",
             scalar(db, "select count(distinct conversation_id) from tasks"))]


def _annotated(db: sqlite_utils.Database) -> list[StageRow]:
    return [("annotated", "", scalar(
        db, f"select count(distinct conversation_id) from annotations where {VOTES}"))]


def _adjudicated(db: sqlite_utils.Database) -> list[StageRow]:
    return [("adjudicated", who, n) for who, n in db.execute(
        f"select case when decided_by = '{MAJORITY}' then 'by majority' else 'by a person' end, "
        "count(*) from gold group by 1 order by 1")]


# each stage, in order: how its rows are counted, and the tables (as `table_signatures` names
# them; "extractions" for every version's) they are counted from
STAGES = {
    "ingested": (_ingested, ("conversations",)),
    "extracted": (_extracted, ("extractions",)),
    "pushed to Label Studio": (_pushed, ("tasks",)),
    "annotated": (_annotated, ("annotations",)),
    "adjudicated": (_adjudicated, ("gold",)),
}


def stage_counts(db: sqlite_utils.Database,
                 kept: Mapping[str, list[StageRow]] | None = None) -> pd.DataFrame:
    """Conversations by stage: ingested, extracted per prompt, pushed, annotated, adjudicated.
    `kept`: a stage's rows as counted before, when the tables it counts have not changed
    since (`STAGES`), not counted again."""
    kept = kept or {}
    rows = [row for stage, (count, _) in STAGES.items()
            for row in (kept[stage] if stage in kept else count(db))]
    return pd.DataFrame.from_records(rows, columns=["stage", "detail", "conversations"])


_LABEL_FIELDS = {"response_type", "ai_values", "human_values", "subjective"}


def conversation_detail(db: sqlite_utils.Database, conversation_id: str) -> dict[str, Any] | None:
    """One conversation with every source's labels: turns, annotations, gold, extractions.

    Rows are decoded by `db.row_to_*`. Extraction values keep their ValueRef fields (name,
    node_id, path, evidence, score), so the app can highlight each value's evidence quote in
    the dialogue.
    """
    found = conversation_rows(db, [conversation_id]).get(conversation_id)
    if found is None:
        return None
    annotations = []
    live = []
    for row in db["annotations"].rows_where("conversation_id = ? and deleted = 0",
                                            [conversation_id], order_by="annotator"):
        with reading_row(annotation_row(row["id"], conversation_id)):
            a = row_to_annotation(row)
        live += [] if a.cancelled else [a]
        annotations.append({
            "annotation_id": a.id,
            "annotator": a.annotator,
            **a.labels.model_dump(mode="json", include=_LABEL_FIELDS),
            "lead_time": a.lead_time,
            "cancelled": a.cancelled,
            "edited_by": a.edited_by if a.edited_by_other else None,  # not the author's labels
            "updated_at": row["updated_at"],
        })
    gold = None
    for row in db["gold"].rows_where("conversation_id = ?", [conversation_id]):
        with reading_row(gold_row(conversation_id)):
            g = row_to_gold(row)
        gold = {
            **g.model_dump(mode="json", include=_LABEL_FIELDS),
            "decided_by": g.decided_by,
            "decided_at": row["decided_at"],
            "history": loads(row["history"], []),  # replaced decisions: not part of GoldLabel
            "new_labels_since": g.decided_by != MAJORITY and new_labels_since(
                row.get("labels_seen"), g.decided_at, live),
        }
    was = None if gold else reopened(db, conversation_id)  # a majority decision new labels undid
    extractions = []
    for row in db["extractions"].rows_where("conversation_id = ?", [conversation_id],
                                            order_by="created_at"):
        with reading_row(extraction_row(conversation_id, row["prompt_id"])):
            extractions.append(row_to_extraction(row).model_dump(
                mode="json", include=_LABEL_FIELDS | {"prompt_id", "model", "extractor",
                                                      "status", "error"}))
    # every Label Studio task of the conversation (one per reviewer's instance in isolated
    # review), with its server, so `review.instances.task_url` finds each one's address
    tasks = [
        {"server": server, "project_id": project_id, "task_id": task_id, "pushed_at": pushed_at}
        for server, project_id, task_id, pushed_at in db.execute(
            "select server, project_id, task_id, pushed_at from tasks where conversation_id = ? "
            "order by pushed_at, server",
            [conversation_id],
        )
    ]
    return {
        "id": conversation_id,
        "turns": found["turns"],
        "source": found["source"],
        "external_id": found["external_id"],
        "metadata": found["metadata"],
        "annotations": annotations,
        "gold": gold,
        "reopened": was,
        "extractions": extractions,
        "tasks": tasks,
    }


def conversation_sources(db: sqlite_utils.Database) -> dict[str, int]:
    """Conversations per source (the `source` column set at ingest), most first."""
    return {
        source: n
        for source, n in db.execute(
            "select coalesce(source, ''), count(*) from conversations group by 1 order by 2 desc"
        )
    }
