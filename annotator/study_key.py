"""Each study's secret key, from which conversation ids are computed.

A conversation's id is a keyed hash (HMAC-SHA256) of its text as read, before scrubbing
(`models.keyed_id`): two conversations that differ only in personal data stay two rows, and
reading the same file again still adds nothing. A plain hash of the unscrubbed text would let
anyone holding an id test guesses of the personal data in it (a phone number has ten digits);
the key makes that impossible without the key.

The key is 32 random bytes, generated the first time a study needs it, in a file beside the
database (`<study>.db.key`, mode 0600, hex). It is not in the database, so a copy or an export
of the database cannot be used to test guesses, and it is never printed, logged or exported.
The database keeps the key's fingerprint (an HMAC of a fixed label), so a study whose key file
went missing or was swapped is an error rather than a silent new key (which would give every
conversation read again a new id). An in-memory database keeps its key in a TEMP table, which
dies with the connection.

Studies made before keyed ids keep their conversations' ids (hashes of the scrubbed text); the
`study_key` table records that they exist (`legacy_ids`), and ingest then also treats a
conversation whose old-style id is already present as present.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from annotator.errors import AnnotatorError
from annotator.models import utc_now
from annotator.private_files import PrivateFileError, read_private

if TYPE_CHECKING:  # annotations only: ingest's workers import this module without SQLite
    import sqlite_utils

KEY_BYTES = 32
KEY_SUFFIX = ".key"
_FINGERPRINT_LABEL = b"annotator study key fingerprint"


class StudyKeyError(AnnotatorError):
    """The study's key file is missing, unreadable or not the study's."""


def create_table(db: sqlite_utils.Database) -> None:
    """The migration step: one row, the key's fingerprint (null until a key is made) and
    whether conversations with unkeyed ids exist."""
    db.execute(
        "create table if not exists study_key (id integer primary key check (id = 1), "
        "fingerprint text, created_at text, legacy_ids integer not null default 0)"
    )
    has_rows = db.execute("select exists (select 1 from conversations)").fetchone()[0]
    db.execute("insert or ignore into study_key (id, legacy_ids) values (1, ?)", [int(has_rows)])


def key_path(db: sqlite_utils.Database) -> Path | None:
    """Where the key file of `db` lives; None for an in-memory or temporary database."""
    for _, name, file in db.execute("pragma database_list").fetchall():
        if name == "main":
            return Path(file + KEY_SUFFIX) if file else None
    return None


def fingerprint(key: bytes) -> str:
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def study_fingerprint(db: sqlite_utils.Database) -> str | None:
    """The recorded fingerprint of the study's key: a stable id of the study (it never changes
    once the key is made, and reveals nothing of the key), for provenance; None before the
    first ingest made the key."""
    try:
        row = db.execute("select fingerprint from study_key where id = 1").fetchone()
    except Exception:  # a database from before the study_key table
        return None
    return row[0] if row and row[0] else None


def has_legacy_ids(db: sqlite_utils.Database) -> bool:
    """Whether `db` holds conversations whose ids predate keyed ids."""
    row = db.execute("select legacy_ids from study_key where id = 1").fetchone()
    return bool(row and row[0])


def study_key(db: sqlite_utils.Database) -> bytes:
    """The key of the study in `db`, made (file and fingerprint) on first use."""
    path = key_path(db)
    row = db.execute("select fingerprint from study_key where id = 1").fetchone()
    recorded = row[0] if row else None
    key = _memory_key(db) if path is None else _file_key(path, recorded is not None)
    if recorded is None:
        with db.conn:
            db.execute(
                "insert into study_key (id, fingerprint, created_at) values (1, ?, ?) on "
                "conflict (id) do update set fingerprint = excluded.fingerprint, "
                "created_at = excluded.created_at where fingerprint is null",
                [fingerprint(key), utc_now().isoformat()],
            )
        recorded = db.execute("select fingerprint from study_key where id = 1").fetchone()[0]
    if recorded != fingerprint(key):
        raise StudyKeyError(
            f"{path} is not this study's key (its fingerprint differs from the one the study "
            "recorded); put the study's own key file back beside the database"
        )
    return key


def _file_key(path: Path, recorded: bool) -> bytes:
    if not os.path.lexists(path):
        if recorded:
            raise StudyKeyError(
                f"{path} is missing: this study's conversation ids are computed with the key "
                "kept there. Copy it back beside the database (it travels with the study, "
                "never with an export); without it, a file read again would land twice"
            )
        _write_new_key(path)
    # A link planted at the key's path (or another user's file) would make the study compute
    # ids with someone else's key: refused, as a write through it would be.
    try:
        text = read_private(path, "study key")
    except PrivateFileError as exc:
        raise StudyKeyError(str(exc)) from None
    try:
        key = bytes.fromhex((text or "").strip())
    except ValueError as exc:
        raise StudyKeyError(f"{path}: cannot read the study key ({type(exc).__name__})") from None
    if len(key) != KEY_BYTES:
        raise StudyKeyError(f"{path}: not a study key ({len(key)} bytes, expected {KEY_BYTES})")
    return key


def _write_new_key(path: Path) -> None:
    """Create `path` holding a new key, mode 0600 from creation on; if another process made
    it first, keep theirs. Written under a random name, then linked into place: `link` fails
    if the target exists, so two ingests starting at once agree on one key."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _memory_key(db: sqlite_utils.Database) -> bytes:
    db.execute("create temp table if not exists study_key_secret (key blob not null)")
    row = db.execute("select key from temp.study_key_secret").fetchone()
    if row is None:
        key = secrets.token_bytes(KEY_BYTES)
        db.execute("insert into temp.study_key_secret (key) values (?)", [key])
        return key
    return bytes(row[0])
