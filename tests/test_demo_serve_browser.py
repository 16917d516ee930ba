"""`annotator demo --serve` followed as a newcomer would: run it, read what it prints, log into
Label Studio as a reviewer with the printed login and find the demo tasks pre-filled, open the
printed app address and find the Overview, then press Ctrl-C (SIGINT), send SIGTERM, or close
the terminal (SIGHUP to the process group), and find every server gone within 10 s. With
`--host` the reviewers' servers listen on this machine's network address, the same URLs on
every run. Real Label Studio (the cached venv and template of `labelstudio_fixtures`), real
Chromium; every wait has a deadline."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from labelstudio_fixtures import CHROMIUM, CHROMIUM_ARGS, browser_login
from test_team_network import network_address

from annotator.review import server
from annotator.review.demo_serve import stop_serving

pytestmark = pytest.mark.integration

APP_LINE = re.compile(r"^App: (http://127\.0\.0\.1:\d+)$")
REVIEWER_LINE = re.compile(
    r"^Reviewer (\d): open (http://[\d.]+:\d+) and log in as (\S+) with password (\S+)$")
STOPPED_WITHIN = 10.0  # seconds from the signal until every server the demo started is gone
ROOT = Path(__file__).resolve().parents[1]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((parsed.hostname, parsed.port)) == 0


def _pids_naming(text: str) -> set[int]:
    """Processes whose command line names `text` (the test's own study folder)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if text.encode() in cmdline and state != "Z":
            found.add(int(entry.name))
    return found


class Lines:
    """The command's stdout, line by line, read on a thread so that waits have deadlines."""

    def __init__(self, proc: subprocess.Popen, stderr: Path) -> None:
        self.seen: list[str] = []
        self.stderr = stderr
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, pattern: re.Pattern, deadline: float) -> re.Match:
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if found := pattern.match(line):
                return found
        raise AssertionError(f"never printed {pattern.pattern!r}:\n" + "\n".join(self.seen)
                             + "\n" + self.stderr.read_text()[-2000:])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "ANNOTATOR_DB")}
    # this checkout's annotator, whatever the venv has installed (the app's child inherits it)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(":")
    return {**env, **extra}


@dataclass
class Running:
    proc: subprocess.Popen
    lines: Lines
    study: Path
    app_url: str
    logins: list[tuple[str, str, str, str]]  # (number, url, email, password)
    pids: set[int]

    @property
    def urls(self) -> list[str]:
        return [self.app_url] + [url for _, url, _, _ in self.logins]

    def stop(self, sig: int, group: bool = False) -> None:
        """Send `sig` (to the whole process group, as a closing terminal does, with `group`);
        the command exits 0 having said so, and every server it ran is gone within 10 s."""
        sent = time.monotonic()
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        assert self.proc.wait(timeout=120) == 0
        self.lines.until(re.compile(r"^Stopped the app and Label Studio\.$"),
                         time.monotonic() + 10)
        deadline = sent + STOPPED_WITHIN
        while time.monotonic() < deadline and (self.pids & _pids_naming(str(self.study))):
            time.sleep(0.2)
        assert not self.pids & _pids_naming(str(self.study)), (
            f"a server outlived the signal by {STOPPED_WITHIN:.0f} s")
        for url in self.urls:
            assert not _port_open(url), f"{url} still answers"


