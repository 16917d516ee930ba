"""Label Studio benchmark: `annotator push` against one plain SDK `import_tasks`, and pull.

Starts a throwaway local Label Studio (from the migrated template; installs label-studio first
if needed), builds a study of N conversations with one model prediction each, then:
- plain SDK: one `projects.import_tasks` call of the same task payload (data + predictions)
  into a fresh project with the same labeling config: the floor;
- `annotator push` into another fresh project, end to end: reading the study, building and
  validating predictions, creating the project, imports in batches, storing the task mapping;
  (3 rounds of both, in alternating order; the best of each is compared)
- a second push (nothing to do) to show what idempotence costs;
- `annotator pull` of N annotations (tasks imported with one annotation each, into a third
  project) into the study database, then a second pull (nothing changed).
Prints tasks per second, the push/plain ratio (goal >= 0.8) and pull seconds (goal < 30 s).

    python bench/labelstudio.py            # N = 10,000
    python bench/labelstudio.py --n 2000   # a quick run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from annotator import labelstudio as ls_lib
from annotator import labelstudio_config as lsc
from annotator import labelstudio_server as server
from annotator.db import (
    conversation_to_row,
    extraction_to_row,
    loads,
    open_db,
    row_to_extraction,
)
from annotator.models import Conversation, Extraction, ResponseType, Turn, ValueRef
from annotator.taxonomy import load_taxonomy

RESPONSES = list(ResponseType)


def build_study(db_path: Path, n: int) -> None:
    """N conversations (~600 characters each) with one extraction of 3-4 values each."""
    taxonomy = load_taxonomy()
    leaves = [v.id for v in taxonomy.top_values(600)]
    db = open_db(db_path)
    conversations, extractions = [], []
    for i in range(n):
        c = Conversation.from_turns(
            [
                Turn(role="user", text=f"Conversation {i}: I found out my colleague has been "
                     "taking credit for my work. Should I confront them or tell my manager? "
                     "I don't want to ruin the team's mood."),
                Turn(role="assistant", text="It is fair to want recognition for your work. A "
                     "calm, private conversation first respects your colleague and keeps trust; "
                     "if nothing changes, bring concrete examples to your manager."),
            ],
            source="bench",
        )  # fmt: skip
        values = [leaves[(i * 7 + k * 13) % len(leaves)] for k in range(3)]
        e = Extraction(
            conversation_id=c.id, prompt_id="bench-prompt", model="bench", extractor="bench",
            subjective=i % 3 != 0, response_type=RESPONSES[i % len(RESPONSES)],
            ai_values=[
                taxonomy.value_ref(v, evidence="A calm, private conversation", score=0.8)
                for v in values
            ] + ([ValueRef(name=f"free value {i % 50}")] if i % 4 == 0 else []),
            human_values=[taxonomy.value_ref("recognition", evidence="credit for my work")],
        )  # fmt: skip
        conversations.append(conversation_to_row(c))
        extractions.append(extraction_to_row(e))
    with db.conn:
        db["conversations"].insert_all(conversations, pk="id", batch_size=2000)
        db["extractions"].insert_all(
            extractions, pk=("conversation_id", "prompt_id", "model"), batch_size=2000
        )


def plain_payload(db_path: Path) -> tuple[list[dict], str]:
    """The same tasks `push` sends, built outside the timed region, and their config."""
    taxonomy = load_taxonomy()
    db = open_db(db_path)
    turns = {r["id"]: r for r in db.query("select id, turns, source from conversations")}
    payload, leaves = [], set()
    for row in db["extractions"].rows:
        e = row_to_extraction(row)
        c = turns[e.conversation_id]
        leaves |= lsc.prediction_leaves(taxonomy, e)
        payload.append({
            "data": lsc.task_data(c["id"], loads(c["turns"], []), c["source"]),
            "predictions": [lsc.prediction(taxonomy, e, e.prompt_id)],
        })  # fmt: skip
    config = lsc.label_config(taxonomy, lsc.config_values(taxonomy, 300, leaves))
    return payload, config


def annotated_payload(payload: list[dict]) -> list[dict]:
    """Each task with one annotation: its own prediction's result, as a reviewer accepting it."""
    return [
        {"data": t["data"], "annotations": [{"result": t["predictions"][0]["result"],
                                             "lead_time": 7.5}]}
        for t in payload
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks and annotations")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of plain and push")
    args = parser.parse_args()
    n = args.n

    venv = server.install(server.default_venv(), echo=print)
    with tempfile.TemporaryDirectory(prefix="bench-labelstudio-") as tmp:
        study = Path(tmp)
        db_path = study / "push.db"
        status = server.start_from_template(db_path, venv, echo=print)
        try:
            print(f"Label Studio {status.version} at {status.url}")
            t = time.perf_counter()
            build_study(db_path, n)
            print(f"built a study of {n:,} conversations in {time.perf_counter() - t:.1f} s")
            conn, ls = ls_lib.connect(db_path)
            payload, config = plain_payload(db_path)

            # Rounds of the floor and push, each into a fresh project, in alternating order
            # (the server slows a little as its tables grow), keeping the best of each: the
            # machine is shared, and the server's time is most of both.
            plain_runs, push_runs = [], []

            def plain(round_: int) -> None:
                project = ls.projects.create(title=f"bench-plain-{round_}", label_config=config)
                t = time.perf_counter()
                ls.projects.import_tasks(id=project.id, request=payload,
                                         request_options={"timeout_in_seconds": 900})
                plain_runs.append(time.perf_counter() - t)

            def push(round_: int) -> Path:
                # annotator push, end to end, from a study database of its own
                round_db = study / f"push-{round_}.db"
                build_study(round_db, n)
                report = ls_lib.push(round_db, project=f"bench-push-{round_}")
                assert report.tasks_created == n, report
                push_runs.append(report.seconds)
                return round_db

            for round_ in range(args.rounds):
                if round_ % 2 == 0:
                    plain(round_)
                    round_db = push(round_)
                else:
                    round_db = push(round_)
                    plain(round_)
                print(f"round {round_ + 1}: plain {plain_runs[-1]:.2f} s, push "
                      f"{push_runs[-1]:.2f} s")
            plain_s, push_s = min(plain_runs), min(push_runs)
            again = ls_lib.push(round_db, project=f"bench-push-{args.rounds - 1}")
            assert again.tasks_created == 0 and again.predictions_added == 0, again

            # pull: N annotations in a project of their own, into a second study
            pull_db = study / "pull.db"
            build_study(pull_db, n)
            annotated = ls.projects.create(title="bench-pull", label_config=config)
            ls.projects.import_tasks(id=annotated.id, request=annotated_payload(payload),
                                     request_options={"timeout_in_seconds": 900})
            first = ls_lib.pull(pull_db, project="bench-pull")
            assert first.annotations == n and first.new == n, first
            second = ls_lib.pull(pull_db, project="bench-pull")
            assert second.unchanged == n and second.new == 0, second
        finally:
            server.stop(db_path)

    ratio = plain_s / push_s
    print()
    print(f"best of {args.rounds} rounds, {n:,} tasks with one prediction each:")
    print(f"plain SDK import_tasks (1 call):  {n / plain_s:8,.0f} tasks/s  ({plain_s:.2f} s)")
    print(f"annotator push ({ls_lib.BATCH_SIZE}/batch):     {n / push_s:8,.0f} tasks/s  "
          f"({push_s:.2f} s)")
    print(f"push / plain ratio:               {ratio:8.2f}      (goal >= 0.8)")
    print(f"second push (nothing to send):    {again.seconds:8.2f} s")
    print(f"pull of {n:,} annotations:        {first.seconds:8.2f} s    (goal < 30 s)")
    print(f"second pull (nothing changed):    {second.seconds:8.2f} s")
    return 0 if ratio >= 0.8 and first.seconds < 30 else 1


if __name__ == "__main__":
    sys.exit(main())
