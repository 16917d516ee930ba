"""Study database: migrations run once, in order, and an older file is brought up to date."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from adversarial.sqlite_files import MAKERS, foreign_sqlite, snapshot
from hypothesis import given
from hypothesis import strategies as st

from annotator.db import (
    MIGRATIONS,
    applied_migrations,
    conversation_to_row,
    open_db,
    open_existing_db,
    row_to_conversation,
)
from annotator.errors import AnnotatorError, NotAStudyError
from annotator.models import Conversation, Turn

CORE_TABLES = {"conversations", "prompts", "extractions", "model_calls", "annotations", "gold"}


def test_init_creates_every_table(tmp_path):
    db = open_db(tmp_path / "study.db")
    assert set(db.table_names()) >= CORE_TABLES
    assert applied_migrations(db) == [name for name, _ in MIGRATIONS]


def test_migrations_apply_once(tmp_path):
    path = tmp_path / "study.db"
    open_db(path).conn.close()
    db = open_db(path)
    names = [r["name"] for r in db.query("select name from _migrations")]
    assert names == [name for name, _ in MIGRATIONS]  # no repeats


def test_opening_an_older_database_migrates_it(tmp_path):
    path = tmp_path / "old.db"
    old = open_db(path, migrations=MIGRATIONS[:1])
    assert "ingest_runs" not in old.table_names()
    c = Conversation.from_turns([Turn(role="user", text="hi"), Turn(role="assistant", text="hey")])
    old["conversations"].insert(conversation_to_row(c))
    old.conn.close()

    db = open_db(path)
    assert "ingest_runs" in db.table_names()
    assert applied_migrations(db) == [name for name, _ in MIGRATIONS]
    assert row_to_conversation(db["conversations"].get(c.id)) == c  # data kept
    assert "history" in db["gold"].columns_dict  # a later migration's column
    assert db.execute("select count(*) from _migrations").fetchone()[0] == len(MIGRATIONS)


def test_failed_migration_leaves_file_at_last_good_step(tmp_path):
    path = tmp_path / "study.db"

    def broken(db):
        db["half_done"].create({"id": int}, pk="id")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        open_db(path, migrations=[*MIGRATIONS, ("9999_broken", broken)])
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("select name from _migrations")]
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert "9999_broken" not in names
    assert "half_done" not in tables  # rolled back with its transaction


def _open(path: str) -> int:
    return len(applied_migrations(open_db(path)))


def test_processes_opening_a_new_file_at_once_apply_each_migration_once(tmp_path):
    import multiprocessing

    path = str(tmp_path / "race.db")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_open, [path] * 8)
    assert results == [len(MIGRATIONS)] * 8
    db = open_db(path)
    assert db.execute("select count(*) from _migrations").fetchone()[0] == len(MIGRATIONS)


WHITESPACE_ZOO = list("ab é\n\t\r\x0b\x0c\x1c\x1f\xa0\u2009\x85")


@given(st.text(alphabet=st.sampled_from(WHITESPACE_ZOO), max_size=20))
def test_whitespace_collapse_fast_path_equals_split_join(text):
    from annotator.models import _collapse_whitespace

    assert _collapse_whitespace(text) == " ".join(text.split())


def test_label_sources_migration_names_the_source_of_older_rows(tmp_path):
    path = tmp_path / "old.db"
    old = open_db(path, migrations=MIGRATIONS[:7])
    row = {"conversation_id": "c1", "annotator": "a", "labels": "{}", "cancelled": 0,
           "deleted": 0, "history": "[]"}  # fmt: skip
    old["annotations"].insert_all([
        {**row, "id": "4711"},  # pulled from Label Studio before sources existed
        {**row, "id": "demo:c1:demo-a"},  # from a gold file
    ])  # fmt: skip
    old["tasks"].insert({"conversation_id": "c1", "project_id": 3, "task_id": 9,
                         "prompt_versions": "[]"})  # fmt: skip
    old.conn.close()
    db = open_db(path)
    rows = {r["id"]: r for r in db["annotations"].rows}
    assert set(rows) == {"labelstudio:local:3:4711", "demo:c1:demo-a"}
    pulled = rows["labelstudio:local:3:4711"]
    assert (pulled["source"], pulled["source_id"]) == ("labelstudio:local:3", "4711")
    assert rows["demo:c1:demo-a"]["source"] == "gold:demo"
    task = db["tasks"].get(("local", 3, "c1"))
    assert (task["task_id"], task["blind"]) == (9, 0)


# --- what --db may name ----------------------------------------------------------------------


def _foreign_sqlite(path) -> bytes:
    """A valid SQLite file of another application: its own tables, no `_migrations`."""
    conn = sqlite3.connect(path)
    conn.execute("create table notes (id integer primary key, body text)")
    conn.execute("insert into notes (body) values ('keep me')")
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("opener", [open_db, open_existing_db])
def test_a_foreign_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path, opener):
    path = tmp_path / "other-app.sqlite"
    before = _foreign_sqlite(path)
    with pytest.raises(NotAStudyError, match=r"another application \(tables notes\)"):
        opener(path)
    assert path.read_bytes() == before  # no WAL switched on, no _migrations added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-app.sqlite"]  # no -wal, -shm


@pytest.mark.parametrize("opener", [open_db, open_existing_db])
def test_a_folder_or_a_device_is_refused(tmp_path, opener):
    with pytest.raises(NotAStudyError, match="is a folder"):
        opener(tmp_path)
    with pytest.raises(NotAStudyError, match="device, pipe or socket"):
        opener("/dev/null")


def test_a_non_sqlite_file_is_refused_before_sqlite_opens_it(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"my notes, not a database\n" * 100)
    with pytest.raises(NotAStudyError, match="is not a study database.*not a database"):
        open_db(path)
    assert path.read_bytes() == b"my notes, not a database\n" * 100


def test_an_empty_file_becomes_a_study_only_when_asked_to_create_one(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(NotAStudyError, match="is empty.*annotator init"):
        open_existing_db(path)
    assert path.stat().st_size == 0
    bare = tmp_path / "bare.db"  # an SQLite file with no tables at all
    sqlite3.connect(bare).execute("pragma user_version=1").connection.close()
    before = bare.read_bytes()
    with pytest.raises(NotAStudyError, match="holds no study"):
        open_existing_db(bare)
    assert bare.read_bytes() == before
    assert set(open_db(path).table_names()) >= CORE_TABLES  # `init` or `ingest` may
    assert set(open_existing_db(path).table_names()) >= CORE_TABLES


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("opener", [open_db, open_existing_db])
def test_a_foreign_file_sqlite_would_rewrite_is_refused_and_left_byte_for_byte(
    tmp_path, kind, opener
):
    """A WAL file with uncheckpointed pages, a hot journal, another application's own
    `_migrations` table: refused, and the file, its -wal and -journal unchanged (before, a
    writable connection checkpointed the -wal away or rolled the journal back on close)."""
    paths = foreign_sqlite(tmp_path / "other", kind)
    assert len(paths) >= (2 if kind in ("wal", "hot_journal") else 1)
    before = snapshot(paths)
    with pytest.raises(NotAStudyError, match="not a study database"):
        opener(paths[0])
    assert snapshot(paths) == before


def test_a_new_study_killed_before_its_first_checkpoint_is_still_a_study(tmp_path):
    """Its tables are all in its -wal (no -shm left): still ours, opened and recovered."""
    path = tmp_path / "study.db"
    code = ("import os, sys; from annotator.db import open_db; db = open_db(sys.argv[1]); "
            "db.execute('pragma wal_autocheckpoint=0'); "
            "db['conversations'].insert({'id': 'c1', 'turns': '[]'}); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    Path(f"{path}-shm").unlink(missing_ok=True)
    db = open_existing_db(path)
    assert db.execute("select id from conversations").fetchall() == [("c1",)]


def test_a_dangling_link_as_the_database_is_one_error(tmp_path):
    link = tmp_path / "study.db"
    link.symlink_to(tmp_path / "gone" / "study.db")
    for opener in (open_db, open_existing_db):
        with pytest.raises(NotAStudyError, match=r"is a link to .*gone/study.db, which does not"):
            opener(link)
    assert link.is_symlink() and not (tmp_path / "gone").exists()


def test_a_link_to_a_study_opens_the_study(tmp_path):
    real = tmp_path / "real.db"
    open_db(real).conn.close()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    assert set(open_existing_db(link).table_names()) >= CORE_TABLES
    assert link.is_symlink()


def test_a_new_study_and_its_wal_and_shm_are_private_from_creation(tmp_path):
    """0600 from the first moment (the file is made with that mode before SQLite opens it,
    and SQLite gives the -wal and -shm the database's mode), whatever the umask."""
    old = os.umask(0o022)
    try:
        db = open_db(tmp_path / "study.db")
        db["conversations"].insert({"id": "c1", "turns": "[]"})
        for name in ("study.db", "study.db-wal", "study.db-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old)


def test_a_study_opened_twice_in_one_process_keeps_its_locks(tmp_path):
    """The checks before opening read through SQLite only: a raw handle closed here would
    drop the locks the first connection holds (POSIX locks are per process)."""
    path = tmp_path / "study.db"
    first = open_db(path)
    first.conn.execute("begin immediate")
    second = open_db(path)
    second.conn.execute("pragma busy_timeout=0")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        second.conn.execute("begin immediate")
    first.conn.rollback()


class _LockedFor:
    """A small fake of a connection's `execute` (unit test): "database is locked" for the
    first `times` calls, as SQLite answers a journal mode switch while another process
    creates or migrates the same new file."""

    def __init__(self, times: int, message: str = "database is locked") -> None:
        self.times, self.message, self.calls = times, message, 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise sqlite3.OperationalError(self.message)


def test_a_file_locked_by_another_process_is_waited_for_then_named_locked(monkeypatch):
    """Switching a new study to WAL while another process holds it is retried, not called
    "not a study database"; held too long, it is one line saying it is locked."""
    from annotator import db as db_module

    briefly = _LockedFor(3)
    db_module._write_ahead_log(briefly, Path("s.db"))
    assert briefly.calls == 4
    monkeypatch.setattr(db_module, "LOCKED_WAIT_SECONDS", 0.2)
    with pytest.raises(AnnotatorError, match="s.db is locked by another program") as raised:
        db_module._write_ahead_log(_LockedFor(10**6), Path("s.db"))
    assert not isinstance(raised.value, NotAStudyError)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):  # not a lock: as is
        db_module._write_ahead_log(_LockedFor(1, "disk I/O error"), Path("s.db"))
