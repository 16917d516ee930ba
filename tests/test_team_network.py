"""A team study across computers (issue 18, items 1-5), with the real parts: each reviewer's
own Label Studio (the cached venv and template of `labelstudio_fixtures`) listening on this
machine's network address, not loopback, driven by Debian's Chromium; the app served beyond
loopback; `annotator` commands run as processes, as a lead runs them.

- reviewers log in through the machine's non-loopback address, at the URLs the commands print;
- the lead's one browser stays logged in to two reviewers' instances at once;
- the addresses stay the same after a stop and a start; a port taken by another program is a
  one-line error naming it;
- the app beyond loopback asks for its password first; `labelstudio stop` stops the app too.
Screenshots go to each test's tmp folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from labelstudio_fixtures import CHROMIUM, CHROMIUM_ARGS, browser_login, make_study

from annotator.review import instances, server

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
ANNOTATOR = [sys.executable, "-m", "annotator"]


def network_address() -> str:
    """This machine's non-loopback address: the one a reviewer's computer would reach. A
    machine without one gets a private address added to its loopback device for the test."""
    address = server.machine_address()
    if not address.startswith("127."):
        return address
    added = "10.203.0.1"
    done = subprocess.run(["ip", "addr", "add", f"{added}/32", "dev", "lo"],
                          capture_output=True, text=True)
    if done.returncode != 0 and "File exists" not in done.stderr:
        pytest.fail(f"this machine has no non-loopback address to test with: {done.stderr}")
    return added


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "ANNOTATOR_DB",
                        "ANNOTATOR_APP_PASSWORD")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(":")
    return env


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*ANNOTATOR, *args], capture_output=True, text=True, env=_env(),
                          timeout=600)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=3) as r:
        return r.status == 200
    return False


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A study with two isolated reviewers whose instances listen on the network address."""
    try:
        server.ensure_template(server.install(server.default_venv()))
    except server.LabelStudioError as exc:
        pytest.fail(f"Label Studio could not be installed for the test: {exc}", False)
    address = network_address()
    folder = tmp_path_factory.mktemp("team")
    db = folder / "study.db"
    make_study(db, n=4)
    cli("labelstudio", "start", "--db", str(db), "--host", address, "--json")
    added = {}
    for email in ("ada@example.org", "bob@example.org"):
        out = json.loads(cli("labelstudio", "add-user", email, "--db", str(db), "--json").stdout)
        added[email] = out
    try:
        yield {"db": db, "address": address, "reviewers": added, "folder": folder}
    finally:
        cli("labelstudio", "stop", "--db", str(db), check=False)


def test_reviewers_are_served_at_the_network_address_the_commands_print(team) -> None:
    address = team["address"]
    status = json.loads(cli("labelstudio", "status", "--db", str(team["db"]), "--json").stdout)
    urls = {r["username"]: r["url"] for r in status["reviewers"]}
    for email, added in team["reviewers"].items():
        assert added["url"] == urls[email]
        assert re.fullmatch(rf"http://{re.escape(address)}:\d+", added["url"]), added["url"]
        assert _answers(added["url"])
        # it listens on that address, not loopback: what answers is the network's side
        port = int(added["url"].rsplit(":", 1)[1])
        assert not _answers(f"http://127.0.0.1:{port}")
    assert len(set(urls.values())) == 2


def test_a_reviewer_logs_in_through_the_network_address_and_the_lead_keeps_both_logins(
    team, tmp_path
) -> None:
    from playwright.sync_api import sync_playwright

    (ada, ada_login), (bob, bob_login) = team["reviewers"].items()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_default_timeout(90_000)
            assert browser_login(page, ada_login["url"], ada, ada_login["password"])
            page.goto(f"{ada_login['url']}/projects/")
            page.wait_for_load_state("networkidle")
            assert "/user/login" not in page.url
            page.screenshot(path=str(tmp_path / "ada-through-network-address.png"))
            # the lead, in the same browser, logs in to bob's instance too ...
            assert browser_login(page, bob_login["url"], bob, bob_login["password"])
            # ... and is still logged in to ada's: each instance has cookies of its own
            for url in (ada_login["url"], bob_login["url"]):
                page.goto(f"{url}/projects/")
                page.wait_for_load_state("networkidle")
                assert "/user/login" not in page.url, f"logged out of {url}"
                user = page.request.get(f"{url}/api/current-user/whoami").json()
                assert user["email"] in (ada, bob)
            page.screenshot(path=str(tmp_path / "lead-still-in-both.png"))
            cookies = {c["name"] for c in context.cookies()}
            assert len([c for c in cookies if c.endswith("sessionid")]) == 2, cookies
        finally:
            browser.close()


