"""A local Label Studio server for a study: install, start, stop, status, and which server to use.

Label Studio is a separate application: it lives in its own virtual environment (default
`~/.cache/annotator/labelstudio-venv`) and keeps its data next to the study database, in
`<study folder>/.labelstudio/` (data directory, log, and `server.json` with pid, port and the
admin login, mode 0600). Secrets go to the child through its environment, never its command line
(which `ps` shows), and are printed only when the user asks for the login.

With `LABEL_STUDIO_URL` and `LABEL_STUDIO_API_KEY` set, that server is used and none is started.
This module does not import the SDK; `sync` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from annotator import config
from annotator.errors import AnnotatorError

LABEL_STUDIO_VERSION = "1.23.2"  # the version the config, shapes and tests were verified with
# The SDK release that server ships with (label-studio 1.23.2 requires label-studio-sdk==2.1.2):
# pyproject pins the same, so client and server move together (tests/test_labelstudio_sdk.py).
LABEL_STUDIO_SDK_VERSION = "2.1.2"
ADMIN_EMAIL = "admin@annotator.local"
SERVER_DIR = ".labelstudio"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
START_TIMEOUT = 240.0  # a first start migrates an empty database: ~25 s here, slower on CI

Echo = Callable[[str], None]


class LabelStudioError(AnnotatorError):
    """Label Studio cannot be installed, reached or used as asked; the message says what to do."""


def quiet(_: str) -> None:
    pass


# --- where things live ----------------------------------------------------------------------


def default_venv() -> Path:
    """Where `install` puts label-studio unless told otherwise."""
    return config.label_studio_venv()  # config.py is the only reader of the environment


def server_dir(db_path: Path | str) -> Path:
    """`<study folder>/.labelstudio`: the study folder is the database's folder."""
    return Path(db_path).resolve().parent / SERVER_DIR


def data_dir(db_path: Path | str) -> Path:
    return server_dir(db_path) / "data"


def log_path(db_path: Path | str) -> Path:
    return server_dir(db_path) / LOG_FILE


# --- state file -------------------------------------------------------------------------------


@dataclass
class ServerState:
    """What `start` leaves behind for `stop`, `status` and every command that talks to it."""

    username: str
    password: str = field(repr=False)
    token: str = field(repr=False)
    secret_key: str = field(repr=False)
    venv: str = ""
    pid: int | None = None
    port: int | None = None
    started_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def new(cls) -> ServerState:
        return cls(
            username=ADMIN_EMAIL,
            password=secrets.token_urlsafe(12),
            # Label Studio's own tokens are 40 hex characters; keep to that shape.
            token=secrets.token_hex(20),
            secret_key=secrets.token_urlsafe(40),
        )


def state_path(db_path: Path | str) -> Path:
    return server_dir(db_path) / STATE_FILE


