"""Control characters from data never reach a terminal: every command that prints data, on a
study whose conversations, external ids, annotator names, value names and file names are full
of escape sequences (CSI, OSC title, clipboard and hyperlink, C1 CSI, BEL, CR, bidi overrides).

Integration tests: a real SQLite study built through the real commands (Typer's runner), and
real processes with colour forced on, where rich writes its own escape codes for styles.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from adversarial.terminal import HOSTILE_FILE_NAME, SEQUENCES, hostile, raw_controls
from typer.testing import CliRunner

from annotator.cli import app
from annotator.cli.main import json_safe, terminal_safe

runner = CliRunner()
N = 6  # conversations; the last two are split between the annotators (left out of export)
ANNOTATORS = [hostile("ann-a"), hostile("ann-b")]
FREE_VALUE = hostile("value")


def _chats(n: int) -> list[dict]:
    return [{"id": hostile(f"ext-{i}"), "messages": [
        {"role": "user", "content": hostile(f"question {i}") + " how should I tell my team?"},
        {"role": "assistant", "content": hostile(f"answer {i}") + " Be honest and kind."},
    ]} for i in range(n)]


def _labels(conversations: list[str]) -> list[dict]:
    rows = []
    n = len(conversations)
    for i, conversation in enumerate(conversations):
        for j, annotator in enumerate(ANNOTATORS):
            split = i >= n - 2 and j == 1
            rows.append({
                "conversation": conversation, "annotator": annotator,
                "ai_values": ["honesty", FREE_VALUE], "human_values": [FREE_VALUE],
                "response_type": "neutral" if split else "strong support",
                "subjective": True, "notes": hostile("note"),
            })
    return rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def check(result, *, code: int = 0) -> str:
    """The command's output (stdout and stderr), with no raw control character in it."""
    out = result.output  # stdout and stderr, as a terminal would show them
    assert result.exit_code == code, out
    assert "Traceback" not in out, out
    assert not raw_controls(out), (raw_controls(out)[:5], out)
    return out


