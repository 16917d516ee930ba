"""Ingest: every format, stable ids, scrubbing, bad input reported while good records land.

These are unit-level tests on real SQLite files and real (small) input files; no fakes.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import iter_conversations
from held_ingest import start_held
from waiting import wait_until

from annotator.db import open_db
from annotator.errors import InputError
from annotator.ingest import pipeline
from annotator.ingest.pipeline import ingest


def write_jsonl(path, objects, compress=False):
    data = "".join(json.dumps(o) + "\n" for o in objects).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


CHAT = {
    "id": "chat-1",
    "model": "some-model",
    "messages": [
        {"role": "user", "content": "How do I reverse a list in Python?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Use reversed(xs)."}]},
    ],
}
HH = {
    "chosen": "\n\nHuman: Is it ok to lie to my boss?"
    "\n\nAssistant: Honesty usually serves you better.",
    "rejected": "\n\nHuman: Is it ok to lie to my boss?\n\nAssistant: Sure, lie away.",
}


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "study.db")


def conversations(db):
    return list(iter_conversations(db))


def test_jsonl_messages_with_string_and_block_content(db, tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [CHAT])
    report = ingest(db, [path])
    assert report.landed == 1 and report.ok
    (conv,) = conversations(db)
    assert [t.role for t in conv.turns] == ["user", "assistant"]
    assert conv.turns[1].text == "Use reversed(xs)."
    assert conv.external_id == "chat-1"
    assert conv.metadata == {"model": "some-model"}
    assert conv.source == "chats"


def test_preference_transcripts_take_chosen_by_default_and_field_picks(db, tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [HH])
    ingest(db, [path])
    ingest(db, [path], transcript_field="rejected")
    texts = sorted(c.turns[1].text for c in conversations(db))
    assert texts == ["Honesty usually serves you better.", "Sure, lie away."]
    assert all(c.turns[0].role == "user" for c in conversations(db))
    # hh-rlhf records have no id: each is found again in its source by file and line
    assert {c.external_id for c in conversations(db)} == {"hh.jsonl:1"}


def test_records_without_an_id_keep_file_and_line_as_external_id(db, tmp_path):
    other = {**HH, "chosen": HH["chosen"].replace("Honesty", "Candour")}
    path = write_jsonl(tmp_path / "train.jsonl", [HH, CHAT, other])
    ingest(db, [path])
    assert sorted(c.external_id for c in conversations(db)) == [
        "chat-1", "train.jsonl:1", "train.jsonl:3"]


def test_plain_text_transcript(db, tmp_path):
    path = tmp_path / "talk.txt"
    path.write_text("Human: hello there\nsecond line\n\nAssistant: Hi! How can I help?\n")
    ingest(db, [path])
    (conv,) = conversations(db)
    assert conv.turns[0].text == "hello there\nsecond line"
    assert conv.turns[1].role == "assistant"
    assert conv.external_id == "talk"


def test_long_form_csv_sorted_by_turn_index_with_metadata(db, tmp_path):
    path = tmp_path / "turns.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["conversation_id", "turn", "role", "text", "language"])
        writer.writerow(["a", "1", "assistant", "Bonjour !", "fr"])
        writer.writerow(["a", "0", "user", "Dis bonjour", "fr"])
        writer.writerow(["b", "0", "human", "Say hi, with a comma", "en"])
        writer.writerow(["b", "1", "ai", "Hi,\nthere", "en"])
    report = ingest(db, [path])
    assert report.landed == 2 and report.ok
    by_id = {c.external_id: c for c in conversations(db)}
    assert [t.text for t in by_id["a"].turns] == ["Dis bonjour", "Bonjour !"]
    assert by_id["b"].turns[1].text == "Hi,\nthere"
    assert by_id["a"].metadata == {"language": "fr"}


@pytest.mark.parametrize("kind", ["jsonl", "csv", "txt"])
def test_gzip_versions_of_each_format(db, tmp_path, kind):
    if kind == "jsonl":
        raw = (json.dumps(CHAT) + "\n").encode()
    elif kind == "csv":
        raw = b"conversation_id,turn,role,text\nx,0,user,hi\nx,1,assistant,hello\n"
    else:
        raw = b"Human: hi\n\nAssistant: hello\n"
    path = tmp_path / f"input.{kind}.gz"
    path.write_bytes(gzip.compress(raw))
    report = ingest(db, [path])
    assert report.landed == 1, report.rejected


def test_same_file_twice_adds_nothing_and_ids_are_stable(db, tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [CHAT, HH])
    first = ingest(db, [path])
    second = ingest(db, [path])
    assert (first.landed, second.landed, second.duplicates) == (2, 0, 2)
    # the same dialogue with other whitespace is the same conversation
    spaced = dict(CHAT, messages=[dict(m) for m in CHAT["messages"]])
    spaced["messages"][0]["content"] = "  How do I reverse   a list in Python?\n"
    third = ingest(db, [write_jsonl(tmp_path / "again.jsonl", [spaced])])
    assert third.landed == 0 and third.duplicates == 1


def test_scrubbing_replaces_personal_data_and_counts_it(db, tmp_path):
    chat = {
        "messages": [
            {"role": "user", "content": "Mail me at jane.doe@example.com or call +44 20 7946 0958"},
            {"role": "assistant", "content": "I can't email you, but see https://example.org/help"},
        ],
        "owner": "jane.doe@example.com",
    }
    path = write_jsonl(tmp_path / "pii.jsonl", [chat])
    report = ingest(db, [path])
    assert report.scrub_counts == {"EMAIL": 2, "PHONE": 1, "URL": 1}
    (conv,) = conversations(db)
    stored = conv.model_dump_json()
    assert "jane.doe" not in stored and "7946" not in stored
    assert "[EMAIL]" in conv.turns[0].text and "[URL]" in conv.turns[1].text
    assert conv.metadata == {"owner": "[EMAIL]"}
    assert conv.scrubbed
    run = db.execute("select scrubbed from ingest_runs").fetchone()
    assert run == (1,)


def test_no_scrub_is_recorded(db, tmp_path):
    chat = {"messages": [{"role": "user", "content": "I am jane@example.com"}]}
    report = ingest(db, [write_jsonl(tmp_path / "raw.jsonl", [chat])], scrub=False)
    (conv,) = conversations(db)
    assert conv.turns[0].text == "I am jane@example.com" and not conv.scrubbed
    assert report.scrub_counts == {}
    assert db.execute("select scrubbed from ingest_runs").fetchone() == (0,)


def test_bad_records_are_reported_with_line_and_good_ones_land(db, tmp_path):
    lines = [
        json.dumps(CHAT).encode(),  # 1 good
        b'{"messages": [{"role": "user", "content": "unterminated',  # 2 malformed JSON
        json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(),  # 3 role
        json.dumps({"messages": []}).encode(),  # 4 empty conversation
        b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',  # 5 invalid UTF-8
        json.dumps(HH).encode(),  # 6 good
        json.dumps([1, 2]).encode(),  # 7 not an object
        json.dumps({"text": "no conversation"}).encode(),  # 8 no messages
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = ingest(db, [path])
    assert report.landed == 2
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [2, 3, 4, 5, 7, 8]
    assert "malformed JSON" in reasons[2]
    assert "unknown role 'wizard'" in reasons[3]
    assert "empty conversation" in reasons[4]
    assert "invalid UTF-8" in reasons[5]
    assert all(r.file == str(path) for r in report.rejected)


def test_truncated_gzip_keeps_what_came_before(db, tmp_path):
    rng = random.Random(1)  # varied text, so half the compressed file is half the lines
    objects = [
        {"messages": [{"role": "user", "content": f"question {i} {rng.getrandbits(800):x}"}]}
        for i in range(500)
    ]
    full = gzip.compress("".join(json.dumps(o) + "\n" for o in objects).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    report = ingest(db, [path])
    assert 0 < report.landed < 500
    assert any("truncated or corrupt gzip" in r.reason for r in report.rejected)


def test_wrong_csv_header_is_a_clear_error(db, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("who,said\nuser,hi\n")
    with pytest.raises(InputError, match=r"bad.csv:1: wrong CSV header.*missing conversation_id"):
        ingest(db, [path])


def test_csv_invalid_utf8_and_unknown_role_reject_only_their_conversation(db, tmp_path):
    path = tmp_path / "turns.csv"
    path.write_bytes(
        b"conversation_id,turn,role,text\n"
        b"a,0,user,fine\na,1,assistant,also fine\n"
        b"b,0,user,caf\xe9\nb,1,assistant,ok\n"
        b"c,0,narrator,hmm\n"
        b"d,0,user,last\n"
    )
    report = ingest(db, [path])
    assert report.landed == 2
    assert {r.line: r.reason for r in report.rejected}.keys() == {4, 6}
    assert "invalid UTF-8 on line 4" in report.rejected[0].reason
    assert "unknown role 'narrator'" in report.rejected[1].reason


def test_unknown_extension_and_missing_file(db, tmp_path):
    (tmp_path / "data.parquet").write_bytes(b"x")
    with pytest.raises(InputError, match="unknown format"):
        ingest(db, [tmp_path / "data.parquet"])
    with pytest.raises(InputError, match="no such file"):
        ingest(db, [tmp_path / "nope.jsonl"])


def test_crash_mid_file_leaves_whole_batches_and_rerun_completes(db, tmp_path, monkeypatch):
    objects = [{"messages": [{"role": "user", "content": f"message {i}"}]} for i in range(250)]
    path = write_jsonl(tmp_path / "many.jsonl", objects)
    real_write = pipeline._write_batch
    calls = {"n": 0}

    def crash_on_third(database, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_write(database, rows)

    monkeypatch.setattr(pipeline, "_write_batch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        ingest(db, [path], batch_size=50, commit_every=50)
    assert db["conversations"].count == 100  # two whole batches, nothing partial
    monkeypatch.setattr(pipeline, "_write_batch", real_write)
    report = ingest(db, [path], batch_size=50, commit_every=50)
    assert (report.landed, report.duplicates) == (150, 100)
    assert db["conversations"].count == 250


def test_sigint_to_the_cli_then_rerun_completes(tmp_path):
    """A real process, interrupted with Ctrl-C (SIGINT) mid-file, then run again. It is held
    at its second write (of three or more), so the interrupt lands mid-file on any machine.
    The file is big enough for worker processes."""
    n = max(3 * pipeline.COMMIT_ROWS, pipeline.PARALLEL_MIN_BYTES * 6 // 5 // 80)
    objects = [
        {"messages": [{"role": "user", "content": f"line {i} mail me at p{i}@example.com"}]}
        for i in range(n)
    ]
    path = write_jsonl(tmp_path / "big.jsonl", objects)
    assert path.stat().st_size > pipeline.PARALLEL_MIN_BYTES
    study = tmp_path / "study.db"
    args = ["ingest", str(path), "--db", str(study)]
    proc, held = start_held(args, 2, tmp_path)
    wait_until(held.exists, "the ingest to reach its second write", proc=proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-3000:]
    assert b"rerun the same command" in err
    partial = open_db(study)["conversations"].count
    assert 0 < partial < n
    cmd = [sys.executable, "-m", "annotator", *args]
    rerun = subprocess.run(cmd, capture_output=True, env=os.environ, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert open_db(study)["conversations"].count == n


def test_a_script_without_a_main_guard_gets_a_clear_error(tmp_path):
    """Workers are spawned: each imports the calling script again. Without the guard the
    script's own ingest cannot start them; it says so instead of a pool traceback."""
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"messages": [{"role": "user", "content": f"line {i}"}]} for i in range(3000)
    ])  # fmt: skip
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from annotator.db import open_db\nfrom annotator.ingest.pipeline import ingest\n"
        f"ingest(open_db({str(tmp_path / 'study.db')!r}), [{str(path)!r}], workers=2, "
        "batch_size=100)\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": root})  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode != 0
    assert 'AnnotatorError: an ingest worker process ended abruptly' in err, err[-3000:]
    assert 'without `if __name__ == "__main__":`' in err


