"""Benchmark the commands a research team runs on a study at paper scale, as they run them.

    .venv/bin/python bench/commands.py [--n 300000] [--db PATH] [--only agreement,export-parquet]

Builds (once) the synthetic study of `bench/app.py` (N conversations, 3 annotators who each skip
10%, 2 prompt versions, gold for every conversation), then runs each command as a process from
the shell (`.venv/bin/annotator ...`) and prints, per command: its wall time, the floor (plain
`sqlite3` reading every row the command reads, measured in the same run), their ratio and the
command's peak memory (the child's maximum resident set, `os.wait4`).

Commands that change the study (adjudicate, import-labels) run on a fresh copy of it and of
its summary cache, so every run starts from the same state; the copy is not timed. `summarize`
and `agreement-cold` run with the cache removed (a study never seen: no stored summaries or
frames), and `agreement-again` is the second `agreement` after that first one (what the first
stored); the other commands run on the study as a team has it after its last command, its
summaries and frames stored (`annotator summarize`, not timed). `import-labels` imports 1,000
new labels (a new annotator) and reports the seconds of the summaries it recomputed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import build_study  # noqa: E402 - bench/app.py

ANNOTATOR = str(Path(sys.executable).with_name("annotator"))
CACHE_DIR = ".annotator-cache"  # annotator.measure.frame_store.CACHE_DIR

# What each command reads, as plain SQL: its floor is the time to fetch every row of these.
ANNOTATIONS = ("select id, conversation_id, annotator, labels, lead_time, cancelled, updated_at "
               "from annotations where deleted = 0")
EXTRACTIONS = ("select conversation_id, prompt_id, model, extractor, status, response_type, "
               "ai_values, human_values, subjective, error, cost_usd, created_at from extractions")
GOLD = ("select conversation_id, response_type, ai_values, human_values, subjective, decided_by, "
        "decided_at, history from gold")
CONVERSATIONS = "select id, source, external_id, turns, metadata from conversations"
READS = {
    "agreement": (ANNOTATIONS, EXTRACTIONS, GOLD),
    "summarize": (ANNOTATIONS, EXTRACTIONS, GOLD),
    "adjudicate": (ANNOTATIONS, GOLD),
    "export": (ANNOTATIONS, GOLD, CONVERSATIONS),
    "export-proposals": (EXTRACTIONS, CONVERSATIONS),
}


def floor_seconds(db: Path, queries: tuple[str, ...]) -> float:
    """Seconds for plain sqlite3 to read every row of these queries (the cost of the data)."""
    started = time.perf_counter()
    conn = sqlite3.connect(db)
    for sql in queries:
        for _ in conn.execute(sql):
            pass
    conn.close()
    return time.perf_counter() - started


def run(args: list[str], stdout: Path | None = None) -> tuple[float, float, str]:
    """Run `annotator args` as a user does; wall seconds, peak resident MB, its stdout."""
    out = open(stdout, "wb") if stdout else subprocess.PIPE  # noqa: SIM115 - closed below
    # what the bench wrote before (a study's copy, the last export: gigabytes at 700k) goes
    # to disk now, not while this command runs: its write-back is not this command's cost
    os.sync()
    started = time.perf_counter()
    proc = subprocess.Popen([ANNOTATOR, *args], stdout=out, stderr=subprocess.PIPE)
    text = b"" if stdout else proc.stdout.read()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if stdout:
        out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"annotator {' '.join(args)} failed ({proc.returncode}): "
                         f"{err.decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024.0, text.decode()


def fresh_copy(db: Path, work: Path) -> Path:
    """A copy of the study and its summary cache, to run a command that changes them."""
    target = work / db.name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(db, target)
    cache = db.parent / CACHE_DIR / db.name
    target_cache = work / CACHE_DIR / db.name
    shutil.rmtree(target_cache, ignore_errors=True)
    if cache.exists():
        shutil.copytree(cache, target_cache)
    return target


def labels_file(db: Path, path: Path, n: int) -> None:
    """`n` new labels by a new annotator, for conversations of the study (import-labels)."""
    conn = sqlite3.connect(db)
    ids = [r[0] for r in conn.execute("select id from conversations order by id limit ?", [n])]
    conn.close()
    with open(path, "wb") as handle:
        for i, cid in enumerate(ids):
            handle.write(orjson.dumps({
                "conversation": cid, "annotator": "bench-import",
                "ai_values": ["Transparency"] if i % 2 else ["Honesty", "Helpfulness"],
                "human_values": [], "response_type": "mild support", "subjective": True,
            }) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000, help="conversations")
    parser.add_argument("--db", type=Path, default=None,
                        help="the study (built if missing; default bench/out/study-<n>.db)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for copies and exports (default: a temporary folder)")
    parser.add_argument("--only", default="", help="comma-separated command names to run")
    parser.add_argument("--new-labels", type=int, default=1_000)
    args = parser.parse_args()
    db = args.db or ROOT / "bench" / "out" / f"study-{args.n}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        t0 = time.perf_counter()
        counts = build_study(db, args.n)
        print(f"built {db} in {time.perf_counter() - t0:.0f} s: {counts}", flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="annotator-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    exports = work / "exports"
    rows: list[tuple[str, float, float, float, str]] = []
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    def measure(name: str, reads: str, command: Callable[[], tuple[float, float, str]],
                note: Callable[[str], str] = lambda _: "") -> None:
        if only and name not in only:
            return
        floor = floor_seconds(db, READS[reads])
        seconds, peak, out = command()
        rows.append((name, seconds, floor, peak, note(out)))
        print(f"  {name:<22} {seconds:8.1f} s  floor {floor:6.1f} s  {seconds / floor:6.1f}x  "
              f"{peak:8,.0f} MB  {note(out)}", flush=True)

    print(f"study {db} ({db.stat().st_size / 1e6:,.0f} MB), {os.cpu_count()} cores, load "
          f"average {os.getloadavg()[0]:.1f}", flush=True)
    cold = work / "cold"
    cold.mkdir(exist_ok=True)

    def summarize() -> tuple[float, float, str]:
        study = fresh_copy(db, cold)
        shutil.rmtree(cold / CACHE_DIR, ignore_errors=True)  # a study never seen
        return run(["summarize", "--db", str(study)])

    measure("summarize", "summarize", summarize)

    def agreement_cold() -> tuple[float, float, str]:
        study = fresh_copy(db, cold)
        shutil.rmtree(cold / CACHE_DIR, ignore_errors=True)  # no stored frames either
        return run(["agreement", "--db", str(study), "--json"])

    measure("agreement-cold", "agreement", agreement_cold)

    def agreement_again() -> tuple[float, float, str]:
        agreement_cold()  # not timed: the first `agreement` on a study never seen
        return run(["agreement", "--db", str(cold / db.name), "--json"])

    measure("agreement-again", "agreement", agreement_again)
    if not only or only - {"summarize", "agreement-cold", "agreement-again"}:
        # the study as a team has it after its last command (`extract`, `pull` and
        # `adjudicate` end by storing the app's summaries and the frames they read): not timed
        started = time.perf_counter()
        run(["summarize", "--db", str(db)])
        print(f"  (the study summarized, not timed: {time.perf_counter() - started:.0f} s)",
              flush=True)
    measure("agreement", "agreement", lambda: run(["agreement", "--db", str(db), "--json"]))

    def adjudicate() -> tuple[float, float, str]:
        study = fresh_copy(db, work)
        return run(["adjudicate", "--db", str(study), "--json"])

    def summaries_note(out: str) -> str:
        done = json.loads(out).get("app_summaries") or {}
        return (f"summaries {done.get('seconds', 0):.1f} s "
                f"({len(done.get('computed', []))} computed)")

    measure("adjudicate", "adjudicate", adjudicate, summaries_note)
    if not only or "adjudicate-no-summaries" in only:
        measure("adjudicate-no-summaries", "adjudicate", lambda: run(
            ["adjudicate", "--db", str(fresh_copy(db, work)), "--no-summaries", "--json"]))
    for fmt, name in (("parquet", "v.parquet"), ("jsonl", "v.jsonl"), ("csv", "v.csv"),
                      ("hf", "hf")):
        target = exports / name

        def export(target: Path = target, fmt: str = fmt) -> tuple[float, float, str]:
            if target.is_dir():
                shutil.rmtree(target)
            target.unlink(missing_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            return run(["export", str(target), "--db", str(db), "--format", fmt])

        measure(f"export-{fmt}", "export", export)

    def proposals() -> tuple[float, float, str]:
        target = exports / "proposals.parquet"
        target.unlink(missing_ok=True)
        return run(["export", str(target), "--db", str(db), "--what", "proposals"])

    measure("export-proposals", "export-proposals", proposals)

    def import_labels() -> tuple[float, float, str]:
        study = fresh_copy(db, work)
        # the study's summaries stored first: what a team has after its last command
        run(["summarize", "--db", str(study)])
        labels = work / "labels.jsonl"
        labels_file(study, labels, args.new_labels)
        return run(["import-labels", str(labels), "--db", str(study), "--json"])

    measure("import-labels", "adjudicate", import_labels, summaries_note)

    print()
    print(f"{'command':<24} {'wall s':>8} {'floor s':>8} {'ratio':>7} {'peak MB':>9}  note")
    for name, seconds, floor, peak, note in rows:
        print(f"{name:<24} {seconds:8.1f} {floor:8.1f} {seconds / floor:7.1f} {peak:9,.0f}  "
              f"{note}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