def read_state(db_path: Path | str) -> ServerState | None:
    """What `start` wrote; None before the first start. A link or another user's file at its
    path is refused (it would hand the study someone else's login and API token)."""
    from annotator.private_files import read_private

    path = state_path(db_path)
    text = read_private(path, "Label Studio login file")
    if text is None:
        return None
    try:
        return ServerState(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise LabelStudioError(
            f"{path} is unreadable ({type(exc).__name__}): remove it and run "
            "`annotator labelstudio start` again"
        ) from None


def write_state(db_path: Path | str, state: ServerState) -> None:
    # The file holds the admin password and token: 0600 from creation, in a 0700 folder, through
    # a fresh temporary name (a fixed one could be a planted symlink or a stale 0644 file).
    from annotator.private_files import write_private

    write_private(state_path(db_path), json.dumps(asdict(state), indent=2),
                  "Label Studio login file")


# --- which server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """A server to talk to: its URL, an API key, and whether this study started it."""

    url: str
    api_key: str = field(repr=False)
    external: bool
    # Names the server in label sources and the tasks table: project and annotation ids repeat
    # across servers. "local" is the study's own server; an external one is named by its URL.
    key: str = "local"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    data_dir: Path | None = None
    venv: Path | None = None


def external_connection() -> Connection | None:
    """The team's server from LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY, or None if unset."""
    s = config.settings()
    if s.label_studio_url and s.label_studio_api_key:
        url = s.label_studio_url.rstrip("/")
        return Connection(url=url, api_key=s.label_studio_api_key, external=True, key=url)
    if s.label_studio_url or s.label_studio_api_key:
        missing = "LABEL_STUDIO_API_KEY" if s.label_studio_url else "LABEL_STUDIO_URL"
        raise LabelStudioError(
            f"{missing} is not set: set both LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to use "
            "your own server, or neither to use the study's local one"
        )
    return None


def connection(db_path: Path | str) -> Connection:
    """The server the study uses: the external one if configured, else the running local one."""
    external = external_connection()
    if external is not None:
        return external
    state = read_state(db_path)
    if state is None or not process_alive(state.pid):
        raise LabelStudioError(
            "Label Studio is not running for this study: run `annotator labelstudio start` "
            "(or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to use your own server)"
        )
    return _local_connection(db_path, state)


def _local_connection(db_path: Path | str, state: ServerState) -> Connection:
    return Connection(
        url=state.url,
        api_key=state.token,
        external=False,
        username=state.username,
        password=state.password,
        data_dir=data_dir(db_path),
        venv=Path(state.venv) if state.venv else None,
    )


# --- install ----------------------------------------------------------------------------------


def _bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def installed_version(venv: Path) -> str | None:
    """The label-studio version in `venv`, or None when it is not installed there."""
    python = _bin(venv, "python")
    if not _bin(venv, "label-studio").exists() or not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('label-studio'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def install(
    venv: Path | str | None = None, version: str = LABEL_STUDIO_VERSION, echo: Echo = quiet
) -> Path:
    """Install label-studio==version into its own virtual environment; reuse it if present.

    Returns the venv path. Needs PyPI (about 1 GB, a minute or two).
    """
    venv = Path(venv) if venv else default_venv()
    have = installed_version(venv)
    if have == version:
        echo(f"label-studio {version} already installed in {venv}")
        return venv
    echo(f"Installing label-studio {version} into {venv} (about 1 GB; a minute or two) ...")
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(_bin(venv, "python")), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(_bin(venv, "python")), "-m", "pip", "install", "--quiet", f"label-studio=={version}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit code {done.returncode}"
            raise LabelStudioError(
                f"installing label-studio into {venv} failed: {last[:300]} "
                "(check that PyPI is reachable, or pass another --venv)"
            )
    have = installed_version(venv)
    if have != version:
        raise LabelStudioError(f"label-studio {version} did not install into {venv} (found {have})")
    echo(f"label-studio {version} installed in {venv}")
    return venv


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    """A port nobody listens on now. Label Studio would silently move to another if it were busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_alive(pid: int | None) -> bool:
    """True if pid runs (not a zombie) and is a label-studio process."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        # reap it if it is our own exited child (start and stop in one process, as in tests)
        os.waitpid(pid, os.WNOHANG)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A recycled pid must not be mistaken for (and then killed as) our server.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and b"label-studio" in cmdline


def answers(url: str, timeout: float = 2.0) -> bool:
    """True if a Label Studio at `url` reports itself healthy."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:
            return resp.status == 200 and b"UP" in resp.read(200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(ln.strip() for ln in text[-lines:] if ln.strip())


@dataclass(frozen=True)
class ServerStatus:
    """What `status` reports. `login` is filled only when asked for."""

    external: bool
    url: str | None
    running: bool
    answering: bool
    pid: int | None = None
    data_dir: str | None = None
    username: str | None = None
    version: str | None = None
    message: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _child_env(state: ServerState) -> dict[str, str]:
    # The child gets our environment minus secrets it does not need, plus its own settings.
    # Admin login and token travel here rather than as arguments, which `ps` would show.
    env = {k: v for k, v in os.environ.items() if k not in _NOT_FOR_CHILD}
    env.update(
        LABEL_STUDIO_LATEST_VERSION_CHECK="false",
        LABEL_STUDIO_COLLECT_ANALYTICS="false",
        LABEL_STUDIO_USERNAME=state.username,
        LABEL_STUDIO_PASSWORD=state.password,
        LABEL_STUDIO_USER_TOKEN=state.token,
        SECRET_KEY=state.secret_key,  # a stable key keeps browser sessions across restarts
        # No open signup: a reviewer is someone the study added (read in Label Studio's
        # settings as DISABLE_SIGNUP_WITHOUT_LINK; the signup page then needs an invite link).
        DISABLE_SIGNUP_WITHOUT_LINK="true",
        PYTHONUNBUFFERED="1",
    )
    return env


_NOT_FOR_CHILD = {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "ANTHROPIC_API_KEY", "HOST", "PORT"}


def start(
    db_path: Path | str,
    venv: Path | str | None = None,
    timeout: float = START_TIMEOUT,
    echo: Echo = quiet,
) -> ServerStatus:
    """Start the study's Label Studio on 127.0.0.1 and a free port; wait until it answers.

    Idempotent: a server already running (or still starting) for this study is waited for,
    not doubled. The data directory survives restarts, and so do the admin login and token
    (kept in the state file).
    """
    external = external_connection()
    if external is not None:
        return _external_status(external, "using LABEL_STUDIO_URL; no local server is started")
    state = read_state(db_path) or ServerState.new()
    if process_alive(state.pid) and state.port:
        echo(f"Label Studio is already running (pid {state.pid}) ...")
        _wait(db_path, state, None, None, timeout)
        return _local_status(db_path, state, "already running")
    venv_path = Path(venv) if venv else Path(state.venv) if state.venv else default_venv()
    executable = _bin(venv_path, "label-studio")
    if not executable.exists():
        raise LabelStudioError(
            f"label-studio is not installed in {venv_path}: run `annotator labelstudio install`"
        )
    data = data_dir(db_path)
    data.mkdir(parents=True, exist_ok=True)
    state.venv = str(venv_path)
    state.port = free_port()
    log = log_path(db_path)
    command = [
        str(executable), "start", "--no-browser", "--data-dir", str(data),
        "--internal-host", "127.0.0.1", "--port", str(state.port), "--enable-legacy-api-token",
    ]  # fmt: skip
    with log.open("ab") as out:
        log_offset = out.tell()
        # A session of its own: the server outlives this command, and stop() signals the group.
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_child_env(state), cwd=str(data), start_new_session=True,
        )  # fmt: skip
    state.pid = proc.pid
    state.started_at = time.time()
    write_state(db_path, state)
    echo(f"Starting Label Studio (pid {proc.pid}, data in {data}) ...")
    _wait(db_path, state, proc, log_offset, timeout)
    return _local_status(db_path, state, "started")


_LISTENING = re.compile(rb"Starting development server at http://[\d.]+:(\d+)/")


def _wait(
    db_path: Path | str,
    state: ServerState,
    proc: subprocess.Popen | None,
    log_offset: int | None,
    timeout: float,
) -> None:
    """Until the server answers; it dying or the time running out is an error."""
    log = log_path(db_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Our own child: poll() (its /proc cmdline is still ours until exec); else by pid.
        if (proc.poll() is not None) if proc is not None else not process_alive(state.pid):
            raise LabelStudioError(
                f"Label Studio (pid {state.pid}) exited while starting: "
                f"{_log_tail(log)[-300:]} (full log: {log})"
            )
        if answers(state.url, timeout=1.0):
            return
        if log_offset is not None:
            # Label Studio silently moves to another port if ours was taken meanwhile.
            moved = _LISTENING.search(_read_from(log, log_offset))
            if moved and int(moved.group(1)) != state.port:
                state.port = int(moved.group(1))
                write_state(db_path, state)
        time.sleep(0.5)
    raise LabelStudioError(
        f"Label Studio did not answer on {state.url} within {timeout:.0f} s; "
        f"see {log}, or run `annotator labelstudio stop` and start again"
    )


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(1_000_000)
    except OSError:
        return b""


def stop(db_path: Path | str, timeout: float = 30.0) -> ServerStatus:
    """Stop the study's local server (SIGTERM to its process group, SIGKILL after `timeout`)."""
    external = external_connection()
    if external is not None:
        return _external_status(external, "using LABEL_STUDIO_URL; there is no local server")
    state = read_state(db_path)
    if state is None or not process_alive(state.pid):
        if state is not None and state.pid:
            state.pid = None
            write_state(db_path, state)
        return ServerStatus(external=False, url=None, running=False, answering=False,
                            data_dir=str(data_dir(db_path)), message="not running")
    pid = state.pid
    assert pid is not None
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        time.sleep(0.5)
    state.pid = None
    write_state(db_path, state)
    return ServerStatus(external=False, url=None, running=False, answering=False, pid=pid,
                        data_dir=str(data_dir(db_path)), message="stopped")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session, so its group id is its pid
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def status(db_path: Path | str) -> ServerStatus:
    """Is the study's server (or the external one) running and answering?"""
    external = external_connection()
    if external is not None:
        return _external_status(external, "external server (LABEL_STUDIO_URL)")
    state = read_state(db_path)
    if state is None:
        return ServerStatus(external=False, url=None, running=False, answering=False,
                            message="never started: run `annotator labelstudio start`")
    running = process_alive(state.pid)
    message = "running" if running else "stopped: run `annotator labelstudio start`"
    return _local_status(db_path, state, message, running=running)


def _local_status(
    db_path: Path | str, state: ServerState, message: str, running: bool = True
) -> ServerStatus:
    url = state.url if state.port else None
    return ServerStatus(
        external=False,
        url=url,
        running=running,
        answering=bool(running and url and answers(url)),
        pid=state.pid if running else None,
        data_dir=str(data_dir(db_path)),
        username=state.username,
        version=installed_version(Path(state.venv)) if state.venv else None,
        message=message,
    )


def _external_status(conn: Connection, message: str) -> ServerStatus:
    return ServerStatus(external=True, url=conn.url, running=True, answering=answers(conn.url),
                        message=message)


def login_info(db_path: Path | str) -> dict[str, str]:
    """URL, admin email, password and API token of the study's local server (asked for only)."""
    state = read_state(db_path)
    if state is None or not state.port:
        raise LabelStudioError("no local Label Studio for this study: run `annotator labelstudio "
                               "start`")
    return {"url": state.url, "username": state.username, "password": state.password,
            "api_key": state.token}


def set_password(conn: Connection, email: str, password: str) -> None:
    """Give a user a password they can log in with (`label-studio reset_password`).

    Users made through the API cannot log in until this runs; it needs the local data directory,
    so on an external server the team's admin sets passwords instead.
    """
    if conn.external or conn.data_dir is None or conn.venv is None:
        raise LabelStudioError(
            f"cannot set a password on the external server {conn.url}: ask its admin to invite "
            f"{email}, or use the study's local server"
        )
    env = {k: v for k, v in os.environ.items() if k not in _NOT_FOR_CHILD}
    env.update(LABEL_STUDIO_LATEST_VERSION_CHECK="false", LABEL_STUDIO_COLLECT_ANALYTICS="false")
    # The password goes through stdin, not argv (which `ps` shows): without a controlling
    # terminal (a new session), its getpass prompt reads stdin.
    done = subprocess.run(
        [str(_bin(conn.venv, "label-studio")), "reset_password", "--username", email,
         "--data-dir", str(conn.data_dir)],
        input=password + "\n", capture_output=True, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    output = done.stdout + done.stderr
    if done.returncode != 0 or not (
        "successfully changed" in output or "same as current" in output
    ):
        last = [ln for ln in output.splitlines() if ln.strip()][-1:] or ["no output"]
        raise LabelStudioError(f"could not set the password of {email}: {last[0][:200]}")


# --- a migrated template, for tests and benchmarks ----------------------------------------------


def template_dir(venv: Path | str) -> Path:
    return Path(venv).parent / f"labelstudio-template-{LABEL_STUDIO_VERSION}"


def ensure_template(venv: Path | str, echo: Echo = quiet) -> Path:
    """A stopped, migrated data directory with an admin, built once per venv and version.

    A first start migrates an empty database (~25 s); a copy of this starts in ~3 s. Its admin
    login is shared by every copy, so it is for throwaway servers (tests, benchmarks) only.
    """
    venv = Path(venv)
    template = template_dir(venv)
    if (template / "ready").exists():
        return template
    echo(f"Building a migrated Label Studio template in {template} (once) ...")
    build = Path(tempfile.mkdtemp(prefix="labelstudio-template-", dir=venv.parent))
    db = build / "template.db"
    try:
        start(db, venv=venv)
    finally:
        stop(db)
    (build / "ready").write_text("migrated\n")
    shutil.rmtree(template, ignore_errors=True)
    build.rename(template)
    return template


def start_from_template(
    db_path: Path | str, venv: Path | str, echo: Echo = quiet
) -> ServerStatus:
    """Start a throwaway server for `db_path`, seeded from the template unless it has data."""
    template = ensure_template(venv, echo=echo)
    target = server_dir(db_path)
    if not target.exists():
        shutil.copytree(template / SERVER_DIR, target)
    return start(db_path, venv=venv, echo=echo)
