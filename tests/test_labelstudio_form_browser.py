"""The reviewer's form in the real web interface: required fields, guidelines, a readable and
inert dialogue, provenance and evidence, the task list, the value picker.

A real Label Studio (the session fixture) and headless Debian Chromium driven by Playwright
(never `playwright install`); a reviewer logs in through the web form. Screenshots go to each
test's tmp_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from labelstudio_fixtures import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    PICKER_ROWS,
    browser_login,
    labelstudio,
)
from playwright.sync_api import expect

from annotator.db import conversation_to_row, extraction_to_row, open_db
from annotator.models import Conversation, Extraction, Turn, ValueRef
from annotator.review import interface as lsc
from annotator.review import push, sync
from annotator.review.sync import Reviewer
from annotator.taxonomy import load_taxonomy

pytestmark = pytest.mark.integration

XSS = (
    '<img src=x onerror="window.__xss=1"> and '
    '<iframe srcdoc="<script>parent.__xss=1</script>"></iframe>'
)
PROBE = '<img src=x onerror="window.__xss=1">'
USER = (
    "I think honesty matters ({i}). " + PROBE + "\n\nShould I tell my friend?\n- option one\n"
    "- option two"
)
ASSISTANT = (
    "Honesty matters, but so does forgiveness.\n\n```\ndef tell(friend):\n    return True\n```\n"
    + XSS
)
WIDE = {"width": 1280, "height": 800}
TIMEOUT = 90_000


@dataclass
class Study:
    url: str
    prefilled: int  # project ids: every task pre-filled by the prediction
    blind: int  # and every task blind (no prediction)
    prefilled_tasks: list[int]
    blind_tasks: list[int]
    prefilled_by: str
    reviewer: Reviewer
    db_path: Path


def _conversations(n: int) -> list[Conversation]:
    return [
        Conversation.from_turns(
            [Turn(role="user", text=USER.format(i=i)), Turn(role="assistant", text=ASSISTANT)],
            source="form-test",
        )
        for i in range(n)
    ]


def _study(db_path: Path, n: int) -> None:
    taxonomy = load_taxonomy()
    db = open_db(db_path)
    conversations = _conversations(n)
    db["conversations"].upsert_all([conversation_to_row(c) for c in conversations], pk="id")
    rows = [
        extraction_to_row(
            Extraction(
                conversation_id=c.id, prompt_id="p1", model="test-model", extractor="test",
                subjective=True, response_type="reframing",
                ai_values=[
                    taxonomy.value_ref("honesty", evidence="Honesty matters", score=0.9),
                    # two clusters are named "Environmental stewardship": one value under each
                    taxonomy.value_ref("environmental stewardship", evidence=PROBE, score=0.5),
                    taxonomy.value_ref("ecological awareness", score=0.5),
                    ValueRef(name="zany whimsy"),
                ],
                human_values=[taxonomy.value_ref("forgiveness", evidence="tell my friend")],
            )  # fmt: skip
        )
        for c in conversations
    ]
    db["extractions"].upsert_all(rows, pk=("conversation_id", "prompt_id", "model"))


def _task_ids(db_path: Path, project_id: int) -> list[int]:
    sql = "select task_id from tasks where project_id = ? order by task_id"
    return [r["task_id"] for r in open_db(db_path).query(sql, [project_id])]


@pytest.fixture(scope="module")
def study(labelstudio) -> Study:  # noqa: F811
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", False)
    db_path = labelstudio.db("form")
    _study(db_path, 4)
    # 300 values listed, so the twin clusters' values are in the picker (the default lists 100)
    prefilled = push.push(db_path, project="form-prefilled", blind_share=0.0, top_values=300)
    blind = push.push(db_path, project="form-blind", blind_share=1.0)
    assert prefilled.blind_tasks == 0 and blind.blind_tasks == 4
    return Study(
        url=prefilled.url,
        prefilled=prefilled.project_id,
        blind=blind.project_id,
        prefilled_tasks=_task_ids(db_path, prefilled.project_id),
        blind_tasks=_task_ids(db_path, blind.project_id),
        prefilled_by=prefilled.prefilled_by or "",
        reviewer=sync.add_user(db_path, "dana@example.org", shared=True),
        db_path=db_path,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, study):
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    assert browser_login(page, study.url, study.reviewer.email, study.reviewer.password), (
        "the reviewer could not log in"
    )
    yield page
    context.close()


def _open_task(page, study: Study, project: int, task: int) -> None:
    page.goto(f"{study.url}/projects/{project}/data?task={task}")
    page.locator(".vd-turns [class*='dialoguetext']").first.wait_for(timeout=TIMEOUT)
    page.locator(".htx-taxonomy").first.wait_for(timeout=TIMEOUT)


def _stored(page, admin, task: int) -> list:
    """The task's annotations once the server has one (a submit is saved a moment later)."""
    stored: list = []
    for _ in range(60):
        stored = list(admin.annotations.list(id=task))
        if stored:
            break
        page.wait_for_timeout(500)
    return stored


