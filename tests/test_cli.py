"""CLI conventions: every command (and sub-command) has help text with an example."""

from __future__ import annotations

import typer
from typer.main import get_command
from typer.testing import CliRunner

from annotator.cli import app

runner = CliRunner()


def all_commands():
    root = get_command(app)
    stack = [((), root)]
    while stack:
        path, command = stack.pop()
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                stack.append(((*path, name), sub))
        else:
            yield path, command


def test_every_command_has_help_with_an_example():
    commands = list(all_commands())
    assert len(commands) >= 4
    for path, command in commands:
        assert command.help, f"{' '.join(path)} has no help"
        assert "Example:" in command.help, f"{' '.join(path)} help has no example"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Example" in result.output


def test_every_option_is_explained():
    for path, command in all_commands():
        for param in command.params:
            if isinstance(param, typer.core.TyperOption) and param.name != "help":
                assert param.help, f"{' '.join(path)} {param.opts} has no help"


def test_missing_database_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["status", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert "run `annotator init` first" in result.output
    assert "Traceback" not in result.output


def test_demo_runs_the_main_job_offline_and_twice_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    db = tmp_path / "demo" / "annotator.db"
    first = runner.invoke(app, ["demo", "--db", str(db)])
    assert first.exit_code == 0, first.output
    assert "49 proposed now" in " ".join(first.output.split())
    assert (tmp_path / "demo" / "validated.jsonl").exists()
    second = runner.invoke(app, ["demo", "--db", str(db)])
    assert second.exit_code == 0, second.output
    assert "0 proposed now, 49 already done" in " ".join(second.output.split())


def test_a_file_that_is_not_a_study_is_one_line_of_error(tmp_path) -> None:
    """A typo in --db that names some other file: one line naming it, no traceback, and the
    file left as it was."""
    other = tmp_path / "notes.db"
    other.write_text("not sqlite")
    for command in (["status"], ["summarize"], ["agreement"]):
        result = runner.invoke(app, [*command, "--db", str(other)])
        assert result.exit_code == 1, (command, result.output)
        assert f"{other} is not a study database" in result.output
        assert "Traceback" not in result.output
    assert other.read_text() == "not sqlite"
