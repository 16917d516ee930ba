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

Then the reviewer's form in headless Chromium (1280x800, a reviewer logged in), on a pushed
project with the real labeling config (the 300 most frequent values listed, every other released
value typed into "Other AI values"): Submit to the next task ready in the "Label All Tasks"
stream, a task opened from the task list (the list freshly loaded each time), a switch to
another task beside an open one; median, p90 and n of each (goal: median < 0.5 s), and the
value picker's visible rows and width (goal >= 10 rows, > 200 px). "Ready" means the task's
dialogue is shown with the prediction's choices ticked.

    python bench/labelstudio.py            # N = 10,000
    python bench/labelstudio.py --n 2000   # a quick run
    python bench/labelstudio.py --form-only --samples 20   # only the reviewer's form
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from annotator.db import conversation_to_row, extraction_to_row, loads, open_db, row_to_extraction
from annotator.models import Conversation, Extraction, ResponseType, Turn, ValueRef
from annotator.review import instances, pull, push, server, sync
from annotator.review import interface as lsc
from annotator.taxonomy import LEAF_LEVEL, Taxonomy, load_taxonomy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from labelstudio_fixtures import PICKER_ROWS, browser_login  # noqa: E402 (the tests' own)

RESPONSES = list(ResponseType)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


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


# --- the reviewer's form in Chromium ------------------------------------------------------------

# A task is ready when its dialogue shows (another one than before) and the prediction's
# response type and subjective are ticked: what a reviewer needs to start.
FORM_READY = """(previous) => {
  const turns = document.querySelector('.vd-turns');
  if (!turns || !document.querySelector('.htx-taxonomy')) return false;
  const text = turns.innerText;
  if (!text.includes('Conversation') || text === previous) return false;
  return document.querySelectorAll('.lsf-choices input:checked').length >= 2;
}"""
TIMEOUT_MS = 90_000
ROWS = 6


@dataclass
class FormFigures:
    next_task: list[float]
    open_from_list: list[float]
    switch: list[float]
    picker_rows: int
    picker_width: int
    listed: int
    reachable: int
    released: int


def reachable_values(taxonomy: Taxonomy, listed: set[str]) -> int:
    """Released values a reviewer can label: listed in the Taxonomy, or typed by name into
    "Other AI values" and resolved to that value on pull."""
    count = 0
    for leaf in taxonomy.nodes_at(LEAF_LEVEL):
        if leaf.id in listed:
            count += 1
            continue
        typed = [{"from_name": lsc.AI_OTHER, "value": {"text": [leaf.name]}}]
        parsed = lsc.parse_result(taxonomy, typed)
        count += parsed.labels.ai_values == [leaf.name] and not parsed.free_values
    return count


def _dialogue(page) -> str:
    return page.evaluate("document.querySelector('.vd-turns')?.innerText || ''")


def _timed(page, action, previous: str = "") -> float:
    started = time.perf_counter()
    action()
    page.wait_for_function(FORM_READY, arg=previous, polling="raf", timeout=TIMEOUT_MS)
    return time.perf_counter() - started


def _list_page(page, url: str, project_id: int):
    page.goto(f"{url}/projects/{project_id}/data")
    rows = page.locator(".lsf-table__row-wrapper")
    rows.first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    return rows


def open_picker(page, search: str = "e"):
    """Open the value picker, search it as a reviewer does (a search lists its matches flat) and
    scroll it to the top of the form, as a reviewer scrolls to see the list; the dropdown."""
    taxonomy = page.locator(".htx-taxonomy").first
    taxonomy.locator(":scope > span").click()
    dropdown = taxonomy.locator("[class*='taxonomy__dropdown']")
    dropdown.wait_for(timeout=TIMEOUT_MS)
    dropdown.locator("input[name=taxonomy__search]").fill(search)
    # the matches render a moment later on a busy machine; more than ten exist for "e"
    page.wait_for_function(
        "() => document.querySelectorAll('.htx-taxonomy .item').length >= 10", timeout=10_000
    )
    # the open list lengthens the form, so there is room to scroll it up near the form's top
    taxonomy.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(100)
    return dropdown


def form_speed(
    study: Path, samples: int, chromium: str = CHROMIUM, top_values: int = lsc.DEFAULT_TOP_VALUES
) -> FormFigures:
    """The reviewer's form, timed in Chromium, on a project pushed like a study's."""
    from playwright.sync_api import sync_playwright

    db_path = study / f"form-{top_values}-{len(list(study.glob('form-*.db')))}.db"
    build_study(db_path, samples + 10)
    # The reviewer's own instance, as `add-user` makes by default (isolated review); no blind
    # share: every task is pre-filled, so Submit goes through without clicks.
    reviewer = sync.add_user(db_path, "reviewer@bench.local")
    report = push.push(
        db_path, project=db_path.stem, blind_share=0.0, top_values=top_values, overlap=1
    )
    taxonomy = load_taxonomy()
    ls = sync.client(instances.connection(instances.instance(db_path, reviewer.email)))
    url, project_id = reviewer.url, report.reviewers[0].project_id
    schema = lsc.parse_config(ls.projects.get(id=project_id).label_config)
    opens, switches, nexts = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            assert browser_login(page, url, reviewer.email, reviewer.password)
            # the list renders only the rows in view: the first ROWS, in turn
            for k in range(samples):
                rows = _list_page(page, url, project_id)  # untimed: a freshly loaded list
                opens.append(_timed(page, rows.nth(k % ROWS).click))
            for k in range(samples, 2 * samples):
                switches.append(_timed(page, rows.nth(k % ROWS).click, _dialogue(page)))
            picker = open_picker(page).evaluate(PICKER_ROWS)

            page.goto(f"{url}/projects/{project_id}/data?labeling=1")
            page.locator('.lsf-modal-ls_visible button[aria-label="Close modal"]').click(
                timeout=TIMEOUT_MS
            )  # the instructions open first
            page.wait_for_function(FORM_READY, arg="", polling="raf", timeout=TIMEOUT_MS)
            submit = page.locator("button", has_text="Submit")
            for _ in range(samples):
                nexts.append(_timed(page, submit.click, _dialogue(page)))
        finally:
            browser.close()
    return FormFigures(
        next_task=nexts, open_from_list=opens, switch=switches,
        picker_rows=picker["rows"], picker_width=picker["width"],
        listed=len(schema.leaf_ids), reachable=reachable_values(taxonomy, schema.leaf_ids),
        released=len(taxonomy.nodes_at(LEAF_LEVEL)),
    )  # fmt: skip


