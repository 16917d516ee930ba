"""Who is extracting what, and what the model calls cost: runs, claims and the call ledger.

Each `extract` run registers itself in `extract_runs` (a run id, its pid and host, a lease it
renews while alive) and claims the (conversation, prompt, model) work it takes in `claims`, in
one write transaction with the choice of that work: a second run on the same study skips what a
live run holds. A run is dead when it ended, when its lease ran out, or (on this host) when its
pid is gone; a later run settles a dead run: frees its claims and marks the calls it left
"in_flight" as "possibly_paid" (sent, no reply recorded: the API may have billed them).

Every function here takes a plain `sqlite3.Connection` (or anything with `execute`); the
writers expect to run inside the caller's write transaction.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from annotator.models import utc_now

DEFAULT_LEASE = 300.0  # seconds a run's claims outlive its last renewal (renewed every third)
# Statuses of model_calls rows: a reply (billed), no reply and not billed, or unknown.
BILLED = ("ok", "invalid", "refusal")
POSSIBLY_PAID = "possibly_paid"
IN_FLIGHT = "in_flight"


class Conn(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...


@dataclass(frozen=True)
class RunOwner:
    """Who holds a claim: a run of `extract`, in a process, on a host."""

    id: str
    pid: int
    host: str

    @classmethod
    def this_process(cls) -> RunOwner:
        return cls(uuid.uuid4().hex, os.getpid(), socket.gethostname())

    def describe(self) -> str:
        return f"run {self.id[:8]} (pid {self.pid} on {self.host})"


def _now() -> datetime:
    return utc_now()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # Linux: "pid (name) S ..."; a killed child not yet reaped is "Z"
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def run_alive(row: dict[str, Any], now: datetime | None = None) -> bool:
    """A run row is alive if it says running, its lease holds and, on this host, its pid too."""
    if row["status"] != "running":
        return False
    if datetime.fromisoformat(row["lease_until"]) <= (now or _now()):
        return False
    return row["host"] != socket.gethostname() or pid_alive(int(row["pid"]))


_RUN_KEYS = ("id", "pid", "host", "status", "lease_until")


def _running(conn: Conn) -> list[dict[str, Any]]:
    return [
        dict(zip(_RUN_KEYS, r, strict=True))
        for r in conn.execute(
            "select id, pid, host, status, lease_until from extract_runs where status = 'running'"
        )
    ]


def live_runs(conn: Conn) -> dict[str, RunOwner]:
    """Runs alive now, by id."""
    now = _now()
    return {
        r["id"]: RunOwner(r["id"], int(r["pid"]), r["host"])
        for r in _running(conn)
        if run_alive(r, now)
    }


# --- writers (inside the caller's write transaction) -------------------------------------------


def register_run(conn: Conn, owner: RunOwner, prompt_id: str, model: str, lease: float) -> None:
    now = _now()
    conn.execute(
        "insert into extract_runs (id, pid, host, prompt_id, model, status, started_at, "
        "lease_until) values (?, ?, ?, ?, ?, 'running', ?, ?)",
        [owner.id, owner.pid, owner.host, prompt_id, model, now.isoformat(),
         (now + timedelta(seconds=lease)).isoformat()],
    )


def renew(conn: Conn, owner: RunOwner, lease: float) -> bool:
    """Extend the lease; False if this run was meanwhile declared dead (its claims are gone)."""
    until = (_now() + timedelta(seconds=lease)).isoformat()
    cursor = conn.execute(
        "update extract_runs set lease_until = ? where id = ? and status = 'running'",
        [until, owner.id],
    )
    return cursor.rowcount == 1


def settle_dead_runs(conn: Conn) -> int:
    """Mark runs that died as dead, free their claims, and turn the calls they left in flight
    into "possibly_paid"; the number of such calls."""
    now = _now()
    dead = [r["id"] for r in _running(conn) if not run_alive(r, now)]
    settled = 0
    for run_id in dead:
        conn.execute(
            "update extract_runs set status = 'dead', ended_at = ? where id = ?",
            [now.isoformat(), run_id],
        )
        conn.execute("delete from claims where run_id = ?", [run_id])
        settled += _settle_calls(conn, run_id, "its run died before the reply was recorded")
    return settled


def _settle_calls(conn: Conn, run_id: str, why: str) -> int:
    cursor = conn.execute(
        "update model_calls set status = ?, response = json_object('error', ?) "
        "where run_id = ? and status = ?",
        [POSSIBLY_PAID, why, run_id, IN_FLIGHT],
    )
    return cursor.rowcount


def finish_run(conn: Conn, owner: RunOwner, status: str) -> int:
    """End a run: free its claims; calls still in flight (cancelled mid-request) become
    possibly paid. Returns how many."""
    conn.execute("delete from claims where run_id = ?", [owner.id])
    conn.execute(
        "update extract_runs set status = ?, ended_at = ? where id = ?",
        [status, _now().isoformat(), owner.id],
    )
    return _settle_calls(conn, owner.id, "the run stopped before the reply arrived")


def held_elsewhere(conn: Conn, prompt_id: str, model: str, me: str | None) -> dict[str, str]:
    """Conversations claimed for (prompt, model) by other live runs: id -> run id."""
    live = live_runs(conn)
    return {
        cid: run_id
        for cid, run_id in conn.execute(
            "select conversation_id, run_id from claims where prompt_id = ? and model = ?",
            [prompt_id, model],
        )
        if run_id != me and run_id in live
    }


def claim(conn: Conn, owner: RunOwner, prompt_id: str, model: str, ids: list[str]) -> None:
    """Claim work for `owner` (a stale claim of a dead run is replaced)."""
    now = _now().isoformat()
    conn.executemany(  # type: ignore[attr-defined]
        "insert or replace into claims (conversation_id, prompt_id, model, run_id, claimed_at) "
        "values (?, ?, ?, ?, ?)",
        [(cid, prompt_id, model, owner.id, now) for cid in ids],
    )


def holds(conn: Conn, owner: RunOwner, conversation_id: str, prompt_id: str, model: str) -> bool:
    row = conn.execute(
        "select run_id from claims where conversation_id = ? and prompt_id = ? and model = ?",
        [conversation_id, prompt_id, model],
    ).fetchone()
    return row is not None and row[0] == owner.id


def release(conn: Conn, owner: RunOwner, conversation_id: str, prompt_id: str, model: str) -> None:
    conn.execute(
        "delete from claims where conversation_id = ? and prompt_id = ? and model = ? "
        "and run_id = ?",
        [conversation_id, prompt_id, model, owner.id],
    )


# --- the cost ledger (read only) ------------------------------------------------------------


@dataclass
class CallLedger:
    """What the study's model calls cost: recorded from replies, and what may have been paid
    without a reply (a count and an estimate: ~4 characters a token, no cache, typical reply)."""

    calls: int = 0  # rows in model_calls: every request sent or about to be
    billed_calls: int = 0  # replies received (usage known)
    cost_usd: float = 0.0  # from the usage of those replies
    possibly_paid_calls: int = 0  # sent, no usable reply (timeout, unreadable, run killed)
    possibly_paid_usd_estimate: float = 0.0
    in_flight_calls: int = 0  # sent by runs alive now, reply not yet recorded

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["possibly_paid_usd_estimate"] = round(self.possibly_paid_usd_estimate, 6)
        return data


def call_ledger(conn: Conn) -> CallLedger:
    """The ledger now. A call left in flight by a dead run counts as possibly paid even before
    a later run settles it (so a dry run or `status` shows it too)."""
    ledger = CallLedger()
    live = live_runs(conn)
    marks = ", ".join("?" for _ in BILLED)
    for status, run_id, n, cost, estimate in conn.execute(
        "select case when status in (" + marks + ") then 'billed' else status end, "
        "case when status = ? then run_id end, count(*), sum(coalesce(cost_usd, 0)), "
        "sum(coalesce(estimated_cost_usd, 0)) from model_calls group by 1, 2",
        [*BILLED, IN_FLIGHT],
    ):
        ledger.calls += n
        if status == "billed":
            ledger.billed_calls += n
            ledger.cost_usd += cost
        elif status == POSSIBLY_PAID or (status == IN_FLIGHT and run_id not in live):
            ledger.possibly_paid_calls += n
            ledger.possibly_paid_usd_estimate += estimate
        elif status == IN_FLIGHT:
            ledger.in_flight_calls += n
    return ledger
