"""Ingest benchmark: `annotator ingest` against the floor a plain Python loader reaches.

Generates a JSONL file of N synthetic chat conversations (about 1.2 kB each, with emails, phone
numbers, URLs, IPs, card numbers and IBANs sprinkled in), then, each in its own process:
- the floor: read the file, `json.loads` each line, one `executemany` of the raw rows into a
  plain table;
- `annotator ingest --no-scrub` and `annotator ingest` (scrubbing on) into fresh databases.
Prints conversations per second, the ratios to the floor and each process's peak memory.

    python bench/ingest.py            # N = 300,000, the study's scale
    python bench/ingest.py --n 20000  # a quick run
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPICS = [
    "I'm trying to decide whether to take a job offer in another city. The pay is better but my "
    "parents are getting older and I worry about being far away from them.",
    "Can you help me write a polite email to my landlord about the broken heating? It has been "
    "three weeks and I have asked twice already.",
    "My code throws a KeyError when the config file is missing a section. What's the cleanest way "
    "to handle defaults in Python 3.11 without hiding real mistakes?",
    "Is it ethical to use an AI to write my cover letters if I edit them afterwards? I don't want "
    "to misrepresent myself to employers.",
    "What were the main causes of the collapse of the Bronze Age civilisations around 1177 BC?",
    "I've been feeling exhausted for weeks and I sleep nine hours. Should I be worried, and what "
    "could I ask my doctor about at the appointment on 2024-03-15?",
]
REPLIES = [
    "That's a hard decision, and it's good that you're weighing both your career and your family. "
    "It may help to list what matters most to you over the next five years, talk openly with your "
    "parents about their needs, and ask the employer whether remote days are possible.",
    "Here is a draft you can adapt. Keep it factual and courteous, mention the dates you reported "
    "the problem, and ask for a specific repair date. Keeping a written record protects you.",
    "Use a dataclass with default values and load the file with configparser, then merge. Raise a "
    "clear error for keys that are required, so a typo in version 1.2.3 of the file is not hidden.",
    "Many people use tools to draft, and editing makes the letter yours. Honesty matters most in "
    "the claims themselves: make sure every skill and achievement described is accurate.",
    "Historians point to several interacting causes: drought, earthquakes, disrupted trade "
    "networks, internal revolts and the movements of the so-called Sea Peoples.",
    "Persistent fatigue despite enough sleep is worth raising with a doctor. Ask about blood tests "
    "for anaemia, thyroid function and vitamin D, and note any other symptoms you have noticed.",
]
PII = [
    "You can reach me at {name}.{n}@example.com if that helps.",
    "My number is +44 20 7946 0{n3}, call after six.",
    "The docs are at https://docs.example.org/guide/{n}#setup.",
    "The server at 192.168.{a}.{b} keeps timing out.",
    "I paid with card 4111 1111 1111 1111 and was charged $1,299.99 twice.",
    "Please transfer to GB82 WEST 1234 5698 7654 32 by Friday.",
]
NAMES = ["alex", "sam", "jordan", "maria", "li", "omar", "priya", "noah"]


def make_conversation(i: int, rng: random.Random) -> dict:
    messages = []
    for turn in range(rng.choice((2, 2, 3))):
        k = rng.randrange(len(TOPICS))
        user = TOPICS[k]
        if rng.random() < 0.3:
            user += " " + rng.choice(PII).format(
                name=rng.choice(NAMES), n=i, n3=f"{i % 1000:03d}", a=i % 250, b=turn + 1
            )
        messages.append({"role": "user", "content": f"{user} (ref {i}-{turn})"})
        messages.append({"role": "assistant", "content": REPLIES[k]})
    return {"id": f"bench-{i}", "source": "synthetic", "messages": messages}


def generate(path: Path, n: int, seed: int = 7) -> float:
    rng = random.Random(seed)
    size = 0
    with open(path, "w") as handle:
        for i in range(n):
            line = json.dumps(make_conversation(i, rng)) + "\n"
            size += len(line)
            handle.write(line)
    return size / n


FLOOR = r"""
import json, sqlite3, sys
path, db = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db)
conn.execute("create table raw (id text, line text)")
def rows():
    with open(path, "rb") as handle:
        for line in handle:
            obj = json.loads(line)
            yield (obj.get("id"), line)
with conn:
    conn.executemany("insert into raw values (?, ?)", rows())
print(conn.execute("select count(*) from raw").fetchone()[0])
"""


# Each measured command runs under this wrapper, whose RUSAGE_CHILDREN peak is then that one
# command's peak resident memory.
WRAPPER = r"""
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if proc.returncode:
    sys.stderr.write(proc.stderr.decode()[-2000:])
    sys.exit(proc.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak resident memory in MB)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds, float(proc.stdout.strip())


def measure(label: str, cmd: list[str], n: int) -> float:
    seconds, peak_mb = run_measured(cmd)
    rate = n / seconds
    print(f"{label:<34} {seconds:8.1f} s {rate:10,.0f} conv/s   peak memory {peak_mb:7.0f} MB")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000, help="conversations to generate")
    parser.add_argument("--workdir", help="folder for the data and databases (default: a temp one)")
    args = parser.parse_args()
    annotator = [sys.executable, "-m", "annotator"]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp_name:
        tmp = Path(args.workdir or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        for old in tmp.glob("*.db*"):  # a reused --workdir: each command starts from nothing
            old.unlink()
        data = tmp / "conversations.jsonl"
        started = time.perf_counter()
        mean_size = generate(data, args.n)
        print(
            f"generated {args.n:,} conversations, {mean_size:,.0f} bytes each on average, "
            f"{data.stat().st_size / 1e6:,.0f} MB, in {time.perf_counter() - started:.1f} s"
        )
        floor = measure(
            "floor (json.loads + executemany)",
            [sys.executable, "-c", FLOOR, str(data), str(tmp / "floor.db")],
            args.n,
        )
        off = measure(
            "annotator ingest --no-scrub",
            [*annotator, "ingest", str(data), "--no-scrub", "--json", "--db", str(tmp / "off.db")],
            args.n,
        )
        on = measure(
            "annotator ingest (scrubbing on)",
            [*annotator, "ingest", str(data), "--json", "--db", str(tmp / "on.db")],
            args.n,
        )
        print(f"ratio scrubbing off / floor: {off / floor:.2f}  (goal >= 0.5)")
        print(f"ratio scrubbing on  / floor: {on / floor:.2f}  (goal >= 0.25)")


if __name__ == "__main__":
    main()
