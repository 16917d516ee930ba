"""Scrubbing on a multi-locale set (tests/pii_corpus.py, seed 12): recall per kind, near-misses,
the configured phone regions, numbers in metadata, and time linear in the input whatever its
shape. A sample counts as found only when its whole value, and nothing else, became the
placeholder ("+[SSN] 8668" for a phone number is a miss). Unit tests: no fakes."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pii_corpus
import pytest

from annotator.config import DEFAULT_PHONE_REGIONS, phone_regions
from annotator.db import open_db
from annotator.ingest.pipeline import ingest
from annotator.ingest.privacy import PLACEHOLDERS, scrub_text, scrub_value

SAMPLES, NEAR_MISSES = pii_corpus.build()


def _found(sample: pii_corpus.Sample) -> bool:
    return pii_corpus.found(sample, scrub_text(sample.text), PLACEHOLDERS[sample.kind])


# The floors issue 20 set: 95% for every kind, cue-introduced names included; 80% for addresses.
FLOORS = {"ADDRESS": 0.80}


@pytest.mark.parametrize("kind", sorted({s.kind for s in SAMPLES}))
def test_recall_meets_its_floor_per_kind(kind: str) -> None:
    samples = [s for s in SAMPLES if s.kind == kind]
    missed = [s.text for s in samples if not _found(s)]
    recall = 1 - len(missed) / len(samples)
    assert recall >= FLOORS.get(kind, 0.95), (kind, f"{recall:.0%}", missed)


def test_the_set_covers_what_it_claims() -> None:
    counts = Counter(s.kind for s in SAMPLES)
    assert counts["PHONE"] >= 150 and counts["CARD"] >= 50 and counts["IBAN"] >= 32
    assert counts["SSN"] >= 40 and len(NEAR_MISSES) >= 90
    assert counts["NAME"] >= 100 and counts["ADDRESS"] >= 100
    obfuscated = [s for s in SAMPLES if s.kind == "EMAIL" and "@" not in s.value]
    bare_urls = [s for s in SAMPLES if s.kind == "URL" and "//" not in s.value
                 and not s.value.startswith("www.")]
    assert len(obfuscated) >= 15 and len(bare_urls) >= 20
    assert any(s.value.islower() for s in SAMPLES if s.kind == "IBAN")
    assert any(len(s.value) == 12 for s in SAMPLES if s.kind == "CARD")  # 12-digit Maestro


def test_at_most_2_percent_of_near_misses_change() -> None:
    changed = [t for t in NEAR_MISSES if scrub_text(t) != t]
    assert len(changed) <= 0.02 * len(NEAR_MISSES), changed


def test_another_seed_meets_the_floors_too() -> None:
    """Not tuned to one draw: a second seed (new names, streets, numbers) clears the floors."""
    samples, _ = pii_corpus.build(seed=2024)
    for kind in sorted({s.kind for s in samples}):
        of_kind = [s for s in samples if s.kind == kind]
        hits = sum(pii_corpus.found(s, scrub_text(s.text), PLACEHOLDERS[kind]) for s in of_kind)
        assert hits / len(of_kind) >= FLOORS.get(kind, 0.95), (kind, hits, len(of_kind))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("0131 496 0774", "PHONE"),  # UK, national
        ("080-4159-2066", "PHONE"),  # Japan, national
        ("150 2892 3276", "PHONE"),  # China, national
        ("15028923276", "PHONE"),  # China, mobile without separators
        ("(11) 96123-4567", "PHONE"),  # Brazil
        ("(286) 107-0137", "PHONE"),  # US, well-formed but unassigned
        ("+44 20 0000 1234", "PHONE"),  # a country code, any range
        ("536 90 4399", "SSN"),
        ("536.90.4399", "SSN"),
        ("5018 2380 0161", "CARD"),  # 12-digit Maestro
        ("4111.1111.1111.1111", "CARD"),
        ("gb82 west 1234 5698 7654 32", "IBAN"),
        ("de89370400440532013000", "IBAN"),
    ],
)
def test_what_was_missed_before_is_found(value: str, kind: str) -> None:
    counts: Counter[str] = Counter()
    out = scrub_text(f"Details: {value}, thanks.", counts)
    assert out == f"Details: {PLACEHOLDERS[kind]}, thanks."
    assert counts == Counter({kind: 1})


def test_bare_ssn_needs_a_context_word() -> None:
    assert scrub_text("My SSN is 536904399.") == "My SSN is [SSN]."
    assert scrub_text("social security number: 536904399") == "social security number: [SSN]"
    assert scrub_text("Zip+4 and 536904399 items shipped.") == "Zip+4 and 536904399 items shipped."


def test_issuable_ssn_is_stdnums_rule() -> None:
    """The SSN pass's own check answers as python-stdnum's `us.ssn.is_valid` does, on every
    boundary of its rule and on random numbers (the oracle is the library it replaced)."""
    from stdnum.us import ssn

    from annotator.ingest.privacy import _issuable_ssn

    rng = random.Random(20)
    edges = ["000123456", "666123456", "900123456", "999999999", "123001234", "123450000",
             "078051120", "457555462", "219099999", "001010001", "665999999", "899999999"]
    numbers = edges + [f"{rng.randrange(10**9):09d}" for _ in range(20_000)]
    differ = [n for n in numbers if _issuable_ssn(n) != ssn.is_valid(n)]
    assert not differ, differ[:5]
    assert sum(map(_issuable_ssn, numbers)) > 10_000  # the rule accepts most, not none


def test_phone_regions_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Ring 0131 496 0774 today."
    monkeypatch.setenv("ANNOTATOR_PHONE_REGIONS", "us, ca")
    assert phone_regions() == ("US", "CA")
    assert scrub_text(text) == text  # not a number anywhere in North America
    monkeypatch.setenv("ANNOTATOR_PHONE_REGIONS", "US GB")
    assert scrub_text(text) == "Ring [PHONE] today."
    monkeypatch.delenv("ANNOTATOR_PHONE_REGIONS")
    assert phone_regions() == DEFAULT_PHONE_REGIONS and len(DEFAULT_PHONE_REGIONS) >= 30
    assert {"US", "GB", "IN", "CN", "JP", "BR", "DE", "NG"} <= set(DEFAULT_PHONE_REGIONS)


def test_numbers_in_metadata_are_scrubbed() -> None:
    meta = {
        "card": 4111111111111111,
        "ssn": 536904399,
        "phone": 4155552671.0,
        "items": [5500000000000004, 3],
        "count": 536904399,  # nine digits with no context: a count
        "price": 1299.99,
        "flag": True,
        "created": 1712345678,
    }
    counts: Counter[str] = Counter()
    assert scrub_value(meta, counts) == {
        "card": "[CARD]",
        "ssn": "[SSN]",
        "phone": "[PHONE]",
        "items": ["[CARD]", 3],
        "count": 536904399,
        "price": 1299.99,
        "flag": True,
        "created": 1712345678,
    }
    assert counts == Counter({"CARD": 2, "SSN": 1, "PHONE": 1})


def test_the_corpus_scrubs_idempotently() -> None:
    text = "\n".join(s.text for s in SAMPLES) + "\n" + "\n".join(NEAR_MISSES)
    once = scrub_text(text)
    assert scrub_text(once) == once


# --- time linear in the input ------------------------------------------------------------------

SIZE = 200_000
# Seconds per kilobyte: 200 kB must scrub within 3 s, on a loaded machine. The quadratic IPv6
# scan took 39 s on the 1: run; these shapes take 0.1-0.4 s here.
SECONDS_PER_KB = 0.015


def _adversarial() -> dict[str, str]:
    rng = random.Random(3)

    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    return {
        "1:": "1:" * (SIZE // 2),
        "hex groups": "abcd:" * (SIZE // 5),
        "colons": ":" * SIZE,
        "digits": "4" * SIZE,
        "random digits": digits(SIZE),
        "digits and spaces": " ".join(digits(SIZE // 2)),
        "two-digit groups": " ".join(digits(2) for _ in range(SIZE // 3)),
        "trunk numbers": " ".join("0" + digits(9) for _ in range(SIZE // 11)),
        "dots": "." * SIZE,
        "1.": "1." * (SIZE // 2),
        "at signs": "@" * SIZE,
        "a@": "a@" * (SIZE // 2),
        "long domain": "x@" + "a." * (SIZE // 2),
        "local parts": ("a" * 63 + "!@") * (SIZE // 65),
        "url closers": "http://x" + ")" * SIZE,
        "schemes": "://" * (SIZE // 3),
        "www": "www." * (SIZE // 4),
        "iban-like": "ab12 " * (SIZE // 5),
        "ssn words": "SSN 123 " * (SIZE // 8),
        "dashes": "1-" * (SIZE // 2),
        "card groups": "4111 " * (SIZE // 5),
    }


@pytest.mark.parametrize("shape", sorted(_adversarial()))
def test_hostile_shapes_scrub_in_linear_time(shape: str) -> None:
    text = _adversarial()[shape]
    started = time.perf_counter()
    scrub_text(text)
    seconds = time.perf_counter() - started
    assert seconds < SECONDS_PER_KB * len(text) / 1000, f"{shape}: {seconds:.2f} s"


def test_hostile_shapes_ingest_in_linear_time(tmp_path: Path) -> None:
    """Through a reader too: one JSONL line per shape, in turns and in metadata."""
    shapes = _adversarial()
    path = tmp_path / "hostile.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for name, text in shapes.items():
            record = {"messages": [{"role": "user", "content": text}], "meta": {name: text}}
            handle.write(json.dumps(record) + "\n")
    db = open_db(tmp_path / "study.db")
    started = time.perf_counter()
    report = ingest(db, [path], workers=1)
    seconds = time.perf_counter() - started
    assert report.landed == len(shapes)
    assert seconds < SECONDS_PER_KB * path.stat().st_size / 1000 * 2, f"{seconds:.1f} s"
