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
import hashlib
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
# Installed with it: its own requirements leave these open above, and a later release broke
# it. sentry-sdk 3.0 refuses the `send_default_pii` option Label Studio 1.23.2 passes at start,
# so no management command ran (no reviewer could be given a password).
LABEL_STUDIO_PINS = ("sentry-sdk<3",)
_PINS_HOLD = ("import importlib.metadata as m, sys; "
              "sys.exit(int(m.version('sentry-sdk').split('.')[0]) >= 3)")
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


# --- addresses ----------------------------------------------------------------------------------

LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = (LOOPBACK, "localhost", "::1")
ANY_HOSTS = ("0.0.0.0", "::")
NETWORK_FILE = "network.json"


def http_url(host: str, port: int | None) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def machine_address() -> str:
    """This machine's address on its network (the one its default route leaves from), else its
    host name's, else loopback: what to print for a server that listens on every address."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect sends nothing
        address = s.getsockname()[0]
        if address and not address.startswith("127."):
            return str(address)
    with contextlib.suppress(OSError):
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            if not str(sockaddr[0]).startswith("127."):
                return str(sockaddr[0])
    return LOOPBACK


def shown_host(host: str) -> str:
    return machine_address() if host in ANY_HOSTS else host


def check_host(host: str) -> str:
    """`host` if this machine can listen on it; else a one-line error saying what can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LabelStudioError(
            f"--host {host!r}: this machine cannot listen there ({reason}); use one of its "
            f"addresses (e.g. {machine_address()}), or 0.0.0.0 for all of them"
        ) from None
    return host


def check_public_url(url: str) -> str:
    """A base URL people open (behind the team's proxy): http(s), a host, maybe a path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or \
            parts.fragment:
        raise LabelStudioError(
            f"--public-url {url!r}: give the address people open, such as "
            "https://review.example.org (http or https, a host, optionally a path)"
        )
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class Network:
    """Where a study's Label Studio servers listen and the address people open: set by
    `labelstudio start --host/--public-url` (or `demo --serve --host`) and kept for every later
    start, so a reviewer's address does not move."""

    host: str = LOOPBACK
    public_url: str | None = None


def read_network(db_path: Path | str) -> Network:
    from annotator.private_files import read_private

    path = server_dir(db_path) / NETWORK_FILE
    text = read_private(path, "Label Studio network settings")
    if text is None:
        return Network()
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise LabelStudioError(f"{path} is unreadable ({type(exc).__name__}): remove it and "
                               "start again with --host") from None
    return Network(host=str(data.get("host") or LOOPBACK), public_url=data.get("public_url"))


def set_network(
    db_path: Path | str, host: str | None = None, public_url: str | None = None
) -> Network:
    """The study's network settings with `host` and `public_url` changed where given (an empty
    public URL removes it); checked, then kept beside the study."""
    from annotator.private_files import write_private

    current = read_network(db_path)
    network = Network(
        host=check_host(host) if host else current.host,
        public_url=(check_public_url(public_url) if public_url else None)
        if public_url is not None else current.public_url,
    )
    if network != current:
        write_private(server_dir(db_path) / NETWORK_FILE,
                      json.dumps(asdict(network), indent=2), "Label Studio network settings")
    return network


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
    port: int | None = None  # chosen at the first start and kept: links sent out stay valid
    started_at: float | None = None
    host: str = LOOPBACK  # the address it listens on
    public_url: str | None = None  # the address people open, when a proxy stands in front

    @property
    def url(self) -> str:
        """The address a person opens: the public URL, else the direct one."""
        return self.public_url.rstrip("/") if self.public_url else self.direct_url

    @property
    def direct_url(self) -> str:
        """The host and port it listens on (for 0.0.0.0, this machine's network address)."""
        return http_url(shown_host(self.host), self.port)

    @property
    def api_url(self) -> str:
        """The address this tool talks to it on, from this machine."""
        return http_url(LOOPBACK if self.host in ANY_HOSTS else self.host, self.port)

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
        url=state.api_url,
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


def _pins_hold(venv: Path) -> bool:
    """Whether the venv's dependencies are within `LABEL_STUDIO_PINS`."""
    done = subprocess.run([str(_bin(venv, "python")), "-c", _PINS_HOLD], capture_output=True)
    return done.returncode == 0


