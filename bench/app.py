"""Benchmark the Streamlit app in a real browser on a synthetic study at paper scale.

    .venv/bin/python bench/app.py [--n 300000] [--db bench/out/app-300k.db] [--rebuild]

Builds (once) a study of N conversations (a user turn and an assistant turn of plain sentences),
3 annotators who each skip 10% of them, 2 prompt versions extracted for every conversation (AI
values with evidence quotes from the assistant's turn, as the extractors store them), gold for
every conversation and a Label Studio task each. Value sets come from the released
frequencies; annotators and prompt versions are noisy copies of a hidden true label (v2 closer
than v1). Rows go in with `executemany`, one transaction per table, through the study's own
schema (`open_db`).

Then serves the app with `annotator app` (`streamlit run` with the app's modules loaded first;
`--streamlit-run` for plain `streamlit run`) and drives Debian's headless Chromium (Playwright):
for each page, the time from navigation to the first complete render (the script idle, nothing
left "computing", the page's content shown), and the time to rerender after choosing the other
prompt version in the sidebar. Three rounds:

1. a study the app has never seen and nothing computed ahead (its summary cache removed): what
   a visitor waits while the app computes agreement and scores itself (skip: --skip-cold);
2. after `annotator summarize` (what `extract`, `pull` and `adjudicate` run when they finish;
   its time is printed), on a new server: the first visit after the pipeline;
3. a new browser session on the running server.

The goals (first render under 4 s, rerender under 1.5 s) are checked on rounds 2 and 3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthetic import group_values  # noqa: E402 - bench/synthetic.py

from annotator.db import open_db  # noqa: E402
from annotator.models import ResponseType  # noqa: E402
from annotator.taxonomy import load_taxonomy  # noqa: E402

ANNOTATORS = ("annotator-1", "annotator-2", "annotator-3")
PROMPTS = {  # id -> (keep a true value, extra values per conversation, response-type accuracy)
    "synthetic-v1": (0.70, 0.8, 0.65),
    "synthetic-v2": (0.85, 0.4, 0.80),
}
RESPONSE_TYPES = [r.value for r in ResponseType]
RT_SHARES = np.array([0.28, 0.145, 0.10, 0.066, 0.03, 0.03, 0.349])
SENTENCE = (
    "the plan keeps a steady pace while we check each step and write down what changed "
    "before asking again about the budget the deadline and the people it affects"
)
WORDS = SENTENCE.split()
STAMP = "2026-01-01T00:00:00+00:00"


def _value_table() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Value names, their released frequencies, and each name's ValueRef JSON prefix."""
    tree = load_taxonomy()
    leaves = sorted(tree.nodes_at(0), key=lambda n: -(n.pct_convos or 0.0))
    names = np.array([n.name for n in leaves], dtype=object)
    p = np.array([(n.pct_convos or 0.0) / 100.0 for n in leaves])
    refs = [
        orjson.dumps({"name": n.name, "node_id": n.id, "path": tree.path(n)}).decode()[:-1]
        for n in leaves
    ]
    return names, p, refs


def _noisy(rng, conv, val, n, p, keep, extra):
    k = rng.random(conv.size) < keep
    n_extra = rng.poisson(extra, n)
    ec = np.repeat(np.arange(n), n_extra)
    ev = rng.choice(p.size, size=ec.size, p=p / p.sum())
    return group_values(np.concatenate([conv[k], ec]), np.concatenate([val[k], ev]), n)


def _rt(rng, true: np.ndarray, accuracy: float) -> np.ndarray:
    out = true.copy()
    flip = rng.random(true.size) > accuracy
    out[flip] = rng.choice(7, int(flip.sum()), p=RT_SHARES)
    return out