def test_addresses_stay_after_a_restart_and_a_taken_port_is_named(team) -> None:
    db = str(team["db"])
    before = {e: r["url"] for e, r in team["reviewers"].items()}
    cli("labelstudio", "stop", "--db", db)
    assert not any(_answers(url) for url in before.values())
    cli("labelstudio", "start", "--db", db)  # right after the stop: no TIME_WAIT refusal
    status = json.loads(cli("labelstudio", "status", "--db", db, "--json").stdout)
    after = {r["username"]: r["url"] for r in status["reviewers"]}
    assert after == before
    assert all(_answers(url) for url in after.values())

    # another program takes ada's port while her instance is stopped
    cli("labelstudio", "stop", "--db", db)
    ada_url = before["ada@example.org"]
    port = int(ada_url.rsplit(":", 1)[1])
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((team["address"], port))
    squatter.listen()
    try:
        done = cli("labelstudio", "start", "--db", db, check=False)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert f"port {port}" in lines[0] and f"pid {os.getpid()}" in lines[0], lines[0]
    finally:
        squatter.close()
    cli("labelstudio", "start", "--db", db)
    status = json.loads(cli("labelstudio", "status", "--db", db, "--json").stdout)
    assert {r["username"]: r["url"] for r in status["reviewers"]} == before


def test_the_app_beyond_loopback_asks_for_its_password_and_stop_stops_it(team, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind((team["address"], 0))
        port = s.getsockname()[1]
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen(
        [*ANNOTATOR, "app", "--db", str(team["db"]), "--host", team["address"], "--port",
         str(port), "--no-browser"],
        stdout=subprocess.PIPE, stderr=log, text=True, env=_env(), start_new_session=True,
    )
    try:
        first = proc.stdout.readline()
        found = re.match(r"App: (http://\S+) \(password: (\S+)\)$", first.strip())
        assert found, first
        url, password = found.groups()
        assert url == f"http://{team['address']}:{port}"
        deadline = time.monotonic() + 90
        while not _healthy(url) and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()
            time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.set_default_timeout(90_000)
                page.goto(url)
                field = page.locator('input[type="password"]')
                field.wait_for()
                assert page.get_by_text("Conversations by stage").count() == 0
                page.screenshot(path=str(tmp_path / "app-asks-for-password.png"))
                field.fill("not-the-password")
                page.get_by_role("button", name="Open the study").click()
                page.get_by_text("That is not the app's password.").wait_for()
                assert page.get_by_text("Conversations by stage").count() == 0
                field.fill(password)
                page.get_by_role("button", name="Open the study").click()
                page.get_by_text("Conversations by stage").first.wait_for()
                page.screenshot(path=str(tmp_path / "app-after-password.png"))
            finally:
                browser.close()
        # one command stops the study's Label Studio servers and its app alike
        stopped = json.loads(cli("labelstudio", "stop", "--db", str(team["db"]), "--json").stdout)
        assert stopped["app_stopped"] is True
        proc.wait(timeout=20)
        assert not _healthy(url)
        assert not any(_answers(r["url"]) for r in team["reviewers"].values())
        # started again without --host and --port: the same URL and password, a reviewer's
        # bookmark still good; closing its terminal (SIGHUP) stops it
        proc = subprocess.Popen([*ANNOTATOR, "app", "--db", str(team["db"]), "--no-browser"],
                                stdout=subprocess.PIPE, stderr=log, text=True, env=_env(),
                                start_new_session=True)
        assert proc.stdout.readline().strip() == f"App: {url} (password: {password})"
        deadline = time.monotonic() + 90
        while not _healthy(url) and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()
            time.sleep(0.3)
        assert _healthy(url)
        os.killpg(proc.pid, signal.SIGHUP)
        proc.wait(timeout=20)
        assert not _healthy(url)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        cli("labelstudio", "start", "--db", str(team["db"]), check=False)


def _healthy(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health",
                                                              timeout=2) as resp:
        return resp.status == 200
    return False


def test_instances_are_named_by_their_folder_so_cookies_differ(tmp_path) -> None:
    """Unit (no server): two instances of one study get different cookie names, each the same
    across restarts (it is derived from the instance's folder)."""
    db = tmp_path / "study.db"
    a, b = instances.instance(db, "a@x.org"), instances.instance(db, "b@x.org")
    assert server.cookie_prefix(a.anchor) != server.cookie_prefix(b.anchor)
    assert server.cookie_prefix(a.anchor) == server.cookie_prefix(a.anchor)
    assert server.cookie_prefix(db) not in (server.cookie_prefix(a.anchor),
                                            server.cookie_prefix(b.anchor))
