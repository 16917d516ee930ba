"""The model privacy pass: a small Claude model finds the names and street addresses the offline
scrubber (`ingest.privacy`) left, and they become [NAME] / [ADDRESS] in the stored turns.

The pass is an extraction prompt (`prompts/scrub/`, front matter `labels: scrub`, reply shape
`extractors.ProposedSpans`) run by the extraction engine, so every call goes through the same
ledger: recorded before it is sent, priced, cached per (conversation, prompt version, model),
never paid twice, resumed after a crash, priced by a dry run. A post-step applies each
successful reply not yet applied: the spans are replaced in the conversation's turns (its id,
a keyed hash of the original text, stays), in the model's replies and in the logged calls of
that conversation, and a `scrub_passes` row records which pass cleared it and where it put
each placeholder (not the spans themselves). Applying is idempotent and resumable: a reply
stored by a run that died is applied by the next run, without another call.

`require(db_path)` sets a study setting after which `push` sends only cleared conversations
(`check_cleared`, called by push before it talks to any server).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from annotator import config
from annotator.db import dumps, loads, open_existing_db
from annotator.errors import AnnotatorError, InputError
from annotator.extract.extractors import ProposedSpans
from annotator.extract.prompts import SCRUB_PROMPT_IDS, load_prompt, prompt_files
from annotator.extract.run_report import ProgressFn
from annotator.extract.store import retry_locked
from annotator.models import PromptVersion, utc_now

SCRUB_NAME = "scrub"
SCRUB_LABELS = "scrub"
REQUIRE_KEY = "push_requires_scrub_pass"
NAME, ADDRESS = "[NAME]", "[ADDRESS]"
MIN_SPAN = 2  # a one-character "name" would wipe every word it matches
APPLY_CHUNK = 200  # conversations per transaction when applying


@dataclass
class ScrubReport:
    """What `scrub` did (or, dry, would do): the engine's run and the spans applied."""

    run: dict[str, Any]
    applied: int = 0  # conversations cleared by this call (replies applied now)
    replaced: int = 0  # spans replaced now, over all those conversations
    not_found: int = 0  # spans the model gave that are not in the text (nothing replaced)
    cleared: int = 0  # conversations of the study cleared by any scrub pass
    uncleared: int = 0
    required: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def newest_scrub_prompt(directory: Path | None = None) -> PromptVersion:
    """The highest version of the `scrub` prompt on disk."""
    found = [p for p in prompt_files(directory) if p.name == SCRUB_NAME]
    if not found:
        raise InputError(f"no scrub/ prompt under {directory or config.prompts_dir()}")
    return found[-1]


def _pattern(span: str) -> re.Pattern[str]:
    """A span as written, not inside a longer word ("Al" is not replaced in "Also")."""
    left = r"(?<!\w)" if span[0].isalnum() or span[0] == "_" else ""
    right = r"(?!\w)" if span[-1].isalnum() or span[-1] == "_" else ""
    return re.compile(left + re.escape(span) + right)


def usable_spans(spans: ProposedSpans) -> list[tuple[str, str]]:
    """(span, placeholder) pairs worth replacing, longest first (so a full name goes before its
    first name): stripped, at least MIN_SPAN characters, not a placeholder, addresses before
    names when the model gave a span as both."""
    pairs: dict[str, str] = {}
    for placeholder, given in ((ADDRESS, spans.addresses), (NAME, spans.names)):
        for raw in given:
            span = raw.strip()
            if len(span) < MIN_SPAN or not re.search(r"\w", span):
                continue
            if re.fullmatch(r"\[[A-Z_]+\]", span):
                continue
            pairs.setdefault(span, placeholder)
    return sorted(pairs.items(), key=lambda p: (-len(p[0]), p[0]))