@contextlib.contextmanager
def demo_serve(tmp_path: Path, *extra: str) -> Iterator[Running]:
    """`annotator demo --serve` in a fresh folder (a session of its own, as in a terminal), once
    it has printed the addresses and logins."""
    try:
        server.install(server.default_venv())
    except server.LabelStudioError as exc:
        pytest.fail(f"Label Studio could not be installed for the test: {exc}", False)
    study = tmp_path / "newcomer"
    errors = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "annotator", "demo", "--db", str(study / "annotator.db"),
         "--serve", "--app-port", str(_free_port()), *extra],
        cwd=str(tmp_path), env=_env(), stdout=subprocess.PIPE, stderr=errors, text=True,
        start_new_session=True,
    )
    try:
        lines = Lines(proc, tmp_path / "stderr.txt")
        deadline = time.monotonic() + 600
        app_url = lines.until(APP_LINE, deadline).group(1)
        logins = [lines.until(REVIEWER_LINE, deadline).groups() for _ in range(2)]
        assert [n for n, *_ in logins] == ["1", "2"]
        assert len({url for _, url, _, _ in logins} | {app_url}) == 3  # one server each
        assert len({email for _, _, email, _ in logins}) == 2
        pids = _pids_naming(str(study))
        assert len(pids) >= 3, pids  # the app and two Label Studio servers
        yield Running(proc, lines, study, app_url, logins, pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            with contextlib.suppress(Exception):  # what a killed demo left: servers and app
                stop_serving(study / "annotator.db")
        errors.close()


def test_demo_serve_follows_the_printed_instructions(tmp_path) -> None:
    """Through the network address (`--host`), as a reviewer on another computer would; the
    terminal is closed at the end (SIGHUP to the process group)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", False)
    address = network_address()
    with demo_serve(tmp_path, "--host", address) as running:
        assert all(urlparse(url).hostname == address for _, url, _, _ in running.logins)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(90_000)
                _, ls_url, email, password = running.logins[0]
                assert browser_login(page, ls_url, email, password), "the login was refused"
                projects = page.request.get(f"{ls_url}/api/projects").json()
                projects = projects.get("results", projects)
                assert len(projects) == 1
                project = projects[0]["id"]
                tasks = page.request.get(
                    f"{ls_url}/api/tasks?project={project}&page_size=500&fields=all").json()
                tasks = tasks.get("tasks", tasks)
                with_predictions = [t for t in tasks if t["total_predictions"] > 0]
                # every demo conversation, most pre-filled (a stable share goes blind)
                assert len(tasks) == _conversations(running.study / "annotator.db")
                assert len(with_predictions) > len(tasks) / 2
                page.goto(f"{ls_url}/projects/{project}/data?task={with_predictions[0]['id']}")
                page.locator(".lsf-choices input:checked").first.wait_for()
                checked = page.locator(".lsf-choices input:checked").evaluate_all(
                    "els => els.map(e => e.name)")
                assert set(checked) & {"strong support", "mild support", "neutral",
                                       "reframing", "mild resistance", "strong resistance"}
                page.screenshot(path=str(tmp_path / "reviewer-task.png"))

                page.goto(running.app_url)
                page.get_by_text("Conversations by stage").first.wait_for()
                page.wait_for_selector(IDLE, state="attached")
                assert page.locator('[data-testid="stException"]').count() == 0
                assert page.get_by_role("heading", name="Overview").count() == 1
                page.screenshot(path=str(tmp_path / "app-overview.png"))
            finally:
                browser.close()
        running.stop(signal.SIGHUP, group=True)  # what closing the terminal sends


def test_demo_serve_stops_on_sigterm_and_keeps_the_logins(tmp_path) -> None:
    with demo_serve(tmp_path) as first:
        first.stop(signal.SIGTERM)
    # a second run (same folder) reuses the reviewers: the same logins, no task sent twice
    with demo_serve(tmp_path) as second:  # right after the stop: no port is refused
        assert [(e, p) for _, _, e, p in second.logins] == [(e, p) for _, _, e, p in first.logins]
        # and the same addresses: the links already sent to reviewers still work
        assert [u for _, u, _, _ in second.logins] == [u for _, u, _, _ in first.logins]
        tasks = second.lines.until(re.compile(r".*\((\d+) tasks: (\d+) new"),
                                   time.monotonic() + 30)
        assert int(tasks.group(1)) > 0 and int(tasks.group(2)) == 0
        second.stop(signal.SIGINT)
    assert _conversations(tmp_path / "newcomer" / "annotator.db") > 0


def test_demo_serve_without_label_studio_says_how_to_install_it(tmp_path) -> None:
    db = tmp_path / "demo" / "annotator.db"
    done = subprocess.run(
        [sys.executable, "-m", "annotator", "demo", "--db", str(db), "--serve"],
        cwd=str(tmp_path), env=_env(ANNOTATOR_LABELSTUDIO_VENV=str(tmp_path / "no-venv")),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "annotator labelstudio install" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not db.exists(), "nothing is built before the check"


def _conversations(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from conversations").fetchone()[0]
