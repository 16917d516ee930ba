"""`annotator demo --serve`: the whole loop on the demo study, for someone new to the project.

After the demo study is built, two reviewers get a Label Studio of their own (isolated review,
`instances`), the demo tasks are pushed to both pre-filled with the baseline's
predictions, and the app is served; `serving` hands back the addresses and logins to print and
stops everything it started when the block ends, whether by Ctrl-C (SIGINT), SIGTERM or an
error. The app runs as a child process (`annotator app`) in a session of its own, like the
Label Studio servers: the shell's Ctrl-C reaches only this process, which then stops each
server in turn and waits for it, so nothing is left running.

The library prints nothing: steps are reported through `echo`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from annotator.errors import AnnotatorError
from annotator.review import instances, server

# `.local` is reserved for local names: nothing is ever mailed there. Label Studio accepts it
# (the study's own admin is admin@annotator.local).
DEMO_REVIEWERS: tuple[str, ...] = ("reviewer-1@annotator.local", "reviewer-2@annotator.local")
DEFAULT_APP_PORT = 8501
DEFAULT_PULL_EVERY = 300.0  # seconds between pulls while the demo runs
APP_START_TIMEOUT = 120.0
APP_LOG = "app.log"
APP_STATE = "app.json"  # the pid of the app serving the study, for `stop_serving`


class Stopped(Exception):  # noqa: N818 - a request to stop, not a failure
    """SIGTERM or SIGHUP arrived: the servers are being stopped (Ctrl-C raises
    KeyboardInterrupt)."""


@dataclass(frozen=True)
class ReviewerLogin:
    """What a reviewer needs to start labelling: their Label Studio's address and login."""

    email: str
    url: str
    password: str = field(repr=False)


@dataclass
class DemoServers:
    """The running demo: the app's address, each reviewer's login, what the push sent."""

    db: Path
    app_url: str
    app_log: Path
    reviewers: list[ReviewerLogin]
    tasks_created: int
    tasks_existing: int
    blind_tasks: int
    app: subprocess.Popen = field(repr=False)


def check_ready(app_port: int, venv: Path | str | None = None) -> Path:
    """What `serving` needs, checked before the demo study is built: a local Label Studio
    installed, no team server configured instead, and the app's port free. Returns the venv."""
    if server.external_connection() is not None:
        raise AnnotatorError(
            "demo --serve runs its own Label Studio: unset LABEL_STUDIO_URL and "
            "LABEL_STUDIO_API_KEY for this command"
        )
    venv_path = Path(venv) if venv else server.default_venv()
    if server.installed_version(venv_path) is None:
        raise AnnotatorError(
            f"Label Studio is not installed in {venv_path}: run `annotator labelstudio install` "
            "(about 1 GB, once), then run this again"
        )
    if not 0 < app_port < 65536:
        raise AnnotatorError(f"--app-port must be between 1 and 65535, not {app_port}")
    if not server.port_free(server.LOOPBACK, app_port):
        owner = server.port_owner(app_port) or "another program"
        raise AnnotatorError(
            f"port {app_port}, the app's, is taken by {owner}: stop it or pass --app-port"
        )
    return venv_path


# SIGHUP is what a closed terminal sends: the servers must not outlive it.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    # SIGTERM or SIGHUP would end the process without running `finally`; as an exception each
    # unwinds the `serving` block like Ctrl-C does. Signal handlers belong to the main thread.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_stopped) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    # While the servers stop, a second Ctrl-C (or a SIGTERM, or the terminal closing) must not
    # cut that short and leave one running: all are held off until everything has stopped.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, *STOP_SIGNALS)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _add_reviewers(db: Path, venv: Path, emails: tuple[str, ...],
                   echo: server.Echo) -> list[ReviewerLogin]:
    from annotator.review.sync import add_user

    server.ensure_template(venv, echo=echo)  # built once, before the instances copy it
    echo(f"Starting a Label Studio for each of {len(emails)} reviewers ...")
    with ThreadPoolExecutor(max_workers=len(emails)) as pool:
        made = list(pool.map(lambda email: add_user(db, email), emails))
    return [ReviewerLogin(email=r.email, url=r.url, password=r.password) for r in made]


