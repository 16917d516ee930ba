"""Where a run keeps what it learns: one writer thread per run commits extractions, model calls and
batch rows in order, retrying a locked study; a paid call is committed as in flight before it
is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from annotator.db import (
    dumps,
    extraction_to_row,
    open_db,
    row_to_conversation,
)
from annotator.errors import AnnotatorError
from annotator.extract import ledger
from annotator.extract.extractors import (
    Outcome,
)
from annotator.extract.ledger import RunOwner
from annotator.extract.pricing import PriceTable
from annotator.models import Conversation, ModelCall

# --- storage ---------------------------------------------------------------------------------

DEFAULT_BUSY_TIMEOUT = 30.0  # seconds SQLite waits for another writer before we back off
LOCK_BACKOFF_START, LOCK_BACKOFF_MAX = 0.05, 2.0  # seconds between tries on a locked study




def _insert_sql(table: str, columns: Iterable[str], verb: str = "insert or replace") -> str:
    cols = list(columns)
    return (
        f"{verb} into [{table}] ({', '.join(f'[{c}]' for c in cols)}) "
        f"values ({', '.join('?' for _ in cols)})"
    )


def is_locked(exc: BaseException) -> bool:
    """Whether an SQLite error means another connection holds the lock (worth waiting for)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def retry_locked(write: Callable[[], Any]) -> Any:
    """Run a write (its own transaction) until the database lets it: SQLite's busy_timeout
    waits first, then this backs off and tries again, without end. A locked study delays a
    run; it must never drop a result that has been paid for."""
    delay = LOCK_BACKOFF_START
    while True:
        try:
            return write()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
        time.sleep(delay)
        delay = min(delay * 2, LOCK_BACKOFF_MAX)


@dataclass
class _Op:
    """A unit of work for the writer: `apply(conn)` inside a transaction; `done` gets the result
    or the failure once it is committed (or not)."""

    apply: Callable[[sqlite3.Connection], Any]
    done: Callable[[Any, BaseException | None], None] | None = None


