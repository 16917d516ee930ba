"""Shared review on one server: the stream is blind, tabs stay neutral, signup is closed, and an
annotation changed by someone other than its author is flagged on pull.

Integration: the session's real Label Studio (see labelstudio_fixtures), real SQLite, two
reviewers in headless Debian Chromium via Playwright.
"""

from __future__ import annotations

import re

import httpx
import pytest
from labelstudio_fixtures import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_login,
    labelstudio,
    make_study,
    open_stream,
    reviewer_client,
)

from annotator.db import open_db
from annotator.review import pull, push, sync

pytestmark = pytest.mark.integration


def _submit_from_stream(page, url: str, project_id: int, choose: str | None) -> str:
    """Open "Label All Tasks", optionally pick a response type, submit; the page's text."""
    open_stream(page, url, project_id)
    text = page.inner_text("body")
    if choose:
        page.locator(f'.lsf-choices input[name="{choose}"]').first.check(force=True)
    page.get_by_test_id("bottombar-submit-button").click()
    page.wait_for_timeout(1500)
    return text


def _conversation(page_text: str) -> str:
    match = re.search(r"My friend lied to me \((\d+)\)", page_text)
    assert match, page_text[:500]
    return match.group(1)


def test_shared_stream_is_blind_and_foreign_edits_are_flagged(labelstudio, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    db_path = labelstudio.db("shared")
    make_study(db_path, n=3)
    ada = sync.add_user(db_path, "ada-shared@example.org", shared=True)
    bob = sync.add_user(db_path, "bob-shared@example.org", shared=True)
    assert not ada.isolated and ada.url == bob.url == labelstudio.url
    pushed = push.push(db_path, project="shared", overlap=2, blind_share=0.0)
    pid = pushed.project_id

    # a reviewer sorts the shared tab; the study's next push puts it back to neutral
    as_ada = reviewer_client(labelstudio.url, ada.email, ada.password)
    as_bob = reviewer_client(labelstudio.url, bob.email, bob.password)
    as_ada.views.create(project=pid, data={"ordering": ["-tasks:id"], "filters": {
        "conjunction": "and", "items": []}})  # fmt: skip
    again = push.push(db_path, project="shared", blind_share=0.0)
    assert again.views_reset == 1
    orderings = [(v.data or {}).get("ordering") for v in as_ada.views.list(project=pid)]
    assert orderings and all(o in (None, [], ["tasks:id"]) for o in orderings)

    # open signup is closed: no invite link, no account
    with httpx.Client(base_url=labelstudio.url, timeout=30) as web:
        web.get("/user/signup/")
        answer = web.post("/user/signup/", data={
            "email": "stranger@example.org", "password": "a-long-password-1",
            # the instance's own csrftoken cookie: a refusal must come from signup being closed
            "csrfmiddlewaretoken": next(v for k, v in web.cookies.items()
                                        if k.endswith("csrftoken")),
        }, headers={"Referer": f"{labelstudio.url}/user/signup/"})  # fmt: skip
    assert answer.status_code == 403
    assert "stranger@example.org" not in {u.email for u in labelstudio.admin().users.list()}

    shot = tmp_path / "shared-bob-stream.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            assert browser_login(page, labelstudio.url, ada.email, ada.password)
            ada_saw = _submit_from_stream(page, labelstudio.url, pid, choose="strong resistance")
            page.context.clear_cookies()
            assert browser_login(page, labelstudio.url, bob.email, bob.password)
            # breadth first: bob's stream brings the task ada just finished, without her labels
            open_stream(page, labelstudio.url, pid)
            body = page.inner_text("body")
            checked = page.locator(".lsf-choices input:checked").evaluate_all(
                "els => els.map(e => e.name)"
            )
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    ada_done = [a for t in as_bob.tasks.list(project=pid, fields="all")
                for a in (t.annotations or [])]  # fmt: skip
    assert len(ada_done) == 1  # ada's one submission (the API shows everyone's: see README)
    assert _conversation(body) == _conversation(ada_saw)  # the same task ...
    assert ada.email not in body and "strong resistance" not in checked  # ... without ada
    assert shot.stat().st_size > 10_000

    # bob changes ada's annotation through the API (Community lets any user): pull flags it
    as_bob.annotations.update(id=ada_done[0]["id"] if isinstance(ada_done[0], dict)
                              else ada_done[0].id, result=[])  # fmt: skip
    pulled = pull.pull(db_path, project="shared")
    assert pulled.edited_by_other == 1
    row = next(open_db(db_path)["annotations"].rows_where("source = ?", [pulled.source]))
    assert (row["annotator"], row["edited_by"]) == (ada.email, bob.email)
    assert row["missing"] == '["response_type","subjective"]'
    # ... and nothing counts bob's edit as ada's labels: no agreement row, no majority vote
    from annotator.datasets.gold import adjudicate
    from annotator.measure.frames import annotations_frame, set_aside_count

    study = open_db(db_path)
    assert set_aside_count(study) == 1
    assert ada.email not in set(annotations_frame(study)["annotator"])
    assert adjudicate(study).set_aside == 1
