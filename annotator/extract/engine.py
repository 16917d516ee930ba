"""Run an extractor over many conversations: cache, concurrency, retries, resume, batches, cost.

Results are cached per (conversation, prompt version, model): a conversation with a row for that
key is not sent again (an error row is, with `retry_errors`). A run registers itself and claims
the work it takes, in one transaction with choosing it (see `ledger`): a second run on the same
study skips what a live run holds and says so; the claims of a run that died are taken over.

Every model call is committed as "in_flight" before it is sent (the extractor awaits the
store's journal), and each result is committed, with its calls completed, in one transaction as
soon as it arrives (by a writer thread, so the event loop never waits on the disk): a `kill -9`
loses no record of a paid call. The next run marks the calls the dead run left in flight as
"possibly_paid", and reports them with an estimate. A locked study (another writer) delays
writes, with backoff beyond SQLite's busy_timeout, and never drops a paid result.

Online runs use bounded asyncio concurrency (workers pulling from one queue). Batch runs use the
Message Batches API: a `batches` row is written before the batch is created and updated as it
moves on, so a rerun resumes polling an open batch rather than submitting (and paying) again.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from annotator import config
from annotator.db import (
    dumps,
    extraction_to_row,
    loads,
    open_db,
    open_existing_db,
    row_to_conversation,
)
from annotator.errors import AnnotatorError, InputError
from annotator.extract import ledger
from annotator.extract.extractors import (
    EXTRACTORS,
    ClaimLostError,
    Extractor,
    FatalExtractorError,
    Outcome,
    get_extractor,
)
from annotator.extract.ledger import RunOwner
from annotator.extract.pricing import PriceTable, load_prices
from annotator.extract.prompts import USER_MARKER, load_prompt, record_prompt, render
from annotator.models import Conversation, ModelCall, PromptVersion, utc_now

CHARS_PER_TOKEN = 4  # rough, for estimates before spending only
ESTIMATED_OUTPUT_TOKENS = 350  # a typical labels reply: four fields, a handful of values
MIN_CACHEABLE_TOKENS = 1024
CIRCUIT_BREAKER = 10  # this many errors before any success: stop instead of paying for more
MAX_BATCH_BYTES = 200_000_000  # the API's limit is 256 MB per batch
OPEN_BATCH = ("submitting", "in_progress", "ended")
DEFAULT_BUSY_TIMEOUT = 30.0  # seconds SQLite waits for another writer before we back off
LOCK_BACKOFF_START, LOCK_BACKOFF_MAX = 0.05, 2.0  # seconds between tries on a locked study
DEFAULT_TIMEOUT = 120.0  # seconds for one model request before it is retried


@dataclass
class ExtractReport:
    """What a run did (or, for a dry run, would do)."""

    prompt_id: str
    prompt: str
    model: str
    extractor: str
    mode: str  # online, batch or dry-run
    in_scope: int = 0  # conversations in the study
    cached: int = 0  # already done for this prompt version and model: not sent
    todo: int = 0  # taken by this run
    ok: int = 0
    errors: int = 0
    skipped_unscrubbed: int = 0
    in_open_batches: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    priced: bool = True
    batch_ids: list[str] = field(default_factory=list)
    error_reasons: dict[str, int] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    run_id: str | None = None
    held_elsewhere: int = 0  # pending, but claimed by another live run: skipped
    held_by: list[str] = field(default_factory=list)  # those runs (id, pid, host)
    lost_claims: int = 0  # taken over by another run mid-way (this run's lease ran out)
    possibly_paid_calls: int = 0  # this run's calls sent without a usable reply
    settled_possibly_paid: int = 0  # calls left in flight by runs that died, marked now
    lock_wait_seconds: float = 0.0  # time spent waiting for another writer to let go
    ledger: dict[str, Any] | None = None  # the study's call ledger after the run
    notes: list[str] = field(default_factory=list)  # for the user, e.g. an option ignored

    def add(self, outcome: Outcome) -> None:
        self.add_calls(outcome.calls)
        e = outcome.extraction
        if e.status == "ok":
            self.ok += 1
        else:
            self.errors += 1
            reason = (e.error or "error").split(":")[0][:80]
            self.error_reasons[reason] = self.error_reasons.get(reason, 0) + 1
        self.input_tokens += e.input_tokens
        self.output_tokens += e.output_tokens
        self.cache_read_tokens += e.cache_read_tokens
        self.cache_write_tokens += e.cache_write_tokens
        self.cost_usd += e.cost_usd

    def add_calls(self, calls: list[ModelCall]) -> None:
        self.calls += len(calls)
        self.possibly_paid_calls += sum(c.status == ledger.POSSIBLY_PAID for c in calls)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lock_wait_seconds"] = round(self.lock_wait_seconds, 3)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["seconds"] = round(self.seconds, 3)
        data["per_second"] = round(self.ok_or_error / self.seconds, 2) if self.seconds else None
        return data

    @property
    def ok_or_error(self) -> int:
        return self.ok + self.errors


# --- storage ---------------------------------------------------------------------------------


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


# --- selection --------------------------------------------------------------------------------


def _open_batch_ids(db: Any, prompt_id: str, model: str) -> set[str]:
    ids: set[str] = set()
    for (custom_ids,) in db.execute(
        "select custom_ids from batches where prompt_id = ? and model = ? and status in "
        f"({', '.join('?' for _ in OPEN_BATCH)})",
        [prompt_id, model, *OPEN_BATCH],
    ):
        ids.update(loads(custom_ids, {}).values())
    return ids


def select_pending(
    db: Any,
    prompt_id: str,
    model: str,
    retry_errors: bool,
    limit: int | None,
    require_scrubbed: bool,
    report: ExtractReport,
    scope: Sequence[str] | None = None,
) -> list[str]:
    """Conversation ids to take now, in id order; fills the report's counts. `db` is a study
    database or a plain connection (inside a write transaction, when claiming). `scope`: only
    these conversations (`eval` extracts the gold ones); None: the whole study."""
    # one JSON parameter, not one per id: a scope may hold thousands
    within, scope_args = ("", []) if scope is None else (
        " and {col} in (select value from json_each(?))", [orjson.dumps(list(scope)).decode()])
    report.in_scope = db.execute(
        "select count(*) from conversations where 1 = 1" + within.format(col="id"), scope_args
    ).fetchone()[0]
    done_statuses = ("ok",) if retry_errors else ("ok", "error")
    report.cached = db.execute(
        "select count(*) from extractions where prompt_id = ? and model = ? and status in "
        f"({', '.join('?' for _ in done_statuses)})" + within.format(col="conversation_id"),
        [prompt_id, model, *done_statuses, *scope_args],
    ).fetchone()[0]
    rows = db.execute(
        "select c.id, c.scrubbed from conversations c left join extractions e "
        "on e.conversation_id = c.id and e.prompt_id = ? and e.model = ? "
        "where (e.conversation_id is null" + (" or e.status = 'error'" if retry_errors else "")
        + ")" + within.format(col="c.id") + " order by c.id",
        [prompt_id, model, *scope_args],
    ).fetchall()
    in_batches = _open_batch_ids(db, prompt_id, model)
    pending: list[str] = []
    for cid, scrubbed in rows:
        if cid in in_batches:
            report.in_open_batches += 1
        elif require_scrubbed and not scrubbed:
            report.skipped_unscrubbed += 1
        else:
            pending.append(cid)
    return pending[:limit] if limit is not None else pending


def take_pending(
    conn: Any,
    owner: RunOwner | None,
    prompt_id: str,
    model: str,
    retry_errors: bool,
    limit: int | None,
    require_scrubbed: bool,
    report: ExtractReport,
    scope: Sequence[str] | None = None,
) -> list[str]:
    """`select_pending` minus what other live runs hold, up to `limit`; claimed for `owner` in
    the caller's write transaction (so the choice and the claim are one step), or only counted
    for a dry run (`owner` None)."""
    pending = select_pending(
        conn, prompt_id, model, retry_errors, None, require_scrubbed, report, scope
    )
    held = ledger.held_elsewhere(conn, prompt_id, model, owner.id if owner else None)
    free = [cid for cid in pending if cid not in held]
    report.held_elsewhere = len(pending) - len(free)
    live = ledger.live_runs(conn)
    report.held_by = sorted({live[r].describe() for r in held.values() if r in live})
    taken = free[:limit] if limit is not None else free
    if owner is not None:
        ledger.claim(conn, owner, prompt_id, model, taken)
    return taken


def _conversation(db: sqlite_utils.Database, cid: str) -> Conversation:
    row = db.execute(
        "select id, source, external_id, turns, metadata, scrubbed, ingested_at "
        "from conversations where id = ?",
        [cid],
    ).fetchone()
    keys = ("id", "source", "external_id", "turns", "metadata", "scrubbed", "ingested_at")
    return row_to_conversation(dict(zip(keys, row, strict=True)))


# --- progress ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractProgress:
    """Where a run is, for the caller's display (the CLI draws a bar from these)."""

    what: str  # the model, or a batch and its processing status
    done: int  # conversations whose result is stored
    total: int
    cost_usd: float  # so far, this run
    errors: int  # so far, this run