class Store:
    """The run's only writer, and the journal of its model calls.

    A writer thread with its own connection commits, in arrival order and as soon as it is
    free, whatever was queued: a call about to be sent ("in_flight", `sending`, awaited before
    the call goes out), then each outcome (the extraction with its calls completed, in one
    transaction). Several queued items share a commit (group commit), so the event loop never
    waits on the disk for longer than one commit. So a `kill -9` loses no record of a paid
    call: at worst the calls in flight stay "in_flight", and the next run marks them possibly
    paid. A locked database (another writer) is waited for: SQLite's busy_timeout, then
    retries with backoff for as long as it takes; the run is slowed, nothing is dropped.
    The writer also renews the run's lease, so a live run's claims never expire.
    """

    def __init__(
        self,
        path: Path,
        prices: PriceTable,
        owner: RunOwner,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        lease: float = ledger.DEFAULT_LEASE,
    ) -> None:
        self.prices = prices
        self.owner = owner
        self.lease = lease
        self.lock_wait_seconds = 0.0  # time spent waiting for other writers beyond the first try
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._extraction_sql: str | None = None
        self._call_sql: str | None = None
        self._failure: BaseException | None = None
        self._renewed = time.monotonic()
        # the study's own settings (WAL, synchronous=normal, ...) from db.open_db; this writer
        # begins and commits its transactions itself, and waits for other writers its own time
        self._conn = open_db(path, check_same_thread=False).conn
        self._conn.isolation_level = None
        self._conn.execute(f"pragma busy_timeout={int(busy_timeout * 1000)}")
        self._thread = threading.Thread(target=self._write, name="extract-store", daemon=True)
        self._thread.start()

    def call_row(self, call: ModelCall) -> dict[str, Any]:
        usage = (call.response or {}).get("usage") or {}
        read = int(usage.get("cache_read_input_tokens") or 0)
        write = int(usage.get("cache_creation_input_tokens") or 0)
        fresh = int(usage.get("input_tokens") or 0)
        return {
            "conversation_id": call.conversation_id,
            "prompt_id": call.prompt_id,
            "model": call.model,
            "request": dumps(call.request),
            "response": dumps(call.response) if call.response is not None else None,
            "status": call.status,
            "input_tokens": call.input_tokens,
            "output_tokens": call.output_tokens,
            "duration_ms": round(call.duration_ms, 3),
            "batch_id": call.batch_id,
            "created_at": call.created_at.isoformat(),
            "cache_read_tokens": read,
            "cache_write_tokens": write,
            "cost_usd": self.prices.cost(
                call.model, fresh, call.output_tokens, read, write, batch=call.batch_id is not None
            ),
            "run_id": self.owner.id,
            "estimated_cost_usd": call.estimated_cost_usd,
        }

    # --- the journal ----------------------------------------------------------------------

    async def sending(self, call: ModelCall) -> int | None:
        """Commit `call` as in flight before it is sent; its row id, or None if this run no
        longer holds the conversation (then it must not be sent)."""
        row = self.call_row(call)
        sql = self._insert_call_sql(row)
        key = (call.conversation_id, call.prompt_id, call.model)

        def apply(conn: sqlite3.Connection) -> int | None:
            if not ledger.holds(conn, self.owner, *key):  # type: ignore[arg-type]
                return None
            return conn.execute(sql, list(row.values())).lastrowid

        return await self.run(apply)

    def save(self, outcome: Outcome) -> None:
        """Queue an outcome: the extraction row, its calls completed (or inserted, for batch
        results), and the claim released, in one transaction."""
        self._check()
        row = extraction_to_row(outcome.extraction)
        if self._extraction_sql is None:
            self._extraction_sql = _insert_sql("extractions", row)
        sql = self._extraction_sql
        calls = self._call_writes(outcome.calls)
        e = outcome.extraction
        key = (e.conversation_id, e.prompt_id, e.model)

        def apply(conn: sqlite3.Connection) -> None:
            conn.execute(sql, list(row.values()))
            for statement, values in calls:
                conn.execute(statement, values)
            ledger.release(conn, self.owner, *key)

        self._queue.put(_Op(apply))

    def save_calls(self, calls: list[ModelCall]) -> None:
        """Queue the completion of calls that produced no extraction (the run stopped)."""
        writes = self._call_writes(calls)

        def apply(conn: sqlite3.Connection) -> None:
            for statement, values in writes:
                conn.execute(statement, values)

        self._queue.put(_Op(apply))

    def _insert_call_sql(self, row: dict[str, Any]) -> str:
        if self._call_sql is None:
            self._call_sql = _insert_sql("model_calls", row, "insert")
        return self._call_sql

    def _call_writes(self, calls: list[ModelCall]) -> list[tuple[str, list[Any]]]:
        """SQL for each call: an update of its in-flight row, or an insert if it has none."""
        writes = []
        for call in calls:
            row = self.call_row(call)
            if call.id is None:
                writes.append((self._insert_call_sql(row), list(row.values())))
                continue
            done = {k: row[k] for k in _COMPLETED}
            writes.append((_COMPLETE_SQL, [*done.values(), call.id]))
        return writes

    # --- running writes -------------------------------------------------------------------

    async def run(self, apply: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `apply` in the writer's next transaction; its result once committed."""
        self._check()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def done(result: Any, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle_future, future, result, error)

        self._queue.put(_Op(apply, done))
        return await future

    def run_sync(self, apply: Callable[[sqlite3.Connection], Any]) -> Any:
        """`run` for code outside the event loop (or before its work starts)."""
        self._check()
        finished = threading.Event()
        box: list[Any] = [None, None]

        def done(result: Any, error: BaseException | None) -> None:
            box[0], box[1] = result, error
            finished.set()

        self._queue.put(_Op(apply, done))
        finished.wait()
        if box[1] is not None:
            raise self._error(box[1]) from box[1]
        return box[0]

    def _check(self) -> None:
        if self._failure is not None:
            raise self._error(self._failure) from self._failure

    @staticmethod
    def _error(exc: BaseException) -> AnnotatorError:
        return exc if isinstance(exc, AnnotatorError) else AnnotatorError(
            f"cannot write results: {exc}"
        )

    def _write(self) -> None:
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=self.lease / 3)
            except queue.Empty:
                item = _Op(lambda conn: None)  # nothing to write: still renew the lease
            if item is None:
                break
            ops = [item]
            while True:  # whatever arrived during the last commit goes into this one
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                ops.append(more)
            self._commit(ops)

    def _commit(self, ops: list[_Op]) -> None:
        results: list[Any] = []
        error = self._failure
        if error is None:
            try:
                results = self._transaction(ops)
            except BaseException as exc:  # every later write fails too; surfaced to callers
                self._failure = error = exc
        for i, op in enumerate(ops):
            if op.done is not None:
                with contextlib.suppress(RuntimeError):  # the event loop is already gone
                    op.done(results[i] if error is None else None, error)

    def _transaction(self, ops: list[_Op]) -> list[Any]:
        renew = time.monotonic() - self._renewed > self.lease / 3
        waited_since: float | None = None
        delay = LOCK_BACKOFF_START
        while True:
            try:
                self._conn.execute("begin immediate")
                results = [op.apply(self._conn) for op in ops]
                if renew:
                    ledger.renew(self._conn, self.owner, self.lease)
                self._conn.execute("commit")
                break
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("rollback")
                if not is_locked(exc):
                    raise
                waited_since = waited_since or time.monotonic()
                time.sleep(delay)
                delay = min(delay * 2, LOCK_BACKOFF_MAX)
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("rollback")
                raise
        if renew:
            self._renewed = time.monotonic()
        if waited_since is not None:
            self.lock_wait_seconds += time.monotonic() - waited_since
        return results

    def close(self) -> None:
        """Commit everything queued, stop the writer; raise if a write failed."""
        self._queue.put(None)
        self._thread.join()
        self._conn.close()
        self._check()


_COMPLETED = (
    "response", "status", "input_tokens", "output_tokens", "duration_ms", "cache_read_tokens",
    "cache_write_tokens", "cost_usd",
)
_COMPLETE_SQL = (
    f"update model_calls set {', '.join(f'[{c}] = ?' for c in _COMPLETED)} where id = ?"
)


def _settle_future(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(Store._error(error))
    else:
        future.set_result(result)


def _conversation(db: sqlite_utils.Database, cid: str) -> Conversation:
    row = db.execute(
        "select id, source, external_id, turns, metadata, scrubbed, ingested_at "
        "from conversations where id = ?",
        [cid],
    ).fetchone()
    keys = ("id", "source", "external_id", "turns", "metadata", "scrubbed", "ingested_at")
    return row_to_conversation(dict(zip(keys, row, strict=True)))
