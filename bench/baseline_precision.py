"""How often the offline baseline's labels are right, on 102 conversations labelled by hand
(`tests/data/baseline_handlabelled.jsonl`; scoring in `tests/baseline_scoring.py`). Prints the
AI values' precision (share of proposed values judged plausible, i.e. in the hand labels) and
recall, the same for human values, subjectivity accuracy, "no values" accuracy and exact
response-type accuracy, each as k/n with a 95% Wilson interval; then the time to label the set
beside the time to read it (the floor), and with --show the implausible proposals.

    python bench/baseline_precision.py [--show]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from baseline_scoring import handlabelled, score  # noqa: E402

from annotator.extract.baseline import MODEL, BaselineExtractor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--show", action="store_true", help="list the implausible proposals")
    args = parser.parse_args()
    t0 = time.perf_counter()
    records = handlabelled()
    read = time.perf_counter() - t0
    baseline = BaselineExtractor()
    t0 = time.perf_counter()
    s = score(baseline.label, records)
    took = time.perf_counter() - t0
    print(f"baseline {MODEL} on {len(records)} hand-labelled conversations")
    print(f"  AI values precision       {s.ai_precision}")
    print(f"  AI values recall          {s.ai_recall}")
    print(f"  human values precision    {s.human_precision}")
    print(f"  human values recall       {s.human_recall}")
    print(f"  subjective accuracy       {s.subjective_accuracy}")
    print(f"  'no values' accuracy      {s.no_values_accuracy}")
    print(f"  response type accuracy    {s.response_accuracy}")
    print(f"  labelling took {took * 1000:.0f} ms (reading the file, the floor: "
          f"{read * 1000:.0f} ms)")
    if args.show:
        for value, where in s.implausible:
            print(f"  implausible: {value!r:32} in {where!r}")


if __name__ == "__main__":
    main()