def _visible_texts(page, text: str, exact: bool = False) -> int:
    """Visible elements holding `text` (with `exact`, whose whole text is `text`)."""
    return sum(el.is_visible() for el in page.get_by_text(text, exact=exact).all())


def _choice(page, value: str):
    return page.locator(f".lsf-choices input[name='{value}']")


def test_an_empty_response_type_is_refused_and_nothing_is_stored(
    page, study, labelstudio, tmp_path  # noqa: F811
):
    task = study.blind_tasks[0]
    admin = labelstudio.admin()
    _open_task(page, study, study.blind, task)
    # a blind task: nothing pre-filled, no quotes that could anchor the reviewer
    assert _visible_texts(page, f"Pre-filled by: {lsc.NOT_PREFILLED}") == 1
    assert _visible_texts(page, lsc.NO_EVIDENCE) == 1
    assert page.locator(".lsf-choices input:checked").count() == 0
    page.locator(".lsf-choices label", has_text="yes").first.click()
    expect(_choice(page, "yes")).to_be_checked(timeout=10_000)
    page.locator("button", has_text="Submit").click()
    message = page.get_by_text(lsc.REQUIRED_MESSAGES["response_type"])
    message.wait_for(timeout=30_000)
    page.wait_for_timeout(300)  # the warning fades in
    page.screenshot(path=str(tmp_path / "required-refused.png"))
    page.wait_for_timeout(1_000)  # a submission that got through would have landed by now
    assert list(admin.annotations.list(id=task)) == []
    page.get_by_role("button", name="OK").click()  # the warning's own button closes it
    message.wait_for(state="hidden", timeout=10_000)

    # single-radio: a second click on the ticked type leaves it ticked; then Submit stores it
    reframing = page.locator(".lsf-choices label", has_text="reframing").first
    reframing.click()
    expect(_choice(page, "reframing")).to_be_checked(timeout=10_000)
    reframing.click()
    page.wait_for_timeout(300)  # an untick would have rendered by now
    expect(_choice(page, "reframing")).to_be_checked()
    page.locator("button", has_text="Submit").click()
    stored = _stored(page, admin, task)
    assert len(stored) == 1
    labels = lsc.parse_result(load_taxonomy(), stored[0].result).labels
    assert labels.response_type == "reframing" and labels.subjective is True


def test_the_prefilled_response_type_cannot_be_unticked(page, study, labelstudio):  # noqa: F811
    task = study.prefilled_tasks[1]
    _open_task(page, study, study.prefilled, task)
    expect(_choice(page, "reframing")).to_be_checked(timeout=TIMEOUT)
    page.locator(".lsf-choices label", has_text="reframing").first.click()
    page.wait_for_timeout(300)  # an untick would have rendered by now
    expect(_choice(page, "reframing")).to_be_checked()  # still ticked: never submitted empty
    assert list(labelstudio.admin().annotations.list(id=task)) == []


