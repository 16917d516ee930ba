"""`worker_pool.spawned_pool`: real spawned processes. A worker's results and its printed
output arrive, and at its exit the worker leaves before the interpreter frees its objects (an
object's finalizer that would run then never runs)."""

from __future__ import annotations

import os
from pathlib import Path

from annotator.worker_pool import spawned_pool


class _WritesWhenFreed:
    def __init__(self, path: str) -> None:
        self.path = path

    def __del__(self) -> None:
        Path(self.path).write_text("freed")


_KEPT: list[_WritesWhenFreed] = []


def _task(freed: str) -> int:
    _KEPT.append(_WritesWhenFreed(freed))  # held until the interpreter frees it at exit
    print("printed by the worker", end="")  # no newline: still in the buffer at exit
    return os.getpid()


def test_a_worker_gives_its_results_and_output_and_leaves_without_freeing(tmp_path, capfd):
    freed = tmp_path / "freed"
    with spawned_pool(1) as pool:
        pid = pool.submit(_task, str(freed)).result()
    assert pid != os.getpid()
    assert "printed by the worker" in capfd.readouterr().out
    assert not freed.exists()


def test_the_finalizer_would_run_in_a_worker_that_frees_its_objects(tmp_path):
    """The check above can fail: the same task in a plain spawned pool writes the file."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    freed = tmp_path / "freed"
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_task, str(freed)).result()
    assert freed.read_text() == "freed"
