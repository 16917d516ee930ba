"""Extraction benchmark: the engine against the fake Anthropic API, over real HTTP.

The fake (tests/fake_anthropic.py) runs in its own process under uvicorn, so the figures measure
the engine (SDK, validation, taxonomy resolution, SQLite commits), not the fake. Prints:
- conversations per second at concurrency 1, 16 and 64 with 200 ms latency a call, and the
  ratio to the ideal (concurrency / latency); concurrency 1 uses fewer conversations (it would
  take 400 s for 2,000) and says so;
- the engine's own overhead per call at zero latency: its time per call minus that of a bare
  HTTP round trip (httpx2, same request body) to the same fake;
- peak memory (max RSS of this process, which runs the engine);
- a run with 20% injected faults (429, 529, 500, malformed, refusal): every conversation must end
  with a result or a recorded error, and the count of duplicated paid calls must be 0.

    python bench/extract.py              # 2,000 conversations
    python bench/extract.py --n 500      # a quicker run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_anthropic import synthetic_turns  # noqa: E402

from annotator import db as db_module  # noqa: E402
from annotator import taxonomy  # noqa: E402
from annotator.extract.baseline import BaselineExtractor  # noqa: E402
from annotator.extract.claude import ClaudeExtractor  # noqa: E402
from annotator.extract.engine import extract  # noqa: E402
from annotator.extract.prompts import load_prompt, render  # noqa: E402
from annotator.extract.run_report import ExtractReport  # noqa: E402
from annotator.models import Conversation, Turn  # noqa: E402

API_KEY = "sk-ant-bench-not-a-real-key"
LATENCY = 0.2


class Fake:
    """The fake API in a child process, configured and read over HTTP."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fake_anthropic.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake did not start: {line!r}")
        self.url = f"http://127.0.0.1:{line.split()[1]}"

    def configure(self, **settings: object) -> None:
        httpx2.post(f"{self.url}/_fake/config", content=orjson.dumps(settings)).raise_for_status()

    def stats(self) -> dict:
        return httpx2.get(f"{self.url}/_fake/stats").json()

    def cpu(self) -> float:
        """CPU seconds the fake's process has used (user + system, all threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def make_db(path: Path, n: int, seed: int = 11) -> list[Conversation]:
    rng = random.Random(seed)
    names = [v.name for v in taxonomy.top_values(150)]
    convs = [
        Conversation.from_turns(
            [Turn(role=r, text=t) for r, t in synthetic_turns(i, names, rng)], source="bench"
        )
        for i in range(n)
    ]
    database = db_module.open_db(path)
    with database.conn:
        database["conversations"].insert_all(
            [db_module.conversation_to_row(c) for c in convs], pk="id"
        )
    database.conn.close()
    return convs


def fresh_copy(template: Path, directory: Path, name: str) -> Path:
    target = directory / f"{name}.db"
    shutil.copy(template, target)
    return target


@dataclass
class Run:
    report: ExtractReport
    seconds: float
    engine_cpu: float  # CPU seconds of this process (the engine) during the run
    fake_cpu: float

    @property
    def n(self) -> int:
        return self.report.ok_or_error

    def cpu_note(self) -> str:
        return (
            f"CPU per call: engine {self.engine_cpu / self.n * 1000:.2f} ms, "
            f"fake {self.fake_cpu / self.n * 1000:.2f} ms"
        )


def run(path: Path, fake: Fake, concurrency: int, limit: int | None = None) -> Run:
    cpu, fake_cpu = time.process_time(), fake.cpu()
    started = time.perf_counter()
    report = extract(
        path,
        extractor="claude",
        api_key=API_KEY,
        base_url=fake.url,
        concurrency=concurrency,
        limit=limit,
    )
    seconds = time.perf_counter() - started
    return Run(report, seconds, time.process_time() - cpu, fake.cpu() - fake_cpu)


async def bare_round_trips(fake: Fake, conv: Conversation, n: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call for the same request body with a plain HTTP client."""
    prompt = load_prompt()
    ex = ClaudeExtractor(api_key=API_KEY, model=prompt.front_matter["model"], base_url=fake.url)
    body = orjson.dumps(ex.params(conv, prompt))
    await ex.aclose()
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01",
               "content-type": "application/json"}
    async with httpx2.AsyncClient(base_url=fake.url) as client:
        for _ in range(20):  # warm the connection and the fake
            (await client.post("/v1/messages", content=body, headers=headers)).raise_for_status()
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            reply = await client.post("/v1/messages", content=body, headers=headers)
            orjson.loads(reply.content)
        return (time.perf_counter() - started) / n, (time.process_time() - cpu) / n


