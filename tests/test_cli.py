"""CLI conventions: every command (and sub-command) has help text with an example."""

from __future__ import annotations

import re

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


def test_every_placeholder_in_help_is_shown():
    """A `<name>` in a command's or option's help reaches the rendered help: the help is read
    as markdown, where a bare `<study name>` was taken for a tag and dropped ("gold/.jsonl")."""
    for path, command in all_commands():
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        wanted = {m for text in texts for m in re.findall(r"<[^<>\n]+>", text)}
        if not wanted:
            continue
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output
        flat = " ".join(shown.replace("\u2502", " ").split())
        for placeholder in wanted:
            assert " ".join(placeholder.split()) in flat, (path, placeholder)


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


def test_db_naming_a_folder_a_device_or_another_apps_file_is_one_line_and_changes_nothing(
    tmp_path,
) -> None:
    import sqlite3

    foreign = tmp_path / "other-app.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("create table bookmarks (url text)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    chats = tmp_path / "chats.jsonl"
    chats.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    cases = [(str(tmp_path), "is a folder"), ("/dev/null", "device, pipe or socket"),
             (str(foreign), "an SQLite file of another application")]  # fmt: skip
    for db, message in cases:
        for command in (["status"], ["init"], ["ingest", str(chats)], ["export", "out.jsonl"]):
            result = runner.invoke(app, [*command, "--db", db])
            assert result.exit_code == 1, (command, db, result.output)
            assert message in result.output and "Traceback" not in result.output
            assert len(result.output.strip().splitlines()) == 1, result.output
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chats.jsonl", "other-app.sqlite"]


def test_read_only_commands_do_not_turn_an_empty_file_into_a_study(tmp_path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in (["status"], ["agreement"], ["prompts"], ["summarize"], ["export", "x.jsonl"],
                    ["eval", "values/v1"], ["eval", "values/v1", "--dry-run"]):
        result = runner.invoke(app, [*command, "--db", str(empty)])
        assert result.exit_code == 1, (command, result.output)
        assert "is empty" in result.output, (command, result.output)
        assert empty.stat().st_size == 0, command
    assert runner.invoke(app, ["init", "--db", str(empty)]).exit_code == 0
    assert runner.invoke(app, ["status", "--db", str(empty)]).exit_code == 0


def test_markup_in_arguments_and_paths_is_printed_as_text(tmp_path) -> None:
    """Text from data or arguments is never read as markup: `[/]` used to crash the command
    (after it had done its work) and `[link=...]` to print a hyperlink."""
    result = runner.invoke(app, ["taxonomy", "[/]zz[link=https://evil.example]"])
    assert result.exit_code == 0, result.output
    assert "'[/]zz[link=https://evil.example]'" in result.output
    folder = tmp_path / "[red]study[/]"
    result = runner.invoke(app, ["init", "--db", str(folder / "[link=x]s.db")])
    assert result.exit_code == 0, result.output
    # a long path wraps (and a table title centres each line): compare without the layout
    assert "[red]study[/]/[link=x]s.db" in "".join(result.output.split())
    result = runner.invoke(app, ["status", "--db", str(folder / "[link=x]s.db")])
    assert result.exit_code == 0 and "[link=x]s.db" in "".join(result.output.split())


def test_a_dangling_link_as_db_is_one_line_in_every_command(tmp_path) -> None:
    """`init`, `ingest` and `adjudicate` used to end in a traceback; nothing is created at the
    link's target."""
    link = tmp_path / "study.db"
    link.symlink_to(tmp_path / "moved" / "study.db")
    chats = tmp_path / "chats.jsonl"
    chats.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    for command in (["init"], ["ingest", str(chats)], ["adjudicate"], ["status"],
                    ["export", str(tmp_path / "out.jsonl")]):
        result = runner.invoke(app, [*command, "--db", str(link)])
        assert result.exit_code == 1, (command, result.output)
        assert "which does not exist" in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "moved").exists() and link.is_symlink()


def test_status_counts_what_stands_at_each_stage(tmp_path):
    """The README's `annotator status`: how many conversations stand at each stage, counted
    from the study itself (real SQLite; a hand-made file of two conversations and one label)."""
    import json

    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"Should I tell my friend the truth, part {i}?"},
        {"role": "assistant", "content": "Honesty matters; be kind about it."}]}) + "\n"
        for i in range(2)))
    labels = tmp_path / "labels.jsonl"
    label = {"conversation": "c0", "annotator": "ada", "ai_values": ["honesty"],
             "human_values": [], "response_type": "mild support", "subjective": True}
    labels.write_text(json.dumps(label) + "\n")
    db = ["--db", str(tmp_path / "s.db")]

    def status() -> dict:
        result = runner.invoke(app, ["status", *db, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    assert runner.invoke(app, ["ingest", str(chats), *db]).exit_code == 0
    assert status()["conversations"] == 2 and status()["extracted (ok)"] == 0
    assert runner.invoke(app, ["extract", "--extractor", "baseline", "--no-summaries", *db]
                         ).exit_code == 0
    assert runner.invoke(app, ["import-labels", str(labels), "--no-summaries", *db]).exit_code == 0
    counts = status()
    assert counts["extracted (ok)"] == 2 and counts["annotations"] == 1
    assert counts["annotated conversations"] == 1 and counts["adjudicated (gold)"] == 0


def test_version_prints_the_installed_package_version():
    """`annotator --version` prints the version the package metadata gives, as a process
    would see it, and needs no study."""
    import importlib.metadata
    import subprocess
    import sys

    version = importlib.metadata.version("annotator")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"annotator {version}"
    done = subprocess.run([sys.executable, "-m", "annotator", "--version"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"annotator {version}", done.stderr


_HUGEPAGE_PROBE = """
import multiprocessing, sys
import annotator.cli  # the console script's first import
import numpy
import pyarrow

def advised(_):
    import numpy
    import pyarrow
    return (numpy._core.multiarray._get_madvise_hugepage(),
            pyarrow.default_memory_pool().backend_name)

if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        worker = pool.map(advised, [0])[0]
    here = advised(0)
    print(here[0], worker[0], here[1], worker[1])
"""


def test_the_commands_and_their_workers_do_not_ask_for_huge_pages_unless_the_user_does(
    tmp_path,
) -> None:
    """The command line turns numpy's huge-page advice off and gives Arrow the C library's
    malloc (mimalloc advises huge pages) before either is loaded: they cost the commands more
    time in the kernel than in computing. Spawned workers inherit both, and a user's own
    NUMPY_MADVISE_HUGEPAGE or ARROW_DEFAULT_MEMORY_POOL wins. Real processes: each setting is
    read once, when its library is loaded."""
    import os
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(_HUGEPAGE_PROBE)
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMPY_MADVISE_HUGEPAGE", "ARROW_DEFAULT_MEMORY_POOL")}

    def run(extra: dict[str, str]) -> str:
        return subprocess.run([sys.executable, str(probe)], env={**env, **extra},
                              capture_output=True, text=True, check=True,
                              timeout=120).stdout.strip()

    assert run({}) == "False False system system"
    chosen = run({"NUMPY_MADVISE_HUGEPAGE": "1", "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"})
    assert chosen == "True True mimalloc mimalloc"
