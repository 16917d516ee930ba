"""`annotator ingest` in a real process, held at its n-th write, so a test can signal or kill it
mid-run without racing it: it cannot finish while held.

`start_held(args, at, folder)` runs the CLI with `ingest._write_batch` wrapped: the `at`-th call
creates `folder/held` and then waits (at most two minutes) instead of writing, so every commit
before it has landed and none after it will. Signals reach it as in a plain run: SIGINT raises
KeyboardInterrupt in the wait, as it would in a write.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from subprocess import Popen
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_HELD = r"""
import sys, time
from pathlib import Path

from annotator.ingest import pipeline as ingest
from annotator.cli import app

held, at = Path(sys.argv[1]), int(sys.argv[2])
write, calls = ingest._write_batch, [0]


def held_write(db, rows):
    calls[0] += 1
    if calls[0] == at:
        held.touch()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.01)
        raise SystemExit("held ingest: the test never signalled it")
    return write(db, rows)


ingest._write_batch = held_write
app(sys.argv[3:], prog_name="annotator")
"""


def start_held(args: list[str], at: int, folder: Path, **popen: Any) -> tuple[Popen, Path]:
    """Start `annotator <args>` held at its `at`-th write; return the process and the file that
    appears once it is held. `popen`: more `subprocess.Popen` arguments (default: stdout and
    stderr piped, this checkout first on PYTHONPATH)."""
    held = folder / "held"
    held.unlink(missing_ok=True)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen.setdefault("env", {**os.environ, "PYTHONPATH": str(ROOT)})
    proc = subprocess.Popen([sys.executable, "-c", _HELD, str(held), str(at), *args], **popen)
    return proc, held
