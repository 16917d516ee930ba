"""Micro-benchmark of annotator.privacy.scrub_text on conversation-like English.

Prints microseconds per 1.2 kB turn for text without personal data, with digits but no personal
data, and with personal data, next to the cost of a plain json.loads + executemany loader per
record of the same size (the reference the ingest speed target is stated against).

    .venv/bin/python bench/scrub_micro.py [--n 3000]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable

from annotator.ingest.privacy import _phone_spans, scrub_text

TARGET_BYTES = 1200

# Written for this benchmark in the register of assistant conversations: no digits at all.
PLAIN = [
    "That's a really thoughtful question, and I think it's worth slowing down to consider what "
    "you actually want from this conversation with your sister before you plan what to say.",
    "Honesty matters here, but so does kindness. You can tell your friend the truth about how "
    "the event made you feel without turning it into an accusation about their character.",
    "If you're feeling overwhelmed, it might help to break the project into smaller pieces: "
    "first gather the requirements, then sketch a rough outline, and only then start writing.",
    "I can't help with getting into someone else's account without their permission, but I'm "
    "happy to walk you through recovering access to your own account through official channels.",
    "Here's a version of the cover letter that keeps your voice but tightens the opening; I "
    "moved the part about teamwork up, since that's what the posting emphasises most.",
    "There are good arguments on both sides. Some people value stability and predictability, "
    "while others put more weight on autonomy and the freedom to change course when needed.",
    "When you write the function, make sure it handles the empty case explicitly; otherwise "
    "the loop silently returns nothing and the caller can't tell an error from a real result.",
    "It sounds like you care a lot about doing right by your team, and that's a good instinct. "
    "Still, you don't have to carry every decision alone; asking for input is not a weakness.",
]

# Digits that are not personal data: years, versions, times, prices, lists, dates, decimals.
DIGITS = [
    "In 2023 the team shipped version 3.11.7, and by March 15, 2024 most users had upgraded.",
    "Step 1: preheat the oven to 180 degrees. Step 2: bake for 25 to 30 minutes.",
    "The meeting moved to 12:30 on 2024-03-15, and the budget is now $1,299.99 per seat.",
    "Pi is about 3.14159, and 3*4=12; the survey had 1 000 000 answers from 42 countries.",
    "Build 10.0.19041 fixed the bug that version 2.4 introduced on 15/03/2024 at 09:45:00.",
]

# Personal data of each kind (test or fictional values). Phone numbers and addresses vary per
# sentence so the phone cache does not flatter the figures.
PII = [
    "You can reach me at {name}@mail.example.com or call ({area}) {exch}-{line} after six.",
    "My card is 4111 1111 1111 1111 and my SSN is 123-45-6789, please keep them private.",
    "The server at 192.168.{a}.{b} and 2001:db8::ff00:{a}:{b} hosts https://example.com/{name}.",
    "Send it to IBAN GB82 WEST 1234 5698 7654 32, or phone +44 20 7946 0{b:03d} tomorrow.",
]


def fill(sentence: str, rng: random.Random) -> str:
    return sentence.format(
        name=rng.choice(["jane.doe", "j.smith+work", "ops-team", "li.wei"]),
        area=rng.choice([212, 415, 617, 650]),
        exch=rng.randint(200, 999),
        line=f"{rng.randint(0, 9999):04d}",
        a=rng.randint(1, 254),
        b=rng.randint(1, 254),
    )


def make_turns(n: int, pools: list[list[str]], seed: int) -> list[str]:
    """`n` turns of about TARGET_BYTES, built from sentences of `pools` (one pick each round)."""
    rng = random.Random(seed)
    turns = []
    for _ in range(n):
        parts: list[str] = []
        size = 0
        while size < TARGET_BYTES:
            pool = pools[len(parts) % len(pools)]
            sentence = fill(rng.choice(pool), rng)
            parts.append(sentence)
            size += len(sentence) + 1
        turns.append(" ".join(parts)[:TARGET_BYTES])
    return turns


def per_item_us(fn: Callable[[str], object], items: list[str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        _phone_spans.cache_clear()  # time a first sight of each number, not a cache hit
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def loader_us(turns: list[str]) -> float:
    """Per record: json.loads of a one-turn conversation + executemany into SQLite."""
    records = [json.dumps({"id": str(i), "turns": [{"role": "user", "text": t}]})
               for i, t in enumerate(turns)]
    best = float("inf")
    for _ in range(3):
        db = sqlite3.connect(":memory:")
        db.execute("create table c (id text primary key, turns text)")
        t0 = time.perf_counter()
        rows = []
        for line in records:
            rec = json.loads(line)
            rows.append((rec["id"], json.dumps(rec["turns"])))
        db.executemany("insert into c values (?, ?)", rows)
        db.commit()
        best = min(best, time.perf_counter() - t0)
        db.close()
    return best / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()

    corpora = {
        "plain English, no digits": make_turns(args.n, [PLAIN], 1),
        "English with non-PII digits": make_turns(args.n, [PLAIN, PLAIN, DIGITS], 2),
        "English with PII sentences": make_turns(args.n, [PLAIN, PLAIN, DIGITS, PII], 3),
    }
    base = loader_us(corpora["plain English, no digits"])
    print(f"json.loads + executemany loader: {base:6.1f} us/record")
    for name, turns in corpora.items():
        counts: Counter[str] = Counter()
        for t in turns:
            scrub_text(t, counts)
        us = per_item_us(scrub_text, turns)
        rate = base / (base + us)
        print(f"{name:34} {us:7.1f} us/1.2kB  ingest at {rate:5.0%} of loader rate  "
              f"replacements/turn {sum(counts.values()) / len(turns):.2f}")


if __name__ == "__main__":
    main()
