"""Scrubbing benchmark: recall per kind, near-misses changed and throughput of
`annotator.privacy.scrub_text`, beside Microsoft Presidio's pattern recognisers on the same set.

The set is tests/pii_corpus.py, built from a seed that is new each run (printed; `--seed` repeats
a run; the tests use seed 12): phones of 27 regions in national, international, E.164 and Faker
formats and in unassigned ranges; cards of 8 brands in every grouping; IBANs of 8 countries;
SSNs dashed, spaced, dotted, bare beside a cue and the well-known invalid ones; emails, also
written to dodge filters; URLs, also without a scheme; IPv4 and IPv6; names after cues in nine
languages from Faker's names of 16 locales; street addresses, PO boxes and postcodes with their
city from Faker's streets, cities and postcodes; 92 near-misses. An item counts as found when
its whole value, and nothing else, became its placeholder (Presidio: when a result of its entity
type covers it); a near-miss counts as changed when anything in it is replaced (Presidio: when
any result touches it). Presidio's pattern recognisers have no names or addresses (its
recognisers for those need an NLP model): "n/a". A last row gives the recall on Faker's own
street addresses (any street type it picks), which the tests hold to no floor.

Presidio is not a dependency of annotator: it runs in its own virtual environment, made on
first use (`python -m venv` and `pip install presidio-analyzer`, about a minute), by default
~/.cache/annotator/bench-presidio-venv (`--presidio-venv`). Only its pattern recognisers run
(email, phone, URL, IP, credit card, IBAN, US SSN), called directly with no NLP engine: the
AnalyzerEngine would need a spaCy language model, a download this project does not make.

Throughput against the scrubber before issue 20 (names, addresses, written-out emails): its
privacy.py is read from git (`git show REV:annotator/ingest/privacy.py`, `--baseline-rev`) into
a temporary directory outside the code tree and loaded beside the current one; both scrub the
same texts in interleaved rounds, timed in CPU seconds (`time.process_time`, best round), so a
shared machine's load moves both alike. Printed for this run's set and for the set of REV
(its tests/pii_corpus.py, seed 12), each beside a floor: one `str.lower()` a text, the least
any pass over the text costs. Without git or the revision, that part says why and is skipped.

    python bench/scrub.py                 # both
    python bench/scrub.py --no-presidio   # annotator only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pii_corpus  # noqa: E402

from annotator.ingest.privacy import PLACEHOLDERS, scrub_text  # noqa: E402

DEFAULT_VENV = Path.home() / ".cache/annotator/bench-presidio-venv"
KINDS = ("PHONE", "CARD", "IBAN", "SSN", "EMAIL", "URL", "IP", "NAME", "ADDRESS")

# Runs inside the Presidio venv: reads texts (JSON) on stdin, writes per text the results of
# every pattern recogniser, then the seconds the whole set took (best of `repeat`).
PRESIDIO = r"""
import json, sys, time
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer,
    UrlRecognizer, UsSsnRecognizer)
recognizers = [EmailRecognizer(), PhoneRecognizer(), UrlRecognizer(), IpRecognizer(),
               CreditCardRecognizer(), IbanRecognizer(), UsSsnRecognizer()]
texts, repeat = json.load(sys.stdin)
def analyze(text):
    found = []
    for recognizer in recognizers:
        for r in recognizer.analyze(text, recognizer.supported_entities, None) or []:
            if r.score > 0:
                found.append((r.entity_type, r.start, r.end))
    return found
results = [analyze(t) for t in texts]
best = float("inf")
for _ in range(repeat):
    started = time.perf_counter()
    for t in texts:
        analyze(t)
    best = min(best, time.perf_counter() - started)
import importlib.metadata as md
json.dump({"results": results, "seconds": best,
           "version": md.version("presidio-analyzer")}, sys.stdout)
"""
ENTITY_KIND = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "URL": "URL", "IP_ADDRESS": "IP",
    "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN", "US_SSN": "SSN",
}


def ensure_presidio(venv: Path) -> Path:
    """The Presidio venv's python, creating the venv on first use."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import presidio_analyzer"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing presidio-analyzer into {venv} (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "presidio-analyzer"], check=True)
    return python


