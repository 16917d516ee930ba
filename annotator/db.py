"""The study database: one SQLite file, append-only named migrations, row <-> model converters.

Migrations are a list that only grows: each has a name, runs once, and is recorded in
`_migrations`. Opening an older file applies the ones it lacks, in order, each in its own
transaction, so a crash mid-migration leaves the file at the last completed step.
"""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic import TypeAdapter

from annotator import study_key
from annotator.errors import AnnotatorError, NotAStudyError, conversation_row, reading_row
from annotator.json_columns import dumps, loads
from annotator.models import (
    Annotation,
    Conversation,
    Extraction,
    GoldLabel,
    Labels,
    PromptVersion,
    Provenance,
    Turn,
    ValueRef,
    utc_now,
)

Migration = tuple[str, Callable[[sqlite_utils.Database], None]]


def _create_core_tables(db: sqlite_utils.Database) -> None:
    db["conversations"].create(
        {
            "id": str,
            "source": str,
            "external_id": str,
            "turns": str,
            "metadata": str,
            "scrubbed": int,
            "ingested_at": str,
        },
        pk="id",
    )
    db["prompts"].create(
        {
            "id": str,
            "name": str,
            "version": str,
            "text": str,
            "front_matter": str,
            "first_used_at": str,
        },
        pk="id",
    )
    db["extractions"].create(
        {
            "conversation_id": str,
            "prompt_id": str,
            "model": str,
            "extractor": str,
            "subjective": int,
            "ai_values": str,
            "human_values": str,
            "response_type": str,
            "status": str,
            "error": str,
            "raw_reply": str,
            "input_tokens": int,
            "output_tokens": int,
            "cache_read_tokens": int,
            "cache_write_tokens": int,
            "cost_usd": float,
            "attempts": int,
            "created_at": str,
        },
        pk=("conversation_id", "prompt_id", "model"),
    )
    db["model_calls"].create(
        {
            "id": int,
            "conversation_id": str,
            "prompt_id": str,
            "model": str,
            "request": str,
            "response": str,
            "status": str,
            "input_tokens": int,
            "output_tokens": int,
            "duration_ms": float,
            "batch_id": str,
            "created_at": str,
        },
        pk="id",
    )
    db["tasks"].create(
        {
            "conversation_id": str,
            "project_id": int,
            "task_id": int,
            "pushed_at": str,
            "prompt_versions": str,
        },
        pk="conversation_id",
    )
    db["annotations"].create(
        {
            "id": str,
            "conversation_id": str,
            "annotator": str,
            "labels": str,
            "lead_time": float,
            "cancelled": int,
            "deleted": int,
            "updated_at": str,
            "history": str,
        },
        pk="id",
    )
    db["gold"].create(
        {
            "conversation_id": str,
            "ai_values": str,
            "human_values": str,
            "response_type": str,
            "subjective": int,
            "decided_by": str,
            "decided_at": str,
            "from_annotations": str,
        },
        pk="conversation_id",
    )


def _add_ingest_runs(db: sqlite_utils.Database) -> None:
    # Records, per ingest, whether scrubbing was on and what it replaced: the database itself
    # answers "was this study scrubbed?".
    db["ingest_runs"].create(
        {
            "id": int,
            "started_at": str,
            "files": str,
            "scrubbed": int,
            "read": int,
            "landed": int,
            "duplicates": int,
            "rejected": int,
            "scrub_counts": str,
        },
        pk="id",
    )


def _add_lookup_indexes(db: sqlite_utils.Database) -> None:
    db["conversations"].create_index(["source", "external_id"])
    db["extractions"].create_index(["prompt_id", "status"])
    db["annotations"].create_index(["conversation_id"])
    db["model_calls"].create_index(["conversation_id"])


def _add_batches(db: sqlite_utils.Database) -> None:
    # One row per Message Batch submitted by `extract --batch`, written before the batch is
    # created and updated as it moves on, so a rerun resumes polling it instead of paying twice.
    db["batches"].create(
        {
            "id": str,
            "batch_id": str,
            "prompt_id": str,
            "model": str,
            "extractor": str,
            "status": str,
            "custom_ids": str,
            "request_count": int,
            "request_counts": str,
            "created_at": str,
            "submitted_at": str,
            "ended_at": str,
            "collected_at": str,
            "error": str,
        },
        pk="id",
    )
    db["batches"].create_index(["prompt_id", "model", "status"])


