"""Runs through the Message Batches API: requests grouped under the API's size limit, each batch
recorded before it is submitted, polled, and its results collected; an interrupted run
recovers its open batches instead of submitting them again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlite_utils

from annotator.db import (
    dumps,
    loads,
)
from annotator.errors import AnnotatorError
from annotator.extract.run_report import ExtractReport, _Tracker
from annotator.extract.store import Store, _conversation, retry_locked
from annotator.models import PromptVersion, utc_now

MAX_BATCH_BYTES = 200_000_000  # the API's limit is 256 MB per batch
OPEN_BATCH = ("submitting", "in_progress", "ended")


def _now() -> str:
    return utc_now().isoformat()


def _batch_chunks(
    requests: Iterable[dict[str, Any]], size: int
) -> Iterator[list[dict[str, Any]]]:
    """Batches of at most `size` requests and MAX_BATCH_BYTES of JSON, built lazily so that
    only one batch's requests are in memory at a time."""
    chunk: list[dict[str, Any]] = []
    used = 0
    for request in requests:
        n = len(orjson.dumps(request))
        if chunk and (len(chunk) >= size or used + n > MAX_BATCH_BYTES):
            yield chunk
            chunk, used = [], 0
        chunk.append(request)
        used += n
    if chunk:
        yield chunk


def _batch_write(db: sqlite_utils.Database, row_id: str | None, values: dict[str, Any]) -> None:
    """Insert (`row_id` None) or update a batches row in its own transaction, waiting out
    another writer rather than failing after the batch was paid for."""

    def once() -> None:
        with db.conn:
            if row_id is None:
                db["batches"].insert(values)
            else:
                db["batches"].update(row_id, values)

    retry_locked(once)


async def _submit(
    db: sqlite_utils.Database, extractor: Any, prompt: PromptVersion, chunk: list[dict]
) -> dict[str, Any]:
    """Create one batch; its row is committed before the (paid) create call and updated after."""
    row = {
        "id": uuid.uuid4().hex,
        "batch_id": None,
        "prompt_id": prompt.id,
        "model": extractor.model,
        "extractor": extractor.name,
        "status": "submitting",
        "custom_ids": dumps({r["custom_id"]: r["custom_id"] for r in chunk}),
        "request_count": len(chunk),
        "request_counts": None,
        "created_at": _now(),
        "submitted_at": None,
        "ended_at": None,
        "collected_at": None,
        "error": None,
    }
    _batch_write(db, None, row)
    batch = await extractor.create_batch(chunk)
    row.update(batch_id=batch["id"], status="in_progress", submitted_at=_now())
    _batch_write(
        db, row["id"],
        {"batch_id": row["batch_id"], "status": row["status"], "submitted_at": row["submitted_at"]},
    )
    return row


def _open_batches(db: sqlite_utils.Database, prompt_id: str, model: str) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.query(
            "select * from batches where prompt_id = ? and model = ? and status in "
            f"({', '.join('?' for _ in OPEN_BATCH)}) order by created_at",
            [prompt_id, model, *OPEN_BATCH],
        )
    ]


async def recover_batches(db: sqlite_utils.Database, extractor: Any, prompt_id: str) -> None:
    """Settle batches left `submitting` by a run that died mid-create, before pending work is
    chosen: one found at the API is resumed; one never created frees its conversations."""
    if not hasattr(extractor, "recent_batches"):
        return
    for row in _open_batches(db, prompt_id, extractor.model):
        if row["status"] == "submitting":
            await _recover_submitting(extractor, db, row)