ProgressFn = Callable[[ExtractProgress], None]


class _Tracker:
    """Counts a run's stored results and tells the caller's callback (if any) after each."""

    def __init__(self, callback: ProgressFn | None, report: ExtractReport) -> None:
        self.callback, self.report = callback, report
        self.what, self.done, self.total = "", 0, 0

    def start(self, what: str, total: int) -> None:
        self.what, self.done, self.total = what, 0, total
        self._tell()

    def advance(self) -> None:
        self.done += 1
        self._tell()

    def describe(self, what: str) -> None:
        self.what = what
        self._tell()

    def _tell(self) -> None:
        if self.callback is not None:
            r = self.report
            self.callback(ExtractProgress(self.what, self.done, self.total, r.cost_usd, r.errors))


# --- online runs ----------------------------------------------------------------------------


async def _run_online(
    db: sqlite_utils.Database,
    extractor: Extractor,
    prompt: PromptVersion,
    ids: list[str],
    concurrency: int,
    store: Store,
    report: ExtractReport,
    progress: _Tracker,
) -> None:
    progress.start(extractor.model, len(ids))
    pending = iter(ids)
    failures_before_success = Counter[str]()

    async def worker() -> None:
        for cid in pending:  # one shared iterator: asyncio runs one worker at a time
            try:
                outcome = await extractor.extract(_conversation(db, cid), prompt, store)
            except ClaimLostError as lost:  # another run has it now: record what was sent
                store.save_calls(lost.calls)
                report.add_calls(lost.calls)
                report.lost_claims += 1
                continue
            except FatalExtractorError as fatal:
                store.save_calls(list(fatal.calls))
                raise
            store.save(outcome)
            report.add(outcome)
            progress.advance()
            if report.ok == 0 and outcome.extraction.error:
                failures_before_success[outcome.extraction.error[:200]] += 1
                if report.errors >= CIRCUIT_BREAKER:
                    reason = failures_before_success.most_common(1)[0][0]
                    raise AnnotatorError(
                        f"stopped: the first {report.errors} conversations all failed "
                        f"(e.g. {reason}); their error rows are kept, fix the cause and rerun "
                        "with --retry-errors"
                    )

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, len(ids)))):
                group.create_task(worker())
    except* (AnnotatorError, FatalExtractorError) as failed:
        raise failed.exceptions[0] from None


