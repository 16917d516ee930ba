"""Where the app keeps what it computed: in memory, on disk beside the study, and in flight.

No Streamlit here, so the tests drive it directly.

- **When to recompute.** Each run stats the database file and its `-wal` (path, size, mtime):
  unchanged, nothing is read. Changed, `frame_store.table_signatures` (a few indexed aggregates)
  says which tables changed, and each result is keyed on the signatures of the tables it reads:
  a gold decision recomputes what reads gold, not the annotators' agreement.
- **Where.** Results ("bundles": a few frames and facts) live in memory (LRU) and on disk in
  `<study folder>/.annotator-cache/<database name>/`, as Arrow IPC files and JSON (never
  pickle: a study folder may come from someone else), so a restarted app starts warm; a
  stored result's frames are read when first used.
- **In flight.** A missing result is computed by a small thread pool, never in the page's own
  thread past a short wait: the page shows the previous result (marked as updating) or says
  it is computing, and refreshes when it is done. Each job opens its own SQLite connection and
  closes it: no SQLite object crosses threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlite_utils
from pyarrow import feather

from annotator.app import queries
from annotator.db import open_db
from annotator.errors import AnnotatorError
from annotator.measure import frames as report
from annotator.measure.frame_store import (
    SIGNATURES_MADE_OF,
    cache_root,
    store_built_frame,
    stored_frame,
    table_signatures,
)
from annotator.measure.summaries import Bundle, arrow_lists

# Bump when a bundle's content changes shape or its figures change: old files on disk are then
# ignored (`agreement` takes stored figures as its own: they must be the ones computed now).
BUNDLE_VERSION = "11"  # 10: means summed exactly: a stored score is the one computed now;
# 11: a missing response type in the conversation table is "", never "nan"
KEEP_ON_DISK = 2  # results kept per bundle name and parameters (the newest)
MEMORY_BUNDLES = 48
MEMORY_FRAMES = 6


Fingerprint = tuple[Any, ...]


def fingerprint(path: str | Path) -> Fingerprint | None:
    """(path, size, mtime) of the database and of its `-wal`; None if there is no database.

    A `-wal` that is absent or empty counts the same: opening a reader creates an empty one.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    wal = Path(f"{p}-wal")
    try:
        ws = wal.stat()
        wal_part: tuple[int, int] = (ws.st_size, ws.st_mtime_ns) if ws.st_size else (0, 0)
    except FileNotFoundError:
        wal_part = (0, 0)
    return (str(p.resolve()), st.st_size, st.st_mtime_ns, *wal_part)


@contextmanager
def study_db(path: str | Path) -> Iterator[sqlite_utils.Database]:
    """A connection for one piece of work, closed after it: none outlives its thread."""
    database = open_db(path)
    try:
        yield database
    finally:
        database.conn.close()


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- in-memory caches ----------------------------------------------------------------------------


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self.lock:
            if key not in self.items:
                return None
            self.items.move_to_end(key)
            return self.items[key]

    def put(self, key: Any, value: Any) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_signatures = _LRU(16)
_bundles = _LRU(MEMORY_BUNDLES)
_frames = _LRU(MEMORY_FRAMES)
_frame_locks: dict[Any, threading.Lock] = {}
_frame_locks_guard = threading.Lock()


def clear_memory() -> None:
    """Forget everything held in memory (the tests use it; disk results stay)."""
    for cache in (_signatures, _bundles, _frames, _memo):
        cache.clear()


FACTS_LAYOUT = 1  # raised when a fact is counted otherwise: earlier facts are then not reused


def _facts_file(path: str | Path, fp: Fingerprint) -> Path:
    return cache_root(path) / f"facts-{_hash(fp, SIGNATURES_MADE_OF)}.json"


def stored_facts(path: str | Path, fp: Fingerprint) -> dict[str, Any] | None:
    """`facts` if kept in memory or on disk for this version of the file, else None."""
    key = (str(path), fp)
    found = _signatures.get(key)
    if found is not None:
        return found
    try:
        found = json.loads(_facts_file(path, fp).read_text())
    except (OSError, ValueError):
        return None
    _signatures.put(key, found)
    return found


