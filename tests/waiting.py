"""Waiting in tests and benches: on a condition, never on a guess of how long something takes.

Every wait has a deadline; running past it fails and says what was awaited (and, when a process
was being watched, that it ended first and what it wrote to stderr).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    what: str,
    seconds: float = 60.0,
    proc: subprocess.Popen | None = None,
    interval: float = 0.01,
) -> T:
    """Call `condition` until it returns something truthy, and return that. Fails after
    `seconds`, or as soon as `proc` (if given) has exited, naming `what` was awaited."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-3000:] if proc.stderr else ""
            raise AssertionError(
                f"the process ended (exit {proc.returncode}) before {what}\n{err}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(interval)
