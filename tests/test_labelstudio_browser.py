"""A reviewer logs into the real web interface and sees the model's proposed labels.

Headless Debian Chromium driven by Playwright (never `playwright install`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from labelstudio_fixtures import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_login,
    labelstudio,
    make_study,
)

from annotator.db import open_db
from annotator.review import push, sync

pytestmark = pytest.mark.integration


def test_reviewer_sees_predicted_values_and_response_type(labelstudio, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", False)
    db_path = labelstudio.db("browser")
    ids = make_study(db_path, n=2)
    report = push.push(db_path, project="browser")
    sql = "select task_id from tasks where project_id = ? and conversation_id = ?"
    task_id = next(open_db(db_path).query(sql, [report.project_id, ids[0]]))["task_id"]
    reviewer = sync.add_user(db_path, "carol@example.org", shared=True)
    shot = tmp_path / "labelstudio-task.png"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            assert browser_login(page, labelstudio.url, reviewer.email, reviewer.password), (
                "the reviewer could not log in"
            )
            page.goto(f"{labelstudio.url}/projects/{report.project_id}/data?task={task_id}")
            # the legacy Taxonomy lists the chosen values above its picker
            selected = page.locator(".htx-taxonomy-selected span")
            selected.get_by_text("honesty").wait_for(timeout=90_000)
            chips = selected.all_inner_texts()
            checked = page.locator(".lsf-choices input:checked").evaluate_all(
                "els => els.map(e => e.name)"
            )
            # text results (other values, human values) are listed as text boxes
            boxes = page.locator('[data-testid="htx-textbox-content"]')
            boxes.first.wait_for(timeout=30_000)
            fields = [t.strip() for t in boxes.all_inner_texts()]
            text = page.inner_text("body")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    # the prediction pre-fills the form: values, response type, subjective
    assert chips == ["honesty", "loyalty to one's country"]
    assert checked == ["reframing", "yes"]
    assert "zany whimsy" in fields  # the free value sits in "Other AI values"
    # the evidence quote is shown, read-only: not a text box a reviewer could submit
    assert "honesty: \u201cHonesty matters\u201d" in text
    assert not any("\u201c" in f for f in fields)
    assert "forgiveness" in fields  # human values
    assert "Response type: how the assistant responds" in text
    assert shot.exists() and shot.stat().st_size > 10_000