def replace_spans(
    texts: list[str], pairs: list[tuple[str, str]]
) -> tuple[list[str], list[dict[str, Any]], int]:
    """The texts with every occurrence of each span replaced by its placeholder; where each
    placeholder went ({turn, placeholder, count}); how many spans were found nowhere."""
    out = list(texts)
    where: list[dict[str, Any]] = []
    missing = 0
    for span, placeholder in pairs:
        pattern = _pattern(span)
        hits = 0
        for i, text in enumerate(out):
            new, n = pattern.subn(placeholder, text)
            if n:
                out[i] = new
                hits += n
                where.append({"turn": i, "placeholder": placeholder, "count": n})
        missing += hits == 0
    return out, where, missing


def _redact(text: str | None, pairs: list[tuple[str, str]]) -> str | None:
    """A stored reply or logged call (JSON text) with the spans replaced, as they are spelled
    inside a JSON string."""
    if not text:
        return text
    for span, placeholder in pairs:
        encoded = dumps(span)[1:-1]
        text = _pattern(encoded).sub(placeholder, text) if encoded else text
    return text


def _pending(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Successful scrub replies without a `scrub_passes` row: paid for, not yet applied."""
    return list(db.query(
        "select e.conversation_id, e.prompt_id, e.model, e.raw_reply from extractions e "
        f"where e.status = 'ok' and e.prompt_id in ({SCRUB_PROMPT_IDS}) and not exists ("
        "select 1 from scrub_passes s where s.conversation_id = e.conversation_id "
        "and s.prompt_id = e.prompt_id and s.model = e.model) order by e.conversation_id"
    ))


def _apply_one(conn: Any, row: dict[str, Any]) -> tuple[int, int]:
    cid = row["conversation_id"]
    spans = ProposedSpans.model_validate_json(row["raw_reply"] or "{}")
    pairs = usable_spans(spans)
    found = conn.execute("select turns from conversations where id = ?", [cid]).fetchone()
    if found is None:  # the conversation was removed since: nothing to clear
        return 0, 0
    turns = loads(found[0], [])
    texts, where, missing = replace_spans([t.get("text", "") for t in turns], pairs)
    if where:
        conn.execute("update conversations set turns = ? where id = ?", [
            dumps([{**t, "text": text} for t, text in zip(turns, texts, strict=True)]), cid])
        for table, cols in (("extractions", ("raw_reply", "ai_values", "human_values",
                                             "task_description", "error")),
                            ("model_calls", ("request", "response"))):
            for rowid, *values in conn.execute(
                f"select rowid, {', '.join(cols)} from {table} where conversation_id = ?", [cid]
            ).fetchall():
                redacted = [_redact(v, pairs) for v in values]
                if redacted != values:
                    sets = ", ".join(f"{c} = ?" for c in cols)
                    conn.execute(f"update {table} set {sets} where rowid = ?", [*redacted, rowid])
    conn.execute(
        "insert or replace into scrub_passes (conversation_id, prompt_id, model, replaced, "
        "not_found, applied_at) values (?, ?, ?, ?, ?, ?)",
        [cid, row["prompt_id"], row["model"], dumps(where), missing, utc_now().isoformat()],
    )
    return sum(w["count"] for w in where), missing


def apply_pending(db: sqlite_utils.Database) -> tuple[int, int, int]:
    """Apply every scrub reply not yet applied, a chunk of conversations per transaction:
    (conversations cleared, spans replaced, spans not found)."""
    pending = _pending(db)
    applied = replaced = missing = 0
    for start in range(0, len(pending), APPLY_CHUNK):
        chunk = pending[start : start + APPLY_CHUNK]

        def write(chunk: list[dict[str, Any]] = chunk) -> tuple[int, int]:
            totals = [0, 0]
            with db.conn:
                for row in chunk:
                    r, m = _apply_one(db.conn, row)
                    totals[0] += r
                    totals[1] += m
            return totals[0], totals[1]

        r, m = retry_locked(write)
        applied += len(chunk)
        replaced += r
        missing += m
    return applied, replaced, missing


def cleared_counts(db: sqlite_utils.Database) -> tuple[int, int]:
    """(conversations cleared by some scrub pass, conversations not)."""
    total = db.execute("select count(*) from conversations").fetchone()[0]
    cleared = db.execute(
        "select count(*) from conversations where id in (select conversation_id "
        "from scrub_passes)").fetchone()[0]
    return cleared, total - cleared


def is_required(db: sqlite_utils.Database) -> bool:
    """Whether the study's push sends only conversations a scrub pass has cleared."""
    if "study_settings" not in db.table_names():
        return False
    row = db.execute("select value from study_settings where key = ?", [REQUIRE_KEY]).fetchone()
    return bool(row and row[0] == "1")


def set_required(db: sqlite_utils.Database, on: bool = True) -> None:
    """Turn the study setting on (or off): push refuses conversations not cleared."""
    with db.conn:
        db.execute("insert or replace into study_settings (key, value, set_at) values (?, ?, ?)",
                   [REQUIRE_KEY, "1" if on else "0", utc_now().isoformat()])


def check_cleared(db: sqlite_utils.Database, conversation_ids: list[str] | None = None) -> None:
    """Called by push before it talks to any server: with the setting on, a one-line
    AnnotatorError if any of `conversation_ids` (None: the whole study) has not been cleared by
    a scrub pass, so reviewers never see it."""
    if not is_required(db):
        return
    if conversation_ids is None:
        _, uncleared = cleared_counts(db)
    else:
        uncleared = db.execute(
            "select count(*) from json_each(?) where value not in "
            "(select conversation_id from scrub_passes)", [dumps(list(conversation_ids))]
        ).fetchone()[0]
    if uncleared:
        raise AnnotatorError(
            f"{uncleared} conversations have not been cleared by the model privacy pass, and "
            "this study requires it before push: run `annotator scrub` first"
        )


async def scrub_async(
    db_path: str | Path | None = None,
    *,
    prompt: str | PromptVersion | None = None,
    prompts_dir: str | Path | None = None,
    require: bool = False,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    **options: Any,
) -> ScrubReport:
    """`scrub`, for callers inside an event loop."""
    settings = config.settings()
    path = Path(db_path) if db_path is not None else settings.db_path
    folder = Path(prompts_dir) if prompts_dir else None
    db = open_existing_db(path)
    try:
        chosen = newest_scrub_prompt(folder) if prompt is None else (
            prompt if isinstance(prompt, PromptVersion) else load_prompt(prompt, folder, db=db))
    finally:
        db.conn.close()
    if chosen.front_matter.get("labels") != SCRUB_LABELS:
        raise InputError(f"prompt {chosen.name}/{chosen.version} is not a scrub prompt "
                         "(front matter `labels: scrub`)")
    from annotator.extract.engine import extract_async  # the engine only when a pass runs

    run = await extract_async(
        path, prompt=chosen, prompts_dir=prompts_dir, extractor="claude", dry_run=dry_run,
        progress=progress, **options)
    db = open_existing_db(path)
    try:
        report = ScrubReport(run=run.as_dict(), notes=list(run.notes))
        if not dry_run:
            report.applied, report.replaced, report.not_found = apply_pending(db)
            if require:
                set_required(db, True)
        elif require:
            report.notes.append("dry run: --require not set")
        report.cleared, report.uncleared = cleared_counts(db)
        report.required = is_required(db)
        return report
    finally:
        db.conn.close()


def scrub(db_path: str | Path | None = None, **options: Any) -> ScrubReport:
    """Run the model privacy pass on every conversation it has not cleared, and apply its spans.

    Options: prompt (a scrub prompt version; default the newest `scrub/` file), prompts_dir,
    model (default the prompt's), require (after the run, push sends only cleared
    conversations), dry_run (price it, send nothing; works without an API key), and the
    engine's own: limit, concurrency, batch, retry_errors, api_key, base_url, prices, timeout,
    max_retries, busy_timeout, allow_unscrubbed.
    """
    import asyncio

    return asyncio.run(scrub_async(db_path, **options))