def install(
    venv: Path | str | None = None, version: str = LABEL_STUDIO_VERSION, echo: Echo = quiet
) -> Path:
    """Install label-studio==version into its own virtual environment; reuse it if present.

    Returns the venv path. Needs PyPI (about 1 GB, a minute or two).
    """
    venv = Path(venv) if venv else default_venv()
    have = installed_version(venv)
    pip = [str(_bin(venv, "python")), "-m", "pip", "install", "--quiet"]
    if have == version and _pins_hold(venv):
        echo(f"label-studio {version} already installed in {venv}")
        return venv
    if have == version:  # installed before its dependencies were pinned: mended in place
        echo(f"Installing {', '.join(LABEL_STUDIO_PINS)} beside label-studio {version} ...")
        steps = [[*pip, *LABEL_STUDIO_PINS]]
    else:
        echo(f"Installing label-studio {version} into {venv} (about 1 GB; a minute or two) ...")
        venv.parent.mkdir(parents=True, exist_ok=True)
        steps = [[sys.executable, "-m", "venv", str(venv)], [*pip, "--upgrade", "pip"],
                 [*pip, f"label-studio=={version}", *LABEL_STUDIO_PINS]]
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
    if have != version or not _pins_hold(venv):
        raise LabelStudioError(f"label-studio {version} with {', '.join(LABEL_STUDIO_PINS)} did "
                               f"not install into {venv} (found label-studio {have})")
    echo(f"label-studio {version} installed in {venv}")
    return venv


# --- processes --------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on now, for a first start; later starts keep it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host`:`port` now. SO_REUSEADDR, as servers set it:
    connections of a server just stopped (TIME_WAIT) do not hold the port, a listener does."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str | None:
    """Which program listens on `port` ("pid 123, nginx"), as far as /proc tells; else None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and \
                        int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])  # 0A: LISTEN
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    name = (proc / "comm").read_text().strip()
                    return f"pid {proc.name}, {name}"
    return "a program of another user"


def taken_error(port: int, what: str, url: str) -> LabelStudioError:
    owner = port_owner(port)
    return LabelStudioError(
        f"port {port}, where {what} listens ({url}), is taken by "
        f"{owner or 'another program'}: stop that program and start again (the address stays "
        "the same, so links already sent out keep working)"
    )


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
    port: int | None = None
    host: str | None = None
    public_url: str | None = None  # where people open it, behind a proxy; else `url`

    @property
    def shown_url(self) -> str | None:
        """The address to give a person."""
        return self.public_url or self.url

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# Label Studio's settings with cookies of the instance's own names. Cookies are scoped by host,
# not port: two instances on one machine would share `sessionid`, and a lead logged in to one
# reviewer's instance would be logged out of the other's. Label Studio's settings read Django
# settings while they import, so the module names Label Studio's own while importing it.
SETTINGS_MODULE = "annotator_labelstudio_settings"
SETTINGS_SOURCE = """\
# Written by annotator (annotator/review/server.py): Label Studio's settings, with cookie names
# of this instance's own (ANNOTATOR_COOKIE_PREFIX), so instances on one host keep their logins.
import os

_SELF = os.environ.get("DJANGO_SETTINGS_MODULE", __name__)
os.environ["DJANGO_SETTINGS_MODULE"] = "label_studio.core.settings.label_studio"
try:
    from label_studio.core.settings.label_studio import *  # noqa: F403
finally:
    os.environ["DJANGO_SETTINGS_MODULE"] = _SELF
SESSION_COOKIE_NAME = os.environ["ANNOTATOR_COOKIE_PREFIX"] + "sessionid"
CSRF_COOKIE_NAME = os.environ["ANNOTATOR_COOKIE_PREFIX"] + "csrftoken"
"""


def _settings_dir(db_path: Path | str) -> Path:
    """The folder holding the settings module, written beside the instance's data."""
    from annotator.private_files import read_private, write_private

    folder = server_dir(db_path) / "settings"
    target = folder / f"{SETTINGS_MODULE}.py"
    if read_private(target, "Label Studio settings module") != SETTINGS_SOURCE:
        write_private(target, SETTINGS_SOURCE, "Label Studio settings module")
    return folder


def cookie_prefix(db_path: Path | str) -> str:
    """`ls_<8 hex>_`: the same for an instance across restarts (its folder), different for
    every instance (a lead's browser holds a session in each)."""
    digest = hashlib.sha256(str(server_dir(db_path)).encode()).hexdigest()[:8]
    return f"ls_{digest}_"


