"""How much gold a given 95% interval width needs (issue 19): a calculation, it times nothing.

Prints, for n gold conversations, the half-width of the 95% interval `annotator eval` would
report:
- response-type accuracy near 0.7: 1.96 * sqrt(p (1 - p) / n) (normal approximation to the
  binomial; the bootstrap over conversations `eval` uses gives the same to two decimals for
  n >= 50);
- AI-values micro-F1 (leaf level): the bootstrap itself, on the demo gold (gold/demo.jsonl),
  for two labellers: the offline baseline (a weak one) and the demo's first annotator (a strong
  one): n conversations drawn with replacement from the demo's per-conversation (tp, fp, fn)
  counts, 2,000 times; half-width = (97.5th - 2.5th percentile) / 2. Micro-F1 pools counts,
  so its interval also shrinks as 1 / sqrt(n): the last column, half-width * sqrt(n), is
  about constant, for sizes not in the table.

    python bench/gold_size.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from annotator.extract.baseline import BaselineExtractor
from annotator.gold_file import read_gold
from annotator.models import Conversation, GoldRecord
from annotator.taxonomy import load_taxonomy

DEMO = Path(__file__).resolve().parents[1] / "gold" / "demo.jsonl"
SIZES = (25, 50, 100, 200, 400, 800, 1600, 3200)
Z = 1.959964
P = 0.7
RESAMPLES = 2000


def per_conversation_counts() -> tuple[np.ndarray, np.ndarray]:
    """(tp, fp, fn) against gold's AI values per demo conversation: the baseline's, and the
    first annotator's."""
    taxonomy = load_taxonomy()
    baseline = BaselineExtractor()

    def key(names: list[str]) -> set[str]:
        return {taxonomy.value_ref(n).node_id or n for n in names}

    def count(model: set[str], gold: set[str]) -> tuple[int, int, int]:
        return len(model & gold), len(model - gold), len(gold - model)

    weak, strong = [], []
    for record in read_gold(DEMO):
        if not isinstance(record, GoldRecord) or not record.annotations:
            continue
        gold = key(record.gold.ai_values)
        labels = baseline.label(Conversation.from_turns(record.turns, source="gold"))
        weak.append(count({v.node_id or v.name for v in labels.ai_values}, gold))
        strong.append(count(key(record.annotations[0].ai_values), gold))
    return np.array(weak, dtype=float), np.array(strong, dtype=float)


def micro_f1(counts: np.ndarray) -> float:
    tp, fp, fn = counts.sum(axis=0)
    return float(2 * tp / max(2 * tp + fp + fn, 1))


def f1_half_width(counts: np.ndarray, n: int, rng: np.random.Generator) -> float:
    draws = rng.integers(0, len(counts), size=(RESAMPLES, n))
    tp, fp, fn = (counts[:, i][draws].sum(axis=1) for i in range(3))
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    low, high = np.percentile(f1, [2.5, 97.5])
    return float(high - low) / 2


def main() -> None:
    weak, strong = per_conversation_counts()
    print(f"demo gold: {len(weak)} conversations; micro-F1 of the baseline "
          f"{micro_f1(weak):.3f}, of the first annotator {micro_f1(strong):.3f}")
    rng = np.random.default_rng(0)
    print(f"{'n':>6} {'accuracy~0.7 +-':>16} {'F1 baseline +-':>15} {'F1 annotator +-':>16}"
          f" {'(annotator) hw*sqrt(n)':>23}")
    for n in SIZES:
        acc = Z * math.sqrt(P * (1 - P) / n)
        low, high = f1_half_width(weak, n, rng), f1_half_width(strong, n, rng)
        print(f"{n:>6} {acc:>16.3f} {low:>15.3f} {high:>16.3f} {high * math.sqrt(n):>23.2f}")
    for width in (0.1, 0.05, 0.03):
        need = math.ceil(Z**2 * P * (1 - P) / width**2)
        print(f"accuracy near 0.7 within +-{width}: n >= {need}")


if __name__ == "__main__":
    main()
