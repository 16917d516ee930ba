"""`annotator show`: one conversation with its proposals, annotations, gold and tasks."""

from __future__ import annotations

import json

import pytest
from conftest import make_study
from typer.testing import CliRunner

from annotator import db as db_module
from annotator.cli import app
from annotator.datasets.show import find_conversation
from annotator.errors import InputError
from annotator.models import Annotation, Extraction, GoldLabel, Labels, PromptVersion, ValueRef
from annotator.review.server import ServerState, write_state

runner = CliRunner()
PROMPT = PromptVersion(id="83a3bb34cde1e54b", name="values", version="v2", text="x")


def build(tmp_path):
    """A small study: conversations, a proposal, annotations from two sources, gold, a task."""
    path = tmp_path / "study.db"
    convs = make_study(path, n=6)
    database = db_module.open_db(path)
    target = convs[0]
    with database.conn:
        database["prompts"].insert(db_module.prompt_to_row(PROMPT))
        database["extractions"].insert(db_module.extraction_to_row(Extraction(
            conversation_id=target.id, prompt_id=PROMPT.id, model="claude-test",
            extractor="anthropic", subjective=True, response_type="mild support",
            ai_values=[ValueRef(name="Honesty", node_id="n1", evidence="I [b]will[/b] be frank"),
                       ValueRef(name="[red]made up[/red]")],
            human_values=[ValueRef(name="Autonomy")], cost_usd=0.0123,
        )))
        rows = [
            Annotation(id="labelstudio:local:1:7", conversation_id=target.id, annotator="ann@x",
                       labels=Labels(ai_values=["Honesty"], response_type="mild support",
                                     subjective=True),
                       source="labelstudio:local:1", source_id="7", edited_by="boss@x"),
            Annotation(id="import:f.jsonl:c:bob", conversation_id=target.id, annotator="bob",
                       labels=Labels(ai_values=["Honesty", "Care"]), source="import:f.jsonl",
                       missing=["response_type", "subjective"]),
            Annotation(id="labelstudio:local:1:8", conversation_id=target.id, annotator="old",
                       labels=Labels(), source="labelstudio:local:1", deleted=True),
        ]
        database["annotations"].insert_all([db_module.annotation_to_row(a) for a in rows])
        database["gold"].insert(db_module.gold_to_row(target.id, GoldLabel(
            ai_values=["Honesty"], response_type="mild support", subjective=True,
            decided_by="person:carol")))
        database["tasks"].insert({"server": "local", "conversation_id": target.id,
                                  "project_id": 3, "task_id": 41, "pushed_at": "2026-01-01",
                                  "prompt_versions": "[]", "blind": 0,
                                  "prefilled_by": PROMPT.id})
        database["tasks"].insert({"server": "https://ls.example/", "conversation_id": target.id,
                                  "project_id": 5, "task_id": 9, "pushed_at": "2026-01-01",
                                  "prompt_versions": "[]", "blind": 1, "prefilled_by": None})
    database.conn.close()
    state = ServerState.new()
    state.port = 8123
    write_state(path, state)
    return path, convs


