"""`annotator import-labels`: labels from JSONL or CSV files, without Label Studio."""

from __future__ import annotations

import json

from conftest import make_study, rows, value_names
from typer.testing import CliRunner

from annotator import db as db_module
from annotator.cli import app
from annotator.datasets.import_labels import import_labels
from annotator.models import Annotation, Labels

runner = CliRunner()


def study_with_external_ids(tmp_path, n: int = 6):
    path = tmp_path / "study.db"
    convs = make_study(path, n=n)
    database = db_module.open_db(path)
    with database.conn:
        for i, c in enumerate(convs):
            database.execute("update conversations set external_id = ? where id = ?",
                             [f"ext-{i}", c.id])
    database.conn.close()
    return path, convs


def write_jsonl(path, records) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))


def test_jsonl_and_csv_land_with_values_resolved_and_free_ones_flagged(tmp_path) -> None:
    path, convs = study_with_external_ids(tmp_path)
    names = value_names(5)
    jsonl = tmp_path / "alice.jsonl"
    write_jsonl(jsonl, [
        {"conversation": convs[0].id, "ai_values": [names[0].upper(), "Totally Made Up"],
         "human_values": [names[1]], "response_type": "mild support", "subjective": True},
        {"conversation": convs[1].id[:10], "ai_values": [names[2]],
         "response_type": "strong_resistance", "subjective": "no"},
        {"conversation": "ext-2", "ai_values": [], "response_type": "no values",
         "subjective": "yes", "notes": "short"},
    ])
    csv_file = tmp_path / "bob.csv"
    csv_file.write_text(
        "conversation,annotator,ai_values,human_values,response_type,subjective\n"
        f"{convs[0].id},bob,{names[0]}; {names[3]},,mild support,true\n"
        f"ext-1,bob,,,,\n"
    )
    result = runner.invoke(app, ["import-labels", str(jsonl), str(csv_file), "--annotator",
                                 "alice", "--db", str(path), "--no-summaries"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "5 rows read from 2 files: 5 new" in out
    assert "1 incomplete" in out and "1 values outside the taxonomy" in out
    assert "Totally Made Up (1)" in out
    got = {(r[0], r[1]): r for r in rows(
        path, "select conversation_id, annotator, labels, source, missing, id from annotations")}
    labels = json.loads(got[(convs[0].id, "alice")][2])
    assert labels["ai_values"] == [names[0], "Totally Made Up"]  # resolved to the tree's name
    assert labels["human_values"] == [names[1]] and labels["subjective"] is True
    assert json.loads(got[(convs[1].id, "alice")][2])["response_type"] == "strong resistance"
    assert json.loads(got[(convs[2].id, "alice")][2])["notes"] == "short"
    bob = got[(convs[0].id, "bob")]
    assert json.loads(bob[2])["ai_values"] == [names[0], names[3]]
    assert bob[3] == "import:bob.csv" and bob[5] == f"import:bob.csv:{convs[0].id}:bob"
    assert json.loads(got[(convs[1].id, "bob")][4]) == ["response_type", "subjective"]
    assert got[(convs[0].id, "alice")][3] == "import:alice.jsonl"


def test_every_bad_line_is_reported_while_good_ones_land(tmp_path) -> None:
    path, convs = study_with_external_ids(tmp_path)
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [
        {"conversation": convs[0].id, "annotator": "a", "response_type": "neutral",
         "subjective": "no"},
        "{not json",
        {"conversation": "nope", "annotator": "a"},
        {"conversation": convs[1].id, "annotator": "a", "response_type": "sort of"},
        {"conversation": convs[1].id, "annotator": "a", "subjective": "maybe"},
        {"conversation": convs[1].id},
        {"conversation": convs[0].id, "annotator": "a", "response_type": "neutral"},
        {"conversation": convs[1].id, "annotator": "a", "ai_values": [1, 2]},
        "[1, 2]",
        {"conversation": "[red]x[/red]", "annotator": "a"},
    ])
    result = runner.invoke(app, ["import-labels", str(bad), "--db", str(path),
                                 "--no-summaries"])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    for line, reason in [(2, "not JSON"), (3, "no conversation 'nope'"),
                         (4, "response_type 'sort of' is not one of"),
                         (5, "subjective 'maybe' is not true"), (6, "no annotator"),
                         (7, "already on line 1"), (8, "every value must be a name"),
                         (9, "not a JSON object"), (10, "no conversation '[red]x[/red]'")]:
        said = out.split(f"bad.jsonl:{line}: ", 1)[1].split(" rejected ", 1)[0]
        assert reason in said, (line, said)
    assert "10 rows read from 1 files: 1 new" in out
    assert rows(path, "select count(*) from annotations") == [(1,)]
    data = json.loads(runner.invoke(app, ["import-labels", str(bad), "--db", str(path),
                                          "--no-summaries", "--json"]).output)
    assert [r["line"] for r in data["rejected"]] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert data["unchanged"] == 1


def test_an_ambiguous_prefix_names_its_candidates(tmp_path) -> None:
    path, convs = study_with_external_ids(tmp_path)
    database = db_module.open_db(path)
    with database.conn:
        database["conversations"].insert_all([
            {**db_module.conversation_to_row(convs[0]), "id": f"abc{i}"} for i in range(7)])
    report = import_labels(database, [_one(tmp_path, "abc")], annotator="a")
    (bad,) = report.rejected
    assert "ambiguous: abc0, abc1, abc2, abc3, abc4 …" in bad.reason


def _one(tmp_path, ref: str):
    f = tmp_path / "one.jsonl"
    write_jsonl(f, [{"conversation": ref, "response_type": "neutral", "subjective": False}])
    return f


def test_reimport_is_idempotent_and_touches_only_its_own_source(tmp_path) -> None:
    path, convs = study_with_external_ids(tmp_path)
    database = db_module.open_db(path)
    other = Annotation(id="labelstudio:local:1:5", conversation_id=convs[0].id, annotator="a",
                       labels=Labels(response_type="neutral", subjective=True),
                       source="labelstudio:local:1", source_id="5")
    with database.conn:
        database["annotations"].insert(db_module.annotation_to_row(other))
    f = tmp_path / "labels.jsonl"
    record = {"conversation": convs[0].id, "annotator": "a", "response_type": "mild support",
              "subjective": False}
    write_jsonl(f, [record])
    first = import_labels(database, [f])
    second = import_labels(database, [f])
    assert (first.new, second.new, second.unchanged) == (1, 0, 1)
    write_jsonl(f, [{**record, "response_type": "reframing"}])
    third = import_labels(database, [f])
    assert third.updated == 1
    (labels, history), = rows(path, "select labels, history from annotations where source = ?",
                              ["import:labels.jsonl"])
    assert json.loads(labels)["response_type"] == "reframing"
    assert json.loads(history)[0]["labels"]["response_type"] == "mild support"
    untouched = rows(path, "select labels, history from annotations where id = ?",
                     [other.id])
    assert untouched == [(other.labels.model_dump_json(), "[]")]
    assert rows(path, "select count(*) from annotations") == [(2,)]


def test_after_import_adjudicate_and_agreement_work_without_label_studio(tmp_path) -> None:
    path, convs = study_with_external_ids(tmp_path, n=8)
    names = value_names(4)
    records = []
    for i, c in enumerate(convs):
        for who in ("alice", "bob", "carol"):
            split = who == "carol" and i % 3 == 0
            records.append({
                "conversation": c.id, "annotator": who, "ai_values": [names[i % 4]],
                "response_type": "neutral" if split else "mild support",
                "subjective": bool(i % 2),
            })
    f = tmp_path / "team.jsonl"
    write_jsonl(f, records)
    result = runner.invoke(app, ["import-labels", str(f), "--db", str(path), "--no-summaries"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["adjudicate", "--db", str(path), "--no-summaries", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["decided"] == 8
    result = runner.invoke(app, ["agreement", "--db", str(path), "--boot", "0", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.output)["annotators"]) == ["alice", "bob", "carol"]


def test_a_missing_file_changes_nothing(tmp_path) -> None:
    path, convs = study_with_external_ids(tmp_path)
    good = _one(tmp_path, convs[0].id)
    result = runner.invoke(app, ["import-labels", str(good), str(tmp_path / "gone.csv"),
                                 "--annotator", "a", "--db", str(path)])
    assert result.exit_code == 1 and "gone.csv: no such file" in result.output
    assert rows(path, "select count(*) from annotations") == [(0,)]