def _add_model_call_costs(db: sqlite_utils.Database) -> None:
    # Per-call cache tokens and cost: a call's price is known when it is made, so it is kept
    # with it rather than recomputed later from a price table that may have changed.
    table = db["model_calls"]
    table.add_column("cache_read_tokens", int)
    table.add_column("cache_write_tokens", int)
    table.add_column("cost_usd", float)
    table.create_index(["batch_id"])


def _add_gold_history(db: sqlite_utils.Database) -> None:
    # A person's decision replaces a gold label; the label it replaced is kept here, with who
    # decided it and when, so adjudication can be audited and undone.
    db["gold"].add_column("history", str)


def _drop_source_index(db: sqlite_utils.Database) -> None:
    # Nothing looks conversations up by (source, external_id), and keeping that index up to
    # date cost a third of the write time of a large ingest (measured: 52k vs 78k rows/s).
    db.execute("drop index if exists idx_conversations_source_external_id")


def _add_label_sources(db: sqlite_utils.Database) -> None:
    # Every annotation names its source, and an operation touches only rows of its own source:
    # a pull once marked every gold-file annotation of its project's conversations deleted.
    # source: "labelstudio:<server>:<project id>", "gold:<file source>", "import:<file>",
    # "app"; source_id: the id inside that source (Label Studio's annotation id).
    # missing: required fields the annotation left empty (JSON list; empty means complete).
    # edited_by: who last changed it when that is not its author (a shared server lets anyone).
    annotations = db["annotations"]
    for column in ("source", "source_id", "missing", "edited_by"):
        annotations.add_column(column, str)
    # Rows pulled before this step carry Label Studio's bare numeric id; the tasks table says
    # from which project. Their ids get the source as a prefix, as new pulls write them.
    db.execute(
        "update annotations set source = 'labelstudio:local:' || coalesce((select t.project_id "
        "from tasks t where t.conversation_id = annotations.conversation_id), 0), "
        "source_id = id where id not glob '*[^0-9]*'"
    )
    db.execute("update annotations set id = source || ':' || source_id where source_id is not null")
    # Gold-file rows are "<record source>:<conversation>:<annotator>".
    db.execute(
        "update annotations set source = 'gold:' || substr(id, 1, instr(id, ':') - 1) "
        "where source is null"
    )
    db.execute("update annotations set missing = '[]'")
    annotations.create_index(["source"])
    # A task is one conversation in one project of one server: with a Label Studio instance per
    # reviewer, project and task ids repeat across servers. blind: pushed without predictions
    # (to measure anchoring); prefilled_by: the prompt version whose prediction fills the form.
    db["tasks"].add_column("server", str)
    db["tasks"].add_column("blind", int)
    db["tasks"].add_column("prefilled_by", str)
    db.execute("update tasks set server = 'local', blind = 0")
    db["tasks"].transform(pk=("server", "project_id", "conversation_id"))
    db["tasks"].create_index(["conversation_id"])


def _add_extraction_claims(db: sqlite_utils.Database) -> None:
    # Two `extract` runs on one study once paid for every conversation twice, and a killed run
    # left no trace of the calls it had in flight. Each run now registers itself (who: run id,
    # pid, host; a lease it renews while alive), claims the (conversation, prompt, model) work
    # it takes, and writes each model call as "in_flight" before sending it.
    db["extract_runs"].create(
        {
            "id": str,
            "pid": int,
            "host": str,
            "prompt_id": str,
            "model": str,
            "status": str,  # running, finished, failed, dead (found gone by a later run)
            "started_at": str,
            "lease_until": str,
            "ended_at": str,
        },
        pk="id",
    )
    db["claims"].create(
        {"conversation_id": str, "prompt_id": str, "model": str, "run_id": str,
         "claimed_at": str},
        pk=("conversation_id", "prompt_id", "model"),
    )
    db["claims"].create_index(["run_id"])
    # run_id: the run that sent the call; estimated_cost_usd: what the call would cost without
    # cache hits, the ledger's figure for a call whose reply never arrived ("possibly_paid").
    db["model_calls"].add_column("run_id", str)
    db["model_calls"].add_column("estimated_cost_usd", float)
    db["model_calls"].create_index(["status"])


def _add_study_key(db: sqlite_utils.Database) -> None:
    # Conversation ids become keyed hashes of the unscrubbed text (study_key.py); the table
    # holds the key's fingerprint and whether older conversations keep content-hash ids.
    study_key.create_table(db)


