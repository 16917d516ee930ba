"""Read-only queries over the study database, as plain rows and DataFrames.

The CLI, the Streamlit app and `bench/` read the study through these functions (the app's own
queries, beside these frames, are in `annotator.app.queries`). Value lists come back as tuples
of names (hashable, what `agreement` takes); the taxonomy node of each name is resolved by the
caller through `taxonomy`, so this module stays a plain reader.
"""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd
import sqlite_utils

from .agreement import (
    MIN_BLIND_CONVERSATIONS,
    AgreementReport,
    AnchoringReport,
    agreement_report,
    anchoring,
)
from .db import optional_bool
from .ledger import call_ledger
from .prompts import resolve_used_ids

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


def scalar(db: sqlite_utils.Database, sql: str) -> int:
    """The one number a `select count(...)` query returns."""
    return int(db.execute(sql).fetchone()[0])


def study_summary(db: sqlite_utils.Database) -> dict[str, int | float]:
    """How many conversations stand at each stage of the study, and what its model calls cost:
    recorded from replies, and estimated for calls sent without a recorded reply (possibly
    paid: a run died, or the reply never came or could not be read)."""
    calls = call_ledger(db.conn)
    return {
        "conversations": scalar(db, "select count(*) from conversations"),
        "scrubbed": scalar(db, "select count(*) from conversations where scrubbed = 1"),
        "extracted (ok)": scalar(db, "select count(*) from extractions where status = 'ok'"),
        "extraction errors": scalar(db, "select count(*) from extractions where status = 'error'"),
        "prompt versions used": scalar(db, "select count(distinct prompt_id) from extractions"),
        "pushed to Label Studio": scalar(db, "select count(distinct conversation_id) from tasks"),
        "annotations": scalar(db, "select count(*) from annotations where deleted = 0"),
        "annotated conversations": scalar(
            db, "select count(distinct conversation_id) from annotations where deleted = 0"
        ),
        "adjudicated (gold)": scalar(db, "select count(*) from gold"),
        "model calls": calls.calls,
        "model calls in flight": calls.in_flight_calls,
        "model calls possibly paid": calls.possibly_paid_calls,
        "cost recorded (USD)": round(calls.cost_usd, 4),
        "cost possibly paid (USD, estimate)": round(calls.possibly_paid_usd_estimate, 4),
    }


def _names(values: list[Any]) -> tuple[str, ...]:
    """Value names from a JSON list of names or of ValueRef objects, in stored order."""
    return tuple(v["name"] if isinstance(v, dict) else str(v) for v in values)


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
            optional_bool(subjective),
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
    db: sqlite_utils.Database, prompt_id: str | None = None, include_errors: bool = False,
    pushed_only: bool = False,
) -> pd.DataFrame:
    """One row per extraction (conversation x prompt version x model); `pushed_only`: only of
    conversations pushed to Label Studio (a few thousand of a study's 300,000)."""
    sql = (
        "select conversation_id, prompt_id, model, extractor, status, response_type, ai_values, "
        "human_values, subjective, error, cost_usd, created_at from extractions where 1 = 1"
    )
    if pushed_only:
        sql += " and conversation_id in (select conversation_id from tasks)"
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
            optional_bool(subjective),
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


def study_agreement(
    db: sqlite_utils.Database,
    prompt_ids: list[str] | None = None,
    levels: tuple[int, ...] = (0, 1, 2, 3),
    n_boot: int = 200,
    top_k: int = 50,
    seed: int = 0,
) -> AgreementReport:
    """Inter-annotator and model-human agreement of the study, from its stored labels.

    Value names are mapped to their taxonomy ancestors at each level with the released tree;
    names outside it stay free values. `prompt_ids` may name versions any way `--prompt` does
    (`prompts.resolve_prompt`).
    """
    from .taxonomy import load_taxonomy

    prompt_ids = resolve_used_ids(db, prompt_ids)  # an unknown or ambiguous one is an error
    tree = load_taxonomy()
    extractions = extractions_frame(db)
    if prompt_ids:
        extractions = extractions[extractions["prompt_id"].isin(prompt_ids)]
    return agreement_report(
        annotations_frame(db),
        gold_frame(db),
        extractions,
        {level: tree.level_map(level) for level in levels},
        prompt_ids=prompt_ids or None,
        levels=levels,
        n_boot=n_boot,
        top_k=top_k,
        seed=seed,
    )


REVIEW_COLUMNS = ["conversation_id", "annotator", "blind", "prefilled_by", "response_type",
                  "ai_values"]


def review_annotations_frame(db: sqlite_utils.Database) -> pd.DataFrame:
    """One row per complete, live annotation pulled from Label Studio, with its task: blind
    (pushed without any prediction) or pre-filled, and by which prompt version.

    An annotation belongs to the task of its source's server and project and its conversation.
    Incomplete annotations (a required field left empty) are left out, as `adjudicate` leaves
    them; so are tasks that were neither blind nor pre-filled (no prediction of the pre-filling
    version: an empty form, though not by design) and tasks pushed before either was recorded.
    """
    rows = []
    for conv, annotator, labels, blind, prefilled_by in db.execute(
        "select a.conversation_id, a.annotator, a.labels, t.blind, t.prefilled_by "
        "from annotations a join tasks t on t.conversation_id = a.conversation_id "
        "and a.source = 'labelstudio:' || t.server || ':' || t.project_id "
        "where a.deleted = 0 and a.cancelled = 0 and coalesce(a.missing, '[]') = '[]' "
        "and (t.blind = 1 or t.prefilled_by is not null) "
        "order by a.conversation_id, a.annotator"
    ):
        data = orjson.loads(labels)
        rows.append((conv, annotator, bool(blind), prefilled_by, data.get("response_type"),
                     _names(data.get("ai_values") or [])))
    return pd.DataFrame.from_records(rows, columns=REVIEW_COLUMNS)


def study_anchoring(
    db: sqlite_utils.Database,
    prompt_ids: list[str] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    min_blind: int = MIN_BLIND_CONVERSATIONS,
) -> list[AnchoringReport]:
    """Anchoring per prompt version: its extractions against each Label Studio annotation, on
    pre-filled and on blind tasks (`agreement.anchoring`). Versions with extractions of pushed
    conversations, in order of first use; none when no annotation came from Label Studio.
    `prompt_ids` are resolved as in `study_agreement`."""
    prompt_ids = resolve_used_ids(db, prompt_ids)  # checked even when nothing was reviewed
    reviews = review_annotations_frame(db)
    if reviews.empty:
        return []
    extractions = extractions_frame(db, pushed_only=True)
    # in order of first use, as `prompt_versions` lists them
    order = list(dict.fromkeys(extractions.sort_values("created_at", kind="stable")["prompt_id"]))
    return [
        anchoring(extractions.loc[extractions["prompt_id"] == pid], reviews, prompt_id=pid,
                  min_blind=min_blind, n_boot=n_boot, seed=seed)
        for pid in order
        if not prompt_ids or pid in prompt_ids
    ]
