"""Every paid call recorded, none paid twice (issue 12, item 4; the extract half of item 7).

Against the fake API over real HTTP, through the real SDK: each call is committed "in_flight"
before the server sees it; a `kill -9` leaves those rows and the rerun reports them possibly
paid; two runs on one study split nothing twice (claims, leases, dead owners); a locked study
slows a run and drops nothing; unreadable 200 bodies and a silent server become retries and
error rows, never a crash or a hang."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta

import orjson
import pytest
from conftest import TEST_API_KEY, make_study, rows
from test_extract import extractions, key, run
from typer.testing import CliRunner
from waiting import wait_until

from annotator.cli import app
from annotator.errors import AnnotatorError
from annotator.extract import ledger
from annotator.models import utc_now

pytestmark = pytest.mark.integration
MODEL = "claude-sonnet-4-6"
BILLED = "('ok', 'invalid', 'refusal')"


def statuses(path, cid: str) -> list[str]:
    return [s for (s,) in rows(
        path, "select status from model_calls where conversation_id = ? order by id", [cid]
    )]


def start_cli_extract(path, fake, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ANTHROPIC_API_KEY": TEST_API_KEY, "ANTHROPIC_BASE_URL": fake.base_url}
    env.pop("ANNOTATOR_DB", None)
    return subprocess.Popen(
        [sys.executable, "-m", "annotator", "extract", "--db", str(path), "--json", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def paid(fake) -> int:
    return sum(fake.paid.values())


def hold_replies_after(fake, n: int) -> threading.Event:
    """Once `n` replies are paid, the fake answers a request only after the returned event is
    set (at most a minute): a run cannot finish, or move on, while the test acts."""
    go_on = threading.Event()

    def hold(req):  # runs in the server, which stops answering until the test is done
        if paid(fake) >= n:
            go_on.wait(60)
        return None

    fake.fault_fn = hold
    return go_on


# --- the journal --------------------------------------------------------------------------------


def test_each_call_is_committed_in_flight_before_the_server_sees_it(study, fake_api):
    path, convs = study
    ids = {key(c): c.id for c in convs}
    first = key(convs[0])
    in_flight_when_received: list[int] = []

    def observe(req):  # runs in the server, on receipt: the study must already hold the call
        with sqlite3.connect(path) as conn:
            in_flight_when_received.append(conn.execute(
                "select count(*) from model_calls where conversation_id = ? and status = ?",
                [ids[req.key], "in_flight"],
            ).fetchone()[0])
        return "429" if req.key == first and req.attempt == 1 else None

    fake_api.fault_fn = observe
    report = run(path, fake_api, concurrency=4)
    assert (report.ok, report.calls) == (12, 13)
    # the retry's row is there too; the refused first try is completed with the outcome
    assert sorted(in_flight_when_received) == [1] * 12 + [2]
    assert statuses(path, convs[0].id) == ["rejected", "ok"]  # the retry is a row of its own
    assert rows(path, "select count(*) from model_calls where status = 'in_flight'") == [(0,)]
    assert rows(path, "select count(*) from claims") == [(0,)]  # released with each result
    assert rows(path, "select status from extract_runs") == [("finished",)]
    assert report.ledger["billed_calls"] == 12 and report.ledger["possibly_paid_calls"] == 0


def test_kill_9_leaves_calls_in_flight_the_rerun_reports_them_possibly_paid(
    tmp_path, fake_api, api_env
):
    path = tmp_path / "study.db"
    convs = make_study(path, 60)
    keys = {c.id: key(c) for c in convs}
    fake_api.latency = 0.2
    # after 16 paid replies the fake answers nothing more: the run cannot finish before the kill
    fake_api.fault_fn = lambda req: "silent" if paid(fake_api) >= 16 else None
    proc = start_cli_extract(path, fake_api, "--concurrency", "8")
    wait_until(lambda: paid(fake_api) >= 16, "16 paid replies", proc=proc)
    wait_until(lambda: rows(path, "select count(*) from model_calls where status = 'in_flight'"
                            )[0][0], "a call in flight", proc=proc)  # fmt: skip
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    fake_api.fault_fn = None
    in_flight = rows(path, "select count(*) from model_calls where status = 'in_flight'")[0][0]
    assert 1 <= in_flight <= 8  # the calls the dead run had sent: recorded, not lost
    # every request the server received is in the study (a row may precede its request)
    for cid, k in keys.items():
        recorded = rows(path, "select count(*) from model_calls where conversation_id = ?", [cid])
        assert fake_api.attempts.get(k, 0) <= recorded[0][0]

    runner = CliRunner()
    dry = orjson.loads(runner.invoke(app, ["extract", "--db", str(path), "--dry-run",
                                           "--json"]).stdout)
    assert dry["ledger"]["possibly_paid_calls"] == in_flight  # seen before any run settles it
    assert dry["ledger"]["possibly_paid_usd_estimate"] > 0
    status = orjson.loads(runner.invoke(app, ["status", "--db", str(path), "--json"]).stdout)
    assert status["model calls possibly paid"] == in_flight

    rerun = runner.invoke(app, ["extract", "--db", str(path), "--concurrency", "8"])
    assert rerun.exit_code == 0, rerun.output
    assert f"{in_flight} calls were in flight when an earlier run died" in rerun.output
    assert "Possibly paid" in rerun.output
    assert rows(path, "select status, count(*) from model_calls where status like 'p%' "
                      "or status = 'in_flight' group by 1") == [("possibly_paid", in_flight)]
    assert rows(path, "select status from extract_runs order by started_at") == [
        ("dead",), ("finished",)
    ]
    assert set(extractions(path)) == {c.id for c in convs}
    paid_twice = sum(max(0, fake_api.paid[k] - 1) for k in keys.values())
    assert paid_twice <= in_flight
    for cid, k in keys.items():  # nothing paid without a row: billed or possibly paid
        recorded = rows(path, f"select count(*) from model_calls where conversation_id = ? and "
                              f"(status in {BILLED} or status = 'possibly_paid')", [cid])[0][0]
        assert fake_api.paid[k] <= recorded


# --- claims -------------------------------------------------------------------------------------


def test_two_runs_at_once_never_send_the_same_call(study, fake_api):
    path, convs = study
    fake_api.latency = 0.3
    reports = []
    threads = [
        threading.Thread(target=lambda: reports.append(run(path, fake_api, concurrency=4)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a run did not end within two minutes"
    first, second = sorted(reports, key=lambda r: -r.todo)
    assert (first.todo, second.todo) == (12, 0)
    assert second.held_elsewhere == 12 and first.run_id[:8] in second.held_by[0]
    assert all(fake_api.paid[key(c)] == 1 for c in convs)
    assert sum(fake_api.attempts.values()) == 12


def test_a_second_cli_run_skips_claimed_work_and_says_so(study, fake_api, api_env):
    path, convs = study
    fake_api.latency = 0.3
    go_on = hold_replies_after(fake_api, 1)  # the first run stays mid-way while the second runs
    proc = start_cli_extract(path, fake_api, "--concurrency", "2")
    wait_until(lambda: paid(fake_api) >= 1, "a paid reply", proc=proc)
    before = sum(fake_api.attempts.values())
    try:
        second = CliRunner().invoke(app, ["extract", "--db", str(path)])
    finally:
        go_on.set()
    assert second.exit_code == 0, second.output
    said = " ".join(second.output.split())
    assert re.search(r"Skipped \d+ conversations: another run is extracting them", said)
    assert f"pid {proc.pid} on {socket.gethostname()}" in said
    assert proc.wait(timeout=60) == 0
    assert sum(fake_api.attempts.values()) == 12 and before >= 1
    assert all(fake_api.paid[key(c)] == 1 for c in convs)


def _foreign_run(path, host: str, pid: int, lease_seconds: float, cids: list[str]) -> str:
    """A run of another process (or host) holding claims, written as that run would."""
    owner = ledger.RunOwner(f"other{pid}", pid, host)
    conn = sqlite3.connect(path, isolation_level=None)
    prompt_id = rows(path, "select id from prompts")[0][0] if rows(
        path, "select count(*) from prompts")[0][0] else None
    conn.execute("begin immediate")
    ledger.register_run(conn, owner, prompt_id or "", MODEL, 60)
    until = (utc_now() + timedelta(seconds=lease_seconds)).isoformat()
    conn.execute("update extract_runs set lease_until = ? where id = ?", [until, owner.id])
    ledger.claim(conn, owner, prompt_id or "", MODEL, cids)
    conn.execute("commit")
    conn.close()
    return owner.id


def test_claims_hold_while_the_owner_lives_and_expire_when_it_dies(study, fake_api):
    path, convs = study
    run(path, fake_api, limit=1)  # records the prompt version
    cids = [c.id for c in convs if c.id not in extractions(path)]
    # another host, lease running: its claims are respected
    _foreign_run(path, "elsewhere.example", 4242, 300, cids[:3])
    report = run(path, fake_api, limit=2)
    assert report.held_elsewhere == 3 and "elsewhere.example" in report.held_by[0]
    assert not set(extractions(path)) & set(cids[:3])
    # its lease ran out: the claims are taken over
    with sqlite3.connect(path) as conn:
        conn.execute("update extract_runs set lease_until = '2000-01-01T00:00:00+00:00' "
                     "where host = 'elsewhere.example'")
    # this host, a pid that is gone (lease still running): dead at once
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=60)
    _foreign_run(path, socket.gethostname(), gone.pid, 300, cids[5:7])
    report = run(path, fake_api)
    assert report.held_elsewhere == 0 and report.todo == 12 - 3
    assert rows(path, "select count(*) from extract_runs where status = 'dead'") == [(2,)]
    assert all(fake_api.paid[key(c)] == 1 for c in convs)


def test_a_live_run_renews_its_lease(study, fake_api):
    """A run outliving its lease keeps its claims: a second run started later skips them."""
    path, convs = study
    fake_api.latency = 0.25
    reports = []
    first = threading.Thread(
        target=lambda: reports.append(run(path, fake_api, concurrency=1, lease=1.0))
    )
    go_on = hold_replies_after(fake_api, 6)  # the first run waits for its 7th reply meanwhile
    first.start()
    wait_until(lambda: paid(fake_api) >= 6, "6 paid replies")  # > 1.5 s in: lease renewed
    try:
        second = run(path, fake_api, lease=1.0)
    finally:
        go_on.set()
    first.join(timeout=120)
    assert not first.is_alive(), "the first run did not end within two minutes"
    assert second.todo == 0 and second.held_elsewhere >= 1
    assert (reports[0].ok, reports[0].lost_claims) == (12, 0)
    assert all(fake_api.paid[key(c)] == 1 for c in convs)


# --- a locked study ---------------------------------------------------------------------------


def test_a_locked_study_delays_writes_and_drops_no_paid_result(study, fake_api):
    """Another connection holds the write lock (BEGIN IMMEDIATE) for 1.5 s, far beyond the
    run's busy_timeout, while replies arrive: the run waits, then records every one."""
    path, convs = study
    locked = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("begin immediate")
        locked.set()
        time.sleep(1.5)
        conn.execute("commit")
        conn.close()

    def lock_on_fourth(req):
        if sum(fake_api.attempts.values()) == 4 and not locked.is_set():
            threading.Thread(target=hold_lock, daemon=True).start()
            assert locked.wait(30), "the lock was not taken within 30 s"
        return None

    fake_api.fault_fn = lock_on_fourth
    report = run(path, fake_api, concurrency=4, busy_timeout=0.1)
    assert locked.is_set() and report.lock_wait_seconds >= 1.0
    assert (report.ok, report.errors) == (12, 0)
    assert set(extractions(path)) == {c.id for c in convs}
    assert rows(path, "select status, count(*) from model_calls group by 1") == [("ok", 12)]
    assert all(fake_api.paid[key(c)] == 1 for c in convs)