def _add_tasks(db: sqlite_utils.Database) -> None:
    # Values by task: each conversation's task (a category of the study's task list and a
    # short description), proposed by a model and decided in gold. Annotations keep it in
    # their labels JSON.
    for table in ("extractions", "gold"):
        db[table].add_column("task", str)
        db[table].add_column("task_description", str)


def _add_gold_reopening(db: sqlite_utils.Database) -> None:
    # labels_seen: a digest of the annotations a person's decision was made on, so that labels
    # that arrive later mark it "new labels since". gold_reopened: a majority decision that new
    # labels no longer support leaves `gold` (only decided labels are gold); its label and the
    # history before it wait here until the conversation is decided again.
    db["gold"].add_column("labels_seen", str)
    db["gold_reopened"].create(
        {"conversation_id": str, "history": str, "reopened_at": str, "reason": str},
        pk="conversation_id",
    )


def _add_flags_and_pulls(db: sqlite_utils.Database) -> None:
    # A reviewer can flag a conversation for the lead (unclear, personal data left, harmful,
    # other) with a note (kept in the labels' `notes`); the flag is kept beside the labels, so
    # a flag raised instead of labels is listed, never taken for an incomplete vote.
    db["annotations"].add_column("flag", str)
    # One row per pull of one project of one server (a reviewer's own instance is a server
    # `reviewer:<email>`): when the study last heard from each reviewer, and what came back.
    db["pulls"].create(
        {
            "id": int,
            "server": str,
            "project_id": int,
            "source": str,
            "pulled_at": str,
            "annotations": int,
            "new": int,
            "updated": int,
            "deleted": int,
        },
        pk="id",
    )
    db["pulls"].create_index(["server", "pulled_at"])


def _add_scrub_passes(db: sqlite_utils.Database) -> None:
    # The model privacy pass (`extract.scrub_pass`): per conversation, which pass (prompt version
    # and model) cleared it and which spans it replaced in the stored turns. study_settings:
    # study-wide switches, e.g. that push sends only conversations a scrub pass has cleared.
    db["scrub_passes"].create(
        {"conversation_id": str, "prompt_id": str, "model": str, "replaced": str,
         "not_found": str, "applied_at": str},
        pk=("conversation_id", "prompt_id", "model"),
    )
    db["study_settings"].create({"key": str, "value": str, "set_at": str}, pk="key")


# Tables whose every write sets a new random token in `table_changes` (`_add_change_tokens`).
TOKEN_TABLES = ("conversations", "annotations", "gold", "tasks")
# gold decided by a person, not by majority: the token `gold:people` (the Gold page's queue)
PEOPLE_TOKEN = "gold:people"
_PERSON = "{row}.decided_by != 'majority'"


def _add_change_tokens(db: sqlite_utils.Database) -> None:
    # Every write to a table the app's summaries read sets a new random token for it, by
    # triggers: its change signature (`frame_store.table_signatures`) then moves with any change,
    # whoever makes it (a scrub pass rewriting turns, a fix made in a database browser, values
    # swapped between two rows) where sums over the columns could stay the same, and it is
    # read without scanning the table. Random, not counted: a study restored from a copy and
    # changed again never comes back to a token it had. Per prompt version for extractions.
    db.execute("create table table_changes (name text primary key, token integer not null) "
               "without rowid")
    for name in (*TOKEN_TABLES, PEOPLE_TOKEN):
        db.execute("insert into table_changes values (?, random())", [name])
    set_token = "update table_changes set token = random() where name = '{name}';"
    for table in TOKEN_TABLES:
        for event in ("insert", "update", "delete"):
            db.execute(f"create trigger {table}_{event}_token after {event} on {table} "
                       f"begin {set_token.format(name=table)} end")
    people = {"insert": _PERSON.format(row="new"), "delete": _PERSON.format(row="old"),
              "update": f"{_PERSON.format(row='new')} or {_PERSON.format(row='old')}"}
    for event, when in people.items():
        db.execute(f"create trigger gold_people_{event}_token after {event} on gold "
                   f"when {when} begin {set_token.format(name=PEOPLE_TOKEN)} end")
    prompt_token = ("insert into table_changes values ('extractions:' || {row}.prompt_id, "
                    "random()) on conflict (name) do update set token = excluded.token;")
    rows = {"insert": ("new",), "update": ("new", "old"), "delete": ("old",)}
    for event, refs in rows.items():
        body = " ".join(prompt_token.format(row=row) for row in refs)
        db.execute(f"create trigger extractions_{event}_token after {event} on extractions "
                   f"begin {body} end")


