"""The export's plain path (`datasets.plain`: stored labels, votes and gold read as tuples, a
record written without a model when it needs no validation) gives what the models gave.

Real SQLite files and the real export, no fakes:
- stored labels, votes and gold rows of every shape hypothesis makes (other types, unknown
  keys, JSON that is not an object, JSON orjson refuses) read as tuples against the models:
  the same values, or the same refusal;
- a study of a few thousand conversations with hostile rows (invalid turns, empty value
  names, labels in old and coerced shapes, votes set aside, flags, majority gold the
  annotations no longer give, a person's decisions with and without a digest) exported in
  every format, validated and gold, with each filter: the same files, byte for byte (Parquet:
  the same table), and the same report as the code before (`export_oracle`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from export_oracle import decisions as oracle_decisions
from export_oracle import export_records as oracle_export_records
from export_oracle import proposal_records as oracle_proposal_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from test_export_formats import _files_of, _report_of, target

from annotator.datasets import export as export_module
from annotator.datasets import gold as gold_module
from annotator.datasets.export import export
from annotator.datasets.gold import labels_seen
from annotator.datasets.plain import (
    GOLD_COLUMNS,
    PlainLabels,
    plain_gold,
    plain_labels,
    plain_vote,
)
from annotator.datasets.records import ExportFilter
from annotator.db import EVERY_ID, VOTE_COLUMNS, open_db, row_to_gold, vote_to_annotation
from annotator.errors import AnnotatorError
from annotator.models import Labels

NAMES = ["Transparency", "honesty", "  helpfulness ", "efficiency", "Clarity", "Ünïcode ☃",
         "a \"quoted\" name", "", "   ", "x" * 300, "emoji 🙂", "new\nline",
         "=cmd|' /C calc'!A0", "nul \u0000 inside", "\u202eevil", "free value"]
RESPONSE_TYPES = ["strong support", "mild support", "neutral", "reframing", "no values"]

# what a stored JSON field may hold: right, of another type, or what pydantic coerces
_field_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.floats(allow_nan=False),
    st.sampled_from([*RESPONSE_TYPES, "Neutral", "true", "1", "", "maybe"]),
    st.lists(st.one_of(st.sampled_from(NAMES), st.integers(), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_label_objects = st.dictionaries(
    st.sampled_from([*PlainLabels._fields, "extra", "Subjective"]), _field_values, max_size=8)


def _model_labels(raw: str | bytes) -> tuple[Any, ...] | type:
    try:
        labels = Labels.model_validate_json(raw)
    except ValidationError:
        return ValidationError
    return tuple(getattr(labels, name) for name in PlainLabels._fields)


def _plain(raw: str | bytes) -> tuple[Any, ...] | type:
    try:
        return tuple(plain_labels(raw))
    except ValidationError:
        return ValidationError


def _typed(values: tuple[Any, ...] | type) -> object:
    """Values with their types: True and 1 are not the same label."""
    if not isinstance(values, tuple):
        return values
    return [(type(v), v) for v in values]


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    _label_objects.map(lambda d: json.dumps(d, ensure_ascii=False)),
    st.sampled_from(['[]', '"x"', 'null', '{', '{"ai_values": ["\\ud800"]}', '',
                     '{"ai_values": ["a"], "ai_values": 3}', '{"subjective": 1e400}']),
))
def test_stored_labels_read_as_tuples_equal_the_model(raw: str) -> None:
    assert _typed(_plain(raw)) == _typed(_model_labels(raw))


_vote_rows = st.tuples(
    st.sampled_from(["a1", "a 2"]), st.just("c1"), st.one_of(st.sampled_from(NAMES), st.none(),
                                                             st.integers()),
    _label_objects.map(lambda d: json.dumps(d, ensure_ascii=False)),
    st.sampled_from([None, "", "import:x"]), st.sampled_from([None, "7"]),
    st.sampled_from([None, "", "[]", '["subjective"]', '["response_type", "subjective"]',
                     '[1]', '"x"', '{}']),
    st.sampled_from([None, "", "a1", "someone else", 3]), st.sampled_from([None, "check"]),
    st.sampled_from([None, 1.5, 2]), st.just(0), st.just(0),
    st.sampled_from([None, "2026-01-02T03:04:05+00:00"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_vote_rows)
def test_a_vote_read_as_a_tuple_equals_the_annotation(row: tuple[Any, ...]) -> None:
    assert len(row) == len(VOTE_COLUMNS)
    try:
        annotation = vote_to_annotation(row)
    except ValidationError:  # said in a line that names the row
        with pytest.raises(AnnotatorError, match="annotation 'a1' of conversation 'c1'|"
                                                 "annotation 'a 2' of conversation 'c1'"):
            plain_vote(row)
        return
    vote = plain_vote(row)
    model = tuple(getattr(annotation.labels, name) for name in PlainLabels._fields)
    assert _typed(tuple(vote.labels)) == _typed(model)
    assert vote.missing == tuple(annotation.missing)
    assert (vote.annotator, vote.edited_by, vote.own) == (
        annotation.annotator, annotation.edited_by, not annotation.edited_by_other)


@settings(max_examples=300, deadline=None)
@given(st.tuples(
    *(st.one_of(st.just('["Transparency", "care"]'), st.just("[]"), st.none(),
                st.just('[1]'), st.just('"x"')) for _ in range(2)),
    st.sampled_from([None, *RESPONSE_TYPES, "bogus"]), st.sampled_from([None, 0, 1, 2]),
    st.sampled_from([None, "coding", 4]), st.sampled_from([None, "a task"]),
    st.sampled_from(["majority", "Ana", None]),
    st.sampled_from([None, "", "2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05Z"]),
    st.sampled_from([None, "[]", '["a1"]', "[2]"]),
))
def test_a_gold_row_read_as_a_tuple_equals_the_model(values: tuple[Any, ...]) -> None:
    try:
        gold = row_to_gold(dict(zip(GOLD_COLUMNS, values, strict=True)))
    except ValidationError:  # said in a line that names the conversation
        with pytest.raises(AnnotatorError, match="the gold of conversation 'c1' holds what"):
            plain_gold("c1", values)
        return
    plain = plain_gold("c1", values)
    assert _typed(tuple(plain)) == _typed(tuple(getattr(gold, name)
                                                for name in plain._fields))


def _hostile_study(path: Path, n: int = 3_000) -> None:
    """Conversations, annotations and gold in the shapes the study stores, and the others."""
    db = open_db(path)
    rng = np.random.default_rng(11)
    conversations, annotations, gold = [], [], []

    def pick() -> list[str]:
        return [NAMES[i] for i in rng.choice(len(NAMES), size=int(rng.integers(0, 4)))]

    for i in range(n):
        cid = f"c{i:05d}"
        turns: Any = [{"role": "user", "text": f"hello {i}"},
                      {"role": "assistant", "text": NAMES[i % len(NAMES)]}]
        if i % 97 == 0:
            turns = []  # refused: a record needs a turn
        elif i % 89 == 0:
            turns[0] = {"role": "tool", "text": "x"}  # refused: not a role
        elif i % 83 == 0:
            turns[1] = {"text": "assistant first", "role": "assistant", "meta": 1}  # extra key
        elif i % 79 == 0:
            turns[1] = {"role": "assistant", "text": 5}
        elif i % 73 == 0:
            turns = {"role": "user"}
        elif i % 71 == 0:
            turns[0] = {"role": ["user"], "text": "a role that is a list"}
        if i % 211 != 0:  # some gold of a conversation the study does not have
            conversations.append((cid, ["web", "api", "file ☃"][i % 3],
                                  None if i % 4 else f"ext-{i}", orjson.dumps(turns).decode()))
        votes = []
        # the annotators mostly agree (gold below is what they agree on), one in five not
        agreed = {"ai_values": pick(), "human_values": pick()[:1],
                  "response_type": RESPONSE_TYPES[i % 2], "subjective": i % 5 != 0}
        for k in range(int(rng.integers(0, 5))):
            labels: dict[str, Any] = dict(agreed) if rng.random() < 0.8 else {
                "ai_values": pick(), "human_values": pick()[:1],
                "response_type": RESPONSE_TYPES[int(rng.integers(0, 5))],
                "subjective": bool(rng.integers(0, 4)),
            }
            if i % 13 == 0:  # gold keeps its description where the forms give none
                labels["task"] = "coding"
                labels["task_description"] = None if i % 26 == 0 else f"task {i}"
            if i % 17 == 0:
                labels["notes"] = "a note"
            if i % 19 == 0:
                labels["subjective"] = 1  # coerced by the model
            if i % 23 == 0:
                del labels["human_values"]  # stored before the field existed
            if i % 29 == 0:
                labels["extra"] = [1]
            missing = '["subjective"]' if i % 31 == 0 and k == 0 else "[]"
            edited_by = "someone else" if i % 37 == 0 and k == 1 else (
                f"annotator {k}" if i % 41 == 0 else None)
            flag = "check" if i % 43 == 0 and k == 2 else None
            votes.append((f"a{i}-{k}", cid, f"annotator {k}", orjson.dumps(labels).decode(),
                          None, None, missing, edited_by, flag, float(k), int(i % 53 == 0),
                          int(i % 59 == 0 and k == 0), f"2026-01-0{1 + k}T00:00:00+00:00"))
        annotations.extend(votes)
        if i % 7 == 6:
            continue  # annotated, no gold
        decided_by, seen = "majority", None
        if i % 11 == 0:
            decided_by = "Ana"
            live = [vote_to_annotation(v) for v in votes if not v[10] and not v[11]]
            seen = labels_seen(live) if i % 22 == 0 else None
        gold.append((cid, orjson.dumps(agreed["ai_values"] if i % 9 else pick()).decode(),
                     orjson.dumps(agreed["human_values"]).decode(),
                     None if i % 101 == 0 else RESPONSE_TYPES[i % 2],
                     None if i % 103 == 0 else int(i % 5 != 0), decided_by,
                     None if i % 3 == 0 else "2026-01-02T00:00:00+00:00",
                     "coding" if i % 13 == 0 else None, None if i % 26 else f"task {i}", seen))
    extractions, calls = _proposals(rng, n)
    with db.conn:
        db.conn.executemany(
            "insert into prompts (id, name, version, text, front_matter) values (?, ?, ?, 't', "
            "'{}')", [("p1", "values", "1")])  # "p 2/ü" has no row
        db.conn.executemany(
            f"insert into extractions ({', '.join(EXTRACTION_COLUMNS)}) values "
            f"({', '.join('?' * len(EXTRACTION_COLUMNS))})", extractions)
        db.conn.executemany(
            "insert into model_calls (conversation_id, prompt_id, model, duration_ms) values "
            "(?, ?, ?, ?)", calls)
        db.conn.executemany(
            "insert into conversations (id, source, external_id, turns, metadata, scrubbed, "
            "ingested_at) values (?, ?, ?, ?, '{}', 1, 't')", conversations)
        db.conn.executemany(
            f"insert into annotations ({', '.join(VOTE_COLUMNS)}, history) values "
            f"({', '.join('?' * len(VOTE_COLUMNS))}, '[]')", annotations)
        db.conn.executemany(
            "insert into gold (conversation_id, ai_values, human_values, response_type, "
            "subjective, decided_by, decided_at, task, task_description, labels_seen, "
            "from_annotations, history) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', '[]')",
            gold)
    db.conn.close()


EXTRACTION_COLUMNS = ("conversation_id", "prompt_id", "model", "extractor", "subjective",
                      "ai_values", "human_values", "response_type", "status", "error",
                      "raw_reply", "input_tokens", "output_tokens", "cache_read_tokens",
                      "cache_write_tokens", "cost_usd", "attempts", "created_at", "task",
                      "task_description")
TIMES = ["2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05.250000+00:00",
         "2026-01-02T03:04:05", "2026-01-02T03:04:05Z", "2026-01-02", "t", "1700000000"]


def _proposals(rng: np.random.Generator, n: int) -> tuple[list[tuple], list[tuple]]:
    """Extractions of two prompt versions in the stored shape, and in the others."""
    rows, calls = [], []
    for i in range(0, n, 2):
        cid = f"c{i:05d}"
        for prompt in ("p1", "p 2/ü"):
            refs: list[Any] = [
                {"name": NAMES[j], "node_id": None if j % 2 else "honesty",
                 "path": ["a", "b"], "evidence": None if j % 3 else f"quote {j}",
                 "score": None if j % 4 else 0.5}
                for j in rng.choice(len(NAMES), size=int(rng.integers(0, 4)))]
            if i % 58 == 0 and refs:
                refs[0]["score"] = 1  # an int the model makes 1.0
            elif i % 62 == 0:
                refs.append("a bare name")  # refused: a value is an object
            elif i % 66 == 0 and refs:
                refs[0]["path"] = "a/b"  # refused
            elif i % 70 == 0 and refs:
                refs[0]["node_id"] = "no such node"  # resolved anew by its name
                refs[0]["extra"] = {"x": 1}
            row = [cid, prompt, "m", "x", [1, 0, None, 2][i % 4], orjson.dumps(refs).decode(),
                   orjson.dumps(refs[:1]).decode() if i % 3 else None,
                   [*RESPONSE_TYPES, None][i // 2 % 6], "ok", None, "reply", 10, 20, 0, 0, 0.01, 1,
                   TIMES[0] if i % 10 else TIMES[i // 10 % len(TIMES)], None,
                   "a task" if i % 8 == 0 else None]
            if i % 74 == 0:
                row[8], row[9] = "error", "the reply was not JSON"
            elif i % 78 == 0:
                row[7] = "bogus"
            elif i % 82 == 0:
                row[15], row[12] = "free", 3.5  # refused: a cost and a count are numbers
            elif i % 86 == 0:
                row[11] = None  # refused: tokens are a number
            elif i % 90 == 0:
                row[10] = b"\x00reply"  # a blob, which the model reads as text
            rows.append(tuple(row))
            if i % 4 == 0:
                calls.extend([(cid, prompt, "m", 120), (cid, prompt, "m", 30.5)][:1 + i % 8 // 4])
    return rows, calls


FILTERS = [
    ExportFilter(),
    ExportFilter(sources=["api", "file ☃"], include_annotations=False),
    ExportFilter(response_types=["mild support"], categories=["Epistemic", "Practical"]),
    ExportFilter(decided_by_person_only=True, subjective_only=True, min_annotations=2),
]


@pytest.mark.parametrize("what", ["validated", "gold", "proposals"])
def test_the_plain_export_writes_what_the_models_wrote(tmp_path: Path, monkeypatch,
                                                       what: str) -> None:
    study = tmp_path / "study.db"
    _hostile_study(study)
    db = open_db(study)

    def each_export(folder: Path) -> list[tuple[object, dict]]:
        folder.mkdir()
        made = []
        for n, chosen in enumerate(FILTERS if what != "proposals" else FILTERS[:3]):
            for fmt in (["jsonl", "csv", "parquet", "hf"] if n == 0 else ["jsonl"]):
                out = target(folder, fmt, f"out{n}")
                report = export(db, out, fmt, chosen, what)
                made.append((_files_of(out, fmt), _report_of(report)))
        return made

    plain = each_export(tmp_path / "plain")
    monkeypatch.setattr(export_module, "export_records", oracle_export_records)
    monkeypatch.setattr(export_module, "proposal_records", oracle_proposal_records)
    models = each_export(tmp_path / "models")
    for (plain_file, plain_report), (model_file, model_report) in zip(plain, models,
                                                                      strict=True):
        assert plain_file == model_file
        assert plain_report == model_report
    report = plain[0][1]
    reasons = " ".join(why for _, why in report["invalid"])
    if what == "proposals":
        for said in ("Input should be an object", "path", "response_type", "input_tokens",
                     "created_at", "not in the study"):
            assert said in reasons
        assert report["exported"] > 2_000 and report["stats"]["statuses"]["error"] > 10
        return
    # every kind of refusal and leaving out happened, and most records were written
    for said in ("turns", "a value has an empty name", "not in the study", "gold has no"):
        assert said in reasons
    assert any("no longer decided" in x["reason"] for x in report["left_out"])
    assert any("not adjudicated" in x["reason"] for x in report["left_out"])
    assert report["exported"] > 500 and report["stats"]["decided_by_person"] > 20
    assert report["stats"]["new_labels_since"] > 0


def _timeless(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gold rows without the moments they were decided or re-opened (now, each run)."""
    out = []
    for row in rows:
        history = [{k: v for k, v in h.items() if k != "decided_at"}
                   for h in orjson.loads(row["history"])]
        out.append({**{k: v for k, v in row.items() if k not in ("decided_at", "reopened_at")},
                    "history": history})
    return out


