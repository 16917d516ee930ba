"""Isolated review benchmark: what one Label Studio instance per reviewer costs.

For R reviewers (default 10), each command timed as a lead runs it, a process from the shell:
`annotator labelstudio add-user EMAIL` per reviewer (a copy of the migrated template, then a
start until it answers), `annotator labelstudio stop` and `annotator labelstudio start` (all R
instances at once), each instance's resident memory once started, and `annotator push`
(isolated, overlap 2) of N conversations. Beside them, the floor of the same run: `annotator
labelstudio status` (a process that imports the same code and starts nothing). The one-off
template build (a first migration, about 25 s) is done before timing and reported apart. It
ends with how many reviewers a machine of a given memory holds.

    python bench/reviewer_instances.py                # 10 reviewers, 300 conversations
    python bench/reviewer_instances.py --reviewers 3 --n 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from annotator.db import conversation_to_row, extraction_to_row, open_db
from annotator.models import Conversation, Extraction, Turn
from annotator.review import instances, server
from annotator.taxonomy import load_taxonomy


def build_study(db_path: Path, n: int) -> None:
    taxonomy = load_taxonomy()
    db = open_db(db_path)
    conversations, extractions = [], []
    for i in range(n):
        c = Conversation.from_turns([
            Turn(role="user", text=f"Conversation {i}: should I tell my manager the truth?"),
            Turn(role="assistant", text="Honesty builds trust; say it early and kindly."),
        ], source="bench")  # fmt: skip
        conversations.append(conversation_to_row(c))
        extractions.append(extraction_to_row(Extraction(
            conversation_id=c.id, prompt_id="bench", model="m", extractor="bench",
            subjective=True, response_type="mild support",
            ai_values=[taxonomy.value_ref("honesty", score=0.5 + (i % 50) / 100)],
        )))  # fmt: skip
    db["conversations"].insert_all(conversations, pk="id")
    db["extractions"].insert_all(extractions, pk=("conversation_id", "prompt_id", "model"))


def rss_mb(pid: int | None) -> float:
    """Resident memory of a server's process group (the label-studio process and children)."""
    if pid is None:
        return 0.0
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pid:  # process group id
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


def timed(*args: str) -> float:
    """Seconds `annotator ARGS` takes as a process, as a lead runs it; its failure ends the run."""
    env = {k: v for k, v in os.environ.items() if k not in ("LABEL_STUDIO_URL",
                                                             "LABEL_STUDIO_API_KEY")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "annotator", *args], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"annotator {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=10)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    venv = server.install(server.default_venv())
    started = time.perf_counter()
    server.ensure_template(venv)
    print(f"template ready in {time.perf_counter() - started:.1f} s (built once per machine)")
    with tempfile.TemporaryDirectory(prefix="bench-reviewers-") as tmp:
        db = str(Path(tmp) / "study.db")
        build_study(Path(db), args.n)
        emails = [f"reviewer{i}@example.org" for i in range(args.reviewers)]
        try:
            floor = min(timed("labelstudio", "status", "--db", db) for _ in range(3))
            add_seconds = [timed("labelstudio", "add-user", email, "--db", db)
                           for email in emails]
            memory = [rss_mb(server.read_state(r.anchor).pid)
                      for r in instances.reviewers(Path(db))]
            push_seconds = timed("push", "--db", db, "--project", "bench", "--overlap",
                                 str(min(2, args.reviewers)))
            stop_seconds = timed("labelstudio", "stop", "--db", db)
            start_seconds = timed("labelstudio", "start", "--db", db)
        finally:
            instances.stop_all(db)
    print(f"floor (annotator labelstudio status, a process): {floor:.2f} s")
    print(f"annotator labelstudio add-user, {args.reviewers} reviewers one after another: "
          f"median {statistics.median(add_seconds):.1f} s, max {max(add_seconds):.1f} s")
    print(f"annotator labelstudio stop ({args.reviewers} instances): {stop_seconds:.1f} s")
    print(f"annotator labelstudio start ({args.reviewers} instances at once): "
          f"{start_seconds:.1f} s")
    per = statistics.median(memory)
    print(f"memory per instance: median {per:.0f} MB RSS (min {min(memory):.0f}, "
          f"max {max(memory):.0f})")
    print(f"annotator push of {args.n} conversations to {args.reviewers} instances, overlap "
          f"{min(2, args.reviewers)}: {push_seconds:.1f} s")
    for gib in (8, 16, 32, 64):
        # 2 GiB left for the system, the app and the tool itself
        print(f"  a machine with {gib} GiB holds about {int((gib - 2) * 1024 / per)} reviewers")


if __name__ == "__main__":
    main()
