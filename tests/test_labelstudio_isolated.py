"""Isolated review: each reviewer labels in a Label Studio of their own, in the intended order.

Integration: real Label Studio instances started from the migrated template (see
labelstudio_fixtures), real SQLite, two reviewers in headless Debian Chromium via Playwright.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from labelstudio_fixtures import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_login,
    labelstudio,
    open_stream,
    reviewer_client,
)
from typer.testing import CliRunner

from annotator.cli import app
from annotator.db import conversation_to_row, extraction_to_row, open_db
from annotator.models import Conversation, Extraction, Turn
from annotator.review import instances, pull, push, sync
from annotator.taxonomy import load_taxonomy

pytestmark = pytest.mark.integration
runner = CliRunner()


def _study(path: Path, n: int = 4) -> list[str]:
    """n conversations "#0".."#n-1"; the model is least sure of the last (lowest scores)."""
    taxonomy = load_taxonomy()
    db = open_db(path)
    ids = []
    for i in range(n):
        c = Conversation.from_turns([
            Turn(role="user", text=f"Conversation #{i}: should I tell my boss the truth?"),
            Turn(role="assistant", text="Honesty builds trust.\n\n- say it early\n- say it kindly"),
        ], source="test")  # fmt: skip
        db["conversations"].upsert(conversation_to_row(c), pk="id")
        e = Extraction(
            conversation_id=c.id, prompt_id="p1", model="m", extractor="test", subjective=True,
            response_type="mild support",
            ai_values=[taxonomy.value_ref("honesty", evidence="Honesty builds trust",
                                          score=0.95 - 0.2 * i)],
        )  # fmt: skip
        db["extractions"].upsert(extraction_to_row(e), pk=("conversation_id", "prompt_id", "model"))
        ids.append(c.id)
    return ids


def _stream_order(page, url: str, project_id: int, n: int) -> list[int]:
    """The conversations a reviewer gets from "Label All Tasks", submitting each pre-fill."""
    open_stream(page, url, project_id)
    seen: list[int] = []
    for _ in range(n):
        marker = page.get_by_text(re.compile(r"Conversation #\d+")).first
        marker.wait_for(timeout=90_000)
        number = int(re.search(r"#(\d+)", marker.inner_text()).group(1))
        seen.append(number)
        page.get_by_test_id("bottombar-submit-button").click()
        page.wait_for_function(
            "n => !document.body.innerText.includes('Conversation #' + n + ':')",
            arg=number, timeout=30_000,
        )  # fmt: skip
    return seen


def test_isolated_reviewers_never_see_each_other(labelstudio, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    db_path = tmp_path / "iso" / "study.db"
    ids = _study(db_path)
    try:
        ada = sync.add_user(db_path, "ada-iso@example.org")
        bob = sync.add_user(db_path, "bob-iso@example.org")
        assert ada.isolated and bob.isolated and ada.url != bob.url
        assert instances.isolated(db_path)
        pushed = push.push(db_path, project="iso", blind_share=0.0)
        assert pushed.overlap == 2 and len(pushed.reviewers) == 2
        assert pushed.tasks_created == 2 * len(ids)  # every conversation to both
        tasks = {(r["server"], r["conversation_id"]): r for r in open_db(db_path)["tasks"].rows}
        # ada labels conversation #0 in her instance, through her own API token
        as_ada = reviewer_client(ada.url, ada.email, ada.password)
        mine = tasks[(f"reviewer:{ada.email}", ids[0])]
        as_ada.annotations.create(id=mine["task_id"], result=[
            {"from_name": "response_type", "to_name": "dialogue", "type": "choices",
             "value": {"choices": ["strong resistance"]}},
            {"from_name": "subjective", "to_name": "dialogue", "type": "choices",
             "value": {"choices": ["no"]}},
        ])  # fmt: skip
        bob_task = tasks[(f"reviewer:{bob.email}", ids[0])]
        shot = tmp_path / "isolated-bob-opens-task.png"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                # bob cannot log in to ada's instance: his account does not exist there
                assert not browser_login(page, ada.url, bob.email, bob.password)
                assert browser_login(page, bob.url, bob.email, bob.password)
                # bob opens the same conversation's task from his list: only the model's
                # proposal, no annotation of ada's anywhere
                page.goto(f"{bob.url}/projects/{bob_task['project_id']}/data?task="
                          f"{bob_task['task_id']}")  # fmt: skip
                page.locator(".lsf-choices").first.wait_for(timeout=90_000)
                page.get_by_text("Conversation #0").first.wait_for(timeout=30_000)
                body = page.inner_text("body")
                page.screenshot(path=str(shot), full_page=True)
                assert ada.email not in body and "strong resistance" in body  # the choice
                checked = page.locator("input:checked").evaluate_all(
                    "els => els.map(e => e.value || e.name)"
                )
                assert "strong resistance" not in checked and "no" not in checked
                # bob's queue: the conversations the model is least sure of come first
                order = _stream_order(page, bob.url, bob_task["project_id"], len(ids))
                # and ada's: the same order, less the conversation she already labelled
                page.context.clear_cookies()
                assert browser_login(page, ada.url, ada.email, ada.password)
                ada_order = _stream_order(page, ada.url, mine["project_id"], len(ids) - 1)
            finally:
                browser.close()
        assert order == sorted(range(len(ids)), reverse=True)
        assert ada_order == sorted(range(1, len(ids)), reverse=True)
        assert shot.stat().st_size > 10_000
        pulled = pull.pull(db_path, project="iso")
        by_source = {s.source: s.new for s in pulled.reviewers}
        assert by_source[f"labelstudio:reviewer:{ada.email}:{mine['project_id']}"] == len(ids)
        assert by_source[f"labelstudio:reviewer:{bob.email}:{bob_task['project_id']}"] == len(ids)
        rows = list(open_db(db_path).query("select annotator, source from annotations"))
        assert {r["annotator"] for r in rows} == {ada.email, bob.email}
        status = runner.invoke(app, ["labelstudio", "status", "--db", str(db_path), "--json"])
        reviewers = json.loads(status.output)["reviewers"]
        assert [(r["username"], r["answering"]) for r in reviewers] == [
            (ada.email, True), (bob.email, True)
        ]
        assert ada.password not in status.output  # only with --login
    finally:
        instances.stop_all(db_path)


def test_assignment_is_balanced_stable_and_keeps_holders():
    emails = ["a@x", "b@x", "c@x"]
    cids = [f"c{i}" for i in range(300)]
    plan = push.assign(cids, emails, 2, {})
    assert all(len(set(v)) == 2 for v in plan.values())
    load = {e: sum(e in v for v in plan.values()) for e in emails}
    assert all(150 < n < 250 for n in load.values())  # 200 each on average
    assert push.assign(cids, emails, 2, {}) == plan  # stable
    # a fourth reviewer joining takes none of the conversations already held
    held = {c: set(v) for c, v in plan.items()}
    again = push.assign(cids, [*emails, "d@x"], 2, held)
    assert all(set(again[c]) == held[c] for c in cids)
