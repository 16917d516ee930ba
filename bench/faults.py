"""Kill benchmark: `annotator extract` killed with SIGKILL at random points, then run to the end.

The fake Anthropic API (tests/fake_anthropic.py) runs in its own process and counts, per
conversation, the requests it received and the replies it billed. `annotator extract` runs as a
subprocess against it at concurrency > 1 and is killed (`kill -9`) N times at random points (a
random number of billed replies into each run, plus a random few milliseconds), then run once
more to completion. The study database is then checked against the fake's counts. Prints:
- lost: conversations without an extraction row at the end (goal 0);
- duplicated: replies recorded more often than the server billed them (goal 0);
- paid twice: billed replies beyond one per conversation (goal: at most the calls in flight at
  the kills, which the ledger shows as possibly paid);
- unrecorded: billed replies with no model_calls row, billed or possibly paid (goal 0);
- the calls each kill left in flight, and the ledger's possibly paid count and estimate.

    python bench/faults.py                 # 400 conversations, 10 kills, concurrency 16
    python bench/faults.py --kills 20 --seed 3
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from extract import API_KEY, Fake, make_db  # noqa: E402

from annotator import taxonomy  # noqa: E402
from annotator.extract.ledger import BILLED, IN_FLIGHT, POSSIBLY_PAID, call_ledger  # noqa: E402
from annotator.extract.prompts import load_prompt, render  # noqa: E402


@dataclass
class Figures:
    kills: int = 0
    finished_before_kill: int = 0
    in_flight_at_kills: list[int] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    paid_twice: int = 0
    unrecorded: int = 0
    possibly_paid: int = 0
    possibly_paid_usd: float = 0.0
    recorded_usd: float = 0.0
    billed_total: int = 0
    conversations: int = 0


def start_extract(db: Path, fake: Fake, concurrency: int) -> subprocess.Popen:
    env = {**os.environ, "ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": fake.url,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("ANNOTATOR_DB", None)
    return subprocess.Popen(
        [sys.executable, "-m", "annotator", "extract", "--db", str(db), "--concurrency",
         str(concurrency), "--json", "--no-summaries"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def paid_total(fake: Fake) -> int:
    return int(fake.stats()["paid_total"])


def in_flight(db: Path, counted: set[str]) -> int:
    """Calls left in flight by runs not counted yet (a run killed before it started work
    leaves none; the previous run's are settled by the next run that starts)."""
    with sqlite3.connect(db) as conn:
        found = dict(conn.execute(
            "select run_id, count(*) from model_calls where status = ? group by 1", [IN_FLIGHT]
        ).fetchall())
    new = {run: n for run, n in found.items() if run not in counted}
    counted.update(new)
    return sum(new.values())


def kill_at_random(
    db: Path, fake: Fake, concurrency: int, latency: float, rng: random.Random, counted: set[str]
) -> int | None:
    """One run killed after a random number of billed replies; the calls it left in flight,
    or None if it finished first."""
    target = paid_total(fake) + rng.randint(1, 3 * concurrency)
    proc = start_extract(db, fake, concurrency)
    deadline = time.monotonic() + 120
    while paid_total(fake) < target:
        if proc.poll() is not None:
            return None
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"timed out after 120 s waiting for {target} paid replies "
                             f"(the fake has {paid_total(fake)})")
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.05))  # not always just after a reply
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # The server finishes (and bills) what the dead run had sent: let those land before the
    # next run's target is set, so the next kill is counted from that run's own replies.
    time.sleep(2 * latency + 0.1)
    return in_flight(db, counted)


def check(db: Path, fake: Fake, keys: dict[str, str], figures: Figures) -> None:
    """Compare the study with what the fake received and billed, per conversation."""
    paid = Counter(fake.stats()["paid"])
    with sqlite3.connect(db) as conn:
        done = Counter(r[0] for r in conn.execute("select conversation_id from extractions"))
        billed_rows: Counter[str] = Counter()
        maybe_rows: Counter[str] = Counter()
        for cid, status, n in conn.execute(
            "select conversation_id, status, count(*) from model_calls group by 1, 2"
        ):
            if status in BILLED:
                billed_rows[cid] += n
            elif status in (POSSIBLY_PAID, IN_FLIGHT):
                maybe_rows[cid] += n
        ledger = call_ledger(conn)
    figures.conversations = len(keys)
    figures.billed_total = sum(paid.values())
    for cid, key in keys.items():
        figures.lost += done[cid] == 0
        figures.duplicated += max(0, billed_rows[cid] - paid[key]) + max(0, done[cid] - 1)
        figures.paid_twice += max(0, paid[key] - 1)
        figures.unrecorded += max(0, paid[key] - billed_rows[cid] - maybe_rows[cid])
    figures.possibly_paid = ledger.possibly_paid_calls
    figures.possibly_paid_usd = ledger.possibly_paid_usd_estimate
    figures.recorded_usd = ledger.cost_usd


def report(figures: Figures, concurrency: int) -> None:
    at_kills = figures.in_flight_at_kills
    print(f"{figures.conversations} conversations, concurrency {concurrency}, "
          f"{figures.kills} kills (kill -9) at random points"
          + (f", {figures.finished_before_kill} runs finished before their kill"
             if figures.finished_before_kill else ""))
    print(f"calls in flight at each kill: {at_kills} (total {sum(at_kills)})")
    print(f"replies billed by the server: {figures.billed_total}")
    print(f"lost: {figures.lost}  (goal 0)")
    print(f"duplicated: {figures.duplicated}  (goal 0)")
    print(f"paid twice: {figures.paid_twice}  (goal at most the calls in flight: "
          f"{sum(at_kills)})")
    print(f"unrecorded: {figures.unrecorded}  (goal 0)")
    print(f"ledger: recorded ${figures.recorded_usd:.4f}; possibly paid {figures.possibly_paid} "
          f"calls, estimate ${figures.possibly_paid_usd:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="conversations (default 400)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs (default 10)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds a reply takes")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    fake = Fake()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
            db = Path(tmp) / "study.db"
            convs = make_db(db, args.n)
            prompt = load_prompt()
            keys = {c.id: render(prompt, c).user for c in convs}
            names = [v.name for v in taxonomy.top_values(300)]
            fake.configure(latency=args.latency, fault_rate=0.0, names=names, reset=True)
            figures = Figures()
            counted: set[str] = set()
            for _ in range(args.kills):
                left = kill_at_random(db, fake, args.concurrency, args.latency, rng, counted)
                if left is None:
                    figures.finished_before_kill += 1
                    continue
                figures.kills += 1
                figures.in_flight_at_kills.append(left)
            final = start_extract(db, fake, args.concurrency)
            _, err = final.communicate()
            if final.returncode != 0:
                raise SystemExit(f"the final run failed: {err.decode()[-2000:]}")
            check(db, fake, keys, figures)
            report(figures, args.concurrency)
    finally:
        fake.close()


if __name__ == "__main__":
    main()
