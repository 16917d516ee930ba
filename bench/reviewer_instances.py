"""Isolated review benchmark: what one Label Studio instance per reviewer costs.

For R reviewers (default 3), the way `annotator labelstudio add-user EMAIL` meets a user: the
time until the reviewer's own instance answers (a copy of the migrated template, then a start),
the time to start all of them again after a stop (`annotator labelstudio start`), each
instance's resident memory, and an isolated `push --overlap 2` of N conversations to them.
The one-off template build (a first migration, about 25 s) is done before timing and reported
apart.

    python bench/reviewer_instances.py              # 3 reviewers, 300 conversations
    python bench/reviewer_instances.py --reviewers 5 --n 1000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from annotator.db import conversation_to_row, extraction_to_row, open_db
from annotator.models import Conversation, Extraction, Turn
from annotator.review import instances, push, server, sync
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=3)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    venv = server.install(server.default_venv())
    started = time.perf_counter()
    server.ensure_template(venv)
    print(f"template ready in {time.perf_counter() - started:.1f} s (built once per machine)")
    with tempfile.TemporaryDirectory(prefix="bench-reviewers-") as tmp:
        db_path = Path(tmp) / "study.db"
        build_study(db_path, args.n)
        emails = [f"reviewer{i}@example.org" for i in range(args.reviewers)]
        try:
            add_seconds = []
            for email in emails:
                t0 = time.perf_counter()
                sync.add_user(db_path, email)
                add_seconds.append(time.perf_counter() - t0)
            memory = [rss_mb(server.read_state(r.anchor).pid) for r in instances.reviewers(db_path)]
            t0 = time.perf_counter()
            pushed = push.push(db_path, project="bench", overlap=min(2, args.reviewers))
            push_seconds = time.perf_counter() - t0
            instances.stop_all(db_path)
            t0 = time.perf_counter()
            instances.start_all(db_path)
            restart_seconds = time.perf_counter() - t0
        finally:
            instances.stop_all(db_path)
    print(f"add-user (copy template + start until it answers), {args.reviewers} reviewers: "
          f"median {statistics.median(add_seconds):.1f} s, max {max(add_seconds):.1f} s")
    print(f"start all {args.reviewers} instances again after a stop: {restart_seconds:.1f} s")
    print(f"memory per instance: median {statistics.median(memory):.0f} MB RSS")
    print(f"isolated push of {args.n} conversations, overlap {pushed.overlap}: "
          f"{pushed.tasks_created} tasks in {push_seconds:.1f} s")


if __name__ == "__main__":
    main()
