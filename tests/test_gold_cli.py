"""`annotator gold load` and `annotator gold save`: gold files in and out of a study."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import rows
from typer.testing import CliRunner

from annotator.cli import app

runner = CliRunner()
DEMO = Path(__file__).resolve().parents[1] / "gold" / "demo.jsonl"


def test_load_then_save_round_trips_and_a_rerun_adds_nothing(tmp_path) -> None:
    db = tmp_path / "study.db"
    lines = [json.loads(line) for line in DEMO.read_text().splitlines() if line.strip()]
    result = runner.invoke(app, ["gold", "load", str(DEMO), "--db", str(db), "--json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.output)
    assert report["conversations"] == len(lines)
    counts = rows(db, "select (select count(*) from annotations), (select count(*) from gold)")
    assert counts == [(report["annotations"], report["gold_labels"])]
    again = runner.invoke(app, ["gold", "load", str(DEMO.parent), "--db", str(db)])
    assert f"{len(lines)} conversations" in " ".join(again.output.split())
    assert rows(db, "select (select count(*) from annotations), (select count(*) from gold)") \
        == counts
    out = tmp_path / "saved" / "study.jsonl"
    result = runner.invoke(app, ["gold", "save", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"wrote {counts[0][1]} gold records" in " ".join(result.output.split())
    saved = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(saved) == counts[0][1]
    other = tmp_path / "other.db"
    result = runner.invoke(app, ["gold", "load", str(out), "--db", str(other), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["gold_labels"] == len(saved)


def test_bad_lines_and_incomplete_gold_are_listed_and_the_rest_loads(tmp_path) -> None:
    db = tmp_path / "study.db"
    first = json.loads(DEMO.read_text().splitlines()[0])
    incomplete = {**first, "turns": [{"role": "user", "text": "another [b]one[/b]"}],
                  "conversation_id": "x", "gold": {**first["gold"], "response_type": None}}
    good = {**first, "turns": [{"role": "user", "text": "a third"}], "conversation_id": "y"}
    path = tmp_path / "[bold]g.jsonl"
    path.write_text("\n".join([json.dumps(good), "{nope", json.dumps(incomplete)]) + "\n")
    result = runner.invoke(app, ["gold", "load", str(path), "--db", str(db)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "[bold]g.jsonl:2:" in out
    assert "[bold]g.jsonl:3: gold label not imported: no response_type" in out
    assert "2 conversations" in out and "1 gold labels loaded; 2 rejected" in out
    assert rows(db, "select count(*) from gold") == [(1,)]


def test_save_needs_a_study_and_load_a_file(tmp_path) -> None:
    result = runner.invoke(app, ["gold", "save", str(tmp_path / "g.jsonl"), "--db",
                                 str(tmp_path / "none.db")])
    assert result.exit_code == 1 and not (tmp_path / "g.jsonl").exists()
    result = runner.invoke(app, ["gold", "load", str(tmp_path / "gone.jsonl"), "--db",
                                 str(tmp_path / "s.db")])
    assert result.exit_code == 1 and "no such file" in result.output
