"""Hostile input to `annotator ingest` (issue 12, items 5-7): every good record of a bad file
lands, every bad one is reported with its file, line and reason, nothing crashes, memory stays
flat on gigabyte inputs, and worker processes die with their parent.

The corpus is written by `tests/adversarial` into a temporary folder: nothing large is kept in
the repository. Memory is measured as the peak RSS of a real `annotator ingest` process (and its
workers), in a wrapper process of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from adversarial import LIMIT, build_corpus, chat, gzip_of_repeats
from conftest import iter_conversations
from held_ingest import start_held
from typer.testing import CliRunner
from waiting import wait_until

from annotator.cli import app
from annotator.db import open_db
from annotator.errors import InputError
from annotator.ingest.pipeline import PARALLEL_MIN_BYTES, ingest

ROOT = Path(__file__).resolve().parent.parent
MEMORY_LIMIT_MB = 500


def _landed_by_file(db, corpus) -> dict[Path, set[str]]:
    sources = {e.path.name.split(".")[0]: e.path for e in corpus}
    landed: dict[Path, set[str]] = {e.path: set() for e in corpus}
    for conv in iter_conversations(db):
        landed[sources[conv.source]].add(conv.external_id)
    return landed


@pytest.mark.parametrize("workers", [1, 2])
def test_corpus_every_good_record_lands_and_each_bad_one_is_reported_with_its_line(
    tmp_path, workers
):
    corpus = build_corpus(tmp_path / "corpus")
    db = open_db(tmp_path / "study.db")
    report = ingest(db, [e.path for e in corpus], max_record_bytes=LIMIT, workers=workers)
    landed = _landed_by_file(db, corpus)
    for expected in corpus:
        name = str(expected.path)
        assert landed[expected.path] == expected.landed, name
        rejected = {r.line: r.reason for r in report.rejected if r.file == name}
        assert sorted(rejected) == sorted(expected.rejected), (name, rejected)
        for line_no, part in expected.rejected.items():
            assert part in rejected[line_no], (name, line_no, rejected[line_no])
    assert report.rejected_total == sum(len(e.rejected) for e in corpus)
    assert report.landed == sum(len(e.landed) for e in corpus)
    by_id = {c.external_id: c for c in iter_conversations(db)}
    # data is kept as it came (the URL scrubbed like any other)
    assert by_id["markup-1"].turns[0].text.endswith("[link=[URL]] [bold]x[/] [/]")
    assert by_id["csv-1"].turns[1].text == "b" * 200_000  # over Python's CSV field limit
    assert by_id["cr-a"].turns[1].text == "two\nlines"
    assert by_id["bom_cr"].turns[1].text == "hi there"


def test_cli_names_every_rejection_as_text_and_exits_1(tmp_path):
    """The CLI over the corpus: exit 1, each bad file and line named, markup in a reason or a
    file name printed as it is (a role `[/]` crashed the command after saving; a `[link=...]`
    printed a live hyperlink). Run in a forced-colour terminal, where links would be emitted."""
    corpus = build_corpus(tmp_path / "corpus")
    study = tmp_path / "study.db"
    cmd = [sys.executable, "-m", "annotator", "ingest", *[str(e.path) for e in corpus],
           "--db", str(study), "--max-record-bytes", str(LIMIT)]  # fmt: skip
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "400", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 1, err[-2000:]
    assert "Traceback" not in err
    assert "\x1b]8;" not in err  # no terminal hyperlink
    assert "unknown role '[/]'" in err
    assert "[link=https://evil.example]click[/link]" in err
    assert "[bold]hostile[blink] name.jsonl:2" in err
    for expected in corpus:
        for line_no in expected.rejected:
            assert f"{expected.path.name}:{line_no}:" in err, (expected.path.name, line_no)
    assert f"landed {sum(len(e.landed) for e in corpus)}" in done.stdout.decode()


def test_report_keeps_the_first_rejections_counts_all_and_writes_them_all(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json\n" * 2500 + json.dumps(chat("last")).encode() + b"\n")
    rejects = tmp_path / "rejects.jsonl"
    report = ingest(open_db(tmp_path / "s.db"), [path], rejects=rejects, keep_rejected=100)
    assert report.landed == 1 and not report.ok
    assert (report.rejected_total, len(report.rejected)) == (2500, 100)
    assert report.rejected_per_file == {str(path): 2500}
    written = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [r["line"] for r in written] == list(range(1, 2501))
    assert written[0] == {"file": str(path), "line": 1, "reason": report.rejected[0].reason}


def test_a_device_or_a_symlink_to_one_is_refused_up_front(tmp_path):
    link = tmp_path / "zeros.jsonl"
    link.symlink_to("/dev/zero")
    db = open_db(tmp_path / "s.db")
    with pytest.raises(InputError, match="not a regular file"):
        ingest(db, [link])
    result = CliRunner().invoke(app, ["ingest", str(link), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 1 and "not a regular file" in result.output


# --- memory and processes: real CLI processes --------------------------------------------------


def _peak_rss_mb(args: list[str], tmp_path: Path) -> tuple[int, str, float]:
    """Run `annotator ingest ARGS` in a wrapper process; its exit code, stderr and the peak RSS
    (MB) of the largest process it ran (the ingest or a worker)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)\n"
        "sys.stderr.buffer.write(done.stderr)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "annotator", "ingest", *args,
           "--db", str(tmp_path / "study.db")]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    code, rss_kb = done.stdout.decode().split()
    return int(code), done.stderr.decode(), int(rss_kb) / 1024, time.perf_counter() - started


