"""The app end to end: `streamlit run` on a free port, driven by Playwright in Debian's headless
Chromium. Waits are on the app's `data-test-script-state` and on the content that must change,
never on sleeps. Screenshots go to each test's tmp folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_app_study import HOSTILE_USER, ROOT, V1, V2, build_study, hostile_conversation

from annotator.db import open_db

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The test study served as the README says to from a checkout: `ANNOTATOR_DB=... streamlit
    run streamlit_app.py` in the checkout's top folder (module-wide: starting costs seconds).
    `annotator app` serves the packaged script (test_annotator_app_serves_the_study)."""
    folder = tmp_path_factory.mktemp("app-browser")
    db = build_study(folder / "study.db")
    port = free_port()
    env = {**os.environ, "ANNOTATOR_DB": str(db)}
    env.pop("LABEL_STUDIO_URL", None)
    log = open(folder / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--global.developmentMode", "false", "--client.toolbarMode", "viewer"],
        cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail(f"streamlit did not start: {(folder / 'streamlit.log').read_text()}")
        time.sleep(0.2)
    try:
        yield {"url": url, "db": db, "folder": folder}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, served, tmp_path):
    """A fresh browser page that records dialogs and every request leaving the app's origin."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  accept_downloads=True)
    pg = context.new_page()
    pg.dialogs, pg.foreign = [], []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("request", lambda r: None if r.url.startswith(served["url"]) or r.url.startswith(
        "data:") or r.url.startswith("blob:") else pg.foreign.append(r.url))
    pg.set_default_timeout(90_000)
    yield pg
    context.close()


def idle(pg, text: str | None = None) -> None:
    """Wait until the script has finished and, if given, `text` is on the page; no exception."""
    if text is not None:
        pg.get_by_text(text, exact=False).first.wait_for(state="visible")
    pg.wait_for_selector(IDLE, state="attached")
    # results computed in the background: the page refreshes itself when they are ready
    pg.wait_for_function(
        "() => !document.body.innerText.includes('This page refreshes when it is ready')")
    pg.wait_for_selector(IDLE, state="attached")
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.inner_text("body")[:2000]


def shot(pg, tmp_path: Path, name: str, focus=None) -> Path:
    """A screenshot of the window, scrolled to `focus` (a locator) when given."""
    if focus is not None:
        focus.scroll_into_view_if_needed()
    path = tmp_path / f"{name}.png"
    pg.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    return path


def choose(pg, label: str, option: str, scope: str = "body") -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`.

    A rerun that starts just after the click (the previous action's) redraws the widget and
    closes its list: then wait for the page to settle and open the list again.
    """
    for _ in range(5):
        pg.locator(scope).get_by_role("combobox", name=label).first.click()
        found = pg.get_by_role("option", name=option, exact=False).first
        try:
            found.wait_for(state="visible", timeout=10_000)
        except sync_api.TimeoutError:
            pg.keyboard.press("Escape")
            idle(pg)
            continue
        found.click()
        return
    raise AssertionError(f"the list of {label!r} never showed {option!r}")


PAGES = {
    "": "Conversations by stage",
    "annotators": "Pairwise Cohen's kappa",
    "prompts": "Compare two versions against gold",
    "disagreements": "Read a conversation",
    "gold": "Decide the gold labels",
    "export": "Prepare the export",
}


def test_every_page_renders(page, served, tmp_path) -> None:
    for path, marker in PAGES.items():
        page.goto(f"{served['url']}/{path}")
        idle(page, marker)
        shot(page, tmp_path, path or "overview")
    assert not page.dialogs
    assert not page.foreign, page.foreign


def test_changing_the_prompt_version_rerenders(page, served, tmp_path) -> None:
    page.goto(f"{served['url']}/prompts")
    idle(page, "Compare two versions against gold")
    comparison = page.get_by_text("conversations with gold extracted by both").first
    assert V2 in comparison.inner_text().split("b =", 1)[1]
    choose(page, "Prompt version", V1, scope='[data-testid="stSidebar"]')
    page.wait_for_function(
        "([v]) => { const t = document.body.innerText; const i = t.indexOf('b = ');"
        " return i >= 0 && t.slice(i, i + 80).includes(v); }", arg=[V1])
    idle(page)
    assert V1 in page.get_by_text("conversations with gold extracted by both").first \
        .inner_text().split("b =", 1)[1]
    shot(page, tmp_path, "prompts-v1")


def test_hostile_conversation_renders_literally(page, served, tmp_path) -> None:
    hostile = hostile_conversation()
    page.goto(f"{served['url']}/disagreements?c={hostile.id}")
    idle(page, "Render this for me")
    dialogue = page.locator(".annotator-dialogue").first
    text = dialogue.inner_text()
    assert "<script>alert('pwned')</script>" in text
    assert "<img src=x onerror=alert(1)>" in text
    assert "[click here](http://evil.example/phish)" in text
    assert "![pixel](http://127.0.0.1:9/pixel.png)" in text
    assert "https://evil.example/auto" in text and ":red[styled]" in text
    assert dialogue.locator("script, img, a, iframe").count() == 0
    assert page.locator("script", has_text="pwned").count() == 0
    assert page.locator('img[src="x"], a[href*="evil.example"]').count() == 0
    marked = dialogue.locator("mark[title='honesty']").first.inner_text()
    assert marked.startswith("<img src=x onerror=alert(1)>")
    shot(page, tmp_path, "hostile", focus=dialogue)
    assert not page.dialogs, page.dialogs
    assert not page.foreign, page.foreign
    assert HOSTILE_USER[:20] in text


