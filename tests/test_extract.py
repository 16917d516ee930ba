"""The extraction engine against the fake API over real HTTP, through the real SDK: results,
cache, crash-resume, retries, error rows, batches, and no secret in the database or logs."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys

import orjson
import pytest
from conftest import TEST_API_KEY, make_study, rows
from typer.testing import CliRunner
from waiting import wait_until

from annotator.cli import app
from annotator.db import open_db, row_to_extraction
from annotator.errors import AnnotatorError
from annotator.extract import engine as extract_module
from annotator.extract.claude import ClaudeExtractor
from annotator.extract.engine import extract
from annotator.extract.pricing import load_prices
from annotator.extract.prompts import load_prompt, render

pytestmark = pytest.mark.integration
MODEL = "claude-sonnet-4-6"


def run(path, fake, **options):
    return extract(
        path, extractor="claude", api_key=TEST_API_KEY, base_url=fake.base_url, **options
    )


def key(conv) -> str:
    """The fake counts requests per conversation by the text of the first user message."""
    return render(load_prompt(), conv).user


def committed(path) -> int:
    """Extraction rows committed so far (read beside a running writer)."""
    return rows(path, "select count(*) from extractions")[0][0]


def extractions(path) -> dict:
    database = open_db(path)
    out = {r["conversation_id"]: row_to_extraction(r) for r in database["extractions"].rows}
    database.conn.close()
    return out


def test_happy_path_records_labels_usage_and_cost(study, fake_api):
    path, convs = study
    report = run(path, fake_api, concurrency=4)
    assert (report.todo, report.ok, report.errors, report.calls) == (12, 12, 0, 12)
    done = extractions(path)
    assert set(done) == {c.id for c in convs}
    prices = load_prices()
    prompt = load_prompt()
    for conv in convs:
        e = done[conv.id]
        assert (e.prompt_id, e.model, e.extractor, e.status) == (prompt.id, MODEL, "claude", "ok")
        # the rule named the values that appear in the assistant's turns: they resolve
        assistant = " ".join(t.text for t in conv.turns if t.role == "assistant").lower()
        assert e.ai_values and all(v.name in assistant and v.node_id for v in e.ai_values)
        assert e.cost_usd == pytest.approx(
            prices.cost(MODEL, e.input_tokens, e.output_tokens, e.cache_read_tokens,
                        e.cache_write_tokens)
        )
        assert fake_api.paid[key(conv)] == 1
    # the static prefix is cached: written at most once per concurrent first wave, then read
    assert report.cache_write_tokens > 0 and report.cache_read_tokens > report.cache_write_tokens
    calls = rows(path, "select status, request, response, cost_usd from model_calls")
    assert len(calls) == 12 and {c[0] for c in calls} == {"ok"}
    request = orjson.loads(calls[0][1])
    assert request["tool_choice"] == {"type": "tool", "name": "record_labels"}
    assert request["system"][0]["prompt_id"] == prompt.id  # the long text is referenced
    assert orjson.loads(calls[0][2])["usage"]["output_tokens"] > 0
    assert sum(c[3] for c in calls) == pytest.approx(report.cost_usd)
    assert rows(path, "select id from prompts") == [(prompt.id,)]


def test_rerun_is_a_cache_hit_with_zero_requests(study, fake_api):
    path, _ = study
    run(path, fake_api)
    before = dict(fake_api.requests)
    report = run(path, fake_api)
    assert (report.cached, report.todo, report.calls) == (12, 0, 0)
    assert fake_api.requests == before
    # another model is another cache key
    other = run(path, fake_api, model="claude-haiku-4-5", limit=3)
    assert (other.todo, other.ok) == (3, 3)
    assert rows(path, "select count(*) from extractions where model = 'claude-haiku-4-5'") == [
        (3,)
    ]


def test_rate_limits_overload_and_server_errors_are_retried_and_paid_once(study, fake_api):
    path, convs = study
    fake_api.queued_faults.extend(["429", "529", "500", "429"])
    report = run(path, fake_api, concurrency=2)
    assert (report.ok, report.errors) == (12, 0)
    assert fake_api.faults == {"429": 2, "529": 1, "500": 1}
    assert sum(fake_api.attempts.values()) == 16  # every fault was followed by a retry
    assert all(fake_api.paid[key(c)] == 1 for c in convs)


def test_retries_exhausted_leave_an_error_row_not_a_gap(study, fake_api):
    path, convs = study
    target = key(convs[0])
    fake_api.fault_fn = lambda req: "500" if req.key == target else None
    report = run(path, fake_api, max_retries=1)
    assert (report.ok, report.errors) == (11, 1)
    e = extractions(path)[convs[0].id]
    assert e.status == "error" and "HTTP 500" in e.error
    assert fake_api.attempts[target] == 2 and fake_api.paid.get(target, 0) == 0


def test_malformed_replies_are_repaired_or_become_error_rows_then_retaken(study, fake_api):
    path, convs = study
    broken, flaky = key(convs[0]), key(convs[1])
    fake_api.fault_fn = lambda req: (
        "malformed" if req.key == broken or (req.key == flaky and req.attempt == 1) else None
    )
    report = run(path, fake_api, max_attempts=2)
    assert (report.ok, report.errors) == (11, 1)
    done = extractions(path)
    repaired = done[convs[1].id]
    assert repaired.status == "ok" and repaired.attempts == 2
    statuses = rows(
        path, "select status from model_calls where conversation_id = ? order by id", [convs[1].id]
    )
    assert [s for (s,) in statuses] == ["invalid", "ok"]
    # the second call carried the validation error back as a tool_result
    second = orjson.loads(
        rows(path, "select request from model_calls where conversation_id = ? and status = 'ok'",
             [convs[1].id])[0][0]
    )
    assert second["messages"][-1]["content"][0]["is_error"] is True
    failed = done[convs[0].id]
    assert failed.status == "error" and failed.error.startswith("invalid reply after 2 attempts")
    assert failed.raw_reply and orjson.loads(failed.raw_reply)  # the raw reply is kept
    assert fake_api.paid[broken] == 2
    # an error row is cached like a result: a plain rerun does not pay for it again
    fake_api.fault_fn = None
    assert run(path, fake_api).todo == 0
    retaken = run(path, fake_api, retry_errors=True)
    assert (retaken.todo, retaken.ok) == (1, 1)
    assert extractions(path)[convs[0].id].status == "ok"
    assert fake_api.paid[broken] == 3


def test_refusals_are_error_rows_without_paying_for_retries(study, fake_api):
    path, convs = study
    target = key(convs[2])
    fake_api.fault_fn = lambda req: "refusal" if req.key == target else None
    report = run(path, fake_api)
    assert report.errors == 1 and report.error_reasons == {"refusal": 1}
    assert extractions(path)[convs[2].id].error.startswith("refusal")
    assert fake_api.paid[target] == 1


def test_a_run_that_only_fails_stops_early(study, fake_api):
    path, _ = study
    fake_api.fault_fn = lambda req: "refusal"
    with pytest.raises(AnnotatorError, match="stopped: the first 10"):
        run(path, fake_api, concurrency=1)
    assert sum(fake_api.paid.values()) == 10


def test_a_rejected_key_stops_the_run_and_stores_nothing(study, fake_api):
    path, _ = study
    fake_api.api_keys = {"some other key"}
    with pytest.raises(AnnotatorError, match="401"):
        run(path, fake_api)
    assert rows(path, "select count(*) from extractions") == [(0,)]


def test_no_api_key_in_the_database_or_logs(study, fake_api, caplog, capfd):
    path, _ = study
    caplog.set_level(logging.DEBUG)  # the SDK's own debug logging included
    fake_api.queued_faults.extend(["429", "malformed"])
    told = []  # what a progress display would show: no key in it either
    run(path, fake_api, progress=told.append)
    fake_api.batch_seconds = 0
    make_study(path.with_name("batch.db"), 3, seed=99)
    run(path.with_name("batch.db"), fake_api, batch=True, poll_interval=0.01)
    assert fake_api.keys_seen  # the key was sent...
    secret = TEST_API_KEY.encode()
    for file in path.parent.iterdir():  # ...but is in no database, WAL or journal file
        assert secret not in file.read_bytes(), file
    out, err = capfd.readouterr()
    assert told and told[-1].done == told[-1].total == 12
    assert TEST_API_KEY not in out + err + caplog.text + repr(told)
    assert "SECRET" not in caplog.text


def test_dry_run_estimates_without_calling(study, fake_api):
    path, _ = study
    report = run(path, fake_api, dry_run=True)
    assert fake_api.requests == {}
    est = report.estimate
    assert est["calls"] == 12 and est["cache_write_tokens"] > 1024
    assert est["cache_read_tokens"] == 11 * est["cache_write_tokens"]
    assert 0 < est["cost_usd"] < est["cost_usd_without_cache"]
    batch = run(path, fake_api, dry_run=True, batch=True).estimate
    assert batch["cost_usd"] == pytest.approx(est["cost_usd"] / 2, rel=0.01)
    assert rows(path, "select count(*) from extractions") == [(0,)]


def test_unscrubbed_conversations_are_not_sent(study, fake_api):
    path, convs = study
    database = open_db(path)
    database["conversations"].update(convs[0].id, {"scrubbed": 0})
    database.conn.close()
    report = run(path, fake_api)
    assert (report.todo, report.skipped_unscrubbed) == (11, 1)
    assert key(convs[0]) not in fake_api.attempts


def test_crash_mid_run_then_resume_pays_for_nothing_twice(tmp_path, fake_api):
    """kill -9 an `annotator extract` process mid-run; the rerun finishes the rest. After 20
    paid replies the fake answers nothing more, so the run cannot finish before the kill."""
    path = tmp_path / "study.db"
    convs = make_study(path, 60)
    fake_api.latency = 0.05
    fake_api.fault_fn = lambda req: "silent" if sum(fake_api.paid.values()) >= 20 else None
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": TEST_API_KEY,
        "ANTHROPIC_BASE_URL": fake_api.base_url,
    }
    env.pop("ANNOTATOR_DB", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "annotator", "extract", "--db", str(path), "--concurrency", "4",
         "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: committed(path) >= 10, "10 results committed while the run goes on",
               proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done_before = set(extractions(path))
    assert 10 <= len(done_before) < 60  # killed mid-run, with results committed as they came
    keys = {c.id: key(c) for c in convs}
    assert all(fake_api.paid[keys[cid]] == 1 for cid in done_before)

    fake_api.fault_fn = None
    report = run(path, fake_api, concurrency=4)
    assert report.cached == len(done_before) and report.todo == 60 - len(done_before)
    assert set(extractions(path)) == {c.id for c in convs}
    for cid in done_before:  # completed before the kill: not paid again
        assert fake_api.paid[keys[cid]] == 1
    paid_twice = [cid for cid in keys if fake_api.paid[keys[cid]] > 1]
    assert len(paid_twice) <= 4  # at most the calls in flight when the process died


def test_batch_submit_poll_collect(study, fake_api):
    path, convs = study
    fake_api.batch_seconds = 0.2
    report = run(path, fake_api, batch=True, poll_interval=0.05)
    assert (report.mode, report.ok, report.errors) == ("batch", 12, 0)
    assert fake_api.batch_creates == 1 and fake_api.requests["batches.retrieve"] >= 2
    assert "messages" not in fake_api.requests  # nothing went through the online endpoint
    prices = load_prices()
    for e in extractions(path).values():
        assert e.cost_usd == pytest.approx(
            prices.cost(MODEL, e.input_tokens, e.output_tokens, e.cache_read_tokens,
                        e.cache_write_tokens, batch=True)
        )
    batch_ids = rows(path, "select distinct batch_id from model_calls")
    assert batch_ids == [(report.batch_ids[0],)]
    assert rows(path, "select status, request_count from batches") == [("collected", 12)]
    again = run(path, fake_api, batch=True, poll_interval=0.05)
    assert again.todo == 0 and fake_api.batch_creates == 1


def test_batch_errors_become_rows_and_are_retaken(study, fake_api):
    path, convs = study
    broken = {key(convs[0]), key(convs[1])}
    fake_api.fault_fn = lambda req: "500" if req.key in broken else None
    report = run(path, fake_api, batch=True, poll_interval=0.01)
    assert (report.ok, report.errors) == (10, 2)
    fake_api.fault_fn = None
    retaken = run(path, fake_api, batch=True, poll_interval=0.01, retry_errors=True)
    assert (retaken.todo, retaken.ok) == (2, 2) and fake_api.batch_creates == 2


def test_batch_interrupted_while_polling_resumes_without_a_second_batch(tmp_path, fake_api):
    path = tmp_path / "study.db"
    convs = make_study(path, 8)
    fake_api.batch_seconds = 3600  # still processing when the first run dies
    env = {**os.environ, "ANTHROPIC_API_KEY": TEST_API_KEY, "ANTHROPIC_BASE_URL": fake_api.base_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "annotator", "extract", "--db", str(path), "--batch",
         "--poll-interval", "0.05", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: fake_api.requests["batches.retrieve"] >= 2,
               "the batch to be submitted and polled", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert rows(path, "select status from batches") == [("in_progress",)]
    assert rows(path, "select count(*) from extractions") == [(0,)]
    # a rerun sees the open batch: an online run does not take its conversations either
    online = run(path, fake_api)
    assert (online.todo, online.in_open_batches) == (0, 8)
    fake_api.batch_seconds = 0  # the batch has now ended
    report = run(path, fake_api, batch=True, poll_interval=0.05)
    assert fake_api.batch_creates == 1
    assert report.ok == 8 and set(extractions(path)) == {c.id for c in convs}
    assert all(fake_api.paid[key(c)] == 1 for c in convs)


def test_batch_created_but_not_recorded_is_found_not_resubmitted(study, fake_api, monkeypatch):
    """The process died after the API accepted the batch but before its id was saved."""
    path, convs = study
    fake_api.batch_seconds = 0
    original = ClaudeExtractor.create_batch

    async def create_then_die(self, requests):
        await original(self, requests)
        raise KeyboardInterrupt  # as if killed before the id reached the database

    monkeypatch.setattr(ClaudeExtractor, "create_batch", create_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(path, fake_api, batch=True, poll_interval=0.01)
    assert rows(path, "select status, batch_id from batches") == [("submitting", None)]
    monkeypatch.setattr(ClaudeExtractor, "create_batch", original)
    report = run(path, fake_api, batch=True, poll_interval=0.01)
    assert fake_api.batch_creates == 1 and report.ok == 12


def test_batch_that_never_reached_the_api_frees_its_conversations(study, fake_api, monkeypatch):
    path, _ = study
    fake_api.batch_seconds = 0

    async def die_before_sending(self, requests):
        raise KeyboardInterrupt

    original = ClaudeExtractor.create_batch
    monkeypatch.setattr(ClaudeExtractor, "create_batch", die_before_sending)
    with pytest.raises(KeyboardInterrupt):
        run(path, fake_api, batch=True, poll_interval=0.01)
    monkeypatch.setattr(ClaudeExtractor, "create_batch", original)
    report = run(path, fake_api, batch=True, poll_interval=0.01)
    assert (fake_api.batch_creates, report.ok) == (1, 12)
    assert sorted(rows(path, "select status from batches")) == [("abandoned",), ("collected",)]


def test_cli_extract_and_prompts(study, api_env):
    path, _ = study
    runner = CliRunner()
    result = runner.invoke(app, ["extract", "--db", str(path), "--limit", "5", "--json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert (report["extractor"], report["ok"], report["model"]) == ("claude", 5, MODEL)
    dry = runner.invoke(app, ["extract", "--db", str(path), "--dry-run"])
    assert dry.exit_code == 0 and "Estimate (nothing was sent)" in dry.output
    listing = orjson.loads(runner.invoke(app, ["prompts", "--db", str(path), "--json"]).stdout)
    used = [r for r in listing if r["id"] == report["prompt_id"]]
    assert used and used[0]["where"] == "file+db" and used[0]["first_used"]
    missing = runner.invoke(app, ["extract", "--db", str(path.with_name("none.db"))])
    assert missing.exit_code == 1 and "annotator init" in missing.output


def test_engine_module_has_no_sdk_import():
    import ast
    import pathlib

    package = pathlib.Path(extract_module.__file__).parents[1]
    importers = []
    for file in package.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "anthropic" for n in names):
                importers.append(file.relative_to(package).as_posix())
    assert sorted(set(importers)) == ["extract/claude.py"]


def test_structured_output_prompt_without_temperature(study, fake_api, tmp_path):
    """A prompt for models that reject forced tool use and sampling parameters."""
    v1 = load_prompt().text
    v2 = (
        v1.replace("version: v1", "version: v2")
        .replace("temperature: 0", "temperature: null")
        .replace("output: tool", "output: json")
    )
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "v2.md").write_text(v2, encoding="utf-8")
    path, convs = study
    report = run(path, fake_api, prompt=str(tmp_path / "values" / "v2.md"), limit=4)
    assert (report.ok, report.errors) == (4, 0)
    request = orjson.loads(rows(path, "select request from model_calls limit 1")[0][0])
    assert "temperature" not in request and "tools" not in request
    assert request["output_config"]["format"]["type"] == "json_schema"
    assert all(e.ai_values for e in extractions(path).values())


def test_default_http_transport_without_aiohttp(study, fake_api, monkeypatch):
    from annotator.extract import claude

    monkeypatch.setattr(claude, "_aiohttp_available", lambda: False)
    extractor = ClaudeExtractor(api_key=TEST_API_KEY, model=MODEL, concurrency=40)
    assert extractor.transport == "httpx" and len(extractor._clients) == 3  # 16 calls a pool
    path, _ = study
    fake_api.queued_faults.append("429")
    report = run(path, fake_api, concurrency=40, limit=6)
    assert (report.ok, report.errors) == (6, 0)
    # every request is a row, the one a rate limit turned away included (not billed)
    assert rows(path, "select status, count(*) from model_calls group by 1 order by 1") == [
        ("ok", 6), ("rejected", 1)
    ]


def test_a_failed_write_stops_the_run_loudly(study, fake_api):
    path, _ = study
    with sqlite3.connect(path) as conn:
        conn.execute(
            "create trigger refuse before insert on extractions "
            "begin select raise(abort, 'disk says no'); end"
        )
    with pytest.raises(AnnotatorError, match="cannot write results.*disk says no"):
        run(path, fake_api, limit=3)