def facts(path: str | Path, fp: Fingerprint, signatures: dict[str, str] | None = None
          ) -> dict[str, Any]:
    """What every page asks first: per-table signatures, stage counts, prompt versions and
    sources. Read with SQL once per version of the file, then kept in memory and on disk (a
    restarted app reads a few kilobytes instead of scanning the tables); not kept when the
    file changed while they were read (they may be of the newer version). `signatures`: the
    ones the caller read of the file at `fp` (0.4 s at 300,000 conversations), not read
    again."""
    found = stored_facts(path, fp)
    if found is not None:
        return found
    with study_db(path) as database:
        signatures = table_signatures(database) if signatures is None else signatures
        earlier, same = _earlier_facts(path, signatures)
        stages = {stage: [row for row in earlier["stages"] if row[0] == stage]
                  for stage, (_, tables) in queries.STAGES.items() if set(tables) <= same}
        found = {
            "layout": FACTS_LAYOUT,
            "signatures": signatures,
            "stages": queries.stage_counts(database, stages).to_dict(orient="records"),
            "prompts": earlier["prompts"] if "extractions" in same else
            report.prompt_list(database).to_dict(orient="records"),
            "sources": earlier["sources"] if "conversations" in same else
            queries.conversation_sources(database),
        }
    if fingerprint(path) != fp:
        return found
    file = _facts_file(path, fp)
    file.parent.mkdir(parents=True, exist_ok=True)
    for old in file.parent.glob("facts-*.json"):
        old.unlink(missing_ok=True)
    tmp = file.with_suffix(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(found, default=str))
    os.replace(tmp, file)
    _signatures.put((str(path), fp), found)
    return found


def _earlier_facts(path: str | Path, signatures: Mapping[str, str]
                   ) -> tuple[dict[str, Any], set[str]]:
    """The facts kept on disk for an earlier version of the file, and the tables whose
    signatures have not changed since ("extractions": every version's): what those tables
    alone give is reused, not read again. ({}, no table) when none are kept, or they were
    made otherwise (`FACTS_LAYOUT`). The `prompts` table has no signature: its rows are only
    ever added (`record_prompt`), and a version without extractions is in no fact."""
    for file in cache_root(path).glob("facts-*.json"):
        try:
            earlier = json.loads(file.read_text())
            if earlier.get("layout") != FACTS_LAYOUT:  # counted otherwise: not reused
                continue
            before = dict(earlier["signatures"])
            earlier = {"stages": [(str(r["stage"]), str(r["detail"]), int(r["conversations"]))
                                  for r in earlier["stages"]],
                       "prompts": [dict(p) for p in earlier["prompts"]],
                       "sources": {str(k): int(n) for k, n in earlier["sources"].items()}}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # damaged
            continue
        same = {table for table, sig in signatures.items() if before.get(table) == sig}
        versions = {t for t in signatures if t.startswith("extractions:")}
        if versions <= same and versions == {t for t in before if t.startswith("extractions:")}:
            same.add("extractions")
        return earlier, same
    return {}, set()


def signatures(path: str | Path, fp: Fingerprint) -> dict[str, str]:
    """Per-table change signatures (see `facts`)."""
    return facts(path, fp)["signatures"]


# --- the study's frames, loaded once per table signature ----------------------------------------


def _build(path: str, table: str) -> tuple[pd.DataFrame, str]:
    with study_db(path) as database:
        return report.built_frame(database, table)


def store_frame(path: str | Path, table: str, sig: str) -> None:
    """The frame of `table` at `sig` built and stored if it is not; not read back (`frame`
    reads it)."""
    store_built_frame(path, table, sig, lambda: _build(str(path), table))


def frame(path: str | Path, table: str, sig: str) -> pd.DataFrame:
    """`annotations`, `gold` or `extractions:<prompt id>` as a frame; shared, read-only."""
    key = (str(path), table, sig)
    found = _frames.get(key)
    if found is not None:
        return found
    with _frame_locks_guard:
        lock = _frame_locks.setdefault(key, threading.Lock())
    with lock:  # two jobs that need the same table load it once
        found = _frames.get(key)
        if found is None:
            found = stored_frame(path, table, sig, lambda: _build(str(path), table))
            _frames.put(key, found)
    return found


# --- bundles on disk ---------------------------------------------------------------------------


def _bundle_dir(path: str | Path, name: str, params_hash: str) -> Path:
    return cache_root(path) / f"{name}-{params_hash}"