def test_adjudicate_then_see_it_in_gold_and_export(page, served, tmp_path) -> None:
    hostile = hostile_conversation()
    gold_file = tmp_path / "gold" / "study.jsonl"
    page.goto(f"{served['url']}/gold?c={hostile.id}")
    idle(page, "Decide the gold labels")
    page.get_by_text("Where gold is written").click()
    field = page.get_by_role("textbox", name="Gold file")
    field.fill(str(gold_file))
    field.press("Enter")
    idle(page)
    start = page.get_by_role("radiogroup", name="Start from")
    start.get_by_text("annotator demo-a", exact=True).click()
    idle(page)
    choose(page, "Response type", "mild resistance")
    page.get_by_role("textbox", name="Decided by").fill("Grace Browser")
    page.get_by_role("button", name="Save gold decision").click()
    idle(page, "Saved gold for")
    assert "Grace Browser" in page.inner_text("body")
    shot(page, tmp_path, "gold-saved")
    db = open_db(served["db"])
    row = db["gold"].get(hostile.id)
    n_gold = db["gold"].count
    n_person = db["gold"].count_where("decided_by != 'majority'")
    db.conn.close()
    assert row["decided_by"] == "Grace Browser" and row["response_type"] == "mild resistance"
    lines = [json.loads(x) for x in gold_file.read_text().splitlines()]
    assert any(x["conversation_id"] == hostile.id and x["gold"]["decided_by"] == "Grace Browser"
               for x in lines)
    # the Gold page lists it among decisions by a person
    page.get_by_text("decided by a person", exact=True).first.click()
    idle(page, f"{n_person} conversation{'' if n_person == 1 else 's'} ·")
    shot(page, tmp_path, "gold-person")
    # and the export holds it
    page.goto(f"{served['url']}/export")
    idle(page, "Prepare the export")
    page.get_by_role("button", name="Prepare the export").click()
    idle(page, "Filtered out")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download").click()
    target = tmp_path / "export.jsonl"
    info.value.save_as(target)
    records = [json.loads(x) for x in target.read_text().splitlines()]
    assert len(records) == n_gold
    mine = next(r for r in records if r["conversation_id"] == hostile.id)
    assert mine["decided_by"] == "Grace Browser" and mine["response_type"] == "mild resistance"
    shot(page, tmp_path, "export")


def _wait_until_healthy(proc: subprocess.Popen, port: int, log, log_path: Path) -> None:
    """Until the app on `port` answers its health check; fails with what the app wrote when it
    ends first or after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                        timeout=2) as reply:
                assert reply.status == 200
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(log_path.read_text())
            time.sleep(0.2)


def test_annotator_app_serves_the_study(browser, served, tmp_path) -> None:
    """`annotator app` (the app's modules loaded before the server starts) serves the same app
    for the study it is given: the overview draws the study's stages."""
    port = free_port()
    log = open(tmp_path / "app.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("annotator")), "app", "--db", str(served["db"]),
         "--port", str(port), "--no-browser"],
        cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "ANNOTATOR_DB"},
    )
    try:
        _wait_until_healthy(proc, port, log, tmp_path / "app.log")
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.set_default_timeout(90_000)
        pg.goto(f"http://127.0.0.1:{port}/")
        idle(pg, "Conversations by stage")
        assert pg.get_by_role("textbox", name="Study database").input_value() == str(
            Path(served["db"]).resolve())
        context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_annotator_app_opening_a_browser_starts_without_a_terminal(served, tmp_path) -> None:
    """`annotator app` with its default `--browser`, on an account where Streamlit never ran
    (no ~/.streamlit) and with no terminal (started from a script, or with `&`): Streamlit's
    first-run e-mail prompt used to read standard input, find it closed and end the app. It
    serves, asks nothing, and stops when its terminal closes (SIGHUP)."""
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ANNOTATOR_DB", "DISPLAY")}
    log = open(tmp_path / "app.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("annotator")), "app", "--db", str(served["db"]),
         "--port", str(port)],
        cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env={**env, "HOME": str(home), "BROWSER": "true"},
    )
    try:
        _wait_until_healthy(proc, port, log, tmp_path / "app.log")
        assert proc.poll() is None
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
    assert "Email" not in (tmp_path / "app.log").read_text()


# --- issue 11, item 7: links, search, emails, shares, labels -------------------------------------


def _sidebar_prompt(pg) -> str:
    return pg.locator('[data-testid="stSidebar"]').get_by_role(
        "combobox", name="Prompt version").input_value()


