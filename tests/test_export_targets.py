"""Where an export may go: an existing file only with --force, a link written through and never
replaced, `-` for standard output, devices, pipes and dangling links refused.

Integration tests: a real SQLite study made from the bundled gold file, the real CLI (Typer's
runner, or a process on a pseudo-terminal where a terminal matters), real files, links and FIFOs.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import pty
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotator import config
from annotator.cli import app
from annotator.datasets.export import export
from annotator.datasets.gold import import_gold
from annotator.datasets.writers import ExportFormat, check_target
from annotator.db import open_db
from annotator.errors import AnnotatorError

runner = CliRunner()


@pytest.fixture(scope="module")
def base_study(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("targets") / "study.db"
    db = open_db(path)
    import_gold(db, [config.gold_dir() / "demo.jsonl"])
    db.conn.close()
    return path


@pytest.fixture
def study(base_study, tmp_path) -> Path:
    path = tmp_path / "db" / "study.db"
    path.parent.mkdir()
    shutil.copy(base_study, path)
    return path


def run(*args: object):
    return runner.invoke(app, [*map(str, args)])


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for part in parts:
        assert part in " ".join(result.output.split()), result.output


def test_an_existing_file_is_replaced_only_with_force(study, tmp_path):
    out = tmp_path / "mine.jsonl"
    out.write_text("my own notes\n")
    one_line_error(run("export", out, "--db", study), f"{out} exists: pass --force")
    assert out.read_text() == "my own notes\n"
    assert run("export", out, "--db", study, "--force").exit_code == 0
    assert json.loads(out.read_text().splitlines()[0])["conversation_id"]
    hf = tmp_path / "ds"
    assert run("export", hf, "--db", study, "--format", "hf").exit_code == 0
    one_line_error(run("export", hf, "--db", study, "--format", "hf"), "pass --force")
    assert run("export", hf, "--db", study, "--format", "hf", "--force").exit_code == 0


def test_a_link_is_written_through_and_stays_a_link(study, tmp_path):
    real = tmp_path / "real" / "export.jsonl"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    one_line_error(run("export", link, "--db", study), "exists: pass --force")
    assert run("export", link, "--db", study, "--force").exit_code == 0
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text().startswith('{"conversation_id"')
    assert sorted(p.name for p in real.parent.iterdir()) == ["export.jsonl"]  # no .partial


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_dangling_link_a_device_a_fifo_and_a_link_to_a_device_are_refused(
    study, tmp_path, force
):
    """As root, `export /dev/stdout` once replaced the system's /dev/stdout link with a file:
    a link to a device here stands for it (a regression replaces this link, not /dev's)."""
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "nowhere" / "x.jsonl")
    one_line_error(run("export", dangling, "--db", study, *force), "which does not exist")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    to_device = tmp_path / "stdout"
    to_device.symlink_to("/dev/null")
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    for target in (to_device, fifo, Path("/dev/null")):
        one_line_error(run("export", target, "--db", study, "--format", "csv", *force),
                       "is not a regular file (a device, a pipe or a socket)")
    assert to_device.is_symlink() and os.readlink(to_device) == "/dev/null"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.jsonl", "db", "fifo.jsonl",
                                                         "stdout"]


def test_check_target_alone_refuses_what_the_rename_would_clobber(tmp_path):
    """The library's rule, without the CLI: a regression fails here before anything writes."""
    existing = tmp_path / "x.csv"
    existing.write_text("keep")
    with pytest.raises(AnnotatorError, match="exists: pass --force"):
        check_target(existing, ExportFormat.csv)
    assert check_target(existing, ExportFormat.csv, force=True) == existing
    link = tmp_path / "l.csv"
    link.symlink_to(existing)
    assert check_target(link, ExportFormat.csv, force=True) == existing  # the file behind it


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "csv"])
def test_dash_writes_the_same_bytes_to_standard_output(study, tmp_path, fmt):
    out = tmp_path / f"file.{fmt}"
    assert run("export", out, "--db", study).exit_code == 0
    result = run("export", "-", "--db", study, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == out.read_bytes()
    assert "exported" in result.stderr and "exported" not in result.stdout
    if fmt == "jsonl.gz":
        assert gzip.decompress(result.stdout_bytes).startswith(b'{"conversation_id"')
    if fmt == "csv":
        assert next(csv.reader(io.StringIO(result.stdout)))[0] == "conversation_id"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", out.name]  # no file named -


def test_dash_defaults_to_jsonl_and_refuses_what_is_not_one_stream(study, tmp_path):
    result = run("export", "-", "--db", study, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout.splitlines()[0])["conversation_id"]
    assert json.loads(result.stderr)["path"] == "-"
    for fmt in ("parquet", "hf"):
        one_line_error(run("export", "-", "--db", study, "--format", fmt),
                       "standard output) takes one stream", f"not {fmt}")
    with pytest.raises(AnnotatorError, match="takes one stream"):
        export(open_db(study), "-")  # no stream given: never a file named "-"


def test_dash_on_a_terminal_is_refused(study, tmp_path):
    """Records hold data, and data never reaches a terminal: `-` wants a pipe or a file."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "annotator", "export", "-", "--db", str(study)],
            stdout=follower, stderr=subprocess.PIPE, cwd=tmp_path, timeout=120,
        )
    finally:
        os.close(follower)
    os.set_blocking(leader, False)
    try:
        shown = os.read(leader, 65536)
    except OSError:
        shown = b""
    os.close(leader)
    assert proc.returncode == 1
    assert b"standard output, which is a terminal" in proc.stderr
    assert b"conversation_id" not in shown
