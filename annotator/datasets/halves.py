"""A read of the whole study done in two halves at once, on two cores.

`export` and `adjudicate` read every conversation one at a time, in id order, in Python: at
300,000 conversations that is most of their time, on one core of two. From `MIN_ROWS` rows,
the conversations from a split id on are read by a spawned worker process while this one
reads those before it; the caller then puts the two halves together in id order, so what
comes out is what one pass gives.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import sqlite_utils

from annotator.db import database_path
from annotator.errors import AnnotatorError

# From this many rows of the table split on, the second half is read by a worker: below it,
# starting the process (about a second) costs more than it saves.
MIN_ROWS = 50_000


def second_half_start(db: sqlite_utils.Database, table: str) -> str | None:
    """The conversation id the second half of `table`'s rows starts at; None: read in one
    part (a small study, or a database in memory, which a worker cannot open)."""
    count = db[table].count
    if count < MIN_ROWS or database_path(db) is None:
        return None
    row = db.execute(f"select conversation_id from {table} order by conversation_id "
                     "limit 1 offset ?", [count // 2]).fetchone()
    return row[0] if row else None


WAIT_TICK = 0.2  # seconds between calls of `WorkerResult.get`'s `while_waiting`

# (rows read, of how many): the progress of a read in two halves, both counted together.
Progress = Callable[[int, int], None]
PROGRESS_EVERY = 5_000  # rows read between two reports of progress


class RowsRead:
    """The rows a read in two halves has read, here and in its worker (which adds to
    `shared`: `for_worker`, `worker_counting`), reported to `progress` as one count."""

    def __init__(self, progress: Progress, total: int, every: int | None = None) -> None:
        self.progress, self.total = progress, total
        self.every = every or PROGRESS_EVERY
        self.here = 0
        # a count a spawned worker is given when it starts (a shared value is passed to a
        # process that way, not later)
        self.shared = multiprocessing.get_context("spawn").Value("q", 0)

    def add(self, rows: int) -> None:
        self.here += rows
        self.report()

    def report(self) -> None:
        self.progress(min(self.here + self.shared.value, self.total), self.total)

    def done(self) -> None:
        self.progress(self.total, self.total)


# What a worker is given to count its rows with (`RowsRead.shared`, `every`); None: nothing.
WorkerCount = tuple[Any, int] | None


def counting(rows_read: RowsRead | None) -> tuple[Callable[[int], None] | None, int]:
    """The callback and the interval for this process's part of a read (none: no progress)."""
    return (rows_read.add, rows_read.every) if rows_read else (None, PROGRESS_EVERY)


def for_worker(rows_read: RowsRead | None) -> WorkerCount:
    """What the worker is given (`in_worker`'s arguments) to add its rows to `rows_read`."""
    return (rows_read.shared, rows_read.every) if rows_read else None


def worker_counting(count: WorkerCount) -> tuple[Callable[[int], None] | None, int]:
    """In the worker: `counting` of the count it was given."""
    return (functools.partial(_add_rows, count[0]), count[1]) if count else (None,
                                                                           PROGRESS_EVERY)


def _add_rows(shared: Any, rows: int) -> None:
    with shared.get_lock():
        shared.value += rows


class WorkerResult:
    """What a worker process started by `in_worker` returns, once it has."""

    def __init__(self, process: BaseProcess, receiver: Connection, what: str) -> None:
        self.process = process
        self._receiver = receiver
        self._what = what

    def get(self, while_waiting: Callable[[], None] | None = None) -> Any:
        """The worker's result; its exception, raised here; a one-line error if it ended
        without either (killed, out of memory), never a wait for a result that cannot come.
        `while_waiting` is called every `WAIT_TICK` seconds until the result comes (progress
        shown meanwhile)."""
        try:
            while while_waiting is not None and not self._receiver.poll(WAIT_TICK):
                while_waiting()  # a dead worker's pipe polls readable (EOF): no endless wait
            # the worker holds the pipe's only other end: its death is the pipe's end (EOF)
            failed, value = self._receiver.recv()
        except EOFError:
            self.process.join()
            raise AnnotatorError(
                f"the worker process computing {self._what} ended without a result (exit "
                f"code {self.process.exitcode}: killed, or out of memory?); nothing was "
                "written") from None
        if failed:
            raise value
        return value


@contextmanager
def in_worker(what: str, function: Callable[..., Any], *args: Any) -> Iterator[WorkerResult]:
    """`function(*args)` started in a worker process, its result to `get()` in the block;
    leaving the block ends the worker, so an error here does not wait for it. `what` it
    computes, in words for an error.

    Spawned, not forked: the caller may hold threads (a progress bar's) and their locks. A
    plain process, not a pool's: a pool waits forever for the result of a worker the system
    killed. Daemonic: it may start no process of its own, and ends with this one."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_run, args=(sender, function, args), daemon=True)
    process.start()
    sender.close()  # so that the worker's end is the only one: see `WorkerResult.get`
    try:
        yield WorkerResult(process, receiver, what)
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
        receiver.close()


def _run(sender: Connection, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        outcome: tuple[bool, Any] = (False, function(*args))
    except BaseException as exc:  # noqa: BLE001 - raised again in the caller's process
        outcome = (True, exc)
    try:
        sender.send(outcome)
    except Exception as exc:  # noqa: BLE001 - a result or an exception that does not pickle
        sender.send((True, RuntimeError(f"{type(exc).__name__}: {exc}")))
    sender.close()


__all__ = [
    "MIN_ROWS",
    "PROGRESS_EVERY",
    "Progress",
    "RowsRead",
    "WorkerResult",
    "WorkerCount",
    "counting",
    "for_worker",
    "in_worker",
    "second_half_start",
    "worker_counting",
]
