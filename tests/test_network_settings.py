"""Reviewers on other computers: the addresses the README promises stay where they were given.

Unit tests over real files and real sockets, no Label Studio: the port test stands a placeholder
file in for the label-studio executable, which is never run (the taken port stops `start`
before it)."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from annotator.app import server as app_server
from annotator.errors import AnnotatorError
from annotator.review import server


@pytest.fixture(autouse=True)
def _own_server(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.delenv("ANNOTATOR_APP_PASSWORD", raising=False)


def test_host_and_public_url_are_kept_for_later_starts(tmp_path):
    db = tmp_path / "study" / "annotator.db"
    assert server.read_network(db) == server.Network()  # 127.0.0.1, no public URL
    server.set_network(db, host="0.0.0.0", public_url="https://review.example.org/")
    kept = server.read_network(db)
    assert kept == server.Network(host="0.0.0.0", public_url="https://review.example.org")
    path = server.server_dir(db) / server.NETWORK_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert server.set_network(db) == kept  # a later start without options keeps both
    assert server.set_network(db, public_url="") == server.Network(host="0.0.0.0")
    assert server.read_network(db).public_url is None


def test_an_address_this_machine_cannot_use_is_one_line_naming_what_it_can(tmp_path):
    db = tmp_path / "a.db"
    with pytest.raises(server.LabelStudioError) as bad_host:
        server.set_network(db, host="192.0.2.55")  # TEST-NET-1: never this machine's
    assert "cannot listen there" in str(bad_host.value) and "0.0.0.0" in str(bad_host.value)
    assert "\n" not in str(bad_host.value)
    for url in ("ftp://review.example.org", "review.example.org", "https://x.org/?a=1"):
        with pytest.raises(server.LabelStudioError, match="--public-url"):
            server.set_network(db, public_url=url)
    assert server.read_network(db) == server.Network()  # nothing kept from a refusal


def test_a_kept_port_taken_by_another_program_is_an_error_not_a_move(tmp_path):
    db = tmp_path / "study" / "annotator.db"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "label-studio").write_text("#!/bin/sh\nexit 1\n")  # never run
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        state = server.ServerState.new()
        state.port, state.pid = port, None
        server.write_state(db, state)
        with pytest.raises(server.LabelStudioError) as taken:
            server.start(db, venv=venv, timeout=1)
    assert f"port {port}" in str(taken.value) and "address stays" in str(taken.value)
    assert server.read_state(db).port == port  # the address given to reviewers did not move


def test_the_app_password_is_made_once_kept_private_and_overridable(tmp_path, monkeypatch):
    db = tmp_path / "study" / "annotator.db"
    first = app_server.app_password(db)
    assert len(first) >= 12 and app_server.app_password(db) == first  # survives a restart
    path = server.server_dir(db) / app_server.PASSWORD_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    monkeypatch.setenv("ANNOTATOR_APP_PASSWORD", "chosen-by-the-lead")
    assert app_server.app_password(db) == "chosen-by-the-lead"


def test_the_app_address_given_once_is_kept_for_the_next_start(tmp_path):
    """Unit (no server): what `annotator app` listens on without flags is what it was last
    given; each flag alone changes only itself; the file is private; an address this machine
    cannot listen on is refused and not kept; a damaged file is a one-line error."""
    db = tmp_path / "study" / "annotator.db"
    assert app_server.app_address(db) == app_server.AppAddress("127.0.0.1", 8501)
    assert not (server.server_dir(db) / app_server.ADDRESS_FILE).exists()  # nothing to keep
    assert app_server.app_address(db, "0.0.0.0", 8619) == app_server.AppAddress("0.0.0.0", 8619)
    assert app_server.app_address(db) == app_server.AppAddress("0.0.0.0", 8619)  # a restart
    assert app_server.app_address(db, port=8620) == app_server.AppAddress("0.0.0.0", 8620)
    assert app_server.app_address(db, "127.0.0.1") == app_server.AppAddress("127.0.0.1", 8620)
    path = server.server_dir(db) / app_server.ADDRESS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(server.LabelStudioError, match="cannot listen there"):
        app_server.app_address(db, "192.0.2.123")  # TEST-NET-1: no machine's own address
    assert app_server.app_address(db) == app_server.AppAddress("127.0.0.1", 8620)
    path.write_text('{"address": "127.0.0.1", "port": "\u001b[31m"}')
    with pytest.raises(AnnotatorError, match="unreadable") as refused:
        app_server.app_address(db)
    assert "\x1b" not in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(AnnotatorError, match="unreadable"):  # the port would come from it
        app_server.app_address(db, "127.0.0.1")
    # as the error says: both given, the damaged file is replaced
    assert app_server.app_address(db, "127.0.0.1", 8621) == app_server.AppAddress(
        "127.0.0.1", 8621)
    assert app_server.app_address(db) == app_server.AppAddress("127.0.0.1", 8621)


def test_start_with_host_makes_label_studio_listen_there_and_remembers_it(tmp_path):
    """A placeholder label-studio writes the arguments it was started with, then exits: the
    server is told to listen on the host given, and a later start without --host uses it too."""
    db = tmp_path / "study" / "annotator.db"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    args = tmp_path / "args"
    fake = venv / "bin" / "label-studio"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {args}\nexit 1\n')
    fake.chmod(0o755)
    for host in ("0.0.0.0", None):
        with pytest.raises(server.LabelStudioError):  # the placeholder never answers
            server.start(db, venv=venv, timeout=5, host=host)
    started = args.read_text().splitlines()
    assert len(started) == 2 and all("--internal-host 0.0.0.0" in line for line in started)
    ports = {line.split("--port ")[1].split()[0] for line in started}
    assert len(ports) == 1  # the second start kept the first one's port
