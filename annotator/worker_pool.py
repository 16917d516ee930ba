"""Pools of spawned worker processes for the summaries and the agreement report.

Spawn, not fork: the command calling them may hold threads (an HTTP client's, a progress
bar's) whose locks a forked child would inherit held. A worker holds the study's frames,
millions of Python objects at 700,000 conversations; at its exit it leaves without freeing
them one by one (the system takes the whole process's memory back at once), which the
command otherwise waited for: 0.45 s against 0.08 s for two workers each holding a frame.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor


def spawned_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes that leave at once when they exit."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_leave_at_once_at_exit)


def _leave_at_once_at_exit() -> None:
    atexit.register(_leave)


def _leave() -> None:
    """At a worker's exit (its tasks done, every result sent): its output flushed, the
    process ended before the interpreter frees its objects."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