async def _recover_submitting(extractor: Any, db: sqlite_utils.Database, row: dict) -> None:
    """A run died between writing the row and learning the batch id: find the batch by its
    creation time and size among recent batches, or conclude it was never created."""
    since = datetime.fromisoformat(row["created_at"]) - timedelta(seconds=5)
    for batch in await extractor.recent_batches(limit=100):
        created = datetime.fromisoformat(batch["created_at"].replace("Z", "+00:00"))
        total = sum((batch.get("request_counts") or {}).values())
        if created >= since and total == row["request_count"]:
            claimed = db.execute(
                "select 1 from batches where batch_id = ?", [batch["id"]]
            ).fetchone()
            if not claimed:
                _batch_write(db, row["id"], {"batch_id": batch["id"], "status": "in_progress"})
                row.update(batch_id=batch["id"], status="in_progress")
                return
    _batch_write(db, row["id"], {"status": "abandoned", "error": "never created"})
    row["status"] = "abandoned"


async def _run_batch(
    db: sqlite_utils.Database,
    extractor: Any,
    prompt: PromptVersion,
    ids: list[str],
    store: Store,
    report: ExtractReport,
    progress: _Tracker,
    poll_interval: float,
    batch_size: int,
) -> None:
    if not hasattr(extractor, "create_batch"):
        raise AnnotatorError(f"the {extractor.name} extractor has no batch mode; drop --batch")
    # `ids` excludes the conversations of these open batches (see select_pending).
    open_rows = _open_batches(db, prompt.id, extractor.model)
    requests = (
        {"custom_id": cid, "params": extractor.params(_conversation(db, cid), prompt)}
        for cid in ids
    )
    for chunk in _batch_chunks(requests, batch_size):
        open_rows.append(await _submit(db, extractor, prompt, chunk))
    report.todo = sum(r["request_count"] for r in open_rows)
    report.batch_ids = [r["batch_id"] for r in open_rows]
    progress.start(f"batch {extractor.model}", report.todo)
    for row in open_rows:
        await _poll(db, extractor, row, poll_interval, progress)
        await _collect(db, extractor, prompt, row, store, report, progress)


async def _poll(
    db: sqlite_utils.Database,
    extractor: Any,
    row: dict,
    poll_interval: float,
    progress: _Tracker,
) -> None:
    if row["status"] == "ended":
        return
    while True:
        batch = await extractor.retrieve_batch(row["batch_id"])
        counts = batch.get("request_counts") or {}
        progress.describe(f"batch …{row['batch_id'][-8:]} {batch['processing_status']}")
        if batch["processing_status"] == "ended":
            _batch_write(
                db,
                row["id"],
                {
                    "status": "ended",
                    "ended_at": batch.get("ended_at") or _now(),
                    "request_counts": dumps(counts),
                },
            )
            row["status"] = "ended"
            return
        _batch_write(db, row["id"], {"request_counts": dumps(counts)})
        await asyncio.sleep(poll_interval)


async def _collect(
    db: sqlite_utils.Database,
    extractor: Any,
    prompt: PromptVersion,
    row: dict,
    store: Store,
    report: ExtractReport,
    progress: _Tracker,
) -> None:
    custom_ids = loads(row["custom_ids"], {})
    # Results already stored by an interrupted collection are not stored twice.
    stored = {
        r[0]
        for r in db.execute(
            "select conversation_id from model_calls where batch_id = ?", [row["batch_id"]]
        )
    }
    async for custom_id, result in extractor.batch_results(row["batch_id"]):
        cid = custom_ids.get(custom_id)
        if cid is None or cid in stored:
            continue
        outcome = extractor.batch_outcome(_conversation(db, cid), prompt, result, row["batch_id"])
        store.save(outcome)
        report.add(outcome)
        stored.add(cid)
        progress.advance()
    # A request the results file does not mention is kept as an error row, not left silently.
    for cid in set(custom_ids.values()) - stored:
        missing = {"type": "missing", "error": {"message": "no result in the batch's results"}}
        outcome = extractor.batch_outcome(_conversation(db, cid), prompt, missing, row["batch_id"])
        store.save(outcome)
        report.add(outcome)
    _batch_write(db, row["id"], {"status": "collected", "collected_at": _now()})
    row["status"] = "collected"