def test_adjudicate_decides_what_the_models_decided(tmp_path: Path) -> None:
    """`adjudicate`'s decisions from plain votes and gold: the same report, the same gold
    rows and the same re-opened labels as with a model per vote and per majority."""
    study = tmp_path / "study.db"
    _hostile_study(study)
    db = open_db(study)
    report, decided, reopening = gold_module._decisions(db, 2, EVERY_ID)
    want_report, want_decided, want_reopening = oracle_decisions(db, 2)
    assert report.model_dump() == want_report.model_dump()
    assert _timeless(decided) == _timeless(want_decided)
    assert _timeless(reopening) == _timeless(want_reopening)
    assert report.decided > 100 and report.unchanged > 100 and report.reopened
    assert report.need_a_person and report.new_labels_since and report.set_aside


@pytest.mark.parametrize("damaged", [
    ("annotations", "labels", '{"response_type": "bogus"}', "annotation 'a5-0'"),
    ("annotations", "missing", "[not json", "annotation 'a5-0'"),
    ("gold", "decided_at", "not a time", "the gold of conversation 'c00005'"),
    ("gold", "ai_values", "[1, 2]", "the gold of conversation 'c00005'"),
])
def test_a_row_changed_outside_the_tool_is_one_line_and_nothing_is_written(
        tmp_path: Path, damaged: tuple[str, str, str, str]) -> None:
    """The command line, on a study one of whose rows another program wrote in a shape the
    models refuse: `export` and `adjudicate` say which row in one line (no traceback), and
    write nothing: the earlier export stays, gold is as it was."""
    from typer.testing import CliRunner

    from annotator.cli import app

    study = tmp_path / "study.db"
    _hostile_study(study, n=300)
    runner = CliRunner()
    out = tmp_path / "v.jsonl"
    runner.invoke(app, ["export", str(out), "--db", str(study)])  # 1: invalid gold left out
    before = out.read_bytes()
    table, column, value, named = damaged
    db = open_db(study)
    key = "id = 'a5-0'" if table == "annotations" else "conversation_id = 'c00005'"
    with db.conn:
        db.execute(f"update {table} set {column} = ? where {key}", [value])
    gold_before = list(db.execute("select * from gold order by conversation_id"))
    for command in (["export", str(out), "--db", str(study), "--force"],
                    ["adjudicate", "--db", str(study), "--no-summaries"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (command, result.output)
        assert named in result.output and "cannot read" in result.output, result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) <= 3, result.output  # a line, wrapped
    assert out.read_bytes() == before
    assert list(db.execute("select * from gold order by conversation_id")) == gold_before