def test_a_conversation_id_opens_on_the_first_click(page, served, tmp_path) -> None:
    page.goto(f"{served['url']}/prompts")
    idle(page, "Compare two versions against gold")
    # a rerun that redraws the table (the other version in the sidebar) used to eat the next
    # click on it; and the click comes without a hover first, as after scrolling or a tap
    choose(page, "Prompt version", V1, scope='[data-testid="stSidebar"]')
    page.wait_for_function(
        "([v]) => { const t = document.body.innerText; const i = t.indexOf('b = ');"
        " return i >= 0 && t.slice(i, i + 80).includes(v); }", arg=[V1])
    idle(page)
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="jaccard_a").first
    table.scroll_into_view_if_needed()
    first_id = table.locator("td").first.inner_text().strip()
    assert len(first_id) >= 12
    box = table.bounding_box()
    page.mouse.click(box["x"] + 40, box["y"] + 53)  # the first row's id, once
    page.wait_for_function("() => location.pathname.endsWith('/disagreements')")
    assert page.url.endswith(f"?c={first_id}")
    idle(page, "Read a conversation")
    chosen = page.get_by_role("combobox", name="Conversation").input_value()
    assert chosen.startswith(first_id[:12]), chosen
    assert V1 in _sidebar_prompt(page), "the sidebar's choice survives the page change"
    shot(page, tmp_path, "opened-from-prompts")


def test_picker_finds_any_conversation_and_shows_its_snippet_as_text(page, served,
                                                                     tmp_path) -> None:
    hostile = hostile_conversation()
    page.goto(f"{served['url']}/disagreements")
    idle(page, "Read a conversation")
    search = page.get_by_role("textbox", name="Find a conversation")
    search.fill("pwned")
    search.press("Enter")
    idle(page, "Render this for me")
    picker = page.get_by_role("combobox", name="Conversation")
    label = picker.input_value()  # the chosen option, as text
    assert label.startswith(hostile.id[:12]) and "<script>alert('pwned')</script>" in label
    for _ in range(5):  # a rerun just after the click closes the list: open it again
        picker.click()
        option = page.get_by_role("option").first
        try:
            option.wait_for(state="visible", timeout=10_000)
            break
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
            idle(page)
    assert "<script>alert('pwned')</script>" in option.inner_text()
    assert option.locator("script, img, a").count() == 0
    page.keyboard.press("Escape")
    assert not page.dialogs and not page.foreign
    shot(page, tmp_path, "picker-search")


def test_emails_are_text_not_links(page, served, tmp_path) -> None:
    email = "ada.lovelace@example.org"
    db = open_db(served["db"])
    target = db.execute("select conversation_id from gold where decided_by = 'majority' "
                        "order by conversation_id limit 1").fetchone()[0]
    db.conn.close()
    page.goto(f"{served['url']}/gold?c={target}")
    idle(page, "Decide the gold labels")
    page.get_by_role("radiogroup", name="Start from").get_by_text(
        "annotator demo-a", exact=True).click()
    idle(page)
    page.get_by_role("textbox", name="Decided by").fill(email)
    page.get_by_role("button", name="Save gold decision").click()
    idle(page, "Saved gold for")
    # still said once the summaries the decision changed are recomputed and the page has
    # rerun by itself (`idle` waits for that): a note shown once was gone by then
    assert page.get_by_text("Saved gold for", exact=False).count() == 1
    # the saved message and the new "current gold (...)" option both name the email
    start = page.get_by_role("radiogroup", name="Start from")
    start.get_by_text("current gold", exact=False).first.wait_for()
    for where in (page.locator('[data-testid="stAlert"]').first, start):
        assert email in where.inner_text().replace("\u2060", "")
    assert page.locator('a[href^="mailto:"]').count() == 0
    assert page.locator('[data-testid="stMain"] a', has_text="example.org").count() == 0
    shot(page, tmp_path, "email-not-link")


def test_shares_and_chart_labels_show_whole(page, served, tmp_path) -> None:
    page.goto(f"{served['url']}/")
    idle(page, "Share of conversations per response type")
    # every chart drawn: Vega draws each one when it is ready, the stage chart among them
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] svg "
        ".role-axis-label text')].some(e => e.textContent.includes('pushed to Label Studio'))")
    labels = page.locator('[data-testid="stVegaLiteChart"] svg .role-axis-label text')
    texts = [t for t in labels.evaluate_all("els => els.map(e => e.textContent)") if t.strip()]
    assert texts, "the charts have axis labels"
    assert not [t for t in texts if t.endswith("…")], texts
    joined = " ".join(texts)
    db = open_db(served["db"])
    prompts = [r[0] for r in db.execute("select id from prompts")]
    db.conn.close()
    for pid in prompts:  # the stage labels name each prompt version in full
        assert f"({pid})" in joined
    assert "pushed to Label Studio" in joined
    # a share of 0 reads 0% in the tables
    body = page.inner_text("body")
    assert "0.0%" not in body
    shot(page, tmp_path, "overview-labels")