def build_study(path: Path | str, n: int = 300_000, seed: int = 7) -> dict[str, int]:
    """Write the synthetic study to `path` (which must not exist); return row counts."""
    path = Path(path)
    if path.exists():
        raise SystemExit(f"{path} exists: remove it first")
    rng = np.random.default_rng(seed)
    names, p, refs = _value_table()
    k = rng.binomial(n, p)
    val = np.repeat(np.arange(p.size), k)
    conv = rng.integers(0, n, val.size)
    true_sets = group_values(conv, val, n)
    true_rt = rng.choice(7, n, p=RT_SHARES)
    ids = [f"{i:024x}" for i in range(n)]
    db = open_db(path)
    counts: dict[str, int] = {}
    c = db.conn

    words = np.array(WORDS, dtype=object)
    lens = rng.integers(8, 30, size=(n, 2))
    starts = rng.integers(0, len(WORDS), size=(n, 2))
    assistant_texts: list[str] = []
    rows = []
    for i in range(n):
        user = " ".join(np.roll(words, -starts[i, 0])[: lens[i, 0]])
        vs = names[true_sets[i][:3]]
        assistant = (
            " ".join(np.roll(words, -starts[i, 1])[: lens[i, 1]])
            + ". "
            + " ".join(f"This respects {v}." for v in vs)
        )
        assistant_texts.append(assistant)
        turns = orjson.dumps([{"role": "user", "text": user + "?"},
                              {"role": "assistant", "text": assistant}]).decode()
        rows.append((ids[i], "synthetic", f"s{i}", turns, "{}", 1, STAMP))
    with c:
        c.executemany("insert into conversations values (?, ?, ?, ?, ?, ?, ?)", rows)
    counts["conversations"] = n

    with c:
        c.executemany(
            "insert into prompts (id, name, version, text, front_matter, first_used_at) "
            "values (?, ?, ?, ?, ?, ?)",
            [(pid, "synthetic", pid.rsplit("-", 1)[1], f"synthetic prompt {pid}", "{}", STAMP)
             for pid in PROMPTS],
        )

    def ref_json(i: int, vs: np.ndarray) -> str:
        text = assistant_texts[i]
        parts = []
        for v in vs:
            quote = f"This respects {names[v]}."
            evidence = orjson.dumps(quote if quote in text else None).decode()
            parts.append(f'{refs[v]},"evidence":{evidence},"score":0.8}}')
        return "[" + ",".join(parts) + "]"

    ext_rows = 0
    for pid, (keep, extra, acc) in PROMPTS.items():
        sets = _noisy(rng, conv, val, n, p, keep, extra)
        rts = _rt(rng, true_rt, acc)
        batch = [
            (ids[i], pid, "synthetic-model", "synthetic", 1, ref_json(i, sets[i]), "[]",
             RESPONSE_TYPES[rts[i]], "ok", None, None, 0, 0, 0, 0, 0.0, 1, STAMP)
            for i in range(n)
        ]
        with c:
            c.executemany(
                "insert into extractions (conversation_id, prompt_id, model, extractor, "
                "subjective, ai_values, human_values, response_type, status, error, raw_reply, "
                "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, "
                "attempts, created_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)",
                batch,
            )
        ext_rows += len(batch)
    counts["extractions"] = ext_rows

    ann_rows = []
    for a, name in enumerate(ANNOTATORS):
        present = rng.random(n) >= 0.10
        sets = _noisy(rng, conv, val, n, p, 0.85, 0.4)
        rts = _rt(rng, true_rt, 0.8)
        leads = rng.gamma(2.0, 30.0, n)
        for i in np.flatnonzero(present):
            labels = orjson.dumps({"ai_values": names[sets[i]].tolist(), "human_values": [],
                                   "response_type": RESPONSE_TYPES[rts[i]],
                                   "subjective": True}).decode()
            ann_rows.append((f"ls:{a}:{i}", ids[i], name, labels, float(leads[i]), 0, 0, STAMP,
                             "[]"))
    with c:
        c.executemany("insert into annotations (id, conversation_id, annotator, labels, "
                      "lead_time, cancelled, deleted, updated_at, history) values "
                      "(?, ?, ?, ?, ?, ?, ?, ?, ?)", ann_rows)
    counts["annotations"] = len(ann_rows)

    with c:
        c.executemany(
            "insert into gold (conversation_id, ai_values, human_values, response_type, "
            "subjective, decided_by, decided_at, from_annotations, history) values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(ids[i], orjson.dumps(names[true_sets[i]].tolist()).decode(), "[]",
              RESPONSE_TYPES[true_rt[i]], 1, "majority", STAMP,
              orjson.dumps(list(ANNOTATORS)).decode(), "[]") for i in range(n)],
        )
        c.executemany(
            "insert into tasks (conversation_id, project_id, task_id, pushed_at, "
            "prompt_versions) values (?, ?, ?, ?, ?)",
            [(ids[i], 1, i + 1, STAMP, orjson.dumps(list(PROMPTS)).decode())
             for i in range(n)],
        )
    counts["gold"] = counts["tasks"] = n
    c.execute("pragma wal_checkpoint(truncate)")
    c.close()
    return counts


