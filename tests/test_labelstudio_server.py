"""Server lifecycle pieces that need no running server: state file, settings, errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from annotator.private_files import PrivateFileError
from annotator.review import server


@pytest.fixture(autouse=True)
def _no_external(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)


def test_state_file_lives_next_to_the_db_private_and_round_trips(tmp_path):
    db = tmp_path / "study" / "annotator.db"
    state = server.ServerState.new()
    state.port, state.pid = 12345, None
    server.write_state(db, state)
    path = tmp_path / "study" / ".labelstudio" / "server.json"
    assert server.state_path(db) == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert server.read_state(db) == state
    assert len(state.token) == 40 and state.token not in repr(state)
    assert state.password not in repr(state)
    assert server.login_info(db)["url"] == "http://127.0.0.1:12345"


def test_unreadable_state_is_an_error_that_says_what_to_do(tmp_path):
    db = tmp_path / "a.db"
    server.state_path(db).parent.mkdir(parents=True)
    server.state_path(db).write_text("{not json")
    with pytest.raises(server.LabelStudioError, match="remove it"):
        server.read_state(db)


def test_external_server_needs_both_variables(monkeypatch, tmp_path):
    assert server.external_connection() is None
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://ls.example:8080/")
    with pytest.raises(server.LabelStudioError, match="LABEL_STUDIO_API_KEY is not set"):
        server.external_connection()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-key")
    conn = server.external_connection()
    assert conn is not None and conn.external and conn.url == "http://ls.example:8080"
    assert "secret-key" not in repr(conn)
    # with an external server, stop and status never touch a local one
    assert server.stop(tmp_path / "a.db").external
    assert server.status(tmp_path / "a.db").external
    assert not server.server_dir(tmp_path / "a.db").exists()


def test_not_running_and_not_installed_are_clear_errors(tmp_path):
    with pytest.raises(server.LabelStudioError, match="annotator labelstudio start"):
        server.connection(tmp_path / "a.db")
    with pytest.raises(server.LabelStudioError, match="annotator labelstudio install"):
        server.start(tmp_path / "a.db", venv=tmp_path / "no-venv")
    assert not server.status(tmp_path / "a.db").running


def test_free_port_is_free_and_a_dead_pid_is_not_alive():
    port = server.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # would raise if someone listened there
    assert not server.process_alive(None)
    assert not server.process_alive(os.getpid())  # alive, but not a label-studio process


def test_state_file_is_private_and_never_written_through_a_planted_name(tmp_path):
    """A symlink at the old fixed temporary name, a stale 0644 state file and a world-readable
    folder: the secret lands 0600 in a 0700 folder, and the symlink's target stays untouched."""
    db = tmp_path / "study" / "annotator.db"
    folder = server.server_dir(db)
    folder.mkdir(parents=True, mode=0o755)
    os.chmod(folder, 0o755)
    victim = tmp_path / "victim.txt"
    victim.write_text("unchanged")
    os.symlink(victim, folder / "server.tmp")
    stale = server.state_path(db)
    stale.write_text("{}")
    os.chmod(stale, 0o644)
    state = server.ServerState.new()
    server.write_state(db, state)
    assert victim.read_text() == "unchanged"
    assert stat.S_IMODE(os.stat(stale).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert server.read_state(db) == state
    leftovers = {p.name for p in folder.iterdir()} - {"server.json", "server.tmp"}
    assert not leftovers  # no temporary file left behind
    target = tmp_path / "elsewhere.json"  # a symlink at the target: refused, not followed
    stale.unlink()
    os.symlink(target, stale)
    with pytest.raises(PrivateFileError, match="is a link"):
        server.write_state(db, state)
    assert not target.exists() and stale.is_symlink()


NOBODY = 65534


def test_a_planted_state_file_is_refused_on_read(tmp_path):
    """A symlinked server.json (someone else's login) once made `start` print the attacker's
    password and use their API token; another user's file there is refused the same way."""
    db = tmp_path / "study" / "annotator.db"
    theirs = tmp_path / "attacker.json"
    theirs.write_text(json.dumps(asdict(server.ServerState.new())))
    folder = server.server_dir(db)
    folder.mkdir(parents=True, mode=0o700)
    server.state_path(db).symlink_to(theirs)
    with pytest.raises(PrivateFileError, match="is a link"):
        server.read_state(db)
    server.state_path(db).unlink()
    shutil.copy(theirs, server.state_path(db))
    os.chown(server.state_path(db), NOBODY, NOBODY)
    with pytest.raises(PrivateFileError, match="belongs to another user"):
        server.read_state(db)
    with pytest.raises(PrivateFileError, match="belongs to another user"):
        server.write_state(db, server.ServerState.new())
    assert server.state_path(db).read_text() == theirs.read_text()


def test_a_linked_or_foreign_folder_of_secrets_is_refused(tmp_path):
    db = tmp_path / "study" / "annotator.db"
    db.parent.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    server.server_dir(db).symlink_to(elsewhere)
    with pytest.raises(PrivateFileError, match="is a link"):
        server.write_state(db, server.ServerState.new())
    assert not any(elsewhere.iterdir())
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755  # not chmod-ed through the link
    server.server_dir(db).unlink()
    server.server_dir(db).mkdir()
    os.chown(server.server_dir(db), NOBODY, NOBODY)
    with pytest.raises(PrivateFileError, match="belongs to another user"):
        server.write_state(db, server.ServerState.new())


# --- addresses and ports (issue 18): unit tests, no server ------------------------------------


def test_a_host_this_machine_cannot_listen_on_is_one_line_saying_what_can(tmp_path):
    with pytest.raises(server.LabelStudioError) as caught:
        server.set_network(tmp_path / "s.db", host="203.0.113.77")  # TEST-NET-3: not ours
    assert "cannot listen there" in str(caught.value) and "0.0.0.0" in str(caught.value)
    with pytest.raises(server.LabelStudioError, match="https://review.example.org"):
        server.set_network(tmp_path / "s.db", public_url="review.example.org")
    assert server.read_network(tmp_path / "s.db") == server.Network()  # nothing kept


def test_network_settings_are_kept_and_changed_only_where_given(tmp_path):
    db = tmp_path / "s.db"
    server.set_network(db, host="0.0.0.0", public_url="https://review.example.org/")
    assert server.read_network(db) == server.Network("0.0.0.0", "https://review.example.org")
    server.set_network(db, host="127.0.0.1")
    assert server.read_network(db).public_url == "https://review.example.org"
    server.set_network(db, public_url="")
    assert server.read_network(db) == server.Network("127.0.0.1", None)
    assert (server.server_dir(db) / server.NETWORK_FILE).stat().st_mode & 0o777 == 0o600


def test_the_address_people_open_and_the_one_the_tool_uses(tmp_path):
    state = server.ServerState.new()
    state.port = 8123
    assert state.url == state.api_url == "http://127.0.0.1:8123"
    state.host = "0.0.0.0"
    assert state.api_url == "http://127.0.0.1:8123"
    assert state.url == f"http://{server.machine_address()}:8123"
    state.public_url = "https://review.example.org/r/ada"
    assert state.url == "https://review.example.org/r/ada"
    env = server._child_env(tmp_path / "s.db", state)
    assert env["LABEL_STUDIO_HOST"] == "https://review.example.org/r/ada"
    assert env["CSRF_TRUSTED_ORIGINS"] == "https://review.example.org"
    assert env["SESSION_COOKIE_SECURE"] == "1"
    assert env["SENTRY_DSN"] == env["FRONTEND_SENTRY_DSN"] == ""
    assert env["DJANGO_SETTINGS_MODULE"] == server.SETTINGS_MODULE
    settings = Path(env["PYTHONPATH"].split(os.pathsep)[0]) / f"{server.SETTINGS_MODULE}.py"
    assert "SESSION_COOKIE_NAME" in settings.read_text()
    loopback = server.ServerState.new()
    loopback.port = 8124
    assert "LABEL_STUDIO_HOST" not in server._child_env(tmp_path / "s.db", loopback)


def test_a_port_held_only_by_time_wait_is_free_and_a_listener_is_named():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers set it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    assert not server.port_free("127.0.0.1", port)
    me = Path("/proc/self/comm").read_text().strip()
    assert server.port_owner(port) == f"pid {os.getpid()}, {me}"
    # the server side closes first: its end of the connection waits in TIME_WAIT
    accepted.close()
    listener.close()
    client.close()
    states = set()
    for _ in range(50):  # until the kernel has moved the server's end to TIME_WAIT (06)
        states = {line.split()[3] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                  if int(line.split()[1].rsplit(":", 1)[1], 16) == port}
        if states == {"06"}:
            break
        time.sleep(0.05)
    assert states == {"06"}, states
    assert server.port_owner(port) is None
    assert server.port_free("127.0.0.1", port), "a TIME_WAIT connection refused a restart"


@pytest.mark.parametrize(("sentry", "holds"), [("2.76.0", True), ("3.0.0", False)])
def test_a_venv_with_a_dependency_past_its_pin_is_seen_and_not_reused(
        tmp_path, monkeypatch, sentry, holds):
    """A real venv (no pip, nothing downloaded) holding label-studio at the pinned release and
    sentry-sdk as given: `install` reuses it only within `LABEL_STUDIO_PINS`; past the pin it
    goes on to mend it (pip, stopped here: the step it would run is recorded)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    for name, version in (("label_studio", server.LABEL_STUDIO_VERSION), ("sentry_sdk", sentry)):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")
    (venv / "bin" / "label-studio").write_text("#!/bin/sh\n")
    assert server.installed_version(venv) == server.LABEL_STUDIO_VERSION
    assert server._pins_hold(venv) is holds
    steps: list[list[str]] = []
    real_run = subprocess.run

    def recording(step, *args, **kwargs):
        if "pip" in step:
            steps.append(step)
            raise RuntimeError("stop: no download in a test")
        return real_run(step, *args, **kwargs)

    monkeypatch.setattr(server.subprocess, "run", recording)
    if holds:
        assert server.install(venv) == venv and steps == []
    else:
        with pytest.raises(RuntimeError, match="no download"):
            server.install(venv)
        assert steps == [[str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                          *server.LABEL_STUDIO_PINS]]