def _child_env(db_path: Path | str, state: ServerState) -> dict[str, str]:
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
        # Every page would load an error reporter's script from its CDN first: on a reviewer's
        # computer without that host, the page waited 28 s for it (3 s without).
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,
        ANNOTATOR_COOKIE_PREFIX=cookie_prefix(db_path),
        PYTHONPATH=os.pathsep.join(
            [str(_settings_dir(db_path)), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    public = state.public_url or (
        None if state.host in LOOPBACK_HOSTS else state.direct_url)
    if public:
        # The address its links and redirects name (a path in it becomes the prefix Django
        # serves under), and the origin a login form may be posted from behind a proxy.
        from urllib.parse import urlsplit

        parts = urlsplit(public)
        env.update(LABEL_STUDIO_HOST=public,
                   CSRF_TRUSTED_ORIGINS=f"{parts.scheme}://{parts.netloc}")
        if parts.scheme == "https":
            env["SESSION_COOKIE_SECURE"] = "1"  # Label Studio reads 1 or 0, nothing else
    return env


_NOT_FOR_CHILD = {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "ANTHROPIC_API_KEY", "HOST", "PORT"}


def start(
    db_path: Path | str,
    venv: Path | str | None = None,
    timeout: float = START_TIMEOUT,
    echo: Echo = quiet,
    host: str | None = None,
    public_url: str | None = None,
    what: str = "the study's Label Studio",
) -> ServerStatus:
    """Start the study's Label Studio on its host and port; wait until it answers.

    The port is chosen at the first start and kept, so the address people were given stays
    valid; a port taken by another program is an error that names it, never a silent move.
    `host` (default: as before, else 127.0.0.1) and `public_url` (the address behind a proxy;
    "" removes it) change where it listens and the links it writes; a running server that
    listens elsewhere is restarted. Idempotent otherwise: a server already running (or still
    starting) for this study is waited for, not doubled. The data directory survives restarts,
    and so do the admin login and token (kept in the state file).
    """
    external = external_connection()
    if external is not None:
        return _external_status(external, "using LABEL_STUDIO_URL; no local server is started")
    state = read_state(db_path) or ServerState.new()
    wanted = (host or state.host, state.public_url if public_url is None else public_url or None)
    if process_alive(state.pid) and state.port:
        if wanted == (state.host, state.public_url):
            echo(f"Label Studio is already running (pid {state.pid}) ...")
            _wait(db_path, state, None, None, timeout, what)
            return _local_status(db_path, state, "already running")
        echo(f"Restarting Label Studio (pid {state.pid}) to listen on {wanted[0]} ...")
        stop(db_path)
        state = read_state(db_path) or state
    state.host, state.public_url = wanted
    venv_path = Path(venv) if venv else Path(state.venv) if state.venv else default_venv()
    executable = _bin(venv_path, "label-studio")
    if not executable.exists():
        raise LabelStudioError(
            f"label-studio is not installed in {venv_path}: run `annotator labelstudio install`"
        )
    if state.port is None:
        state.port = free_port(state.host)
    elif not port_free(state.host, state.port):
        raise taken_error(state.port, what, state.url)
    data = data_dir(db_path)
    data.mkdir(parents=True, exist_ok=True)
    state.venv = str(venv_path)
    log = log_path(db_path)
    command = [
        str(executable), "start", "--no-browser", "--data-dir", str(data),
        "--internal-host", state.host, "--port", str(state.port), "--enable-legacy-api-token",
    ]  # fmt: skip
    with log.open("ab") as out:
        log_offset = out.tell()
        # A session of its own: the server outlives this command, and stop() signals the group.
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_child_env(db_path, state), cwd=str(data), start_new_session=True,
        )  # fmt: skip
    state.pid = proc.pid
    state.started_at = time.time()
    write_state(db_path, state)
    echo(f"Starting Label Studio (pid {proc.pid}, data in {data}) ...")
    _wait(db_path, state, proc, log_offset, timeout, what)
    return _local_status(db_path, state, "started")


_LISTENING = re.compile(rb"Starting development server at http://[^\s]+:(\d+)/")


def _wait(
    db_path: Path | str,
    state: ServerState,
    proc: subprocess.Popen | None,
    log_offset: int | None,
    timeout: float,
    what: str = "the study's Label Studio",
) -> None:
    """Until the server answers; it dying, moving port or the time running out is an error."""
    log = log_path(db_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Our own child: poll() (its /proc cmdline is still ours until exec); else by pid.
        if (proc.poll() is not None) if proc is not None else not process_alive(state.pid):
            raise LabelStudioError(
                f"Label Studio (pid {state.pid}) exited while starting: "
                f"{_log_tail(log)[-300:]} (full log: {log})"
            )
        if log_offset is not None:
            # Label Studio moves to another port if its own was taken meanwhile: that would
            # break every link sent out, so it is stopped and said instead.
            moved = _LISTENING.search(_read_from(log, log_offset))
            if moved and int(moved.group(1)) != state.port:
                stop(db_path)
                raise taken_error(int(state.port or 0), what, state.url)
        if answers(state.api_url, timeout=1.0):
            return
        time.sleep(0.5)
    raise LabelStudioError(
        f"Label Studio did not answer on {state.api_url} within {timeout:.0f} s; "
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
    return ServerStatus(
        external=False,
        url=state.direct_url if state.port else None,
        port=state.port,
        host=state.host,
        public_url=state.public_url,
        running=running,
        answering=bool(running and state.port and answers(state.api_url)),
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
        # a copy gets a port of its own at its first start: the template's would be shared by
        # every copy, and a second copy could not start while the first runs
        state = read_state(db_path)
        if state is not None:
            state.port, state.pid = None, None
            write_state(db_path, state)
    return start(db_path, venv=venv, echo=echo)
