"""Gold import, majority adjudication, a person's decision, the gold file and the export.

Real SQLite files and the bundled gold/ set; no fakes.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from annotator import config
from annotator.db import open_db
from annotator.errors import AnnotatorError
from annotator.export import ExportFilter, ExportFormat, ExportRecord, export, render_export
from annotator.gold import (
    adjudicate,
    decide,
    import_gold,
    majority_label,
    read_gold,
    write_gold_file,
)
from annotator.models import AnnotatorLabels, Labels, ResponseType

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
    study["gold"].update(conversation_id, {"response_type": None})
    report = export(study, tmp_path / "out.jsonl")
    assert [c for c, _ in report.invalid] == [conversation_id]
    assert "response_type" in report.invalid[0][1]
    assert report.exported == study["gold"].count - 1


def test_export_without_gold_says_what_to_run(tmp_path):
    with pytest.raises(AnnotatorError, match="annotator adjudicate"):
        export(open_db(tmp_path / "empty.db"), tmp_path / "out.jsonl")
