"""Values by response type, read as the published study reads them: which AI values come with
resisting the user and which with supporting them, which user values precede strong
resistance, how often the AI mirrors a user's value per response type, and which AI values
come together.

Input is counts over the report's conversations (`report_counts` makes them, `findings` names
the values); every share is a `shares.Share` with its named denominator and Wilson
interval.

- Resisting is mild + strong resistance, supporting is strong + mild support. Per AI value,
  its share of each group's conversations; a value is distinctive by the two-proportion z
  (pooled), the adjusted residual of its 2 x 2 table.
- Human values before strong resistance: each user value's share of the strong-resistance
  conversations.
- Mirroring per response type: of the conversations of that type, those where an AI value
  equals a value the user stated. The paper's "support" is read as strong + mild support.
- Co-occurrence: for two AI values a and b held together in at least `min_pair` conversations,
  lift = P(a, b) / (P(a) P(b)) over the report's conversations.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from annotator.measure.shares import Share, share, too_few

RESISTING = ("mild resistance", "strong resistance")
SUPPORTING = ("strong support", "mild support")
MIRRORING_GROUPS: dict[str, tuple[str, ...]] = {
    "support (strong + mild)": SUPPORTING,
    "strong support": ("strong support",),
    "mild support": ("mild support",),
    "neutral": ("neutral",),
    "reframing": ("reframing",),
    "mild resistance": ("mild resistance",),
    "strong resistance": ("strong resistance",),
}
# Huang et al. (2025), "Values in the Wild": the share of conversations of a response type
# where Claude mirrors the user's value.
PUBLISHED_MIRRORING = {"support (strong + mild)": 20.1, "reframing": 15.3,
                       "strong resistance": 1.2}
TOP = 10
MIN_VALUE_CONVERSATIONS = 3  # a value in fewer conversations is not compared between groups
MIN_PAIR_CONVERSATIONS = 5  # a pair seen together in fewer conversations has no lift shown



class StanceValue(BaseModel):
    """One AI value's share of the resisting and of the supporting conversations."""

    value: str
    resisting: Share
    supporting: Share
    difference: float = Field(description="resisting minus supporting share, in points (0..1)")
    z: float | None = Field(description="two-proportion z (pooled); > 0: more when resisting")


class StanceValues(BaseModel):
    resisting_conversations: int
    supporting_conversations: int
    min_value_conversations: int = MIN_VALUE_CONVERSATIONS
    values: list[StanceValue] = Field(description="every value compared, most resisting first")
    most_resisting: list[StanceValue]
    most_supporting: list[StanceValue]
    note: str | None = None


class ValueCount(BaseModel):
    value: str
    share: Share


class MirroringRow(BaseModel):
    response_type: str
    share: Share


class ValuePair(BaseModel):
    a: str
    b: str
    together: int
    a_conversations: int
    b_conversations: int
    lift: float


class ByResponseType(BaseModel):
    """Values by response type over the report's conversations (see the module docstring)."""

    conversations: int = Field(description="the report's conversations (the pairs' N)")
    stance: StanceValues
    before_strong_resistance: list[ValueCount]
    strong_resistance_conversations: int
    mirroring: list[MirroringRow]
    pairs: list[ValuePair]
    min_pair_conversations: int = MIN_PAIR_CONVERSATIONS
    pairs_note: str | None = None


def two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """(p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)), p pooled; None when it is undefined."""
    if not n1 or not n2:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    spread = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    return None if spread <= 0 else (k1 / n1 - k2 / n2) / math.sqrt(spread)


def _in(counts: Mapping[str, int], group: tuple[str, ...]) -> int:
    return sum(counts.get(t, 0) for t in group)


