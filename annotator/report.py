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

from .agreement import (
    MIN_BLIND_CONVERSATIONS,
    AgreementReport,
    AnchoringReport,
    agreement_report,
    anchoring,
)
from .db import loads, optional_bool, row_to_annotation, row_to_extraction, row_to_gold
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


def _count(db: sqlite_utils.Database, sql: str) -> int:
    return int(db.execute(sql).fetchone()[0])


def study_summary(db: sqlite_utils.Database) -> dict[str, int | float]:
    """How many conversations stand at each stage of the study, and what its model calls cost:
    recorded from replies, and estimated for calls sent without a recorded reply (possibly
    paid: a run died, or the reply never came or could not be read)."""
    calls = call_ledger(db.conn)
    return {
        "conversations": _count(db, "select count(*) from conversations"),
        "scrubbed": _count(db, "select count(*) from conversations where scrubbed = 1"),
        "extracted (ok)": _count(db, "select count(*) from extractions where status = 'ok'"),
        "extraction errors": _count(db, "select count(*) from extractions where status = 'error'"),
        "prompt versions used": _count(db, "select count(distinct prompt_id) from extractions"),
        "pushed to Label Studio": _count(db, "select count(distinct conversation_id) from tasks"),
        "annotations": _count(db, "select count(*) from annotations where deleted = 0"),
        "annotated conversations": _count(
            db, "select count(distinct conversation_id) from annotations where deleted = 0"
        ),
        "adjudicated (gold)": _count(db, "select count(*) from gold"),
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


# --- app queries ---
# Read-only queries for the Streamlit app (`annotator/app/`). The app holds no
# SQL: what it shows comes from the frames above and from these functions.

# Published figures of the study the project follows, for side-by-side display. Only numbers
# confirmed in text read for this project are given; None means "not confirmed, shown as
# unavailable". 700,000 / 308,210 and the response-type shares (28.2% strong support, 14.5% mild
# support, 3.0% strong resistance, of conversations) were read in a summary of the paper
# (https://ch-ai-tanya.cyberchitta.cc/raw/papers/source-2025-values-in-the-wild-huang.html), not
# in the paper's own text; the other response types' shares were not found there.
# The top categories' shares are not here: they are read from the released tree
# (`published_category_shares`), not copied by hand.
PUBLISHED_STUDY: dict[str, Any] = {
    "source": (
        "Huang, Durmus, McCain et al. (2025), \"Values in the Wild: Discovering and Analyzing "
        "Values in Real-World Language Model Interactions\", arXiv:2504.15236, Anthropic"
    ),
    "url": "https://arxiv.org/abs/2504.15236",
    "conversations_sampled": 700_000,
    "conversations_subjective": 308_210,
    # Share of the subjective conversations by the AI's response type, in percent.
    "response_type_pct": {
        "strong support": 28.2,
        "mild support": 14.5,
        "neutral": None,
        "reframing": None,
        "mild resistance": None,
        "strong resistance": 3.0,
        "no values": None,
    },
    "category_source": (
        "Anthropic/values-in-the-wild, values_tree.csv, level-3 pct_total_occurrences (CC BY 4.0)"
    ),
}


def published_category_shares() -> dict[str, float]:
    """Released share of all value occurrences per top category, in percent ("Practical": 31.4)."""
    from .taxonomy import load_taxonomy

    return {
        short: float(node.pct_total_occurrences or 0.0)
        for short, node in load_taxonomy().top_categories().items()
    }


def table_signatures(db: sqlite_utils.Database) -> dict[str, str]:
    """A cheap change signature per table (and per prompt version for extractions).

    The app keys what it derives from a table on that table's signature, so adjudicating one
    conversation recomputes what depends on gold and nothing else. Each signature covers what
    every writer of the table changes: conversations are only inserted (count, last rowid);
    extractions are written with insert-or-replace (count and last rowid per prompt and status,
    read from the (prompt_id, status) index); an annotation edit grows its history, a deletion
    or a cancellation sets a flag; a gold decision sets `decided_at` and grows the history.
    """
    one = db.execute
    sigs = {
        "conversations": ":".join(
            map(str, one("select count(*), max(rowid) from conversations").fetchone())
        ),
        "annotations": ":".join(
            map(
                str,
                one(
                    "select count(*), total(deleted), total(cancelled), max(updated_at), "
                    "total(length(history)), total(length(labels)) from annotations"
                ).fetchone(),
            )
        ),
        "gold": ":".join(
            map(
                str,
                one(
                    "select count(*), max(decided_at), total(length(history)), "
                    "total(length(ai_values)), total(length(human_values)), "
                    "total(length(response_type)), total(subjective) from gold"
                ).fetchone(),
            )
        ),
        "tasks": ":".join(map(str, one("select count(*), max(pushed_at) from tasks").fetchone())),
    }
    per_prompt: dict[str, list[str]] = {}
    for prompt, status, n, last in one(
        "select prompt_id, status, count(*), max(rowid) from extractions "
        "group by prompt_id, status order by prompt_id, status"
    ):
        per_prompt.setdefault(prompt, []).append(f"{status}={n}@{last}")
    for prompt, parts in per_prompt.items():
        sigs[f"extractions:{prompt}"] = ",".join(parts)
    return sigs


def prompt_list(db: sqlite_utils.Database) -> pd.DataFrame:
    """Prompt versions with extractions, oldest first: id, name, version, ok and error counts."""
    counts = pd.DataFrame.from_records(
        list(
            db.execute(
                "select prompt_id, sum(status = 'ok'), sum(status = 'error') from extractions "
                "group by prompt_id"
            )
        ),
        columns=["prompt_id", "ok", "errors"],
    )
    meta = pd.DataFrame.from_records(
        list(db.execute("select id, name, version, first_used_at from prompts")),
        columns=["prompt_id", "name", "version", "first_used"],
    )
    frame = counts.merge(meta, on="prompt_id", how="left")
    frame["name"] = frame["name"].fillna("")
    frame["version"] = frame["version"].fillna("")
    frame = frame.sort_values(["first_used", "prompt_id"], na_position="last")
    return frame[["prompt_id", "name", "version", "ok", "errors", "first_used"]].reset_index(
        drop=True
    )


def stage_counts(db: sqlite_utils.Database) -> pd.DataFrame:
    """Conversations by stage: ingested, extracted per prompt, pushed, annotated, adjudicated."""
    one = db.execute
    rows: list[tuple[str, str, int]] = [
        ("ingested", "", _count(db, "select count(*) from conversations"))
    ]
    for prompt, name, version, n in one(
        "select e.prompt_id, p.name, p.version, count(*) from extractions e "
        "left join prompts p on p.id = e.prompt_id where e.status = 'ok' group by e.prompt_id "
        "order by min(e.created_at)"
    ):
        label = f"{name} {version}".strip() or prompt
        rows.append(("extracted", f"{label} ({prompt})" if label != prompt else prompt, n))
    rows.append(("pushed to Label Studio", "",
                 _count(db, "select count(distinct conversation_id) from tasks")))
    rows.append(
        (
            "annotated",
            "",
            _count(
                db,
                "select count(distinct conversation_id) from annotations "
                "where deleted = 0 and cancelled = 0",
            ),
        )
    )
    for who, n in one(
        "select case when decided_by = 'majority' then 'by majority' else 'by a person' end, "
        "count(*) from gold group by 1 order by 1"
    ):
        rows.append(("adjudicated", who, n))
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
    for row in db["annotations"].rows_where("conversation_id = ? and deleted = 0",
                                            [conversation_id], order_by="annotator"):
        a = row_to_annotation(row)
        annotations.append({
            "annotation_id": a.id,
            "annotator": a.annotator,
            **a.labels.model_dump(mode="json", include=_LABEL_FIELDS),
            "lead_time": a.lead_time,
            "cancelled": a.cancelled,
            "updated_at": row["updated_at"],
        })
    gold = None
    for row in db["gold"].rows_where("conversation_id = ?", [conversation_id]):
        g = row_to_gold(row)
        gold = {
            **g.model_dump(mode="json", include=_LABEL_FIELDS),
            "decided_by": g.decided_by,
            "decided_at": row["decided_at"],
            "history": loads(row["history"], []),  # replaced decisions: not part of GoldLabel
        }
    extractions = [
        row_to_extraction(row).model_dump(
            mode="json", include=_LABEL_FIELDS | {"prompt_id", "model", "extractor", "status",
                                                  "error"})
        for row in db["extractions"].rows_where("conversation_id = ?", [conversation_id],
                                                order_by="created_at")
    ]
    task = None
    for project_id, task_id, pushed_at in db.execute(
        "select project_id, task_id, pushed_at from tasks where conversation_id = ?",
        [conversation_id],
    ):
        task = {"project_id": project_id, "task_id": task_id, "pushed_at": pushed_at}
    return {
        "id": conversation_id,
        "turns": found["turns"],
        "source": found["source"],
        "external_id": found["external_id"],
        "metadata": found["metadata"],
        "annotations": annotations,
        "gold": gold,
        "extractions": extractions,
        "task": task,
    }


def label_studio_url(db_path: str) -> str | None:
    """Base URL of the Label Studio server this study uses, if one is known (no secrets).

    LABEL_STUDIO_URL when set, else the study's own local server from its state file.
    """
    from . import config

    configured = config.settings().label_studio_url
    if configured:
        return configured.rstrip("/")
    from .labelstudio_server import read_state

    try:
        state = read_state(db_path)
    except Exception:  # noqa: BLE001 - an unreadable state file just means "no link"
        return None
    return state.url if state is not None and state.port else None


def task_url(base_url: str | None, task: dict[str, Any] | None) -> str | None:
    """Label Studio's address of a task: the project's data manager opened on that task."""
    if not base_url or not task or task.get("task_id") is None:
        return None
    return f"{base_url}/projects/{task['project_id']}/data?task={task['task_id']}"


def conversation_sources(db: sqlite_utils.Database) -> dict[str, int]:
    """Conversations per source (the `source` column set at ingest), most first."""
    return {
        source: n
        for source, n in db.execute(
            "select coalesce(source, ''), count(*) from conversations group by 1 order by 2 desc"
        )
    }