def _save(directory: Path, key: str, bundle: Bundle) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for fname, data in bundle.frames.items():
            table = pa.Table.from_pandas(data.reset_index(drop=True), preserve_index=False)
            feather.write_feather(table, tmp / f"{fname}.arrow", compression="uncompressed")
        (tmp / "meta.json").write_text(
            json.dumps({"meta": bundle.meta, "frames": list(bundle.frames),
                        "saved_at": time.time()}, default=str)
        )
        target = directory / key
        # Same key, same inputs, same result: a whole one already there (another process, or
        # the app and `annotator summarize` at once) stays, as a reader may hold its files.
        if _read(target) is None:
            shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(tmp, target)
            except OSError:
                if _read(target) is None:  # not a concurrent writer's whole result: a real fault
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    # keep the newest few results for these parameters: the previous one serves while a new
    # one computes after the next change
    done = sorted(
        (d for d in directory.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: d.stat().st_mtime_ns,
        reverse=True,
    )
    for old in done[KEEP_ON_DISK:]:
        shutil.rmtree(old, ignore_errors=True)


def _read_frame(file: Path) -> pd.DataFrame:
    # Arrow IPC, memory-mapped: reading is nearly free. List columns (value names) stay Arrow
    # lists: no Python object per name is made until a page shows a row.
    table = feather.read_table(file, memory_map=True)
    return table.to_pandas(types_mapper=arrow_lists)


class LazyFrames(Mapping[str, pd.DataFrame]):
    """A stored bundle's frames, each read from disk when a page first asks for it."""

    def __init__(self, directory: Path, names: list[str]) -> None:
        self.directory = directory
        self.names = names
        self.loaded: dict[str, pd.DataFrame] = {}
        self.lock = threading.Lock()

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.names:
            raise KeyError(name)
        with self.lock:
            if name not in self.loaded:
                self.loaded[name] = _read_frame(self.directory / f"{name}.arrow")
            return self.loaded[name]

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _read(directory: Path) -> Bundle | None:
    try:
        stored = json.loads((directory / "meta.json").read_text())
        names = list(stored["frames"])
        if not all((directory / f"{n}.arrow").exists() for n in names):
            return None
    except (OSError, ValueError, KeyError):
        return None  # absent, half-written by a crash, or from an older version: recompute
    meta = stored["meta"]
    meta["_saved_at"] = stored.get("saved_at")
    return Bundle(frames=LazyFrames(directory, names), meta=meta)  # type: ignore[arg-type]


def _latest(directory: Path) -> Bundle | None:
    if not directory.exists():
        return None
    done = sorted(
        (d for d in directory.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: d.stat().st_mtime_ns,
        reverse=True,
    )
    for d in done:
        found = _read(d)
        if found is not None:
            return found
    return None


# --- jobs ----------------------------------------------------------------------------------------

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="annotator-app")
_jobs: dict[tuple[str, str, str], Future] = {}
_jobs_lock = threading.RLock()  # a done callback may run in the submitting thread


@dataclass
class Result:
    """What a page gets: the result for the current data, else the previous one while the new
    one computes (`stale`), else nothing yet (`pending`); `error` if the computation failed."""

    bundle: Bundle | None
    stale: bool = False
    pending: bool = False
    error: str | None = None
    started: float | None = None


def get(
    path: str | Path,
    name: str,
    params: dict[str, Any],
    deps: dict[str, str],
    compute: Callable[[], Bundle],
    wait: float,
) -> Result:
    """The bundle `name` for these parameters and dependency signatures.

    Looks in memory, then on disk; else starts `compute` in the pool and waits up to `wait`
    seconds for it. Past that, returns the newest earlier result (stale) or none (pending).
    """
    params_hash = _hash(BUNDLE_VERSION, name, params)
    key = _hash(deps)
    mem_key = (str(Path(path).resolve()), name, params_hash, key)
    found = _bundles.get(mem_key)
    if found is not None:
        return Result(found)
    directory = _bundle_dir(path, name, params_hash)
    found = _read(directory / key)
    if found is not None:
        _bundles.put(mem_key, found)
        return Result(found)

    job_key = (str(Path(path).resolve()), f"{name}-{params_hash}", key)
    with _jobs_lock:
        future = _jobs.get(job_key)
        if future is None:
            started = time.time()
            future = _pool.submit(_compute_and_store, directory, key, mem_key, compute)
            future.started = started  # type: ignore[attr-defined]
            _jobs[job_key] = future
            # a finished job's result is in memory and on disk: forget the job (a failed one
            # stays until a page has shown its error)
            future.add_done_callback(lambda f, k=job_key: _forget(k, f))
    started = getattr(future, "started", None)
    try:
        bundle = future.result(timeout=max(wait, 0.0))
    except FutureTimeout:
        previous = _latest(directory)
        return Result(previous, stale=previous is not None, pending=True, started=started)
    except Exception as exc:  # noqa: BLE001 - shown on the page; the next run retries
        with _jobs_lock:
            _jobs.pop(job_key, None)
        # a user's error (a damaged row) as its one line; another with its kind
        why = str(exc) if isinstance(exc, AnnotatorError) else f"{type(exc).__name__}: {exc}"
        return Result(None, error=why, started=started)
    with _jobs_lock:
        _jobs.pop(job_key, None)
    return Result(bundle)


def _compute_and_store(
    directory: Path, key: str, mem_key: tuple[str, ...], compute: Callable[[], Bundle]
) -> Bundle:
    started = time.time()
    bundle = compute()
    bundle.meta["_computed_seconds"] = round(time.time() - started, 3)
    _save(directory, key, bundle)
    # served as stored, so a result has the same column types fresh or restarted
    bundle = _read(directory / key) or bundle
    _bundles.put(mem_key, bundle)
    return bundle


def ensure(
    path: str | Path,
    name: str,
    params: dict[str, Any],
    deps: dict[str, str],
    compute: Callable[[], Bundle],
) -> bool:
    """Compute and store the bundle in this thread unless it is stored already; True if it
    was computed (the commands that change a study call this through `precompute`)."""
    if stored(path, name, params, deps):
        return False
    params_hash = _hash(BUNDLE_VERSION, name, params)
    key = _hash(deps)
    _compute_and_store(_bundle_dir(path, name, params_hash), key,
                       (str(Path(path).resolve()), name, params_hash, key), compute)
    return True


def stored(path: str | Path, name: str, params: dict[str, Any], deps: dict[str, str]) -> bool:
    """Whether the bundle for these parameters and dependency signatures is on disk, whole."""
    return read_stored(path, name, params, deps) is not None


def read_stored(path: str | Path, name: str, params: dict[str, Any], deps: dict[str, str]
                ) -> Bundle | None:
    """The bundle for these parameters and dependency signatures as stored on disk, else None:
    never computed here (a command that only reads a result when it is there)."""
    directory = _bundle_dir(path, name, _hash(BUNDLE_VERSION, name, params)) / _hash(deps)
    return _read(directory) if (directory / "meta.json").exists() else None


def read_stored_table(path: str | Path, name: str, params: dict[str, Any], deps: dict[str, str],
                      frame_name: str) -> pa.Table | None:
    """One frame of the bundle stored for these parameters and dependency signatures, as the
    Arrow table on disk (a summary made from the one before it reads it so); None if the
    bundle is not stored whole."""
    directory = _bundle_dir(path, name, _hash(BUNDLE_VERSION, name, params)) / _hash(deps)
    bundle = _read(directory) if (directory / "meta.json").exists() else None
    return _stored_arrow(directory, bundle, frame_name)


def latest_stored_table(path: str | Path, name: str, params: dict[str, Any], frame_name: str
                        ) -> tuple[dict[str, Any], pa.Table] | None:
    """The meta and one frame (the Arrow table on disk) of the newest bundle stored whole for
    these parameters, whatever it was computed from (its meta may say: a summary made from the
    one before a change checks it is the one it needs); None if there is none."""
    bundle = _latest(_bundle_dir(path, name, _hash(BUNDLE_VERSION, name, params)))
    table = _stored_arrow(bundle.frames.directory, bundle, frame_name) if bundle else None
    return None if table is None else (bundle.meta, table)


def _stored_arrow(directory: Path, bundle: Bundle | None, frame_name: str) -> pa.Table | None:
    """One frame of a bundle stored whole in `directory`, as the Arrow table on disk."""
    if bundle is None or frame_name not in bundle.frames:
        return None
    try:
        return feather.read_table(directory / f"{frame_name}.arrow", memory_map=True)
    except (OSError, pa.ArrowException):
        return None


def _forget(job_key: tuple[str, str, str], future: Future) -> None:
    if future.exception() is None:
        with _jobs_lock:
            if _jobs.get(job_key) is future:
                del _jobs[job_key]


def pending_jobs() -> int:
    with _jobs_lock:
        return sum(1 for f in _jobs.values() if not f.done())


_memo = _LRU(64)


def memo(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """A derived value kept in memory under `key` (which must name every input's version)."""
    found = _memo.get(key)
    if found is None:
        found = compute()
        _memo.put(key, found)
    return found
