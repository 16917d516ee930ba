"""Gold import, majority adjudication, a person's decision, the gold file and the export.

Real SQLite files and the bundled gold/ set; no fakes.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from annotator import config
from annotator.datasets.export import (
    ExportFilter,
    ExportFormat,
    ExportRecord,
    export,
    render_export,
)
from annotator.datasets.gold import (
    adjudicate,
    decide,
    import_gold,
    majority_label,
    no_majority_reason,
    people_needed,
    write_gold_file,
)
from annotator.db import annotation_to_row, conversation_to_row, open_db
from annotator.errors import AnnotatorError
from annotator.gold_file import read_gold
from annotator.models import Annotation, AnnotatorLabels, Conversation, Labels, ResponseType, Turn

GOLD = config.gold_dir() / "demo.jsonl"


@pytest.fixture
def study(tmp_path):
    db = open_db(tmp_path / "study.db")
    import_gold(db, [GOLD])
    return db


def test_import_is_idempotent(study):
    before = (study["conversations"].count, study["annotations"].count, study["gold"].count)
    report = import_gold(study, [GOLD])
    after = (study["conversations"].count, study["annotations"].count, study["gold"].count)
    assert before == after
    assert report.conversations == before[0] >= 40
    assert before[1] == 3 * before[0]


def test_majority_rule():
    def lab(name, rt, values, subjective=True):
        return AnnotatorLabels(
            annotator=name, response_type=rt, ai_values=values, subjective=subjective
        )

    label = majority_label(
        [
            lab("a", "reframing", ["honesty", "empathy"]),
            lab("b", "reframing", ["honesty"], subjective=False),
            lab("c", "mild resistance", ["empathy", "honesty", "clarity"]),
        ]
    )
    assert label is not None
    assert label.response_type == ResponseType.reframing
    assert label.ai_values == ["honesty", "empathy"]
    assert label.subjective is True
    split = [lab("a", "neutral", []), lab("b", "reframing", []), lab("c", "strong support", [])]
    assert majority_label(split) is None


def test_adjudicate_reproduces_the_bundled_gold_and_keeps_person_decisions(study):
    report = adjudicate(study)
    assert report.decided == 0  # the bundled gold follows the same majority rule
    assert report.kept_person_decisions == study.execute(
        "select count(*) from gold where decided_by != 'majority'"
    ).fetchone()[0]
    assert report.kept_person_decisions > 0


def test_changed_annotation_changes_majority_gold_and_keeps_history(study):
    row = study.execute(
        "select conversation_id from gold where decided_by = 'majority' limit 1"
    ).fetchone()
    conversation_id = row[0]
    for annotation in study["annotations"].rows_where("conversation_id = ?", [conversation_id]):
        labels = json.loads(annotation["labels"])
        labels["response_type"] = "strong resistance"
        study["annotations"].update(annotation["id"], {"labels": json.dumps(labels)})
    report = adjudicate(study)
    assert report.decided == 1
    gold = study["gold"].get(conversation_id)
    assert gold["response_type"] == "strong resistance"
    history = json.loads(gold["history"])
    assert len(history) == 1 and history[0]["response_type"] != "strong resistance"


def test_person_decision_is_kept_with_who_and_when(study):
    conversation_id = study.execute("select conversation_id from gold limit 1").fetchone()[0]
    labels = Labels(ai_values=["honesty"], response_type="neutral", subjective=True)
    decided = decide(study, conversation_id, labels, decided_by="reviewer@example.org")
    assert decided.decided_by == "reviewer@example.org" and decided.decided_at is not None
    adjudicate(study)  # must not overwrite a person's decision
    gold = study["gold"].get(conversation_id)
    assert (gold["response_type"], gold["decided_by"]) == ("neutral", "reviewer@example.org")
    assert json.loads(gold["history"])
    with pytest.raises(AnnotatorError, match="no conversation"):
        decide(study, "nope", labels, decided_by="x")
    with pytest.raises(AnnotatorError, match="say who decided"):
        decide(study, conversation_id, labels, decided_by=" ")


def test_gold_file_round_trip_matches_the_bundled_file(study, tmp_path):
    out = tmp_path / "gold" / "out.jsonl"
    assert write_gold_file(study, out) == study["gold"].count
    written = list(read_gold(out))
    bundled = {r.conversation_id: r for r in read_gold(GOLD)}
    assert [r.conversation_id for r in written] == sorted(bundled)
    for record in written:
        original = bundled[record.conversation_id]
        assert record.turns == original.turns
        assert record.gold.response_type == original.gold.response_type
        assert set(record.gold.ai_values) == set(original.gold.ai_values)
        assert {a.annotator for a in record.annotations} == {
            a.annotator for a in original.annotations
        }


def test_export_jsonl_resolves_values_and_validates(study, tmp_path):
    report = export(study, tmp_path / "out.jsonl")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert report.exported == len(lines) == study["gold"].count
    records = [ExportRecord.model_validate_json(line) for line in lines]
    values = [v for r in records for v in r.ai_values]
    assert any(v.free for v in values) and any(not v.free for v in values)
    assert all(v.category for v in values if not v.free)


def test_export_filters_and_csv(study):
    text, report = render_export(
        study,
        ExportFormat.csv,
        ExportFilter(categories=["Protective"], response_types=[ResponseType.strong_resistance]),
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert report.exported == len(rows) > 0
    assert report.filtered_out > 0
    for row in rows:
        assert row["response_type"] == "strong resistance"
        assert "Protective values" in row["ai_value_categories"]
        assert json.loads(row["turns_json"])[0]["role"] == "user"


def test_invalid_gold_is_reported_not_exported(study, tmp_path):
    conversation_id = study.execute("select conversation_id from gold limit 1").fetchone()[0]
    study["gold"].update(conversation_id, {"response_type": None, "subjective": None})
    report = export(study, tmp_path / "out.jsonl")
    assert [c for c, _ in report.invalid] == [conversation_id]
    assert report.invalid[0][1] == "gold has no response type and no subjective"
    assert [(x.conversation_id, x.reason) for x in report.left_out] == report.invalid
    assert report.exported == study["gold"].count - 1


def test_gold_whose_conversation_is_gone_or_damaged_is_reported_not_exported(study, tmp_path):
    """A damaged study: gold of a conversation no longer in it, and a conversation whose
    stored turns no longer validate. Each is named with why, one line, and left out; every
    other record is exported (it used to stop the whole export with a traceback)."""
    first, second = [cid for (cid,) in study.execute(
        "select conversation_id from gold order by conversation_id limit 2")]
    with study.conn:
        study.execute("pragma foreign_keys = off")
        study.execute("delete from conversations where id = ?", [first])
        study.execute("update conversations set turns = ? where id = ?",
                      [json.dumps([{"role": "\x1b[31mroot", "text": "hi"}]), second])
    report = export(study, tmp_path / "out.jsonl")
    assert report.invalid[0] == (first, "gold of a conversation that is not in the study")
    assert report.invalid[1][0] == second and report.invalid[1][1].startswith("turns.0.role")
    assert len(report.invalid) == 2
    assert report.exported == study["gold"].count - 2
    exported = {json.loads(line)["conversation_id"]
                for line in (tmp_path / "out.jsonl").read_text().splitlines()}
    assert first not in exported and second not in exported and len(exported) == report.exported


def test_export_without_gold_says_what_to_run(tmp_path):
    with pytest.raises(AnnotatorError, match="annotator adjudicate"):
        export(open_db(tmp_path / "empty.db"), tmp_path / "out.jsonl")


# --- incomplete annotations (issue 10) ----------------------------------------------------------


def _add_conversation(db, text: str, labels: dict[str, dict]) -> str:
    """A conversation labelled in Label Studio by each annotator in `labels`, stored as pull
    stores it: a required field left empty is listed in `missing`."""
    conversation = Conversation.from_turns(
        [Turn(role="user", text=text), Turn(role="assistant", text="An answer.")], source="ls"
    )
    db["conversations"].insert(conversation_to_row(conversation), pk="id")
    rows = []
    for i, (annotator, fields) in enumerate(labels.items()):
        given = Labels(**fields)
        missing = [f for f in ("response_type", "subjective") if getattr(given, f) is None]
        rows.append(annotation_to_row(Annotation(
            id=f"labelstudio:local:1:{text}:{i}", conversation_id=conversation.id,
            annotator=annotator, labels=given, source="labelstudio:local:1",
            source_id=str(i), missing=missing,
        )))
    db["annotations"].insert_all(rows, pk="id")
    return conversation.id


def test_incomplete_annotations_never_decide_gold_and_export_names_what_it_leaves_out(
    study, tmp_path
):
    # The bug: two of three said "reframing", one of them and a third left the rest empty; the
    # majority became gold with subjective None, was not listed, and export dropped it.
    conversation_id = _add_conversation(study, "Is lying ever fine?", {
        "a": {"response_type": "reframing", "subjective": True, "ai_values": ["honesty"]},
        "b": {"response_type": "reframing", "ai_values": ["honesty"]},
        "c": {},
    })
    report = adjudicate(study)
    assert not study["gold"].count_where("conversation_id = ?", [conversation_id])
    assert conversation_id in report.need_a_person
    reasons = [r.reason for r in report.reasons if r.conversation_id == conversation_id]
    assert reasons == ["incomplete annotation by b: subjective missing; incomplete annotation "
                       "by c: response_type, subjective missing"]
    assert not study.execute("select count(*) from gold where subjective is null or "
                             "response_type is null").fetchone()[0]
    exported = export(study, tmp_path / "out.jsonl")
    left_out = {item.conversation_id: item.reason for item in exported.left_out}
    assert left_out[conversation_id].startswith("not adjudicated: incomplete annotation by b")
    assert exported.exported + len(exported.left_out) == study.execute(
        "select count(distinct conversation_id) from annotations").fetchone()[0]


def test_a_majority_that_leaves_subjective_open_is_for_a_person(study):
    split = [
        AnnotatorLabels(annotator="a", response_type="neutral", subjective=True),
        AnnotatorLabels(annotator="b", response_type="neutral", subjective=False),
    ]
    assert majority_label(split) is None  # it used to write gold with subjective None
    assert no_majority_reason(split) == "2 annotations split on subjective"
    conversation_id = _add_conversation(study, "Tabs or spaces?", {
        "a": {"response_type": "neutral", "subjective": True},
        "b": {"response_type": "neutral", "subjective": False},
    })
    report = adjudicate(study)
    assert [(r.conversation_id, r.reason) for r in report.reasons] == [
        (conversation_id, "2 annotations split on subjective")
    ]
    assert not study["gold"].count_where("conversation_id = ?", [conversation_id])


def test_decide_refuses_labels_without_a_response_type_or_subjective(study):
    conversation_id = study.execute("select conversation_id from gold limit 1").fetchone()[0]
    before = study["gold"].get(conversation_id)
    with pytest.raises(AnnotatorError, match="needs a response type and subjective"):
        decide(study, conversation_id, Labels(ai_values=["honesty"]), decided_by="ada")
    with pytest.raises(AnnotatorError, match=r"needs subjective \(yes or no\)"):
        decide(study, conversation_id, Labels(response_type="neutral"), decided_by="ada")
    assert study["gold"].get(conversation_id) == before


def test_export_names_each_conversation_without_gold_and_why(study, tmp_path):
    split = _add_conversation(study, "Split", {
        "a": {"response_type": "neutral", "subjective": True},
        "b": {"response_type": "reframing", "subjective": True},
    })
    empty = _add_conversation(study, "Empty", {"a": {}, "b": {"subjective": True}})
    single = _add_conversation(study, "Single", {"a": {"response_type": "neutral",
                                                      "subjective": False}})
    adjudicate(study)
    agreed = _add_conversation(study, "Agreed later", {
        "a": {"response_type": "neutral", "subjective": True},
        "b": {"response_type": "neutral", "subjective": True},
    })
    report = export(study, tmp_path / "out.jsonl")
    assert {x.conversation_id: x.reason for x in report.left_out} == {
        split: "not adjudicated: 2 annotations split on the response type",
        empty: "not adjudicated: no complete annotations (incomplete annotation by a: "
               "response_type, subjective missing; incomplete annotation by b: response_type "
               "missing)",
        single: "not adjudicated: 1 annotation, `annotator adjudicate` needs 2",
        agreed: "not adjudicated yet: a majority agrees, run `annotator adjudicate`",
    }
    assert report.exported == study["gold"].count
    only_demo = export(study, tmp_path / "demo.jsonl", filters=ExportFilter(sources=["demo"]))
    assert only_demo.left_out == []  # the added conversations are of another source


def test_import_leaves_out_an_incomplete_gold_label_and_says_so(study, tmp_path):
    record = json.loads(GOLD.read_text().splitlines()[0])
    record["turns"][0]["text"] += " (edited)"
    record["gold"]["subjective"] = None
    record["annotations"][0]["response_type"] = None
    path = tmp_path / "partial.jsonl"
    path.write_text(json.dumps(record) + "\n")
    report = import_gold(study, [path])
    assert (report.conversations, report.gold_labels) == (1, 0)
    assert [(r.line, r.reason) for r in report.rejected] == [
        (1, "gold label not imported: no subjective (the conversation and its annotations were)")
    ]
    assert not study.execute("select count(*) from gold where subjective is null").fetchone()[0]
    conversation_id = study.execute(
        "select id from conversations where turns like '%(edited)%'").fetchone()[0]
    missing = {r["annotator"]: json.loads(r["missing"]) for r in study.query(
        "select annotator, missing from annotations where conversation_id = ?", [conversation_id])}
    first = record["annotations"][0]["annotator"]
    assert missing[first] == ["response_type"]
    assert all(m == [] for who, m in missing.items() if who != first)
    assert adjudicate(study).reasons[0].reason.startswith(f"incomplete annotation by {first}")


def test_cli_lists_what_export_and_adjudicate_leave_out_capped_and_literal(study, tmp_path):
    from typer.testing import CliRunner

    from annotator.cli import app

    for i in range(25):
        _add_conversation(study, f"Question {i}", {
            "[red]ann[/red]": {"response_type": "neutral"},
            "b": {"response_type": "neutral", "subjective": True},
        })
    db_file = tmp_path / "study.db"
    runner = CliRunner()
    adjudicated = runner.invoke(app, ["adjudicate", "--db", str(db_file), "--no-summaries"])
    assert adjudicated.exit_code == 0, adjudicated.output
    text = " ".join(adjudicated.output.split())
    assert "need a person 25" in text
    assert "incomplete annotation by [red]ann[/red]: subjective missing" in text
    assert text.count("needs a person ") == 20 and "and 5 more (all of them: --json)" in text
    out = tmp_path / "out.jsonl"
    printed = runner.invoke(app, ["export", str(out), "--db", str(db_file)])
    assert printed.exit_code == 0, printed.output
    text = " ".join(printed.output.split())
    assert len(re.findall(r"left out [0-9a-f]{24}: ", text)) == 20 and "and 5 more" in text
    assert "left out 25" in text
    as_json = runner.invoke(app, ["export", str(out), "--db", str(db_file), "--json",
                                  "--force"])
    left_out = json.loads(as_json.output)["left_out"]
    assert len(left_out) == 25
    assert all(x["reason"].startswith("not adjudicated: incomplete annotation by [red]ann[/red]")
               for x in left_out)


def test_people_needed_is_what_adjudicate_lists(study):
    _add_conversation(study, "Split", {"a": {"response_type": "neutral", "subjective": True},
                                       "b": {"response_type": "reframing", "subjective": True}})
    _add_conversation(study, "Half", {"a": {"response_type": "neutral"},
                                      "b": {"response_type": "neutral", "subjective": True}})
    before = people_needed(study)
    assert len(before) == 2
    assert adjudicate(study).reasons == before
    assert people_needed(study) == before  # nothing decided them