# --- batch runs -------------------------------------------------------------------------------


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


# --- estimates -----------------------------------------------------------------------------


def estimate(
    extractor: Extractor,
    prompt: PromptVersion,
    conversations: Iterable[Conversation],
    prices: PriceTable,
    batch: bool = False,
) -> dict[str, Any]:
    """Tokens and cost before spending: about four characters a token, a typical reply size,
    and the static prefix written to the cache once and read by every later call."""
    convs = list(conversations)
    if extractor.name == "baseline" or not convs:
        return {"calls": 0, "input_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
                "output_tokens": 0, "cost_usd": 0.0, "cost_usd_without_cache": 0.0}
    first = extractor.params(convs[0], prompt)  # type: ignore[attr-defined]
    prefix_chars = len(orjson.dumps(first.get("tools", []))) + sum(
        len(b["text"]) for b in first["system"]
    )
    prefix = prefix_chars // CHARS_PER_TOKEN
    fresh = sum(len(render(prompt, c).user) for c in convs) // CHARS_PER_TOKEN
    n = len(convs)
    output = n * min(ESTIMATED_OUTPUT_TOKENS, int(prompt.front_matter.get("max_tokens", 1024)))
    cached = prefix >= MIN_CACHEABLE_TOKENS
    write = prefix if cached else 0
    read = prefix * (n - 1) if cached else 0
    uncached_input = fresh + (0 if cached else prefix * n)
    model = extractor.model
    return {
        "calls": n,
        "input_tokens": uncached_input,
        "cache_write_tokens": write,
        "cache_read_tokens": read,
        "output_tokens": output,
        "cost_usd": round(prices.cost(model, uncached_input, output, read, write, batch), 4),
        "cost_usd_without_cache": round(
            prices.cost(model, fresh + prefix * n, output, 0, 0, batch), 4
        ),
        "priced": model in prices,
        "assumes": f"~{CHARS_PER_TOKEN} chars/token, {ESTIMATED_OUTPUT_TOKENS} output tokens "
        "a call, no validation retries",
    }


