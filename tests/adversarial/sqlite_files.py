"""Hostile `--db` targets: SQLite files of other applications that SQLite itself would rewrite
if a connection that can write opened them, and links that lead nowhere.

Each maker leaves the file in the state a crashed or running program leaves it (a child
process writes and exits without closing, so SQLite never checkpoints or rolls back) and
returns the paths whose bytes must not change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_WAL = """
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute('pragma journal_mode=wal')
c.execute('pragma wal_autocheckpoint=0')
c.execute('create table bookmarks (url text)')
c.execute("insert into bookmarks values ('https://example.org')")
c.commit()
os._exit(0)  # no close: the -wal keeps every page, the main file none of the tables
"""

_HOT_JOURNAL = """
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('create table notes (body text)')
c.execute("insert into notes values ('keep me')")
c.execute('pragma cache_size=1')  # spill pages to the file mid-transaction
c.execute('begin')
c.execute("insert into notes select randomblob(4000) from (with recursive r(i) as "
          "(select 1 union all select i + 1 from r where i < 100) select i from r)")
os._exit(0)  # mid-transaction: a hot -journal SQLite would roll back on the next open
"""

_MIGRATIONS_SAME = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute('create table _migrations (name text primary key, applied_at text)')
c.execute("insert into _migrations values ('0001_initial', '2024-01-01')")
c.execute('create table users (id integer primary key, email text)')
c.commit()
"""

_MIGRATIONS_OTHER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute('create table _migrations (id integer primary key, version integer, checksum blob)')
c.execute("insert into _migrations values (1, 7, x'00ff')")
c.commit()
"""

MAKERS = {"wal": _WAL, "hot_journal": _HOT_JOURNAL, "migrations_same_columns": _MIGRATIONS_SAME,
          "migrations_other_columns": _MIGRATIONS_OTHER}


def foreign_sqlite(folder: Path, kind: str) -> list[Path]:
    """Write the foreign file `kind` (a key of MAKERS) in `folder`; the files it consists of."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}.sqlite"
    subprocess.run([sys.executable, "-c", MAKERS[kind], str(path)], check=True)
    return sorted(p for p in folder.iterdir() if p.name.startswith(path.name))


def snapshot(paths: list[Path]) -> dict[str, bytes]:
    """Every file beside the foreign one, by name, with its bytes."""
    folder = paths[0].parent
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