# --- bad replies and silence ----------------------------------------------------------------


def test_unreadable_200_bodies_are_retried_then_become_error_rows(study, fake_api):
    path, convs = study
    flaky, broken = key(convs[0]), key(convs[1])
    fake_api.fault_fn = lambda req: (
        "garbage" if req.key == flaky and req.attempt == 1
        else "truncated" if req.key == broken else None
    )
    report = run(path, fake_api, max_retries=2)
    assert (report.ok, report.errors) == (11, 1)  # no crash, no missing row
    done = extractions(path)
    assert set(done) == {c.id for c in convs}
    assert done[convs[0].id].status == "ok"
    assert statuses(path, convs[0].id) == ["possibly_paid", "ok"]
    failed = done[convs[1].id]
    assert failed.status == "error" and "unreadable reply (HTTP 200)" in failed.error
    assert statuses(path, convs[1].id) == ["possibly_paid"] * 3 == ["possibly_paid"] * (
        fake_api.paid[broken]
    )
    assert report.possibly_paid_calls == 4 and report.ledger["possibly_paid_calls"] == 4


def test_a_silent_server_becomes_retries_and_error_rows(study, fake_api):
    path, convs = study
    quiet = key(convs[0])
    fake_api.fault_fn = lambda req: "silent" if req.key == quiet else None
    started = time.monotonic()
    report = run(path, fake_api, timeout=0.3, max_retries=1, concurrency=4)
    assert time.monotonic() - started < 15
    assert (report.ok, report.errors) == (11, 1)
    failed = extractions(path)[convs[0].id]
    assert failed.status == "error" and "no reply within 0.3 s" in failed.error
    assert fake_api.attempts[quiet] == 2 and statuses(path, convs[0].id) == ["possibly_paid"] * 2


def test_a_server_that_never_answers_cannot_hang_the_cli(study, fake_api, api_env):
    path, _ = study
    fake_api.silent = True
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["extract", "--db", str(path), "--timeout", "0.2", "--max-retries", "0",
              "--concurrency", "4"],
    )
    assert time.monotonic() - started < 20
    assert result.exit_code == 1 and "stopped: the first" in result.output
    assert "no reply within 0.2 s" in result.output
    errors = rows(path, "select count(*) from extractions where status = 'error'")[0][0]
    assert errors >= 10
    assert rows(path, "select count(*) from model_calls where status = 'in_flight'") == [(0,)]


def test_library_rejects_a_timeout_of_zero(study, fake_api):
    path, _ = study
    with pytest.raises(AnnotatorError, match="--timeout"):
        run(path, fake_api, timeout=0)
