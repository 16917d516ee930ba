"""The model privacy pass (`annotator scrub`, issue 20 item 3).

Integration tests run the real SDK over HTTP against the local fake API (`fake_anthropic`),
whose rule here answers with the names and addresses of a known list that appear in the request
text, as a small model would; real SQLite files. `replace_spans` tests are unit tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import orjson
import pytest
from conftest import TEST_API_KEY, rows
from fake_anthropic import FakeAnthropic, FakeRequest
from typer.testing import CliRunner
from waiting import wait_until

from annotator import db as db_module
from annotator.cli import app
from annotator.errors import AnnotatorError
from annotator.extract.extractors import ProposedSpans
from annotator.extract.prompts import render
from annotator.extract.scrub_pass import (
    check_cleared,
    newest_scrub_prompt,
    replace_spans,
    scrub,
    set_required,
    usable_spans,
)
from annotator.models import Conversation, Turn

NAMES = ["Maria Jensen", "Tobias", "Okonkwo"]
ADDRESSES = ["14 Larkspur Lane"]


def spans_rule(req: FakeRequest) -> dict:
    """What a model would find: every known name or address in the conversation's text, plus
    one span that is not in it (the pass must replace nothing for that one)."""
    text = req.text
    return {"names": [n for n in NAMES if n in text] + ["Nobody Here"],
            "addresses": [a for a in ADDRESSES if a in text]}


def conversations(n: int) -> list[Conversation]:
    out = []
    for i in range(n):
        name, other = NAMES[i % len(NAMES)], NAMES[(i + 1) % len(NAMES)]
        turns = [
            Turn(role="user", text=f"Conversation {i}: my friend {name} moved to "
                 f"{ADDRESSES[0]} and {other} helps. Also, Al says hi."),
            Turn(role="assistant", text=f"Say hello to {name} for me ({i})."),
        ]
        out.append(Conversation.from_turns(turns, source="test"))
    return out


def make(path, n: int = 6) -> list[Conversation]:
    convs = conversations(n)
    database = db_module.open_db(path)
    with database.conn:
        database["conversations"].insert_all(
            [db_module.conversation_to_row(c) for c in convs], pk="id")
    database.conn.close()
    return convs


def key(conv: Conversation) -> str:
    return render(newest_scrub_prompt(), conv).user


@pytest.fixture
def fake():
    server = FakeAnthropic(rule=spans_rule)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run(path, fake, **options):
    return scrub(path, api_key=TEST_API_KEY, base_url=fake.base_url, **options)


def texts(path) -> dict[str, str]:
    return {cid: " ".join(t["text"] for t in orjson.loads(turns))
            for cid, turns in rows(path, "select id, turns from conversations")}


# --- unit -----------------------------------------------------------------------------------


def test_replace_spans_whole_words_longest_first_and_nothing_tiny():
    pairs = usable_spans(ProposedSpans(names=["Al", "Maria", "Maria Jensen", "x", "[NAME]"],
                                       addresses=["14 Larkspur Lane"]))
    assert [p for p, _ in pairs] == ["14 Larkspur Lane", "Maria Jensen", "Maria", "Al"]
    out, where, missing = replace_spans(
        ["Also Maria Jensen and Maria at 14 Larkspur Lane; Al.", "Alan"], pairs)
    assert out == ["Also [NAME] and [NAME] at [ADDRESS]; [NAME].", "Alan"]
    assert missing == 0 and sum(w["count"] for w in where) == 4


# --- the pass against the fake API ------------------------------------------------------------


@pytest.mark.integration
def test_the_pass_replaces_spans_records_priced_calls_and_a_rerun_sends_nothing(tmp_path, fake):
    path = tmp_path / "study.db"
    convs = make(path)
    report = run(path, fake, concurrency=3)
    assert report.run["ok"] == len(convs) and report.applied == len(convs)
    assert report.not_found == len(convs)  # "Nobody Here" each time: recorded, not replaced
    after = texts(path)
    assert set(after) == {c.id for c in convs}  # ids (keyed hashes of the original) kept
    for text in after.values():
        assert not any(s in text for s in [*NAMES, *ADDRESSES]), text
        assert "[NAME]" in text and "[ADDRESS]" in text and "Also, Al says hi" in text
    calls = rows(path, "select count(*), sum(cost_usd > 0), count(distinct prompt_id) "
                       "from model_calls where status = 'ok'")
    assert calls == [(len(convs), len(convs), 1)]
    assert report.run["cost_usd"] > 0
    # the spans are gone from what the study keeps of the calls too; where each went is kept
    logged = " ".join(r for (r,) in rows(path, "select request || response from model_calls"))
    assert not any(s in logged for s in NAMES)
    kept = rows(path, "select replaced, model from scrub_passes")
    assert len(kept) == len(convs) and all(m == "claude-haiku-4-5" for _, m in kept)
    assert all(not any(s in r for s in NAMES) for r, _ in kept)
    assert report.cleared == len(convs) and report.uncleared == 0

    sent = sum(fake.attempts.values())
    again = run(path, fake)
    assert sum(fake.attempts.values()) == sent  # cached: nothing sent, nothing paid
    assert (again.run["todo"], again.run["cached"], again.applied) == (0, len(convs), 0)
    assert texts(path) == after


@pytest.mark.integration
def test_dry_run_prices_the_pass_without_a_key_and_sends_nothing(tmp_path, fake, monkeypatch):
    path = tmp_path / "study.db"
    convs = make(path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
    result = CliRunner().invoke(app, ["scrub", "--db", str(path), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout)
    estimate = out["run"]["estimate"]
    assert estimate["calls"] == len(convs) and estimate["cost_usd"] > 0 and estimate["priced"]
    assert out["run"]["model"] == "claude-haiku-4-5"
    assert sum(fake.attempts.values()) == 0
    assert rows(path, "select count(*) from model_calls") == [(0,)]
    assert out["uncleared"] == len(convs)


@pytest.mark.integration
def test_a_killed_pass_resumes_without_paying_twice(tmp_path, fake):
    path = tmp_path / "study.db"
    convs = make(path, 30)
    keys = {c.id: key(c) for c in convs}
    fake.latency = 0.2

    def paid() -> int:
        return sum(fake.paid.values())

    fake.fault_fn = lambda req: "silent" if paid() >= 8 else None
    env = {**os.environ, "ANTHROPIC_API_KEY": TEST_API_KEY, "ANTHROPIC_BASE_URL": fake.base_url}
    env.pop("ANNOTATOR_DB", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "annotator", "scrub", "--db", str(path), "--json",
         "--concurrency", "4"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: paid() >= 8, "8 paid replies", proc=proc)
    wait_until(lambda: rows(path, "select count(*) from model_calls where status = "
                                  "'in_flight'")[0][0], "a call in flight", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    fake.fault_fn = None
    in_flight = rows(path, "select count(*) from model_calls where status = 'in_flight'")[0][0]
    assert 1 <= in_flight <= 4
    report = run(path, fake, concurrency=4)
    assert report.cleared == len(convs) and report.uncleared == 0
    assert report.run["settled_possibly_paid"] == in_flight
    paid_twice = sum(max(0, fake.paid[k] - 1) for k in keys.values())
    assert paid_twice <= in_flight  # only what was in flight when killed may be paid again
    for cid, k in keys.items():  # nothing paid without a row: billed or possibly paid
        recorded = rows(path, "select count(*) from model_calls where conversation_id = ? and "
                              "status in ('ok', 'invalid', 'refusal', 'possibly_paid')", [cid])
        assert fake.paid[k] <= recorded[0][0]
    assert not any(s in t for t in texts(path).values() for s in NAMES)


# --- the study setting: push refuses what the pass has not cleared ----------------------------


@pytest.mark.integration
def test_push_refuses_uncleared_conversations_when_the_study_requires_the_pass(tmp_path, fake):
    from annotator.review.push import push

    path = tmp_path / "study.db"
    convs = make(path, 4)
    database = db_module.open_existing_db(path)
    check_cleared(database)  # setting off: nothing refused
    set_required(database, True)
    with pytest.raises(AnnotatorError, match=r"^4 conversations have not been cleared .*"
                       r"run `annotator scrub` first$"):
        check_cleared(database)
    database.conn.close()
    # push checks before it talks to any server (none runs here)
    with pytest.raises(AnnotatorError, match="4 conversations have not been cleared"):
        push(path)
    run(path, fake, limit=3)
    database = db_module.open_existing_db(path)
    with pytest.raises(AnnotatorError, match="^1 conversations have not been cleared"):
        check_cleared(database)
    check_cleared(database, [c.id for c in convs][:0])  # nothing to push: nothing refused
    database.conn.close()
    result = CliRunner().invoke(app, ["scrub", "--db", str(path), "--no-require"])
    assert result.exit_code == 0, result.output
    database = db_module.open_existing_db(path)
    check_cleared(database)
    database.conn.close()


@pytest.mark.integration
def test_a_scrub_pass_is_never_a_prediction_or_a_scored_version(tmp_path, fake):
    from annotator.measure.frames import extractions_frame, prompt_list, study_summary
    from annotator.review.push import _load_extractions, _newest_prompt

    path = tmp_path / "study.db"
    make(path, 3)
    run(path, fake)
    database = db_module.open_existing_db(path)
    assert rows(path, "select count(*) from extractions") == [(3,)]
    assert _load_extractions(database, None) == {} and _newest_prompt(database) is None
    assert extractions_frame(database).empty and prompt_list(database).empty
    summary = study_summary(database)
    assert summary["extracted (ok)"] == 0 and summary["prompt versions used"] == 0
    assert summary["cleared by the model privacy pass"] == 3
    database.conn.close()
