"""A read of the whole study done in two halves at once, on two cores.

`export` and `adjudicate` read every conversation one at a time, in id order, in Python: at
300,000 conversations that is most of their time, on one core of two. From `MIN_ROWS` rows,
the conversations from a split id on are read by a spawned worker process while this one
reads those before it; the caller then puts the two halves together in id order, so what
comes out is what one pass gives.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.pool import AsyncResult
from typing import Any

import sqlite_utils

from annotator.db import database_path

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


@contextmanager
def in_worker(function: Callable[..., Any], *args: Any) -> Iterator[AsyncResult]:
    """`function(*args)` started in a worker process, its result to `get()` in the block;
    leaving the block ends the worker, so an error here does not wait for it.

    Spawned, not forked: the caller may hold threads (a progress bar's) and their locks."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield pool.apply_async(function, args)


__all__ = ["MIN_ROWS", "in_worker", "second_half_start"]
