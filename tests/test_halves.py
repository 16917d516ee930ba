"""`datasets.halves.in_worker`, the worker process `export` and `adjudicate` read a study's
second half in: its result, its error, its death, its end (unit tests with real spawned
processes, no fakes)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from annotator.datasets.halves import in_worker
from annotator.errors import AnnotatorError


def test_a_workers_result_and_its_error_come_back() -> None:
    with in_worker("a division", divmod, 7, 2) as result:
        assert result.get() == (3, 1)
    with in_worker("a number", int, "not a number") as result, pytest.raises(ValueError,
                                                                  match="not a number"):
        result.get()


def test_a_killed_worker_is_a_one_line_error_not_a_wait_for_ever() -> None:
    """A pool waits for ever for the result of a worker the system killed (out of memory at
    paper scale): this one says so in one line."""
    started = time.monotonic()
    with in_worker("a long sleep", time.sleep, 120) as result:
        os.kill(result.process.pid, signal.SIGKILL)
        with pytest.raises(AnnotatorError, match="ended without a result") as caught:
            result.get()
    assert "\n" not in str(caught.value) and "computing a long sleep" in str(caught.value)
    assert time.monotonic() - started < 30


def test_leaving_the_block_ends_the_worker() -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the export failed"), \
            in_worker("a sleep", time.sleep, 120) as result:
        process = result.process
        raise RuntimeError("the export failed")
    assert not process.is_alive() and time.monotonic() - started < 30