def test_the_form_reads_well_shows_guidelines_and_stays_inert(page, study, tmp_path):
    _open_task(page, study, study.prefilled, study.prefilled_tasks[0])
    page.locator(".htx-taxonomy-selected").get_by_text("honesty").wait_for(timeout=TIMEOUT)
    turns = page.locator(".vd-turns [class*='dialoguetext']")
    styles = turns.evaluate_all("els => els.map(e => getComputedStyle(e).whiteSpace)")
    assert styles == ["pre-wrap", "pre-wrap"]
    texts = turns.all_inner_texts()
    # paragraphs, bullets and the code block keep their lines and indentation
    assert "Should I tell my friend?\n- option one\n- option two" in texts[0]
    assert "```\ndef tell(friend):\n    return True\n```" in texts[1]
    # the XSS probe shows as text and runs nothing
    assert XSS in texts[1] and PROBE in texts[0]
    assert f"environmental stewardship: \u201c{PROBE}\u201d" in page.inner_text("body")
    assert page.evaluate("() => typeof window.__xss") == "undefined"
    assert page.locator(".lsf-main-view img[src=x], .lsf-main-view iframe").count() == 0
    # no fake time range, speakers in bold
    assert _visible_texts(page, "00:00:00") == 0
    names = page.locator(".vd-turns [class*='dialoguename']")
    assert names.all_inner_texts() == ["user", "assistant"]
    weights = names.evaluate_all("els => els.map(e => getComputedStyle(e).fontWeight)")
    assert all(int(w) >= 600 for w in weights), weights
    # guidelines next to the choices and above the values
    for definition in lsc.RESPONSE_HINTS.values():
        assert _visible_texts(page, definition) == 1, definition
    assert _visible_texts(page, "acknowledges them and adds other perspectives") == 1
    assert _visible_texts(page, "a normative consideration that guides a response") == 1
    # provenance, and the prediction's quotes read-only beside the values: not a text box
    assert _visible_texts(page, f"Pre-filled by: {study.prefilled_by}") == 1
    assert _visible_texts(page, "honesty: \u201cHonesty matters\u201d") == 1
    boxes = " ".join(page.locator('[data-testid="htx-textbox-content"]').all_inner_texts())
    assert "zany whimsy" in boxes and "forgiveness" in boxes and "\u201c" not in boxes
    page.screenshot(path=str(tmp_path / "form-task.png"))
    page.locator(".vd-turns").screenshot(path=str(tmp_path / "form-dialogue.png"))


def test_instructions_open_with_the_stream(page, study, tmp_path):
    page.goto(f"{study.url}/projects/{study.prefilled}/data?labeling=1")
    modal = page.locator(".lsf-modal-ls_visible")
    modal.wait_for(timeout=TIMEOUT)
    body = modal.inner_text()
    assert "Labeling Instructions" in body
    for definition in lsc.RESPONSE_HINTS.values():
        assert definition in body
    assert "not a topic" in body
    page.screenshot(path=str(tmp_path / "form-instructions.png"))
    modal.locator('button[aria-label="Close modal"]').click()
    page.locator(".vd-turns").wait_for(timeout=TIMEOUT)
    assert page.get_by_role("button", name="Instructions").is_visible()


def test_the_task_list_shows_a_preview_not_raw_json(page, study, tmp_path):
    page.goto(f"{study.url}/projects/{study.prefilled}/data")
    page.locator(".lsf-table__row-wrapper").first.wait_for(timeout=TIMEOUT)
    # a data column's header is its name and a type badge ("preview\nstr")
    cells = page.locator(".lsf-table__cell.lsf-th").all_inner_texts()
    headers = [h.split()[0] for h in cells if h.strip()]
    assert "preview" in headers, cells
    assert not {"turns", "evidence"} & set(headers), headers
    rows = page.locator(".lsf-table__row-wrapper").all_inner_texts()
    assert any(f"user: I think honesty matters (0). {PROBE}" in r for r in rows), rows
    assert not any('"role"' in r for r in rows)  # no raw JSON of the turns
    assert page.evaluate("() => typeof window.__xss") == "undefined"  # the probe stays text
    page.screenshot(path=str(tmp_path / "form-task-list.png"))


def test_the_value_picker_shows_ten_rows_and_is_wide(page, study, tmp_path):
    _open_task(page, study, study.prefilled, study.prefilled_tasks[2])
    taxonomy = page.locator(".htx-taxonomy").first
    taxonomy.locator(":scope > span").click()
    dropdown = taxonomy.locator("[class*='taxonomy__dropdown']")
    dropdown.wait_for(timeout=30_000)
    # a search lists its matches flat, as a reviewer types
    dropdown.locator("input[name=taxonomy__search]").fill("e")
    page.wait_for_function(  # the matches render a moment later on a busy machine
        "() => document.querySelectorAll('.htx-taxonomy .item').length >= 10", timeout=10_000
    )
    # scrolled up as a reviewer would: the open list lengthens the form, so there is room
    taxonomy.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(100)
    figures = dropdown.evaluate(PICKER_ROWS)
    page.screenshot(path=str(tmp_path / "form-value-picker.png"))
    assert figures["rows"] >= 10, figures
    assert figures["width"] > 200, figures


