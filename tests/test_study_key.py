"""Conversation ids are keyed hashes of the unscrubbed text under a per-study key: conversations
that differ only in personal data stay apart, re-reading a file adds nothing, the key stays in
its 0600 file, and studies from before keep their ids."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from pathlib import Path

import pii_corpus
import pytest
from typer.testing import CliRunner

from annotator.cli import app
from annotator.db import MIGRATIONS, open_db
from annotator.ingest.formats import RawConversation, read_jsonl
from annotator.ingest.pipeline import ingest
from annotator.ingest.rows import RowSettings, conversation_row
from annotator.models import content_id, keyed_id
from annotator.study_key import StudyKeyError, fingerprint, key_path, study_key

CUSTOMER = "Hi, I'm {who}, my card {card} was charged twice. Call me on {phone}."
REPLY = "I'm sorry about that. I've asked the billing team to look at it today."


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _customers(n: int) -> list[dict]:
    """`n` conversations identical but for the personal data in them (and their metadata)."""
    samples, _ = pii_corpus.build()
    emails = [s.value for s in samples if s.kind == "EMAIL"]
    cards = [s.value for s in samples if s.kind == "CARD"]
    phones = [s.value for s in samples if s.kind == "PHONE"]
    return [
        {
            "id": f"ticket-{i}",
            "customer": emails[i % len(emails)],
            "messages": [
                {"role": "user", "content": CUSTOMER.format(
                    who=emails[i % len(emails)], card=cards[i % len(cards)],
                    phone=phones[i % len(phones)])},
                {"role": "assistant", "content": REPLY},
            ],
        }
        for i in range(n)
    ]


def test_conversations_differing_only_in_personal_data_stay_apart(tmp_path: Path) -> None:
    db = open_db(tmp_path / "study.db")
    path = _write(tmp_path / "tickets.jsonl", _customers(40))
    report = ingest(db, [path])
    assert (report.landed, report.duplicates) == (40, 0)
    texts = {row[0] for row in db.execute("select turns from conversations")}
    assert len(texts) < 40  # scrubbed, many read the same: the ids keep them apart
    owners = {row[0] for row in db.execute("select json_extract(metadata, '$.customer') "
                                           "from conversations")}
    assert owners == {"[EMAIL]"}
    again = ingest(db, [path])
    assert (again.landed, again.duplicates) == (0, 40)
    assert db["conversations"].count == 40


def test_ids_are_keyed_hashes_of_the_text_as_read(tmp_path: Path) -> None:
    db = open_db(tmp_path / "study.db")
    record = _customers(1)[0]
    ingest(db, [_write(tmp_path / "one.jsonl", [record])])
    key = study_key(db)
    turns = [(m["role"], m["content"]) for m in record["messages"]]
    (stored_id,) = [row[0] for row in db.execute("select id from conversations")]
    assert stored_id == keyed_id(key, turns)
    other = open_db(tmp_path / "other.db")
    ingest(other, [tmp_path / "one.jsonl"])
    assert next(other.execute("select id from conversations"))[0] != stored_id  # per study


def test_the_key_lives_in_a_private_file_and_nowhere_else(tmp_path: Path) -> None:
    study = tmp_path / "study.db"
    db = open_db(study)
    assert not (tmp_path / "study.db.key").exists()  # made on first use, not on open
    ingest(db, [_write(tmp_path / "t.jsonl", _customers(3))])
    path = key_path(db)
    assert path == tmp_path / "study.db.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key_hex = path.read_text().strip()
    assert len(bytes.fromhex(key_hex)) == 32
    db.conn.commit()
    db.execute("pragma wal_checkpoint(full)")
    for file in tmp_path.iterdir():
        if file != path:
            assert key_hex.encode() not in file.read_bytes(), file
    settings = RowSettings(name="x", source="x", scrub=True, ingested_at="", key=b"k" * 32)
    assert "kkkk" not in repr(settings)
    row = db.execute("select fingerprint from study_key").fetchone()
    assert row[0] == fingerprint(bytes.fromhex(key_hex))


def test_a_missing_or_foreign_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    study = tmp_path / "study.db"
    db = open_db(study)
    path = _write(tmp_path / "t.jsonl", _customers(2))
    ingest(db, [path])
    key_file = tmp_path / "study.db.key"
    saved = key_file.read_text()
    key_file.unlink()
    with pytest.raises(StudyKeyError, match="missing"):
        ingest(db, [path])
    study_key(open_db(tmp_path / "other.db"))
    key_file.write_text((tmp_path / "other.db.key").read_text())
    with pytest.raises(StudyKeyError, match="not this study's key"):
        ingest(db, [path])
    key_file.write_text(saved)
    assert ingest(db, [path]).landed == 0


def test_an_in_memory_study_keeps_its_key_in_memory(tmp_path: Path) -> None:
    db = open_db(":memory:")
    assert key_path(db) is None
    assert study_key(db) == study_key(db)
    assert not list(tmp_path.iterdir())


def test_a_study_from_before_keyed_ids_keeps_its_ids(tmp_path: Path) -> None:
    study = tmp_path / "old.db"
    old = open_db(study, migrations=MIGRATIONS[:8])  # up to 0008_label_sources
    records = _customers(5)
    path = _write(tmp_path / "t.jsonl", records)
    settings = RowSettings(name=str(path), source="t", scrub=True, ingested_at="then")
    rows = []  # as ingest wrote them before keyed ids: conversation_row without a key
    for record in read_jsonl(path.read_bytes().splitlines(keepends=True), str(path)):
        assert isinstance(record, RawConversation)
        rows.append(conversation_row(record, "t", True, Counter(), settings.ingested_at))
    old.conn.executemany(
        "insert or ignore into conversations (id, source, external_id, turns, metadata, "
        "scrubbed, ingested_at) values (?, ?, ?, ?, ?, ?, ?)", rows)
    old.conn.commit()
    before = sorted(r[0] for r in old.execute("select id from conversations"))
    assert before == sorted({content_id([(t["role"], t["text"]) for t in json.loads(r[3])])
                             for r in rows})
    db = open_db(study)  # applies 0010_study_key
    assert db.execute("select legacy_ids from study_key").fetchone()[0] == 1
    again = ingest(db, [path])
    assert (again.landed, again.duplicates) == (0, 5)  # the file read again adds nothing
    assert sorted(r[0] for r in db.execute("select id from conversations")) == before
    new = records[0] | {"messages": [{"role": "user", "content": "A new question, 2026."}]}
    assert ingest(db, [_write(tmp_path / "new.jsonl", [new])]).landed == 1


def test_a_new_study_has_no_legacy_ids(tmp_path: Path) -> None:
    db = open_db(tmp_path / "new.db")
    assert db.execute("select legacy_ids from study_key").fetchone()[0] == 0
    assert "0010_study_key" in [name for name, _ in MIGRATIONS]


def test_the_cli_names_a_missing_key_file_in_one_line(tmp_path: Path) -> None:
    study, path = tmp_path / "study.db", _write(tmp_path / "t.jsonl", _customers(2))
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(path), "--db", str(study), "--json"])
    assert first.exit_code == 0, first.output
    key_hex = (tmp_path / "study.db.key").read_text().strip()
    assert key_hex not in first.output
    (tmp_path / "study.db.key").unlink()
    again = runner.invoke(app, ["ingest", str(path), "--db", str(study)])
    assert again.exit_code == 1
    assert "study.db.key is missing" in " ".join(again.output.split())
    assert "Traceback" not in again.output


NOBODY = 65534


def test_a_planted_link_or_another_users_file_at_the_key_path_is_refused(tmp_path: Path) -> None:
    """A link planted where a new study's key will be once made the study compute every id
    with the attacker's key; a link to a copy of the right key, or another user's file, is
    refused the same way. Nothing is ingested with a key that is not the study's own."""
    theirs = tmp_path / "attacker.key"
    theirs.write_text("ab" * 32 + "\n")
    study = tmp_path / "study.db"
    db = open_db(study)
    key_file = tmp_path / "study.db.key"
    key_file.symlink_to(theirs)
    data = _write(tmp_path / "t.jsonl", _customers(3))
    with pytest.raises(StudyKeyError, match="is a link"):
        ingest(db, [data])
    assert db.execute("select count(*) from conversations").fetchone()[0] == 0
    assert db.execute("select fingerprint from study_key").fetchone()[0] is None
    key_file.unlink()
    assert ingest(db, [data]).landed == 3  # its own key, made now
    own = key_file.read_text()
    copy = tmp_path / "copy.key"
    copy.write_text(own)
    key_file.unlink()
    key_file.symlink_to(copy)
    with pytest.raises(StudyKeyError, match="is a link"):
        study_key(db)
    key_file.unlink()
    key_file.write_text(own)
    os.chown(key_file, NOBODY, NOBODY)
    with pytest.raises(StudyKeyError, match="belongs to another user"):
        study_key(db)
    assert theirs.read_text() == "ab" * 32 + "\n"