# --- the browser ---------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Counts completed script runs (running -> notRunning) so a rerun is never missed, however fast.
RUN_COUNTER = """
(() => {
  window.__runs = 0; let last = null;
  const seen = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app) return;
    const state = app.getAttribute('data-test-script-state');
    if (state !== last) {  // the first state seen may already be notRunning: count it
      if (state === 'notRunning') window.__runs++;
      last = state;
    }
  };
  new MutationObserver(seen).observe(document, {subtree: true, childList: true,
    attributes: true, attributeFilter: ['data-test-script-state']});
})();
"""
COMPLETE = """
([before, marker]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (window.__runs <= before) return false;
  const text = document.body.innerText;
  if (text.includes('This page refreshes when it is ready') || text.includes('Updating ')) {
    return false;
  }
  if (document.querySelector('[data-testid="stException"]')) return true;  // fail loudly below
  return marker === null || text.includes(marker);
}
"""
PAGES = {  # url path -> text present once the page's main content is drawn
    "": "Response types",
    "annotators": "Pairwise Cohen's kappa",
    "prompts": "Per-value precision and recall",
    "disagreements": "Read a conversation",
    "gold": "Decide the gold labels",
    "export": "Prepare the export",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LAUNCHER = {"value": "annotator"}  # or "streamlit": plain `streamlit run` (--streamlit-run)


def serve(db: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "ANNOTATOR_DB": str(db)}
    if LAUNCHER["value"] == "annotator":
        command = [str(Path(sys.executable).with_name("annotator")), "app", "--db", str(db),
                   "--port", str(port), "--no-browser"]
    else:
        command = [sys.executable, "-m", "streamlit", "run",
                   str(ROOT / "annotator" / "app" / "streamlit_app.py"),
                   "--server.port", str(port), "--server.address", "127.0.0.1",
                   "--server.headless", "true", "--browser.gatherUsageStats", "false",
                   "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"]
    with open(log, "a") as out:
        proc = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise SystemExit(f"streamlit did not start; see {log}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


SAY_EVERY_S = 30.0  # a long wait says what it waits for this often, instead of hanging silently


def _wait_js(page, js: str, arg: list, what: str, timeout_s: float,
             server: subprocess.Popen) -> None:
    """Wait until `js` holds in the page, in slices: between them, fail at once if the app
    server has exited, say what is awaited, and fail at `timeout_s` naming it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    started = time.monotonic()
    while True:
        left = timeout_s - (time.monotonic() - started)
        try:
            page.wait_for_function(js, arg=arg, timeout=max(1.0, min(SAY_EVERY_S, left)) * 1000,
                                   polling=50)
            return
        except PlaywrightTimeout:
            waited = time.monotonic() - started
            if server.poll() is not None:
                raise SystemExit(f"the app server exited ({server.returncode}) while waiting "
                                 f"for {what}; see its log") from None
            if waited >= timeout_s:
                raise SystemExit(f"timed out after {waited:.0f} s waiting for {what} (the "
                                 "deadline: --timeout, --summarized-timeout)") from None
            print(f"    still waiting for {what}: {waited:.0f} s", flush=True)


def _wait_complete(page, before: int, marker: str | None, what: str, timeout_s: float,
                   server: subprocess.Popen) -> None:
    _wait_js(page, COMPLETE, [before, marker], what, timeout_s, server)
    if page.locator('[data-testid="stException"]').count():
        raise SystemExit(page.locator('[data-testid="stException"]').first.inner_text()[:2000])


def measure_round(
    browser, url: str, prompts: list[str], timeout_s: float, server: subprocess.Popen
) -> dict[str, dict]:
    """Per page: seconds to the first complete render and to the rerender after choosing the
    other prompt version (and back, so every page starts from the same version)."""
    out: dict[str, dict] = {}
    for path, marker in PAGES.items():
        name = path or "overview"
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)  # clicks and reads: fail with Playwright's message
        context.add_init_script(RUN_COUNTER)
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(f"{url}/{path}")
        _wait_complete(page, 0, marker, f"the {name} page's first render", timeout_s, server)
        first = time.perf_counter() - t0
        rerenders = []
        for target in (prompts[0], prompts[1]):  # newest is shown first: go to v1, then back
            before = page.evaluate("window.__runs")
            box = page.locator('[data-testid="stSidebar"]').get_by_role(
                "combobox", name="Prompt version")
            names_version = "Model labels" in page.inner_text("body")
            box.click()
            option = page.get_by_role("option", name=target, exact=False).first
            t0 = time.perf_counter()
            option.click()
            _wait_complete(page, before, None, f"the {name} page's rerender for {target}",
                           timeout_s, server)
            if names_version:  # the pages showing model labels name the version
                _wait_js(page, "([v]) => document.body.innerText.includes(v)", [target],
                         f"the {name} page to name {target}", timeout_s, server)
            rerenders.append(time.perf_counter() - t0)
        out[name] = {"first": first, "rerender": rerenders}
        print(f"  {name:14} first {first:6.2f} s, rerender "
              + ", ".join(f"{r:.2f} s" for r in rerenders), flush=True)
        context.close()
    return out


def run_rounds(
    db: Path, out_dir: Path, timeout_s: float, summarized_s: float, skip_cold: bool = False
) -> list[tuple[str, dict]]:
    from playwright.sync_api import sync_playwright

    from annotator.db import open_db

    with closing(open_db(db).conn) as conn:
        prompts = [r[0] for r in conn.execute(
            "select id from prompts order by first_used_at, id")]
    log = out_dir / "streamlit.log"
    cache = db.resolve().parent / ".annotator-cache" / db.name
    shutil.rmtree(cache, ignore_errors=True)
    rounds = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        if not skip_cold:
            port = free_port()
            proc = serve(db, port, log)
            try:
                url = f"http://127.0.0.1:{port}"
                print("round 1: a study the app has never seen, nothing computed ahead",
                      flush=True)
                rounds.append(("1. never seen (computes)",
                               measure_round(browser, url, prompts, timeout_s, proc)))
            finally:
                stop(proc)
        shutil.rmtree(cache, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("annotator")), "summarize", "--db",
                        str(db)], check=True, timeout=timeout_s)
        print(f"annotator summarize (what extract, pull and adjudicate run when they finish): "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        port = free_port()
        proc = serve(db, port, log)
        try:
            url = f"http://127.0.0.1:{port}"
            print("round 2: a new server on the summarized study", flush=True)
            rounds.append(("2. after summarize", measure_round(browser, url, prompts,
                                                                summarized_s, proc)))
            print("round 3: a new session", flush=True)
            rounds.append(("3. new session", measure_round(browser, url, prompts,
                                                            summarized_s, proc)))
        finally:
            stop(proc)
        browser.close()
    return rounds


def print_rounds(rounds: list[tuple[str, dict]]) -> None:
    print(f"{'round':28} {'page':14} {'first render':>13} {'rerender (v1, back to v2)':>27}")
    for name, pages in rounds:
        for page, r in pages.items():
            re1, re2 = r["rerender"]
            print(f"{name:28} {page:14} {r['first']:12.2f}s {re1:12.2f}s {re2:12.2f}s")
    for label, chosen in (("round 1 (never seen)", rounds[:1] if len(rounds) == 3 else []),
                          ("rounds 2-3 (summarized)", rounds[-2:])):
        if not chosen:
            continue
        worst_first = max(r["first"] for _, pages in chosen for r in pages.values())
        worst_re = max(max(r["rerender"]) for _, pages in chosen for r in pages.values())
        print(f"{label}, worst page: first render {worst_first:.2f} s (goal < 4 s), "
              f"rerender {worst_re:.2f} s (goal < 1.5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=ROOT / "bench" / "out" / "app-300k.db")
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true", help="build the study again")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--skip-cold", action="store_true",
                        help="skip round 1 (the app computing everything itself)")
    parser.add_argument("--streamlit-run", action="store_true",
                        help="serve with plain `streamlit run` instead of `annotator app` (the "
                        "app's modules then load on the first visit)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for one render (round 1 computes everything)")
    parser.add_argument("--summarized-timeout", type=float, default=120.0,
                        help="seconds to wait for one render once the study is summarized "
                        "(rounds 2 and 3; the goal is 4 s)")
    args = parser.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    if args.rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
    if not args.db.exists():
        t0 = time.perf_counter()
        counts = build_study(args.db, args.n, args.seed)
        size = args.db.stat().st_size / 1e6
        print(f"built {args.db} in {time.perf_counter() - t0:.1f} s ({size:,.0f} MB): {counts}")
    if args.build_only:
        return
    LAUNCHER["value"] = "streamlit" if args.streamlit_run else "annotator"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; served by "
          f"{'streamlit run' if args.streamlit_run else 'annotator app'}")
    print_rounds(run_rounds(args.db, args.db.parent, args.timeout, args.summarized_timeout,
                            args.skip_cold))


if __name__ == "__main__":
    main()