def test_values_under_twin_clusters_keep_their_own_paths(page, study, labelstudio):  # noqa: F811
    # The legacy Taxonomy keys its rows by name and depth; the stored paths must still be the
    # released tree's, for values under both clusters named "Environmental stewardship".
    taxonomy = load_taxonomy()
    task = study.prefilled_tasks[3]
    _open_task(page, study, study.prefilled, task)
    selected = page.locator(".htx-taxonomy-selected span")
    selected.get_by_text("ecological awareness").wait_for(timeout=TIMEOUT)
    picker = page.locator(".htx-taxonomy").first
    picker.locator(":scope > span").click()
    picker.locator("input[name=taxonomy__search]").fill("environmental sustainability")
    picker.locator("label[for]", has_text="environmental sustainability").first.click()
    page.keyboard.press("Escape")
    selected.get_by_text("environmental sustainability").wait_for(timeout=10_000)
    page.locator("button", has_text="Submit").click()
    admin = labelstudio.admin()
    stored = _stored(page, admin, task)
    assert len(stored) == 1
    paths = next(r["value"]["taxonomy"] for r in stored[0].result if r["from_name"] == "ai_values")
    names = ("honesty", "environmental stewardship", "ecological awareness",
             "environmental sustainability")  # fmt: skip
    assert sorted(paths) == sorted(taxonomy.path(n) for n in names)
    twins = {tuple(p[:-1]) for p in paths if p[-2] == "Environmental stewardship"}
    assert len(twins) == 2  # one value under each twin, each under its own parent





# The open picker's box, whether it is the topmost thing at its own corners (not under the
# bottom bar or anything else), and any "Add" control a reviewer could see in it.
PICKER_BOX = """(d) => {
  const b = d.getBoundingClientRect();
  const mine = (x, y) => d.contains(document.elementFromPoint(x, y));
  const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).display !== 'none'
    && getComputedStyle(e).visibility !== 'hidden';
  const adds = [...d.querySelectorAll('button, [role=button], [class*=taxonomy__add], '
      + '[class*=extra_actions]')]
    .filter((e) => visible(e)
      && /add/i.test(`${e.innerText} ${e.getAttribute('aria-label') || ''} ${e.className}`));
  return {top: b.top, left: b.left, bottom: b.bottom, right: b.right,
          width: window.innerWidth, height: window.innerHeight,
          corners: [mine(b.left + 4, b.top + 4), mine(b.right - 4, b.top + 4),
                    mine(b.left + 4, b.bottom - 4), mine(b.right - 4, b.bottom - 4)],
          adds: adds.map((e) => e.outerHTML.slice(0, 80))};
}"""


@pytest.mark.parametrize("where", ["end", "center", "start"])
def test_the_value_picker_fits_a_1280x800_window_wherever_it_opens(page, study, tmp_path, where):
    assert page.viewport_size == WIDE
    _open_task(page, study, study.prefilled, study.prefilled_tasks[2])
    # the region and relation panels of region labelling are gone: the form has the width
    assert page.locator(".lsf-outliner").count() == 0 or not page.locator(
        ".lsf-outliner").first.is_visible()
    # exact: the task category "relationships and personal" holds "relations" too
    assert _visible_texts(page, "Relations", exact=True) == 0
    taxonomy = page.locator(".htx-taxonomy").first
    # the field at the bottom, the middle or the top of the window, as a reviewer scrolls
    taxonomy.evaluate(f"e => e.scrollIntoView({{block: '{where}'}})")
    page.wait_for_timeout(100)
    taxonomy.locator(":scope > span").click()
    dropdown = taxonomy.locator("[class*='taxonomy__dropdown']")
    dropdown.wait_for(timeout=30_000)
    # the five categories open collapsed; a search lists its matches flat, a long list
    dropdown.locator("input[name=taxonomy__search]").fill("e")
    page.wait_for_function(
        "() => document.querySelectorAll('.htx-taxonomy .item').length >= 10", timeout=10_000
    )
    box = dropdown.evaluate(PICKER_BOX)
    rows = dropdown.evaluate(PICKER_ROWS)
    page.screenshot(path=str(tmp_path / f"form-value-picker-{where}.png"))
    assert box["top"] >= 0 and box["left"] >= 0, box
    assert box["bottom"] <= box["height"] and box["right"] <= box["width"], box
    assert all(box["corners"]), box  # nothing (the bottom bar) lies over it
    assert rows["rows"] >= 10, rows
    # one path for free values: "Other AI values"; the picker's own Add is not there
    assert box["adds"] == [], box
    assert not dropdown.get_by_role("button", name="Add new label").is_visible()
    assert not dropdown.get_by_text("Add", exact=True).is_visible()
    page.keyboard.press("Escape")