# The change log's row in `table_changes` that says up to which entry it was pruned.
LOG_PRUNED = "annotation_changes pruned"


def _add_annotation_log(db: sqlite_utils.Database) -> None:
    # Every write to an annotation row notes its rowid, by triggers, whoever writes it: the
    # next annotations frame re-reads those rows alone (`frame_patch`), instead of comparing
    # every row's lengths and times (1.2 s at 300,000 conversations), and sees a change
    # another program made that keeps them. AUTOINCREMENT: a position is never used again
    # after the log is pruned.
    db.execute("create table annotation_changes (seq integer primary key autoincrement, "
               "row integer not null)")
    note = "insert into annotation_changes (row) values ({ref}.rowid);"
    moved = ("insert into annotation_changes (row) select old.rowid "
             "where old.rowid != new.rowid;")
    for event, body in (("insert", note.format(ref="new")),
                        ("update", note.format(ref="new") + " " + moved),
                        ("delete", note.format(ref="old"))):
        db.execute(f"create trigger annotations_{event}_log after {event} on annotations "
                   f"begin {body} end")


MIGRATIONS: list[Migration] = [
    ("0001_core_tables", _create_core_tables),
    ("0002_ingest_runs", _add_ingest_runs),
    ("0003_lookup_indexes", _add_lookup_indexes),
    ("0004_extraction_batches", _add_batches),
    ("0005_model_call_costs", _add_model_call_costs),
    ("0006_gold_history", _add_gold_history),
    ("0007_drop_conversation_source_index", _drop_source_index),
    ("0008_label_sources", _add_label_sources),
    ("0009_extraction_claims", _add_extraction_claims),
    ("0010_study_key", _add_study_key),
    ("0011_tasks", _add_tasks),
    ("0012_gold_reopening", _add_gold_reopening),
    ("0013_flags_and_pulls", _add_flags_and_pulls),
    ("0014_scrub_passes", _add_scrub_passes),
    ("0015_change_tokens", _add_change_tokens),
    ("0016_annotation_log", _add_annotation_log),
]

# A flag raised instead of labels: flagged, with a required field left empty. Such an
# annotation is listed for the lead (`annotator status`, `show`, the app) but is no vote:
# adjudication and agreement read only rows `where {VOTES}`.
FLAGGED_INSTEAD = "(flag is not null and coalesce(missing, '[]') != '[]')"
VOTES = f"deleted = 0 and cancelled = 0 and not {FLAGGED_INSTEAD}"

# Conversation ids from the first (included) to before the second; None leaves that end open.
# A reader given a range reads the part of the study an export's worker writes (`export`).
IdRange = tuple[str | None, str | None]
EVERY_ID: IdRange = (None, None)


def id_range_sql(column: str, ids: IdRange | tuple[int | None, int | None]
                 ) -> tuple[str, list[str | int]]:
    """A SQL condition on `column` that holds for the ids (or rowids) in `ids`, and its
    parameters."""
    clauses: list[str] = []
    params: list[str | int] = []
    for bound, operator in zip(ids, (">=", "<"), strict=True):
        if bound is not None:
            clauses.append(f"{column} {operator} ?")
            params.append(bound)
    return " and ".join(clauses) or "1", params


def applied_migrations(db: sqlite_utils.Database) -> list[str]:
    if "_migrations" not in db.table_names():
        return []
    return [r["name"] for r in db.query("select name from _migrations order by rowid")]


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the migrations this file lacks, in order; return their names.

    Each runs in its own IMMEDIATE transaction that first re-reads what is applied, so two
    processes opening a new file at once (an ingest and the app, say) apply each step once.
    """
    db.execute("create table if not exists _migrations (name text primary key, applied_at text)")
    if set(applied_migrations(db)) >= {name for name, _ in migrations}:
        return []
    applied: list[str] = []
    for name, step in migrations:
        # An explicit BEGIN: Python's sqlite3 would otherwise run DDL outside any transaction.
        db.conn.execute("begin immediate")
        try:
            if name not in applied_migrations(db):
                step(db)
                db.conn.execute(
                    "insert into _migrations (name, applied_at) values (?, ?)",
                    (name, utc_now().isoformat()),
                )
                applied.append(name)
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()
    return applied


def _check_path(path: Path) -> bool:
    """Refuse a folder, a device or a dangling link before SQLite touches it (it would switch
    on WAL and add tables to whatever it opened); True if the file, or its -wal or -journal,
    has content. Only `stat` here: opening and closing any other handle on the file would drop
    the locks this process's SQLite connections hold on it (POSIX locks are per process), and
    corrupt it under a concurrent writer."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        try:
            st = path.stat()
        except OSError:
            raise NotAStudyError(
                f"{path} is a link to {os.readlink(path)}, which does not exist; pass the "
                "study's own file, or a new name"
            ) from None
    if stat.S_ISDIR(st.st_mode):
        raise NotAStudyError(
            f"{path} is a folder, not a study database; pass a file name, e.g. "
            f"{path / 'annotator.db'}"
        )
    if not stat.S_ISREG(st.st_mode):
        raise NotAStudyError(
            f"{path} is not a study database (a device, pipe or socket); pass a regular file"
        )
    real = path.resolve()
    return st.st_size > 0 or _size(real, "-wal") > 0 or _size(real, "-journal") > 0