def _spread(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):5.2f} s  p90 {p90:5.2f} s  n={len(ordered)}"


def print_form(f: FormFigures) -> bool:
    """Print the form's figures; whether every goal is met."""
    print()
    print(f"reviewer form in Chromium (1280x800), {f.listed} values listed:")
    print(f"submit to next task ready:        {_spread(f.next_task)}   (goal < 0.5 s)")
    print(f"open a task from the task list:   {_spread(f.open_from_list)}   (goal < 0.5 s)")
    print(f"switch to another task (list):    {_spread(f.switch)}")
    print(f"value picker:                     {f.picker_rows} rows, {f.picker_width} px wide"
          "   (goal >= 10 rows, > 200 px)")
    print(f"values reachable:                 {f.reachable:,} of {f.released:,} "
          f"({f.listed} listed, the rest typed into Other AI values)")
    return (
        statistics.median(f.next_task) < 0.5 and statistics.median(f.open_from_list) < 0.5
        and f.picker_rows >= 10 and f.picker_width > 200 and f.reachable == f.released
    )  # fmt: skip


def push_and_pull(study: Path, db_path: Path, n: int, rounds: int) -> bool:
    """Push against the plain SDK floor, then pull; prints the figures, True if goals are met."""
    t = time.perf_counter()
    build_study(db_path, n)
    print(f"built a study of {n:,} conversations in {time.perf_counter() - t:.1f} s")
    conn, ls = sync.connect(db_path)
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
        report = push.push(round_db, project=f"bench-push-{round_}")
        assert report.tasks_created == n, report
        push_runs.append(report.seconds)
        return round_db

    for round_ in range(rounds):
        if round_ % 2 == 0:
            plain(round_)
            round_db = push(round_)
        else:
            round_db = push(round_)
            plain(round_)
        print(f"round {round_ + 1}: plain {plain_runs[-1]:.2f} s, push "
              f"{push_runs[-1]:.2f} s")
    plain_s, push_s = min(plain_runs), min(push_runs)
    again = push.push(round_db, project=f"bench-push-{rounds - 1}")
    assert again.tasks_created == 0 and again.predictions_added == 0, again

    # pull: N annotations in a project of their own, into a second study
    pull_db = study / "pull.db"
    build_study(pull_db, n)
    annotated = ls.projects.create(title="bench-pull", label_config=config)
    ls.projects.import_tasks(id=annotated.id, request=annotated_payload(payload),
                             request_options={"timeout_in_seconds": 900})
    first = pull.pull(pull_db, project="bench-pull")
    assert first.annotations == n and first.new == n, first
    second = pull.pull(pull_db, project="bench-pull")
    assert second.unchanged == n and second.new == 0, second

    ratio = plain_s / push_s
    print()
    print(f"best of {rounds} rounds, {n:,} tasks with one prediction each:")
    print(f"plain SDK import_tasks (1 call):  {n / plain_s:8,.0f} tasks/s  ({plain_s:.2f} s)")
    print(f"annotator push ({sync.BATCH_SIZE}/batch):     {n / push_s:8,.0f} tasks/s  "
          f"({push_s:.2f} s)")
    print(f"push / plain ratio:               {ratio:8.2f}      (goal >= 0.8)")
    print(f"second push (nothing to send):    {again.seconds:8.2f} s")
    print(f"pull of {n:,} annotations:        {first.seconds:8.2f} s    (goal < 30 s)")
    print(f"second pull (nothing changed):    {second.seconds:8.2f} s")
    return ratio >= 0.8 and first.seconds < 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks and annotations")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of plain and push")
    parser.add_argument("--samples", type=int, default=20, help="timings of each form action")
    parser.add_argument("--form-only", action="store_true", help="only the reviewer's form")
    parser.add_argument("--chromium", default=CHROMIUM, help="the Chromium to drive")
    parser.add_argument("--top-values", type=int, nargs="+", default=[lsc.DEFAULT_TOP_VALUES],
                        help="values listed in the Taxonomy (several: one form each)")
    args = parser.parse_args()

    venv = server.install(server.default_venv(), echo=print)
    with tempfile.TemporaryDirectory(prefix="bench-labelstudio-") as tmp:
        study = Path(tmp)
        db_path = study / "push.db"
        status = server.start_from_template(db_path, venv, echo=print)
        try:
            print(f"Label Studio {status.version} at {status.url}")
            ok = args.form_only or push_and_pull(study, db_path, args.n, args.rounds)
            # the form on a server of its own size: the 10,000-task projects above stay
            for top in args.top_values:
                figures = form_speed(study, args.samples, args.chromium, top)
                ok = print_form(figures) and ok
        finally:
            server.stop(db_path)
            instances.stop_all(db_path)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