def _skipped_annotation(admin, project: int) -> dict | None:
    for task in admin.tasks.list(project=project, fields="all"):
        for ann in task.annotations or []:
            ann = ann if isinstance(ann, dict) else ann.dict()
            if ann.get("was_cancelled"):
                return ann
    return None


def test_a_flag_and_its_note_survive_skip_and_reach_the_lead(
    page, study, labelstudio, tmp_path  # noqa: F811
):
    from labelstudio_fixtures import open_stream

    from annotator.db import open_db
    from annotator.measure.progress import review_progress
    from annotator.review import pull

    admin = labelstudio.admin()
    open_stream(page, study.url, study.blind)
    page.locator(".lsf-choices label", has_text="personal data left").first.click()
    expect(_choice(page, "personal data left")).to_be_checked(timeout=10_000)
    note = page.get_by_placeholder("e.g. turn 3 still has a phone number")
    note.fill("turn 3 still has <b>a phone</b> number")
    note.press("Enter")  # added, as the form's note header says, before Skip
    page.get_by_text("turn 3 still has <b>a phone</b> number").first.wait_for(timeout=10_000)
    page.screenshot(path=str(tmp_path / "form-flag-before-skip.png"))
    page.locator("button", has_text="Skip").click()
    found = None
    for _ in range(60):
        found = _skipped_annotation(admin, study.blind)
        if found:
            break
        page.wait_for_timeout(500)
    assert found is not None, "the skip was not stored"
    parsed = lsc.parse_result(load_taxonomy(), found["result"])
    assert parsed.flag == "personal data left"
    assert parsed.notes == "turn 3 still has <b>a phone</b> number"
    report = pull.pull(study.db_path, project="form-blind")
    assert report.cancelled >= 1 and report.flagged >= 1
    progress = review_progress(open_db(study.db_path))
    dana = next(r for r in progress.reviewers if r.reviewer == study.reviewer.email)
    assert dana.skipped >= 1 and dana.flagged >= 1 and dana.last_pulled is not None
    listed = [f for f in progress.flagged_or_skipped if f.flag == "personal data left"]
    assert listed and listed[0].skipped and not listed[0].vote
    assert listed[0].note == "turn 3 still has <b>a phone</b> number"


def test_a_note_typed_but_not_added_is_lost_on_skip(page, study, labelstudio):  # noqa: F811
    # Measured, not wanted: Label Studio 1.23.2 drops a note still in the box when the task is
    # skipped (Submit keeps it). The flag, a click, is kept. Why the form says "press Enter".
    admin = labelstudio.admin()
    before = {a["id"] for t in admin.tasks.list(project=study.blind, fields="all")
              for a in ((x if isinstance(x, dict) else x.dict()) for x in t.annotations or [])}
    from labelstudio_fixtures import open_stream

    open_stream(page, study.url, study.blind)
    page.locator(".lsf-choices label", has_text="unclear").first.click()
    expect(_choice(page, "unclear")).to_be_checked(timeout=10_000)
    page.get_by_placeholder("e.g. turn 3 still has a phone number").fill("never added")
    page.locator("button", has_text="Skip").click()
    new = None
    for _ in range(60):
        new = [a for t in admin.tasks.list(project=study.blind, fields="all")
               for a in ((x if isinstance(x, dict) else x.dict()) for x in t.annotations or [])
               if a["id"] not in before]
        if new:
            break
        page.wait_for_timeout(500)
    assert new and new[0]["was_cancelled"]
    parsed = lsc.parse_result(load_taxonomy(), new[0]["result"])
    assert parsed.flag == "unclear"
    assert parsed.notes is None  # if Label Studio starts keeping it, drop "press Enter"