def duplicated_paid_calls(path: Path, convs: list[Conversation], stats: dict) -> tuple[int, int]:
    """(paid calls the engine has no record of, conversations paid for a valid reply twice)."""
    prompt = load_prompt()
    key_of = {c.id: render(prompt, c).user for c in convs}
    database = db_module.open_db(path)
    logged: dict[str, int] = {}
    valid: dict[str, int] = {}
    for cid, status in database.execute(
        "select conversation_id, status from model_calls where response is not null "
        "and status in ('ok', 'invalid', 'refusal')"
    ):
        logged[cid] = logged.get(cid, 0) + 1
        valid[cid] = valid.get(cid, 0) + (status == "ok")
    database.conn.close()
    unrecorded = sum(
        max(0, stats["paid"].get(key_of[c.id], 0) - logged.get(c.id, 0)) for c in convs
    )
    twice = sum(1 for c in convs if valid.get(c.id, 0) > 1)
    return unrecorded, twice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="conversations (default 2,000)")
    parser.add_argument("--n-serial", type=int, default=100, help="conversations at c=1")
    parser.add_argument("--repeat", type=int, default=3, help="runs at c=64 (default 3)")
    args = parser.parse_args()

    taxonomy.load_taxonomy()
    loaded_ex = ClaudeExtractor(api_key=API_KEY, model="claude-sonnet-4-6")  # SDK, HTTP, TLS
    asyncio.run(loaded_ex.aclose())
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fake = Fake()
    workdir = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        template = workdir / "template.db"
        convs = make_db(template, args.n)
        names = [v.name for v in taxonomy.top_values(300)]
        print(f"{args.n:,} synthetic conversations; fake API in pid {fake.proc.pid} at {fake.url}")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

        # engine overhead at zero latency
        fake.configure(latency=0.0, fault_rate=0.0, names=names, reset=True)
        n0 = min(300, args.n)
        warm = fresh_copy(template, workdir, "warm")
        run(warm, fake, 1, limit=20)
        zero = run(fresh_copy(template, workdir, "zero"), fake, 1, limit=n0)
        wall, cpu = zero.seconds / zero.n, zero.engine_cpu / zero.n
        bare_wall, bare_cpu = asyncio.run(bare_round_trips(fake, convs[0], n0))
        print(
            f"zero latency, c=1, {n0} calls: through the engine {wall * 1000:.2f} ms/call "
            f"(CPU {cpu * 1000:.2f}); bare HTTP round trip {bare_wall * 1000:.2f} ms/call "
            f"(CPU {bare_cpu * 1000:.2f})\n"
            f"  -> engine overhead {(wall - bare_wall) * 1000:.2f} ms/call wall, "
            f"{(cpu - bare_cpu) * 1000:.2f} ms/call CPU (goal < 5)"
        )

        # the offline baseline extractor (no API): CPU per conversation, after a warm-up
        offline = BaselineExtractor()
        sample = convs[: min(300, len(convs))]
        offline.label(sample[0])
        started = time.process_time()
        for conv in sample:
            offline.label(conv)
        per_conv = (time.process_time() - started) / len(sample)
        print(f"offline baseline: {per_conv * 1000:.2f} ms CPU per conversation ({len(sample)})")

        # throughput with 200 ms latency
        fake.configure(latency=LATENCY, reset=True)
        for concurrency in (1, 16, 64):
            limit = args.n_serial if concurrency == 1 else None
            # c=64 is repeated: on a shared machine its wall time swings with others' load.
            repeats = args.repeat if concurrency == 64 else 1
            ratios = []
            for attempt in range(repeats):
                path = fresh_copy(template, workdir, f"c{concurrency}-{attempt}")
                result = run(path, fake, concurrency, limit=limit)
                rate = result.n / result.seconds
                ideal = concurrency / LATENCY
                ratios.append(rate / ideal)
                note = f" ({limit} conversations)" if limit else ""
                print(
                    f"latency {LATENCY * 1000:.0f} ms, c={concurrency:>2}{note}: "
                    f"{result.n} in {result.seconds:.2f} s = {rate:.1f} conv/s, "
                    f"ideal {ideal:.0f}/s, ratio {rate / ideal:.3f}; {result.cpu_note()}; "
                    f"load {os.getloadavg()[0]:.2f}"
                )
            if repeats > 1:
                print(
                    f"  c={concurrency} over {repeats} runs: ratio median "
                    f"{statistics.median(ratios):.3f}, best {max(ratios):.3f} (goal >= 0.8)"
                )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"peak memory (max RSS of the engine's process): {peak:.0f} MB, of which "
            f"{loaded:.0f} MB before any run (interpreter, SDK, taxonomy)"
        )

        # 20% faults
        fake.configure(latency=LATENCY, fault_rate=0.2, seed=5, reset=True)
        path = fresh_copy(template, workdir, "faults")
        faulty = run(path, fake, 64)
        report, seconds = faulty.report, faulty.seconds
        stats = fake.stats()
        database = db_module.open_db(path)
        settled = database.execute("select status, count(*) from extractions group by status")
        by_status = dict(settled.fetchall())
        database.conn.close()
        unrecorded, twice = duplicated_paid_calls(path, convs, stats)
        ended = sum(by_status.values())
        print(
            f"20% faults, c=64: {seconds:.2f} s; faults served {stats['faults']}; "
            f"conversations ended {ended}/{args.n} (ok {by_status.get('ok', 0)}, "
            f"error rows {by_status.get('error', 0)}); "
            f"error reasons {report.error_reasons}"
        )
        print(
            f"duplicated paid calls: {unrecorded} (paid at the fake but not recorded); "
            f"conversations paid for a valid reply twice: {twice}"
        )
        if ended != args.n or unrecorded or twice:
            sys.exit("FAILED: a conversation was dropped or a call was paid twice")
    finally:
        fake.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