GIB = 1 << 30


def test_a_small_gzip_holding_one_1_gib_line_stays_under_500_mb(tmp_path):
    path = tmp_path / "one-line.jsonl.gz"
    head = json.dumps(chat("good-1")).encode() + b'\n{"id": "huge", "text": "'
    tail = b'"}\n' + json.dumps(chat("good-3")).encode() + b"\n"
    gzip_of_repeats(path, head, b"a" * (1 << 20), GIB >> 20, tail)
    assert path.stat().st_size < 2 << 20  # a small file
    code, err, rss_mb, seconds = _peak_rss_mb([str(path)], tmp_path)
    print(f"1 GiB line: peak RSS {rss_mb:.0f} MB, {seconds:.1f} s")
    assert code == 1, err[-2000:]
    assert "one-line.jsonl.gz:2: record of 1,073,741,8" in err
    assert rss_mb < MEMORY_LIMIT_MB
    assert open_db(tmp_path / "study.db")["conversations"].count == 2


def test_a_gzip_of_1_gib_of_newlines_stays_under_500_mb(tmp_path):
    path = tmp_path / "newlines.jsonl.gz"
    last = json.dumps(chat("after")).encode() + b"\n"
    gzip_of_repeats(path, b"", b"\n" * (1 << 20), GIB >> 20, last)
    code, err, rss_mb, seconds = _peak_rss_mb([str(path)], tmp_path)
    print(f"1 GiB of newlines: peak RSS {rss_mb:.0f} MB, {seconds:.1f} s")
    assert code == 0, err[-2000:]
    assert rss_mb < MEMORY_LIMIT_MB
    assert open_db(tmp_path / "study.db")["conversations"].count == 1


def test_millions_of_bad_lines_stay_under_500_mb_and_all_reach_the_rejects_file(tmp_path):
    path = tmp_path / "junk.jsonl"
    n_bad = 2_000_000
    with open(path, "wb") as out:
        out.write(json.dumps(chat("first")).encode() + b"\n")
        out.write(b"x\n" * n_bad)
        out.write(json.dumps(chat("last")).encode() + b"\n")
    rejects = tmp_path / "rejects.jsonl"
    code, err, rss_mb, seconds = _peak_rss_mb([str(path), "--rejects", str(rejects)], tmp_path)
    print(f"{n_bad:,} bad lines: peak RSS {rss_mb:.0f} MB, {seconds:.1f} s")
    assert code == 1, err[-2000:]
    # a long path wraps anywhere: compare without the layout's white space
    assert "".join(f"and {n_bad - 20:,} more rejected (all of them in {rejects})".split()) in \
        "".join(err.split())
    assert rss_mb < MEMORY_LIMIT_MB
    with open(rejects, "rb") as handle:
        assert sum(1 for _ in handle) == n_bad
    assert open_db(tmp_path / "study.db")["conversations"].count == 2


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _is_worker(pid: int) -> bool:
    """A pool worker (started by spawn), not multiprocessing's resource tracker."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: ingest starts no workers")
def test_workers_die_with_a_killed_ingest(tmp_path):
    """kill -9 of `annotator ingest` mid-file: its worker processes end too (they used to stay,
    holding the database open). The ingest is held at its first write, workers running."""
    path = tmp_path / "big.jsonl"
    with open(path, "w") as out:
        i = 0
        while out.tell() < 1.2 * PARALLEL_MIN_BYTES:  # big enough that workers are started
            out.write(json.dumps(chat(f"w{i}", f"mail me at p{i}@example.com")) + "\n")
            i += 1
    args = ["ingest", str(path), "--db", str(tmp_path / "study.db")]
    proc, held = start_held(args, 1, tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(held.exists, "the ingest to reach its first write", proc=proc)

    def two_workers() -> set[int] | None:
        workers = {w for w in _children(proc.pid) if _is_worker(w)}
        return workers if len(workers) >= 2 else None

    workers = wait_until(two_workers, "two worker processes", proc=proc)
    children = _children(proc.pid)  # the workers and multiprocessing's resource tracker
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    try:
        wait_until(lambda: not any(Path(f"/proc/{w}").exists() for w in children),
                   f"processes {sorted(children)} to end with their ingest", seconds=10)
    finally:
        alive = [w for w in children if Path(f"/proc/{w}").exists()]
        for w in alive:  # clean up before failing
            os.kill(w, signal.SIGKILL)
    assert workers <= children and not alive, f"workers {alive} outlived their ingest"
