"""Scoring an extractor's labels against the hand-labelled set
`tests/data/baseline_handlabelled.jsonl` (102 short conversations written and labelled by hand
for this purpose, in the gold file format; see `NOTES-baseline.md`). Shared by
`bench/baseline_precision.py`, which prints the figures, and `tests/test_extract_baseline.py`,
which holds the baseline above a floor. Plain Python (no study, no network): it only calls
`label(conversation)`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from annotator.gold_file import read_gold
from annotator.models import Conversation, Extraction, GoldRecord

HANDLABELLED = Path(__file__).parent / "data" / "baseline_handlabelled.jsonl"


def handlabelled(path: Path = HANDLABELLED) -> list[GoldRecord]:
    records = list(read_gold(path))
    assert all(isinstance(r, GoldRecord) for r in records), records
    return records  # type: ignore[return-value]


@dataclass
class Share:
    """k of n, with a 95% Wilson interval."""

    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    def interval(self) -> tuple[float, float]:
        if not self.n:
            return (float("nan"), float("nan"))
        z, p, n = 1.96, self.k / self.n, self.n
        mid = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return (max(0.0, mid - half), min(1.0, mid + half))

    def __str__(self) -> str:
        lo, hi = self.interval()
        return f"{self.value:.3f} ({self.k}/{self.n}; 95% CI {lo:.3f}-{hi:.3f})"


@dataclass
class Scores:
    ai_precision: Share  # proposed AI values that are in the hand labels / proposed
    ai_recall: Share  # hand-labelled AI values proposed / hand-labelled
    human_precision: Share
    human_recall: Share
    subjective_accuracy: Share  # conversations / conversations
    no_values_accuracy: Share  # "no values" or not, right / conversations
    response_accuracy: Share  # exact response type / conversations
    implausible: list[tuple[str, str]]  # (value proposed, the conversation's first words)


def _names(refs: Iterable[object]) -> set[str]:
    return {getattr(r, "name", r).lower() for r in refs}  # type: ignore[union-attr]


def score(label: Callable[[Conversation], Extraction], records: list[GoldRecord]) -> Scores:
    """Micro precision and recall of value names (case-insensitive) and accuracies."""
    counts = dict.fromkeys(("ai_tp", "ai_p", "ai_g", "hu_tp", "hu_p", "hu_g", "subj", "nov",
                            "rt"), 0)
    implausible: list[tuple[str, str]] = []
    for rec in records:
        e = label(Conversation.from_turns(rec.turns))
        g = rec.gold
        ai, ai_gold = _names(e.ai_values), _names(g.ai_values)
        hu, hu_gold = _names(e.human_values), _names(g.human_values)
        counts["ai_tp"] += len(ai & ai_gold)
        counts["ai_p"] += len(ai)
        counts["ai_g"] += len(ai_gold)
        counts["hu_tp"] += len(hu & hu_gold)
        counts["hu_p"] += len(hu)
        counts["hu_g"] += len(hu_gold)
        counts["subj"] += e.subjective == g.subjective
        rt = e.response_type.value if e.response_type else None
        grt = g.response_type.value if g.response_type else None
        counts["nov"] += (rt == "no values") == (grt == "no values")
        counts["rt"] += rt == grt
        implausible += [(v, rec.turns[0].text[:60]) for v in sorted(ai - ai_gold)]
    n = len(records)
    return Scores(
        ai_precision=Share(counts["ai_tp"], counts["ai_p"]),
        ai_recall=Share(counts["ai_tp"], counts["ai_g"]),
        human_precision=Share(counts["hu_tp"], counts["hu_p"]),
        human_recall=Share(counts["hu_tp"], counts["hu_g"]),
        subjective_accuracy=Share(counts["subj"], n),
        no_values_accuracy=Share(counts["nov"], n),
        response_accuracy=Share(counts["rt"], n),
        implausible=implausible,
    )
