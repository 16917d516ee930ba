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
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from annotator import config
from annotator.db import (
    loads,
    open_existing_db,
)
from annotator.errors import AnnotatorError, InputError
from annotator.extract import ledger
from annotator.extract.batches import OPEN_BATCH, _run_batch, recover_batches
from annotator.extract.extractors import (
    EXTRACTORS,
    ClaimLostError,
    Extractor,
    FatalExtractorError,
)
from annotator.extract.filtering import (
    GOLD,
    SubjectiveSource,
    expected_share,
    filter_counts,
    resolve_source,
)
from annotator.extract.ledger import RunOwner
from annotator.extract.pricing import PriceTable, load_prices
from annotator.extract.prompts import USER_MARKER, load_prompt, record_prompt, render
from annotator.extract.run_report import ExtractReport, ProgressFn, _Tracker
from annotator.extract.store import DEFAULT_BUSY_TIMEOUT, Store, _conversation, retry_locked
from annotator.models import Conversation, PromptVersion

CHARS_PER_TOKEN = 4  # rough, for estimates before spending only
ESTIMATED_OUTPUT_TOKENS = 350  # a typical labels reply: four fields, a handful of values
MIN_CACHEABLE_TOKENS = 1024
CIRCUIT_BREAKER = 10  # this many errors before any success: stop instead of paying for more
DEFAULT_TIMEOUT = 120.0  # seconds for one model request before it is retried

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
    only: SubjectiveSource | None = None,
) -> list[str]:
    """Conversation ids to take now, in id order; fills the report's counts. `db` is a study
    database or a plain connection (inside a write transaction, when claiming). `scope`: only
    these conversations (`eval` extracts the gold ones); None: the whole study. `only`: only
    the conversations that source labels subjective (the counts too)."""
    within, scope_args = _within(scope, only)
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