def _start_app(db: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "annotator", "app", "--db", str(db), "--port", str(port),
               "--no-browser"]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def _wait_for_app(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise AnnotatorError(f"the app exited while starting: {' | '.join(tail)[-300:]} "
                                 f"(full log: {log})")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AnnotatorError(f"the app did not answer on {url} within {timeout:.0f} s; see {log}")


def _stop_app(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the group is its pid
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def app_state_path(db: Path | str) -> Path:
    return server.server_dir(db) / APP_STATE


def record_app(db: Path | str, pid: int, url: str) -> None:
    """Note the app serving the study (`annotator app` does at start), so that the one command
    that stops the study's servers stops it too."""
    from annotator.private_files import write_private

    write_private(app_state_path(db), json.dumps({"pid": pid, "url": url}), "app state")


def _app_pid(db: Path | str) -> int | None:
    from annotator.private_files import read_private

    try:
        pid = int(json.loads(read_private(app_state_path(db), "app state") or "")["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # a recycled pid must not be taken for (and then stopped as) the app
    return pid if b"annotator" in cmdline and b"app" in cmdline else None


def stop_app(db: Path | str, timeout: float = 10.0) -> bool:
    """Stop the app serving the study, if one runs; True if one did."""
    pid = _app_pid(db)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _app_pid(db) == pid and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _app_pid(db) == pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return True


def stop_label_studio(db: Path | str) -> None:
    """Stop every Label Studio of the study, all at once: the reviewers' instances and a main
    server."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(instances.stop_all, db), pool.submit(server.stop, db)]:
            done.result()


def stop_serving(db: Path | str) -> bool:
    """Stop everything that serves the study to people: its Label Studio servers and its app.
    True if an app was stopped."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        app = pool.submit(stop_app, db)
        stop_label_studio(db)
        return app.result()


@contextlib.contextmanager
def serving(
    db: Path | str,
    app_port: int = DEFAULT_APP_PORT,
    venv: Path | str | None = None,
    reviewers: tuple[str, ...] = DEMO_REVIEWERS,
    echo: server.Echo = server.quiet,
    host: str | None = None,
    pull_every: float = DEFAULT_PULL_EVERY,
) -> Iterator[DemoServers]:
    """Label Studio for two reviewers with the study's tasks, and the app, until the block ends.

    The study must exist (the demo builds it first). Reviewers that exist keep their password
    and their address, so a second run prints the same logins and URLs; tasks already pushed
    are not sent twice. `host`: where the reviewers' Label Studios listen (kept for later
    runs; the app stays on loopback: it shows everyone's labels). Annotations are pulled every
    `pull_every` seconds (0: never). On leaving the block, for any reason (Ctrl-C, SIGTERM, a
    closed terminal's SIGHUP, an error), the app and every Label Studio of the study stop.
    """
    from annotator.review.push import push

    db = Path(db).resolve()
    venv_path = check_ready(app_port, venv)
    if host:
        server.set_network(db, host=host)
    app: subprocess.Popen | None = None
    puller: _Puller | None = None
    with _stop_on_signals():
        try:
            logins = _add_reviewers(db, venv_path, reviewers, echo)
            echo("Pushing the demo tasks with the baseline's predictions ...")
            pushed = push(db)
            log = db.parent / APP_LOG
            app_url = f"http://127.0.0.1:{app_port}"
            echo(f"Starting the app (log: {log}) ...")
            app = _start_app(db, app_port, log)
            _wait_for_app(app, app_url, log, APP_START_TIMEOUT)
            if pull_every > 0:
                puller = _Puller(db, pull_every, echo)
                puller.start()
            yield DemoServers(
                db=db, app_url=app_url, app_log=log, reviewers=logins,
                tasks_created=pushed.tasks_created, tasks_existing=pushed.tasks_existing,
                blind_tasks=pushed.blind_tasks, app=app,
            )  # fmt: skip
        finally:
            with _uninterrupted():
                echo("Stopping the app and Label Studio ...")
                if puller is not None:
                    puller.stop()
                with ThreadPoolExecutor(max_workers=2) as pool:
                    stopping = pool.submit(_stop_app, app) if app is not None else None
                    stop_label_studio(db)
                    if stopping is not None:
                        stopping.result()


class _Puller(threading.Thread):
    """Pulls the reviewers' annotations every `every` seconds while the demo runs, so the app
    shows them without anyone running `annotator pull`; a failed pull is said and retried."""

    def __init__(self, db: Path, every: float, echo: server.Echo) -> None:
        super().__init__(name="periodic-pull", daemon=True)
        self.db, self.every, self.echo = db, every, echo
        self._stopped = threading.Event()

    def run(self) -> None:
        from annotator.review.pull import pull

        while not self._stopped.wait(self.every):
            try:
                report = pull(self.db)
            except AnnotatorError as exc:
                self.echo(f"Periodic pull failed (retried in {self.every:.0f} s): {exc}")
                continue
            if report.new or report.updated or report.deleted:
                self.echo(f"Pulled: {report.new} new, {report.updated} changed, "
                          f"{report.deleted} deleted annotations")

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=30)


def wait(servers: DemoServers) -> None:
    """Until Ctrl-C, SIGTERM or SIGHUP (raised as KeyboardInterrupt or `Stopped`), or the app
    being stopped (`annotator labelstudio stop`); the app failing is an error."""
    code = servers.app.wait()
    if code in (0, -signal.SIGTERM):
        raise Stopped("the app was stopped")
    raise AnnotatorError(f"the app stopped by itself (exit code {code}); see {servers.app_log}")