def _size(real: Path, suffix: str) -> int:
    try:
        return os.stat(f"{real}{suffix}").st_size
    except OSError:
        return 0


@dataclass
class _View:
    tables: list[str]
    migration_columns: list[str]
    migrations: list[str]


def _look(conn: sqlite3.Connection) -> _View:
    """The tables, and the columns and names of `_migrations` if there is one."""
    tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
    columns: list[str] = []
    names: list[str] = []
    if "_migrations" in tables:
        columns = [r[1] for r in conn.execute("pragma table_info(_migrations)")]
        if "name" in columns:
            names = [str(r[0]) for r in conn.execute("select name from _migrations")]
    return _View(tables, columns, names)


_LOOKS = 10  # a refused file is looked at for up to a second


def _inspect(path: Path, known: Sequence[Migration] = MIGRATIONS) -> bool:
    """Whether `path` (which has content) holds a study; False for an SQLite file without
    tables; `NotAStudyError` for anything else. Decided before any connection that can write
    opens it: that one would check a foreign file's -wal into it and delete it, or roll its
    hot journal back, though the command then refuses it. Nothing here writes or deletes."""
    real = path.resolve()
    for attempt in range(_LOOKS):
        seen = _stamp(real)
        try:
            view = _view(real)
        except sqlite3.DatabaseError as exc:  # not SQLite (a typo in --db), encrypted, corrupt
            # ... or a new study whose first page another process is writing this moment
            if attempt == _LOOKS - 1 or _stamp(real) == seen:
                raise NotAStudyError(f"{path} is not a study database ({exc})") from None
        else:
            # No tables and a -journal: another application's unfinished transaction, or a
            # new study switching to WAL this moment (which ends in milliseconds).
            if view.tables or _size(real, "-journal") == 0 or attempt == _LOOKS - 1:
                break
        time.sleep(0.1)
    verdict = _verdict(path, real, view, {name for name, _ in [*known, *MIGRATIONS]})
    if verdict is not None:
        raise verdict
    return bool(view.tables)


def _stamp(real: Path) -> tuple[int, int, int]:
    st = real.stat()
    return st.st_size, st.st_mtime_ns, _size(real, "-wal")


def _view(real: Path) -> _View:
    """The file's tables without a connection that can write, without SQLite's recovery
    touching its -shm, and without a handle of our own on it (closing one would drop the locks
    this process's SQLite connections hold on it: POSIX locks are per process). A -wal that
    vanishes while it is read was checkpointed into the main file: look again."""
    for _ in range(3):
        try:
            return _view_once(real)
        except FileNotFoundError:
            if not real.exists():
                raise
    return _view_once(real)


def _view_once(real: Path) -> _View:
    with closing(sqlite3.connect(f"{real.as_uri()}?immutable=1", uri=True)) as conn:
        view = _look(conn)  # the main file alone: no -journal rolled back, no -wal read
        if view.tables or _size(real, "-wal") == 0:
            # Tables in the main file say whose it is: a study's first checkpoint holds its
            # `_migrations` with the tables of the first step, committed together.
            return view
        main = conn.serialize()
    # All its tables may be in its -wal (a new study before its first checkpoint, or another
    # application's file): look at a copy of both. SQLite holds no lock on a -wal, so reading
    # that file directly is safe.
    with tempfile.TemporaryDirectory(prefix="annotator-look-") as folder:
        copy = Path(folder) / "copy.db"
        copy.write_bytes(main)
        shutil.copyfile(f"{real}-wal", f"{copy}-wal")
        with closing(sqlite3.connect(copy)) as conn:
            return _look(conn)


