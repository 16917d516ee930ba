"""Rows another program changed into what the study cannot read: every command and every page
of the app names the row in one line, and none stops with a traceback. Real SQLite files, the
real command line (typer's runner) and the real app under Streamlit's AppTest; no fakes.

`export` and `adjudicate` on refused rows: `tests/test_export_plain.py`.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_study import APP
from typer.testing import CliRunner

from annotator.cli import app
from annotator.db import open_db
from annotator.errors import AnnotatorError
from annotator.measure import frames

# (table, column, stored value, what reads it whole: the frames and the commands on them)
DAMAGES = {
    "labels not JSON": ("annotations", "labels", "{not json", True),
    "labels a list": ("annotations", "labels", "[1, 2]", True),
    "values a number": ("annotations", "labels", '{"ai_values": 5}', True),
    # read whole, a text would be its characters and an object its keys: values no one gave
    "values a text": ("annotations", "labels", '{"ai_values": "Honesty"}', True),
    "gold values an object": ("gold", "ai_values", '{"Honesty": 1}', True),
    "extraction values a text": ("extractions", "ai_values", '"Honesty"', True),
    "a value without its name": ("gold", "ai_values", '[{"node": 1}]', True),
    "a response type the models refuse": ("gold", "response_type", "bogus", False),
    "extraction values not JSON": ("extractions", "ai_values", "\u001b[31mred", True),
    "turns a number": ("conversations", "turns", "5", False),
    "a turn without its text": ("conversations", "turns", '[{"role": "user"}]', False),
}
COMMANDS = (["agreement"], ["summarize"], ["status"], ["report"], ["export", "{out}"])


def _first(study: Path, table: str) -> tuple[str, str]:
    """The row of `table` to damage: (its SQL condition, how an error names it)."""
    with closing(sqlite3.connect(study)) as conn:
        if table == "annotations":
            ident, cid = conn.execute("select id, conversation_id from annotations where "
                                      "source = 'gold:demo' order by id limit 1").fetchone()
            return f"id = '{ident}'", f"annotation {ident!r} of conversation {cid!r}"
        if table == "gold":
            (cid,) = conn.execute("select min(conversation_id) from gold").fetchone()
            return f"conversation_id = '{cid}'", f"the gold of conversation {cid!r}"
        if table == "extractions":
            cid, prompt = conn.execute("select conversation_id, prompt_id from extractions "
                                       "order by conversation_id, prompt_id").fetchone()
            return (f"conversation_id = '{cid}' and prompt_id = '{prompt}'",
                    f"the extraction of conversation {cid!r} by prompt {prompt!r}")
        (cid,) = conn.execute("select min(conversation_id) from gold").fetchone()
        return f"id = '{cid}'", f"conversation {cid!r}"


def _damage(study: Path, table: str, column: str, value: str) -> tuple[str, str]:
    """Write `value` into one row as another program would; its conversation and its name."""
    where, named = _first(study, table)
    with closing(sqlite3.connect(study)) as conn, conn:
        assert conn.execute(f"update {table} set {column} = ? where {where}",
                            [value]).rowcount == 1
        key = "id" if table == "conversations" else "conversation_id"
        (cid,) = conn.execute(f"select {key} from {table} where {where}").fetchone()
    return cid, named


def _one_line(result, named: str) -> None:
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, AnnotatorError | ValueError | TypeError), (
        result.exception)  # turned into the line below, not raised
    assert named in result.output and "cannot read" in result.output, result.output
    assert "Traceback" not in result.output and "\x1b" not in result.output, result.output
    assert len(result.output.strip().splitlines()) <= 4, result.output  # a line, wrapped


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_command_names_a_row_it_cannot_read(app_study_copy: Path, tmp_path: Path,
                                                  damage: str) -> None:
    table, column, value, whole = DAMAGES[damage]
    cid, named = _damage(app_study_copy, table, column, value)
    runner = CliRunner()
    db = ["--db", str(app_study_copy)]
    _one_line(runner.invoke(app, ["show", cid, *db]), named)
    for command in COMMANDS:
        args = [part.format(out=tmp_path / "v.jsonl") for part in command]
        result = runner.invoke(app, [*args, *db])
        # nothing else fails: a command that does not read the row runs as before
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            command, result.exception)
        if whole and command[0] in ("agreement", "summarize"):
            _one_line(result, named)
    if whole:
        with pytest.raises(AnnotatorError, match="cannot read"):
            frames.table_frame(open_db(app_study_copy), table if table != "extractions"
                               else "extractions:test-prompt-v1")


def test_every_page_of_the_app_names_a_row_it_cannot_read(app_study_copy: Path) -> None:
    names = [_damage(app_study_copy, *DAMAGES[d][:3])[1]
             for d in ("extraction values not JSON", "labels a list", "turns a number")]
    shown: list[str] = []
    for page in (None, "annotators", "prompts", "disagreements", "gold", "export"):
        at = AppTest.from_file(str(APP), default_timeout=180)
        at.session_state["db_path"] = str(app_study_copy)
        at.session_state["wait_seconds"] = 180.0
        at.session_state["n_boot"] = 20
        at.run()
        if page:
            at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, [e.message for e in at.exception])
        shown += [e.value.replace("\\", "") for e in at.error]
    assert all("Traceback" not in text and "Error:" not in text for text in shown), shown
    for named in names:  # each named on some page, as the command line names it
        assert any(named in text for text in shown), (named, shown)