# --- the run ---------------------------------------------------------------------------------


def choose_extractor(name: str | None, api_key: str | None) -> str:
    """The extractor a run uses: `name`, else claude with an API key, else the baseline."""
    chosen = name or ("claude" if api_key else "baseline")
    if chosen not in EXTRACTORS:
        raise AnnotatorError(f"unknown extractor {chosen!r}: choose one of {', '.join(EXTRACTORS)}")
    return chosen


async def extract_async(
    db_path: str | Path | None = None,
    *,
    prompt: str | PromptVersion | None = None,
    extractor: str | None = None,
    model: str | None = None,
    limit: int | None = None,
    concurrency: int = 8,
    batch: bool = False,
    retry_errors: bool = False,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    prices: str | Path | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    max_attempts: int = 3,
    max_retries: int = 4,
    poll_interval: float = 30.0,
    batch_size: int = 10_000,
    allow_unscrubbed: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    lease: float = ledger.DEFAULT_LEASE,
    prompts_dir: str | Path | None = None,
    conversation_ids: Sequence[str] | None = None,
) -> ExtractReport:
    """`extract`, for callers already inside an event loop. `prompts_dir`: the study's own
    prompt folder (default `config.prompts_dir()`); `prompt` may be a version already resolved;
    `conversation_ids`: only these conversations (None: the whole study)."""
    settings = config.settings()
    path = Path(db_path) if db_path is not None else settings.db_path
    if concurrency < 1:
        raise AnnotatorError("--concurrency must be at least 1")
    db = open_existing_db(path)
    api_key = api_key or settings.anthropic_api_key
    base_url = base_url or settings.anthropic_base_url
    prices = prices or settings.prices_path
    name = choose_extractor(extractor, api_key)
    price_table = load_prices(prices)
    notes: list[str] = []

    if name == "baseline":
        from annotator.extract.baseline import BaselineExtractor

        chosen_prompt = BaselineExtractor.baseline_prompt()
        if prompt:
            notes.append("the baseline has its own rules; --prompt is ignored")
        model = None
    else:
        chosen_prompt = prompt if isinstance(prompt, PromptVersion) else load_prompt(
            prompt, Path(prompts_dir) if prompts_dir else None, db=db)
        if USER_MARKER not in chosen_prompt.text:  # the baseline's rules, or an id-only version
            raise InputError(f"prompt {prompt!r} ({chosen_prompt.name or chosen_prompt.id}) is "
                             "not a prompt file a model can run: give a file's version")
    model = model or chosen_prompt.front_matter.get("model")
    ex = get_extractor(
        name,
        model=model,
        api_key=api_key,
        base_url=base_url,
        prices=prices,
        max_attempts=max_attempts,
        max_retries=max_retries,
        timeout=timeout,
        concurrency=concurrency,
    )
    report = ExtractReport(
        prompt_id=chosen_prompt.id,
        prompt=f"{chosen_prompt.name}/{chosen_prompt.version}",
        model=ex.model,
        extractor=ex.name,
        mode="dry-run" if dry_run else ("batch" if batch else "online"),
        priced=ex.model in price_table,
        notes=notes,
    )
    require_scrubbed = name == "claude" and not allow_unscrubbed
    try:
        if dry_run:
            ids = take_pending(
                db.conn, None, chosen_prompt.id, ex.model, retry_errors, limit,
                require_scrubbed, report, conversation_ids,
            )
            report.todo = len(ids)
            report.ledger = ledger.call_ledger(db.conn).as_dict()
            convs = (_conversation(db, cid) for cid in ids)
            report.estimate = estimate(ex, chosen_prompt, convs, price_table, batch=batch)
            return report
        db.execute(f"pragma busy_timeout={int(busy_timeout * 1000)}")
        await recover_batches(db, ex, chosen_prompt.id)
        retry_locked(lambda: _record_prompt(db, chosen_prompt))
        owner = RunOwner.this_process()
        report.run_id = owner.id
        store = Store(path, price_table, owner, busy_timeout=busy_timeout, lease=lease)
        started = time.perf_counter()
        try:
            ids = store.run_sync(
                lambda conn: _start_run(
                    conn, owner, chosen_prompt.id, ex.model, lease, retry_errors, limit,
                    require_scrubbed, report, conversation_ids,
                )
            )
            report.todo = len(ids)
            tracker = _Tracker(progress, report)
            if batch:
                await _run_batch(
                    db, ex, chosen_prompt, ids, store, report, tracker, poll_interval, batch_size
                )
            elif ids:
                await _run_online(db, ex, chosen_prompt, ids, concurrency, store, report, tracker)
        except BaseException:
            with contextlib.suppress(AnnotatorError):  # keep the first error, still flush
                _finish(store, "failed", report)
            raise
        _finish(store, "finished", report)  # everything received is committed first
        report.seconds = time.perf_counter() - started
        report.ledger = ledger.call_ledger(db.conn).as_dict()
        return report
    finally:
        await ex.aclose()
        db.conn.close()