def _verdict(path: Path, real: Path, view: _View, known: set[str]
             ) -> NotAStudyError | None:
    if not view.tables:
        if _size(real, "-journal") > 0:
            return NotAStudyError(
                f"{path} is not a study database: an SQLite file with no tables and an "
                f"unfinished transaction ({real.name}-journal) of another application"
            )
        return None
    if view.migration_columns == ["name", "applied_at"] and (
        known & set(view.migrations) or (view.tables == ["_migrations"] and not view.migrations)
    ):
        return None
    shown = ", ".join(sorted(view.tables)[:5]) + (", …" if len(view.tables) > 5 else "")
    whose = (" and a _migrations table that is not annotator's"
             if "_migrations" in view.tables else "")
    return NotAStudyError(
        f"{path} is not a study database: an SQLite file of another application (tables "
        f"{shown}){whose}; pass another --db"
    )


def _create_private(path: Path) -> None:
    """A new study file, readable by its owner only from the first moment (it will hold every
    conversation): SQLite gives its -wal and -shm the database file's mode."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        os.close(os.open(path, flags, 0o600))
    except FileExistsError:
        pass  # made by another process a moment ago (checked again below), or a link
    except OSError as exc:
        raise AnnotatorError(f"cannot create {path}: {exc.strerror or exc}") from None


def open_db(
    path: str | Path,
    migrations: Sequence[Migration] = MIGRATIONS,
    check_same_thread: bool = True,
) -> sqlite_utils.Database:
    """Open (creating if needed) a study database and bring its schema up to date.

    A folder, a device, a dangling link, a file that is not SQLite or an SQLite file of another
    application (its own tables, its own `_migrations`, in WAL mode or with a hot journal) is a
    `NotAStudyError`, and the file, its -wal and -journal are left byte for byte as they were:
    they are judged through read-only SQLite connections before a writable one opens them.
    A new study is created 0600 (its -wal and -shm follow); a link to a study opens the study.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    if str(path) != ":memory:":
        if not os.path.lexists(path):
            _create_private(path)
        if _check_path(path):
            _inspect(path, migrations)
    conn = sqlite3.connect(str(path), check_same_thread=check_same_thread, timeout=30)
    db = sqlite_utils.Database(conn)
    try:
        # WAL lets the app read while an ingest or extract writes; NORMAL is durable at
        # checkpoints and much faster for the many small transactions of a resumable run.
        # 16 kB pages hold about a dozen ~1 kB conversations each: fewer B-tree splits on
        # insert (measured: 5 vs 7.5 us of CPU a row). Only takes effect on a new file.
        db.execute("pragma page_size=16384")
        _write_ahead_log(db, path)
        db.execute("pragma synchronous=normal")
        db.execute("pragma busy_timeout=30000")
        # Random content-hash keys touch pages all over the primary-key index; a larger page
        # cache (64 MB) keeps a bulk ingest from re-reading them.
        db.execute("pragma cache_size=-65536")
    except AnnotatorError:  # not a study, or locked by another program too long
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:  # a file that is not SQLite (a typo in --db)
        conn.close()
        raise NotAStudyError(f"{path} is not a study database ({exc})") from exc
    migrate(db, migrations)
    return db


# How long `open_db` waits for another process that holds the file (as its busy timeout)
LOCKED_WAIT_SECONDS = 30.0


def _write_ahead_log(db: sqlite_utils.Database, path: Path) -> None:
    """WAL mode, waiting for another process that holds the file: switching the journal
    mode of a new file another process is creating or migrating at the same moment can be
    refused at once (SQLite does not wait for it as it does for a write), which is no
    reason to call the file something else than a study."""
    deadline = time.monotonic() + LOCKED_WAIT_SECONDS
    while True:
        try:
            db.execute("pragma journal_mode=wal")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise AnnotatorError(
                    f"{path} is locked by another program for more than "
                    f"{LOCKED_WAIT_SECONDS:.0f} s ({exc}); try again when it is done") from exc
            time.sleep(0.05)