def test_show_prints_everything_about_a_conversation_by_prefix(tmp_path) -> None:
    path, convs = build(tmp_path)
    target = convs[0]
    result = runner.invoke(app, ["show", target.id[:8], "--db", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert target.id in out
    assert target.turns[0].text[:30] in " ".join(out.split()) or target.turns[0].text[:10] in out
    assert "values/v2 · 83a3bb" in out and "claude-test" in out and "$0.0123" in out
    assert 'I [b]will[/b] be frank' in out  # data is printed, not read as markup
    assert "[red]made up[/red] (free value)" in out
    assert "Autonomy" in out
    assert "edited by boss@x" in out
    assert "incomplete: no response_type and no subjective" in out
    assert "import:f.jsonl" in out and "deleted" in out
    assert "decided by person:carol" in out
    assert "http://127.0.0.1:8123/projects/3/data?task=41" in out
    assert "pre-filled by values/v2 · 83a3bb" in out
    assert "https://ls.example/projects/5/data?task=9" in out and "blind" in out


def test_show_json_gives_the_same_as_one_object(tmp_path) -> None:
    path, convs = build(tmp_path)
    result = runner.invoke(app, ["show", convs[0].id, "--db", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["id"] == convs[0].id
    assert [t["text"] for t in data["turns"]] == [t.text for t in convs[0].turns]
    (proposal,) = data["proposals"]
    assert proposal["ai_values"][0]["evidence"] == "I [b]will[/b] be frank"
    assert proposal["cost_usd"] == 0.0123 and proposal["prompt"] == "values/v2 · 83a3bb"
    by_annotator = {a["annotator"]: a for a in data["annotations"]}
    assert by_annotator["bob"]["missing"] == ["response_type", "subjective"]
    assert by_annotator["old"]["deleted"] is True
    assert by_annotator["ann@x"]["edited_by"] == "boss@x"
    assert {a["source"] for a in data["annotations"]} == {"labelstudio:local:1",
                                                          "import:f.jsonl"}
    assert data["gold"]["decided_by"] == "person:carol"
    urls = {t["server"]: t["url"] for t in data["tasks"]}
    assert urls == {"local": "http://127.0.0.1:8123/projects/3/data?task=41",
                    "https://ls.example/": "https://ls.example/projects/5/data?task=9"}


def test_a_conversation_without_labels_shows_empty_sections(tmp_path) -> None:
    path, convs = build(tmp_path)
    data = json.loads(runner.invoke(app, ["show", convs[1].id, "--db", str(path),
                                          "--json"]).output)
    assert (data["proposals"], data["annotations"], data["gold"], data["tasks"]) == (
        [], [], None, [])
    result = runner.invoke(app, ["show", convs[1].id, "--db", str(path)])
    assert result.exit_code == 0 and "not decided" in result.output


def test_unknown_or_ambiguous_ids_are_one_line_naming_candidates(tmp_path) -> None:
    path, convs = build(tmp_path)
    result = runner.invoke(app, ["show", "zzzz-none", "--db", str(path)])
    assert result.exit_code == 1
    assert "no conversation 'zzzz-none'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    database = db_module.open_db(path)
    # Many ids: an empty-ish prefix shared by several is ambiguous, and at most 5 are named.
    with database.conn:
        database["conversations"].insert_all([
            {**db_module.conversation_to_row(convs[0]), "id": f"abc{i}"} for i in range(8)
        ])
    result = runner.invoke(app, ["show", "abc", "--db", str(path)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "ambiguous" in line and "abc0, abc1, abc2, abc3, abc4 …" in line
    assert "abc5" not in line
    assert find_conversation(database, "abc7") == "abc7"
    assert find_conversation(database, convs[2].id[:10]) == convs[2].id


def test_show_does_not_make_a_study_of_a_missing_file(tmp_path) -> None:
    result = runner.invoke(app, ["show", "abc", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1 and not (tmp_path / "none.db").exists()


def test_a_conversation_is_found_by_its_external_id(tmp_path) -> None:
    path, convs = build(tmp_path)
    database = db_module.open_db(path)
    with database.conn:
        database["conversations"].update(convs[1].id, {"external_id": "train.jsonl:12"})
        database["conversations"].update(convs[2].id, {"external_id": "dup"})
        database["conversations"].update(convs[0].id, {"external_id": "dup"})
    assert find_conversation(database, "train.jsonl:12") == convs[1].id
    result = runner.invoke(app, ["show", "train.jsonl:12", "--db", str(path), "--json"])
    assert json.loads(result.output)["id"] == convs[1].id
    result = runner.invoke(app, ["show", "dup", "--db", str(path)])
    line = " ".join(result.output.split())
    assert result.exit_code == 1 and "names several conversations" in line
    assert convs[0].id in line and convs[2].id in line


def test_a_mistyped_id_gets_the_nearest_as_a_hint(tmp_path) -> None:
    """One character wrong in a full id, in a typed prefix, or in an external id: the one-line
    error names the nearest id (difflib over ids sharing the first characters)."""
    path, convs = build(tmp_path)
    database = db_module.open_db(path)
    with database.conn:
        database["conversations"].update(convs[1].id, {"external_id": "test.jsonl.gz:12"})
    target = convs[3].id
    wrong = target[:6] + ("0" if target[6] != "0" else "1") + target[7:]
    for typed, meant in ((wrong, target), (wrong[:12], target),
                         ("test.jsonl.gx:12", "test.jsonl.gz:12")):
        result = runner.invoke(app, ["show", typed, "--db", str(path)])
        assert result.exit_code == 1
        line = " ".join(result.output.split())
        assert f"no conversation '{typed}' in this study; did you mean {meant} ?" in line, line
        assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(InputError) as raised:
        find_conversation(database, "qqqqqqqqqqqq")
    assert "did you mean" not in str(raised.value)  # nothing near: no guess