def _within(
    scope: Sequence[str] | None, only: SubjectiveSource | None
) -> tuple[str, list[Any]]:
    """An SQL condition on a column `{col}` (to format) limiting selection, and its arguments."""
    within, args = "", []
    if scope is not None:  # one JSON parameter, not one per id: a scope may hold thousands
        within += " and {col} in (select value from json_each(?))"
        args.append(orjson.dumps(list(scope)).decode())
    if only is not None:
        sql, only_args = only.ids_sql(subjective_only=True)
        within += f" and {{col}} in ({sql})"
        args += only_args
    return within, args


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
    only: SubjectiveSource | None = None,
) -> list[str]:
    """`select_pending` minus what other live runs hold, up to `limit`; claimed for `owner` in
    the caller's write transaction (so the choice and the claim are one step), or only counted
    for a dry run (`owner` None)."""
    pending = select_pending(
        conn, prompt_id, model, retry_errors, None, require_scrubbed, report, scope, only
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


def _second_stage_estimate(
    db: sqlite_utils.Database,
    ex: Extractor,
    prompt: PromptVersion,
    prices: PriceTable,
    batch: bool,
    only: SubjectiveSource,
    known: list[str],
    pending: list[str],
    stage1_todo: Sequence[str],
    limit: int | None,
) -> dict[str, Any]:
    """The full prompt's expected cost behind a filter: every pending conversation the source
    already labels subjective (`known`), plus the expected share of those the first stage
    labels in this run; and what the prompt would cost on every pending conversation."""
    labelled_sql, args = only.ids_sql(subjective_only=False)
    labelled = {cid for (cid,) in db.execute(labelled_sql, args)}
    first = set(stage1_todo)
    unfiltered = [cid for cid in pending if cid not in labelled]
    coming = [cid for cid in unfiltered if cid in first]
    share = expected_share(db, only)

    def cost(ids: Sequence[str]) -> dict[str, Any]:
        return estimate(ex, prompt, (_conversation(db, c) for c in ids), prices, batch=batch)

    on_known, on_coming = cost(known), cost(coming)
    everything = cost(pending[:limit] if limit is not None else pending)
    expected = len(known) + share.value * len(coming)
    cap = min(1.0, limit / expected) if limit is not None and expected > 0 else 1.0

    def total(p: float) -> float:
        return round(cap * (on_known["cost_usd"] + p * on_coming["cost_usd"]), 4)

    return {
        "calls": round(cap * expected),
        "cost_usd": total(share.value),
        "cost_usd_low": total(share.low),
        "cost_usd_high": total(share.high),
        "known_subjective": len(known),
        "labelled_by_stage1_now": len(coming),
        "not_yet_filtered_after": len(unfiltered) - len(coming),
        "subjective_share": round(share.value, 4),
        "subjective_share_95": [round(share.low, 4), round(share.high, 4)],
        "subjective_share_basis": share.basis,
        "without_filter_calls": everything["calls"],
        "without_filter_cost_usd": everything["cost_usd"],
        "priced": everything.get("priced", True),
        "assumes": f"stage 2 on the {len(known)} known subjective plus "
        f"{share.value:.1%} of the {len(coming)} stage 1 labels now; "
        + everything.get("assumes", ""),
    }


# --- the run ---------------------------------------------------------------------------------


def get_extractor(
    name: str,
    *,
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    prices: str | Path | None = None,
    max_attempts: int = 3,
    max_retries: int = 4,
    timeout: float = 120.0,
    concurrency: int = 8,
    dry_run: bool = False,
) -> Extractor:
    """Build an extractor by name. `claude` needs an API key, except for a dry run (which builds
    and prices requests, and sends none); `baseline` needs nothing."""
    if name == "baseline":
        from annotator.extract.baseline import BaselineExtractor

        return BaselineExtractor()
    if name == "claude":
        if not api_key and not dry_run:
            raise AnnotatorError(
                "the claude extractor needs an API key: set ANTHROPIC_API_KEY "
                "(or use --extractor baseline)"
            )
        from annotator.extract.claude import ClaudeExtractor

        return ClaudeExtractor(
            api_key=api_key or None,
            model=model,
            base_url=base_url,
            prices=prices,
            max_attempts=max_attempts,
            max_retries=max_retries,
            timeout=timeout,
            concurrency=concurrency,
        )
    raise AnnotatorError(f"unknown extractor {name!r}: choose one of {', '.join(EXTRACTORS)}")



def choose_extractor(name: str | None, api_key: str | None) -> str:
    """The extractor a run uses: `name`, else claude with an API key, else the baseline."""
    chosen = name or ("claude" if api_key else "baseline")
    if chosen not in EXTRACTORS:
        raise AnnotatorError(f"unknown extractor {chosen!r}: choose one of {', '.join(EXTRACTORS)}")
    return chosen


async def extract_async(
    db_path: str | Path | None = None, *, only_subjective: str | None = None, **options: Any
) -> ExtractReport:
    """`extract`, for callers already inside an event loop. `only_subjective`: run the prompt
    only on the conversations that source labels subjective (`filtering`), after running the
    source itself (a prompt version or the baseline) on what it has not labelled yet."""
    if only_subjective is None:
        return await _extract_one(db_path, **options)
    settings = config.settings()
    path = Path(db_path) if db_path is not None else settings.db_path
    folder = options.get("prompts_dir")
    db = open_existing_db(path)
    try:
        source = resolve_source(only_subjective, Path(folder) if folder else None, db)
    finally:
        db.conn.close()
    dry_run = bool(options.get("dry_run"))
    stage1: ExtractReport | None = None
    if source.kind != GOLD:
        if source.kind == "prompt" and not dry_run and not (
            options.get("api_key") or settings.anthropic_api_key
        ):
            raise AnnotatorError(
                f"--only-subjective {source.label} runs Claude ({source.model}) first: set "
                "ANTHROPIC_API_KEY, or filter by `baseline` or `gold`"
            )
        first = {**options, "model": None, "prompt": source.prompt if source.kind == "prompt"
                 else None, "extractor": "claude" if source.kind == "prompt" else "baseline"}
        stage1 = await _extract_one(path, **first)
    report = await _extract_one(path, only=source,
                                stage1_todo=stage1.taken_ids if stage1 else (), **options)
    report.stage1 = stage1.as_dict() if stage1 else None
    if stage1 is not None:
        report.notes = list(dict.fromkeys([*stage1.notes, *report.notes]))
    if dry_run and report.estimate is not None:
        first_cost = stage1.estimate["cost_usd"] if stage1 and stage1.estimate else 0.0
        first_calls = stage1.estimate["calls"] if stage1 and stage1.estimate else 0
        e = report.estimate
        e.update(stage1_calls=first_calls, stage1_cost_usd=first_cost,
                 total_cost_usd=round(first_cost + e["cost_usd"], 4),
                 saving_usd=round(e["without_filter_cost_usd"] - first_cost - e["cost_usd"], 4))
    return report


async def _extract_one(
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
    only: SubjectiveSource | None = None,
    stage1_todo: Sequence[str] = (),
) -> ExtractReport:
    """One stage of `extract_async`. `prompts_dir`: the study's own prompt folder (default
    `config.prompts_dir()`); `prompt` may be a version already resolved; `conversation_ids`:
    only these conversations (None: the whole study); `only`: only those this source labels
    subjective; `stage1_todo`: what a dry run's first stage would label now (for the estimate).
    A dry run without an API key (and no --extractor) prices the prompt as Claude would cost,
    with the prompt's model, rather than the baseline's $0 that a run without a key would use."""
    settings = config.settings()
    path = Path(db_path) if db_path is not None else settings.db_path
    if concurrency < 1:
        raise AnnotatorError("--concurrency must be at least 1")
    db = open_existing_db(path)
    api_key = api_key or settings.anthropic_api_key
    base_url = base_url or settings.anthropic_base_url
    prices = prices or settings.prices_path
    name = choose_extractor(extractor, api_key)
    if dry_run and extractor is None and not api_key:
        name = "claude"  # price what the prompt would cost, not the baseline's $0
    keyless = dry_run and name == "claude" and not api_key
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
    model_from = "--model" if model else "the prompt's front matter"
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
        dry_run=dry_run,
    )
    if keyless:
        notes.append(f"no ANTHROPIC_API_KEY: priced as Claude {ex.model} (from {model_from}) "
                     "would cost; a run without a key uses the offline baseline instead, for $0")
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
        if only is not None:
            report.filter = filter_counts(db, only, conversation_ids)
        if dry_run:
            ids = take_pending(
                db.conn, None, chosen_prompt.id, ex.model, retry_errors, limit,
                require_scrubbed, report, conversation_ids, only,
            )
            report.todo = len(ids)
            report.taken_ids = ids
            report.ledger = ledger.call_ledger(db.conn).as_dict()
            if only is None:
                convs = (_conversation(db, cid) for cid in ids)
                report.estimate = estimate(ex, chosen_prompt, convs, price_table, batch=batch)
            else:
                pending = take_pending(
                    db.conn, None, chosen_prompt.id, ex.model, retry_errors, None,
                    require_scrubbed, ExtractReport("", "", "", "", ""), conversation_ids)
                report.estimate = _second_stage_estimate(
                    db, ex, chosen_prompt, price_table, batch, only, ids, pending,
                    stage1_todo, limit)
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
                    require_scrubbed, report, conversation_ids, only,
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
    only: SubjectiveSource | None = None,
) -> list[str]:
    """One transaction: settle runs that died, register this one, choose and claim its work."""
    report.settled_possibly_paid = ledger.settle_dead_runs(conn)
    ledger.register_run(conn, owner, prompt_id, model, lease)
    return take_pending(
        conn, owner, prompt_id, model, retry_errors, limit, require_scrubbed, report, scope, only
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

    `only_subjective`: `gold`, `baseline` or a prompt version (e.g. `subjective/v1`): run that
    source first on what it has not labelled (a prompt version with its own model), then the
    prompt only on the conversations the source labels subjective; the rest are counted as not
    yet filtered and never sent. A dry run prices both stages and the saving.

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