def open_existing_db(path: str | Path, check_same_thread: bool = True) -> sqlite_utils.Database:
    """`open_db` for commands that read a study: a missing or empty file, or an SQLite file
    without a study in it, is an error, not a new study."""
    path = Path(path)
    if not os.path.lexists(path):  # a dangling link is named as one by _check_path
        raise AnnotatorError(f"{path}: no study database here; run `annotator init` first")
    if not _check_path(path):  # an empty file: only a command that creates a study fills it
        raise NotAStudyError(
            f"{path} is empty, not a study database; run `annotator init --db {path}` to make one"
        )
    if not _inspect(path):
        raise NotAStudyError(
            f"{path} holds no study (an empty SQLite file); run `annotator init --db {path}`"
        )
    return open_db(path, check_same_thread=check_same_thread)


def database_path(db: sqlite_utils.Database) -> Path | None:
    """The file behind this connection; None for a database in memory."""
    for _, name, file in db.execute("pragma database_list"):
        if name == "main":
            return Path(file) if file else None
    return None


# Cyclic garbage collection every this many new container objects (Python's default is 700).
BULK_GC_THRESHOLD = 100_000


def collect_garbage_rarely() -> None:
    """Run Python's cycle collector rarely, for a process that reads a whole study.

    A command reading 800,000 annotations keeps millions of objects alive, and with the
    default thresholds the collector walks all of them again and again while they are made:
    half of `adjudicate`'s time at 300,000 conversations (55 s, 28 s with this). What it
    reads holds no reference cycles; cycles are still collected, later. Commands
    (`annotator.cli`) and the app's summary workers call this once at their start.
    """
    gc.set_threshold(BULK_GC_THRESHOLD, 50, 100)


@contextmanager
def worker_study(path: str | Path) -> Iterator[sqlite_utils.Database]:
    """The study at `path`, for a spawned worker process's one piece of work: the collector
    set as a command sets it (a spawned worker starts with Python's defaults), the
    connection closed after."""
    collect_garbage_rarely()
    db = open_existing_db(path)
    try:
        yield db
    finally:
        db.conn.close()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def optional_bool(value: int | None) -> bool | None:
    """An SQLite 0/1 flag that may be unset: None stays None."""
    return None if value is None else bool(value)


# -- conversations ------------------------------------------------------------------------------


def conversation_to_row(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "source": c.source,
        "external_id": c.external_id,
        "turns": dumps([{"role": t.role.value, "text": t.text} for t in c.turns]),
        "metadata": dumps(c.metadata),
        "scrubbed": int(c.scrubbed),
        "ingested_at": _iso(c.ingested_at),
    }


def stored_turns(conversation_id: str, text: str | None) -> list[dict[str, Any]]:
    """A conversation's stored turns, each an object with a role and a text; what another
    program left in another shape is a one-line error naming the conversation."""
    with reading_row(conversation_row(conversation_id)):
        turns = loads(text, [])
        if not (isinstance(turns, list) and all(
                isinstance(t, dict) and type(t.get("role")) is str and type(t.get("text")) is str
                for t in turns)):
            raise TypeError("its turns are not a list of objects with a role and a text")
        return turns


def row_to_conversation(row: dict[str, Any]) -> Conversation:
    return Conversation(
        id=row["id"],
        turns=[Turn(**t) for t in loads(row["turns"], [])],
        source=row["source"] or "",
        external_id=row["external_id"],
        metadata=loads(row["metadata"], {}),
        scrubbed=bool(row["scrubbed"]),
        ingested_at=_dt(row["ingested_at"]),
    )


# -- prompts ------------------------------------------------------------------------------------


def prompt_to_row(p: PromptVersion) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "version": p.version,
        "text": p.text,
        "front_matter": dumps(p.front_matter),
        "first_used_at": utc_now().isoformat(),
    }


def row_to_prompt(row: dict[str, Any]) -> PromptVersion:
    return PromptVersion(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        text=row["text"],
        front_matter=loads(row["front_matter"], {}),
    )


# -- extractions --------------------------------------------------------------------------------


def extraction_to_row(e: Extraction) -> dict[str, Any]:
    row = e.model_dump(mode="json")
    row["subjective"] = None if e.subjective is None else int(e.subjective)
    row["ai_values"] = dumps([v.model_dump(mode="json") for v in e.ai_values])
    row["human_values"] = dumps([v.model_dump(mode="json") for v in e.human_values])
    return row


# A stored list of values, parsed and validated in one call (not a model made per value in
# Python: an export of 700,000 proposals holds millions of them).
_VALUE_REFS = TypeAdapter(list[ValueRef])


def _value_refs(text: str | None) -> list[ValueRef]:
    return _VALUE_REFS.validate_json(text) if text else []