def _stance(types: Mapping[str, int], ai_types: Mapping[tuple[str, str], int],
            top: int) -> StanceValues:
    n_r, n_s = _in(types, RESISTING), _in(types, SUPPORTING)
    in_r: dict[str, int] = {}
    in_s: dict[str, int] = {}
    for (rt, value), n in ai_types.items():
        if rt in RESISTING:
            in_r[value] = in_r.get(value, 0) + n
        elif rt in SUPPORTING:
            in_s[value] = in_s.get(value, 0) + n
    rows = []
    for value in {*in_r, *in_s}:
        k_r, k_s = in_r.get(value, 0), in_s.get(value, 0)
        if k_r + k_s < MIN_VALUE_CONVERSATIONS:
            continue
        r = share(k_r, n_r, "resisting conversations (mild + strong resistance)")
        s = share(k_s, n_s, "supporting conversations (strong + mild support)")
        rows.append(StanceValue(value=value, resisting=r, supporting=s,
                                difference=(r.value or 0.0) - (s.value or 0.0),
                                z=two_proportion_z(k_r, n_r, k_s, n_s)))
    rows.sort(key=lambda v: (-(v.z or 0.0), -v.difference, v.value))
    note = (too_few(n_r, "resisting conversations") or too_few(n_s, "supporting conversations"))
    return StanceValues(
        resisting_conversations=n_r, supporting_conversations=n_s, values=rows,
        most_resisting=[v for v in rows if (v.z or 0) > 0][:top],
        most_supporting=[v for v in reversed(rows) if (v.z or 0) < 0][:top], note=note)


def _lifted(together: Sequence[tuple[str, str, int]], held: Mapping[str, int],
            conversations: int, min_pair: int, top: int) -> list[ValuePair]:
    """The `top` AI value pairs held together in `min_pair`+ conversations, by lift; each
    pair named in order."""
    ranked = []
    for x, y, n_ab in together:
        if n_ab >= min_pair:
            a, b = min(x, y), max(x, y)
            ranked.append((-(n_ab * conversations / (held[a] * held[b])), -n_ab, a, b))
    return [ValuePair(a=a, b=b, together=-n_ab, a_conversations=held[a],
                      b_conversations=held[b], lift=-lift)
            for lift, n_ab, a, b in heapq.nsmallest(top, ranked)]


def by_response_type(
    conversations: int,
    types: Mapping[str, int],
    mirrored: Mapping[str, int],
    ai_types: Mapping[tuple[str, str], int],
    human_types: Mapping[tuple[str, str], int],
    held: Mapping[str, int],
    together: Sequence[tuple[str, str, int]],
    top: int = TOP,
    min_pair: int = MIN_PAIR_CONVERSATIONS,
) -> ByResponseType:
    """Values by response type from counts over `conversations`: of each response type,
    of those mirroring a user value; (response type, value) for AI and user values; each AI
    value's conversations (`held`); and two AI values held together, in how many."""
    n_strong = types.get("strong resistance", 0)
    before = [ValueCount(value=value, share=share(n, n_strong,
                                                  "strong-resistance conversations"))
              for (rt, value), n in human_types.items() if rt == "strong resistance" and n]
    before.sort(key=lambda v: (-v.share.k, v.value))
    mirroring = [
        MirroringRow(response_type=label, share=share(
            _in(mirrored, group), _in(types, group), f"{label} conversations",
            PUBLISHED_MIRRORING.get(label)))
        for label, group in MIRRORING_GROUPS.items()
    ]
    pairs = _lifted(together, held, conversations, min_pair, top)
    return ByResponseType(
        conversations=conversations, stance=_stance(types, ai_types, top),
        before_strong_resistance=before[:top], strong_resistance_conversations=n_strong,
        mirroring=mirroring, pairs=pairs, min_pair_conversations=min_pair,
        pairs_note=None if pairs else
        f"no two AI values held together in {min_pair}+ conversations")


__all__ = ["ByResponseType", "MirroringRow", "StanceValue", "StanceValues", "ValueCount",
           "ValuePair", "by_response_type", "two_proportion_z"]