def _record_prompt(db: sqlite_utils.Database, prompt: PromptVersion) -> None:
    with db.conn:
        record_prompt(db, prompt)


def _start_run(
    conn: sqlite3.Connection,
    owner: RunOwner,
    prompt_id: str,
    model: str,
    lease: float,
    retry_errors: bool,
    limit: int | None,
    require_scrubbed: bool,
    report: ExtractReport,
    scope: Sequence[str] | None = None,
) -> list[str]:
    """One transaction: settle runs that died, register this one, choose and claim its work."""
    report.settled_possibly_paid = ledger.settle_dead_runs(conn)
    ledger.register_run(conn, owner, prompt_id, model, lease)
    return take_pending(
        conn, owner, prompt_id, model, retry_errors, limit, require_scrubbed, report, scope
    )


def _finish(store: Store, status: str, report: ExtractReport) -> None:
    """Commit what is queued, end the run (claims freed; calls cancelled mid-request marked
    possibly paid), stop the writer."""
    try:
        report.possibly_paid_calls += store.run_sync(
            lambda conn: ledger.finish_run(conn, store.owner, status)
        )
    finally:
        report.lock_wait_seconds = store.lock_wait_seconds
        store.close()


def extract(db_path: str | Path | None = None, **options: Any) -> ExtractReport:
    """Propose labels for every conversation not yet done for (prompt version, model).

    Options as `extract_async`: prompt (any reference `prompts.resolve_prompt` takes; default
    the latest `values` prompt), prompts_dir (the study's prompt folder), extractor ("claude" or
    "baseline"; default claude when an API key is set), model (default the prompt's), limit,
    concurrency, batch, retry_errors, dry_run, progress (called with an `ExtractProgress` as
    results are stored), prices (a JSON/TOML price file), max_attempts (validation),
    max_retries (HTTP), poll_interval, timeout (seconds for one request), busy_timeout (seconds
    SQLite waits for another writer before the run backs off and tries again), lease (seconds a
    run's claims outlive it).
    """
    return asyncio.run(extract_async(db_path, **options))