def row_to_extraction(row: dict[str, Any]) -> Extraction:
    data = dict(row)
    data["subjective"] = optional_bool(row["subjective"])
    data["ai_values"] = _value_refs(row["ai_values"])
    data["human_values"] = _value_refs(row["human_values"])
    return Extraction.model_validate(data)


# -- annotations and gold --------------------------------------------------------------------


def authors_own(alias: str = "") -> str:
    """SQL that holds for an annotation whose labels are its author's: nobody else changed it
    last (`Annotation.edited_by_other` in SQL). `alias` is the annotations table's, if any."""
    a = f"{alias}." if alias else ""
    return f"coalesce({a}edited_by, '') in ('', {a}annotator)"


def annotation_to_row(a: Annotation) -> dict[str, Any]:
    return {
        "id": a.id,
        "conversation_id": a.conversation_id,
        "annotator": a.annotator,
        "labels": a.labels.model_dump_json(),
        "source": a.source,
        "source_id": a.source_id,
        "missing": dumps(a.missing),
        "edited_by": a.edited_by,
        "flag": a.flag,
        "lead_time": a.lead_time,
        "cancelled": int(a.cancelled),
        "deleted": int(a.deleted),
        "updated_at": _iso(a.updated_at),
        "history": dumps(a.history),
    }


def row_to_annotation(row: dict[str, Any]) -> Annotation:
    return vote_to_annotation([row.get(column) for column in VOTE_COLUMNS],
                              loads(row["history"], []))


# An annotation's columns but its edit history (`history`), which nothing that counts or
# exports votes reads: a reader of every vote fetches these (`vote_to_annotation`).
VOTE_COLUMNS = ("id", "conversation_id", "annotator", "labels", "source", "source_id",
                "missing", "edited_by", "flag", "lead_time", "cancelled", "deleted",
                "updated_at")


def vote_to_annotation(values: Sequence[Any], history: list[dict[str, Any]] | None = None
                       ) -> Annotation:
    """An annotation from its `VOTE_COLUMNS`, in that order (a cursor's tuple: no dict is made
    per row); `history` as given, else empty."""
    (ident, conversation_id, annotator, labels, source, source_id, missing, edited_by, flag,
     lead_time, cancelled, deleted, updated_at) = values
    return Annotation(
        id=ident,
        conversation_id=conversation_id,
        annotator=annotator,
        labels=Labels.model_validate_json(labels),
        source=source or "",
        source_id=source_id,
        missing=loads(missing, []),
        edited_by=edited_by,
        flag=flag,
        lead_time=lead_time,
        cancelled=bool(cancelled),
        deleted=bool(deleted),
        updated_at=_dt(updated_at),
        history=history or [],
    )


def gold_to_row(conversation_id: str, g: GoldLabel) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "ai_values": dumps(g.ai_values),
        "human_values": dumps(g.human_values),
        "response_type": g.response_type.value if g.response_type else None,
        "subjective": None if g.subjective is None else int(g.subjective),
        "decided_by": g.decided_by,
        "decided_at": _iso(g.decided_at),
        "from_annotations": dumps(g.from_annotations),
        "task": g.task,
        "task_description": g.task_description,
    }


def row_to_gold(row: dict[str, Any]) -> GoldLabel:
    return GoldLabel(
        ai_values=loads(row["ai_values"], []),
        human_values=loads(row["human_values"], []),
        response_type=row["response_type"],
        subjective=optional_bool(row["subjective"]),
        decided_by=row["decided_by"],
        decided_at=_dt(row["decided_at"]),
        from_annotations=loads(row["from_annotations"], []),
        task=row.get("task"),
        task_description=row.get("task_description"),
    )


def provenance(
    db: sqlite_utils.Database, prompt_ids: Iterable[str] = (), label_source: str | None = None
) -> Provenance:
    """The provenance of something made now from the study in `db` (see `Provenance`)."""
    return Provenance(study_fingerprint=study_key.study_fingerprint(db),
                      prompt_ids=sorted(set(prompt_ids)), label_source=label_source)


def external_ids(db: sqlite_utils.Database, ids: Iterable[str]) -> dict[str, str | None]:
    """Each conversation's id in its source file (`external_id`), to join results back."""
    wanted = list(dict.fromkeys(ids))
    out: dict[str, str | None] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        out.update(db.execute(
            f"select id, external_id from conversations where id in ({','.join('?' * len(chunk))})",
            chunk,
        ).fetchall())
    return out