def run_presidio(python: Path, texts: list[str], repeat: int) -> dict:
    proc = subprocess.run(
        [str(python), "-c", PRESIDIO], input=json.dumps([texts, repeat]), capture_output=True,
        text=True, check=False,
    )
    if proc.returncode:
        raise SystemExit(f"presidio failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def annotator_scores(samples: list[pii_corpus.Sample], near: list[str], repeat: int) -> dict:
    found = Counter(
        s.kind for s in samples
        if pii_corpus.found(s, scrub_text(s.text), PLACEHOLDERS[s.kind])
    )
    changed = sum(scrub_text(t) != t for t in near)
    texts = [s.text for s in samples] + near
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for text in texts:
            scrub_text(text)
        best = min(best, time.perf_counter() - started)
    return {"found": found, "changed": changed, "seconds": best, "kinds": KINDS}


# main before the privacy merge (issue 20): the throughput the issue holds this scrubber to.
BASELINE_REV = "ed53b1f^1"


def load_from_git(rev: str, path: str, name: str, folder: Path) -> object:
    """Module `name` from `path` as it was at `rev`, written into `folder` (not the code tree)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
                            capture_output=True, text=True, check=True).stdout
    file = folder / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def cpu_rates(texts: list[str], scrubbers: dict, rounds: int) -> dict[str, float]:
    """kB/s of CPU time per scrubber (best of `rounds` interleaved rounds), and of the floor."""
    kilobytes = sum(len(t.encode()) for t in texts) / 1000
    runs = {"floor (str.lower)": str.lower, **scrubbers}
    for fn in runs.values():  # warm caches alike
        for text in texts:
            fn(text)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, fn in runs.items():
            started = time.process_time()
            for text in texts:
                fn(text)
            best[name] = min(best[name], time.process_time() - started)
    return {name: kilobytes / max(seconds, 1e-9) for name, seconds in best.items()}


def against_baseline(texts: list[str], rev: str, rounds: int) -> None:
    """Print this scrubber's CPU throughput beside the one at `rev`, on this set and on rev's."""
    with tempfile.TemporaryDirectory(prefix="annotator-bench-") as folder:
        try:
            old = load_from_git(rev, "annotator/ingest/privacy.py", "baseline_privacy",
                                Path(folder))
            old_corpus = load_from_git(rev, "tests/pii_corpus.py", "baseline_pii_corpus",
                                       Path(folder))
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"baseline {rev}: unavailable ({type(error).__name__}); skipped")
            return
        old_samples, old_near = old_corpus.build(12)
        sets = {"this run's set": texts,
                f"{rev}'s set (seed 12)": [s.text for s in old_samples] + old_near}
        print(f"CPU throughput against the scrubber at {rev} (best of {rounds} rounds):")
        for label, items in sets.items():
            rates = cpu_rates(items, {"now": scrub_text, rev: old.scrub_text}, rounds)
            print(f"  {label:<28} now {rates['now']:>7,.0f} kB/s   {rev} {rates[rev]:>7,.0f} kB/s"
                  f"   ratio {rates['now'] / rates[rev]:.2f}"
                  f"   floor {rates['floor (str.lower)']:>9,.0f} kB/s")


def presidio_scores(samples: list[pii_corpus.Sample], near: list[str], output: dict) -> dict:
    results = output["results"]
    found: Counter[str] = Counter()
    for sample, hits in zip(samples, results, strict=False):
        start = sample.text.index(sample.value)
        end = start + len(sample.value)
        if any(ENTITY_KIND.get(kind) == sample.kind and s <= start and e >= end
               for kind, s, e in hits):
            found[sample.kind] += 1
    changed = sum(bool(hits) for hits in results[len(samples) :])
    return {"found": found, "changed": changed, "seconds": output["seconds"],
            "kinds": set(ENTITY_KIND.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presidio-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--no-presidio", action="store_true")
    parser.add_argument("--repeat", type=int, default=5, help="timing runs (the best counts)")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one each run")
    parser.add_argument("--baseline-rev", default=BASELINE_REV,
                        help="git revision of the scrubber to compare CPU throughput with")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of that comparison")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    print(f"seed {seed}")
    samples, near = pii_corpus.build(seed)
    texts = [s.text for s in samples] + near
    kilobytes = sum(len(t.encode()) for t in texts) / 1000
    totals = Counter(s.kind for s in samples)
    print(f"set: {len(samples)} items in sentences, {len(near)} near-misses, {kilobytes:.0f} kB")
    columns = {"annotator": annotator_scores(samples, near, args.repeat)}
    if not args.no_presidio:
        output = run_presidio(ensure_presidio(args.presidio_venv), texts, args.repeat)
        columns[f"presidio {output['version']} (patterns)"] = presidio_scores(samples, near, output)
    print(f"{'recall':<14}" + "".join(f"{name:>34}" for name in columns))
    for kind in KINDS:
        cells = [f"{c['found'][kind]:>4}/{totals[kind]:<4} {c['found'][kind] / totals[kind]:>6.1%}"
                 if kind in c["kinds"] else "n/a" for c in columns.values()]
        print(f"{kind:<14}" + "".join(f"{cell:>34}" for cell in cells))
    cells = [f"{c['changed']}/{len(near)} {c['changed'] / len(near):>6.1%}"
             for c in columns.values()]
    print(f"{'near-misses':<14}" + "".join(f"{cell:>34}" for cell in cells))
    cells = [f"{kilobytes / c['seconds']:,.0f} kB/s" for c in columns.values()]
    print(f"{'throughput':<14}" + "".join(f"{cell:>34}" for cell in cells))
    native = pii_corpus.faker_addresses(seed)
    hits = sum(pii_corpus.found(s, scrub_text(s.text), PLACEHOLDERS["ADDRESS"]) for s in native)
    print(f"Faker's own street addresses (any street type): annotator {hits}/{len(native)} "
          f"{hits / len(native):.1%}")
    against_baseline(texts, args.baseline_rev, args.rounds)


if __name__ == "__main__":
    main()