@pytest.fixture(scope="module")
def hostile_study(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    db = folder / "study.db"
    chats = _jsonl(folder / HOSTILE_FILE_NAME, _chats(N))
    with chats.open("a") as handle:  # a bad line: ingest names the file (and the line)
        handle.write(hostile("{not json") + "\n")
    result = runner.invoke(app, ["ingest", str(chats), "--db", str(db)])
    out = check(result, code=result.exit_code)
    assert "landed 6" in out
    assert terminal_safe(HOSTILE_FILE_NAME) in out.replace("\n", "")  # named, and shown
    with closing(sqlite3.connect(db)) as conn:  # external ids as stored (URLs scrubbed)
        ids = [r[0] for r in conn.execute("select id from conversations order by external_id")]
    assert len(ids) == N
    labels = _jsonl(folder / ("labels " + HOSTILE_FILE_NAME), _labels(ids))
    out = check(runner.invoke(app, ["import-labels", str(labels), "--db", str(db),
                                    "--no-summaries"]))
    assert "\\x1b" in out
    return db


def test_ingest_and_import_labels_name_hostile_files_escaped(hostile_study) -> None:
    """Checked in the fixture (both commands' output); here the study they made."""
    assert hostile_study.exists()


# (command, whether its output shows hostile data: then it must show it escaped, so the test
# is not passing because nothing was printed)
COMMANDS = [
    (["status"], False),
    (["adjudicate", "--no-summaries"], False),
    (["agreement", "--boot", "20"], True),  # annotator and value names
    (["report"], True),
    (["eval", "values/v1", "--extractor", "baseline", "--boot", "0", "--worst", "5"], True),
    (["taxonomy", hostile("query")], True),  # an argument echoed back
    (["show", hostile("no such conversation")], True),  # an error message quoting it
]


@pytest.mark.parametrize(("command", "shows_data"), COMMANDS, ids=[c[0] for c, _ in COMMANDS])
def test_commands_print_hostile_data_escaped(hostile_study, command, shows_data) -> None:
    needs_db = command[0] != "taxonomy"
    result = runner.invoke(app, [*command, *(["--db", str(hostile_study)] if needs_db else [])])
    out = check(result, code=result.exit_code)  # an error is fine; a raw control never is
    assert result.exit_code in (0, 1), out
    assert ("\\x1b" in out) is shows_data, out


def _first_id(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("select id from conversations order by external_id").fetchone()[0]


def test_show_prints_every_part_escaped_and_json_stays_json(hostile_study) -> None:
    first = _first_id(hostile_study)
    out = check(runner.invoke(app, ["show", first, "--db", str(hostile_study)]))
    flat = out.replace("\n", "")
    for part in ("\\x1b]0;pwned title\\x07", "\\x9b2J", "\\u202eevil"):
        assert part in flat, part  # the data is shown, as text
    result = runner.invoke(app, ["show", first, "--db", str(hostile_study), "--json"])
    check(result)
    strings = _strings(json.loads(result.stdout))
    assert ANNOTATORS[0] in strings and FREE_VALUE in strings  # the same data, exactly


def _strings(value: object) -> set[str]:
    if isinstance(value, dict):
        return set().union(*map(_strings, value.values()), *map(_strings, value.keys()))
    if isinstance(value, list):
        return set().union(*map(_strings, value))
    return {value} if isinstance(value, str) else set()


def test_export_lists_what_it_leaves_out_escaped(hostile_study, tmp_path) -> None:
    runner.invoke(app, ["adjudicate", "--db", str(hostile_study), "--no-summaries"])
    out = check(runner.invoke(app, ["export", str(tmp_path / "x.jsonl"), "--db",
                                    str(hostile_study)]))
    assert "left out" in out
    # To standard output (never a terminal: refused there) the records are the data, exact;
    # what is said about them goes to stderr, escaped.
    result = runner.invoke(app, ["export", "-", "--db", str(hostile_study), "--json"])
    assert result.exit_code == 0 and not raw_controls(result.stderr), result.stderr
    assert json.loads(result.stderr)["left_out"]


def test_eval_lists_its_worst_conversations_escaped(hostile_study) -> None:
    runner.invoke(app, ["adjudicate", "--db", str(hostile_study), "--no-summaries"])
    out = check(runner.invoke(app, ["eval", "values/v1", "--extractor", "baseline", "--boot",
                                    "0", "--worst", "5", "--db", str(hostile_study)]),
                code=0)
    assert "\\x1b" in out  # the worst list names conversations by their hostile ids


SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own styles: colour and bold, nothing else


@pytest.mark.parametrize("command", [["show"], ["agreement", "--boot", "0"], ["status"],
                                     ["adjudicate", "--no-summaries"], ["export", "x.jsonl"]],
                         ids=lambda c: c[0])
def test_on_a_colour_terminal_only_richs_own_styles_are_escape_codes(hostile_study, command,
                                                                     tmp_path):
    """With colour forced on, rich writes SGR codes for its styles; anything else that acts on
    a terminal (a title, a hyperlink, a clear screen, C1) would come from data. Forced colour
    on a pipe draws no progress bar or spinner either (their cursor movements are control
    codes a log would keep)."""
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    if command == ["show"]:
        command = ["show", _first_id(hostile_study)]
    if command[0] == "export":
        runner.invoke(app, ["adjudicate", "--db", str(hostile_study), "--no-summaries"])
        command = ["export", str(tmp_path / command[1])]
    proc = subprocess.run([sys.executable, "-m", "annotator", *command, "--db",
                           str(hostile_study)], capture_output=True, env=env, timeout=300)
    text = (proc.stdout + proc.stderr).decode()
    assert proc.returncode in (0, 1), text
    assert SGR.search(text), "colour was not on: the test would prove nothing"
    assert not raw_controls(SGR.sub("", text)), raw_controls(SGR.sub("", text))[:5]


def test_terminal_safe_and_json_safe_keep_layout_and_meaning() -> None:
    for name, sequence in SEQUENCES.items():
        assert not raw_controls(terminal_safe(sequence)), name
        assert not raw_controls(json_safe(json.dumps(sequence, ensure_ascii=False))), name
        assert json.loads(json_safe(json.dumps(sequence, ensure_ascii=False))) == sequence
    assert terminal_safe("a\tb\nc") == "a\tb\nc"
    assert terminal_safe("\x1b[2J\x9b") == "\\x1b[2J\\x9b"