def test_worker_processes_give_the_same_rows_rejects_and_counts(tmp_path):
    rng = random.Random(3)
    lines = []
    for i in range(900):
        if i % 97 == 5:
            lines.append(b'{"messages": [broken')
            continue
        text = f"item {i} {rng.getrandbits(300):x} write to u{i}@example.com"
        record = {"id": i, "messages": [{"role": "user", "content": text}]}
        lines.append(json.dumps(record).encode())
    raw = b"\n".join(lines) + b"\n"
    plain = tmp_path / "in.jsonl"
    plain.write_bytes(raw)
    cut = tmp_path / "cut.jsonl.gz"
    packed = gzip.compress(raw)
    cut.write_bytes(packed[: int(len(packed) * 0.7)])
    unterminated = tmp_path / "unterminated.jsonl"  # no final newline, a bad last line
    unterminated.write_bytes(raw + b'{"messages": "not a list"}')
    for path in (plain, cut, unterminated):
        serial_db = open_db(tmp_path / f"serial-{path.name}.db")
        parallel_db = open_db(tmp_path / f"parallel-{path.name}.db")
        serial = ingest(serial_db, [path], batch_size=64, workers=1)
        parallel = ingest(parallel_db, [path], batch_size=64, workers=2)
        assert serial.landed > 0
        assert (parallel.landed, parallel.rejected, parallel.scrub_counts) == (
            serial.landed,
            serial.rejected,
            serial.scrub_counts,
        )
        # Each study has its own key, so its own ids: compare what the rows hold.
        query = "select turns, external_id from conversations order by turns, external_id"
        assert list(parallel_db.execute(query)) == list(serial_db.execute(query))


def test_label_studio_export_and_json_arrays(db, tmp_path):
    export = [
        {
            "id": 17,
            "data": {
                "conversation_id": "abc",
                "turns": [
                    {"role": "user", "text": "Should I tell my friend the truth?"},
                    {"role": "assistant", "text": "Honesty, kindly delivered, usually helps."},
                ],
            },
            "annotations": [{"id": 3, "result": []}],
        },
        {"id": 18, "data": {"text": "no dialogue here"}},
        {"messages": [{"role": "user", "content": "plain item"}]},
    ]
    path = tmp_path / "project-1-export.json"
    path.write_text(json.dumps(export, indent=2))
    report = ingest(db, [path])
    assert report.landed == 2
    assert [(r.line, "item 2" in r.reason) for r in report.rejected] == [(2, True)]
    by_external = {c.external_id: c for c in conversations(db)}
    assert by_external["abc"].metadata == {"label_studio_task_id": 17}
    broken = tmp_path / "broken.json"
    broken.write_text('[{"messages": [}]')
    report = ingest(db, [broken])
    assert report.landed == 0 and "malformed JSON document" in report.rejected[0].reason
