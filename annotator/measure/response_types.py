"""Values by response type, read as the published study reads them: which AI values come with
resisting the user and which with supporting them, which user values precede strong
resistance, how often the AI mirrors a user's value per response type, and which AI values
come together.

Input is the report's (conversation, value) pairs as integer arrays (`findings` numbers the
values), each conversation's response type, and the value names; every share is a
`shares.Share` with its named denominator and Wilson interval.

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

import math
from collections.abc import Sequence

import numpy as np
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

_SHIFT = np.int64(32)
_LOW = np.int64(0xFFFFFFFF)


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


def _in_groups(types: Sequence[str | None], group: tuple[str, ...]) -> np.ndarray:
    return np.array([t in group for t in types], dtype=bool)


def _per_key(rows: np.ndarray, keys: np.ndarray, chosen: np.ndarray, n_keys: int) -> np.ndarray:
    """Conversations among `chosen` holding each key ((row, key) pairs are unique)."""
    if not len(rows):
        return np.zeros(n_keys, np.int64)
    return np.bincount(keys[chosen[rows]], minlength=n_keys)


def two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """(p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)), p pooled; None when it is undefined."""
    if not n1 or not n2:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    spread = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    return None if spread <= 0 else (k1 / n1 - k2 / n2) / math.sqrt(spread)


def _stance(types: Sequence[str | None], ai: tuple[np.ndarray, np.ndarray],
            names: Sequence[str], top: int) -> StanceValues:
    resisting, supporting = _in_groups(types, RESISTING), _in_groups(types, SUPPORTING)
    n_r, n_s = int(resisting.sum()), int(supporting.sum())
    in_r = _per_key(*ai, resisting, len(names))
    in_s = _per_key(*ai, supporting, len(names))
    rows = []
    for key in np.flatnonzero(in_r + in_s >= MIN_VALUE_CONVERSATIONS):
        k_r, k_s = int(in_r[key]), int(in_s[key])
        r = share(k_r, n_r, "resisting conversations (mild + strong resistance)")
        s = share(k_s, n_s, "supporting conversations (strong + mild support)")
        rows.append(StanceValue(value=names[key], resisting=r, supporting=s,
                                difference=(r.value or 0.0) - (s.value or 0.0),
                                z=two_proportion_z(k_r, n_r, k_s, n_s)))
    rows.sort(key=lambda v: (-(v.z or 0.0), -v.difference, v.value))
    note = (too_few(n_r, "resisting conversations") or too_few(n_s, "supporting conversations"))
    return StanceValues(
        resisting_conversations=n_r, supporting_conversations=n_s, values=rows,
        most_resisting=[v for v in rows if (v.z or 0) > 0][:top],
        most_supporting=[v for v in reversed(rows) if (v.z or 0) < 0][:top], note=note)


def _mirrored_rows(ai: tuple[np.ndarray, np.ndarray],
                   human: tuple[np.ndarray, np.ndarray], n_rows: int) -> np.ndarray:
    """Per conversation: does an AI value equal a value the user stated?"""
    matched = np.intersect1d((ai[0] << _SHIFT) | ai[1], (human[0] << _SHIFT) | human[1])
    out = np.zeros(n_rows, dtype=bool)
    out[(matched >> _SHIFT).astype(np.int64)] = True
    return out


def _pairs(ai: tuple[np.ndarray, np.ndarray], names: Sequence[str], base: int,
           min_pair: int, top: int) -> list[ValuePair]:
    """AI value pairs by lift; (row, key) pairs arrive sorted by row, then key."""
    rows, keys = ai
    held = np.bincount(keys, minlength=len(names)) if len(keys) else np.zeros(len(names), int)
    packed = []
    for d in range(1, len(rows)):
        same = rows[:-d] == rows[d:]
        if not same.any():
            break
        packed.append((keys[:-d][same] << _SHIFT) | keys[d:][same])
    if not packed:
        return []
    pairs, together = np.unique(np.concatenate(packed), return_counts=True)
    keep = together >= min_pair
    out = []
    for p, n_ab in zip(pairs[keep].tolist(), together[keep].tolist(), strict=True):
        a, b = p >> 32, p & 0xFFFFFFFF
        out.append(ValuePair(a=names[a], b=names[b], together=n_ab,
                             a_conversations=int(held[a]), b_conversations=int(held[b]),
                             lift=n_ab * base / (int(held[a]) * int(held[b]))))
    out.sort(key=lambda v: (-v.lift, -v.together, v.a, v.b))
    return out[:top]


def by_response_type(
    types: Sequence[str | None],
    ai: tuple[np.ndarray, np.ndarray],
    human: tuple[np.ndarray, np.ndarray],
    names: Sequence[str],
    top: int = TOP,
    min_pair: int = MIN_PAIR_CONVERSATIONS,
) -> ByResponseType:
    """Values by response type over len(types) conversations: `ai` and `human` are unique
    (row, key) pairs sorted by row then key, rows indexing `types`, keys indexing `names`."""
    n_rows = len(types)
    strong = _in_groups(types, ("strong resistance",))
    n_strong = int(strong.sum())
    per_human = _per_key(*human, strong, len(names))
    before = [ValueCount(value=names[k], share=share(int(per_human[k]), n_strong,
                                                     "strong-resistance conversations"))
              for k in np.flatnonzero(per_human)]
    before.sort(key=lambda v: (-v.share.k, v.value))
    mirrored = _mirrored_rows(ai, human, n_rows)
    mirroring = []
    for label, group in MIRRORING_GROUPS.items():
        chosen = _in_groups(types, group)
        mirroring.append(MirroringRow(response_type=label, share=share(
            int((mirrored & chosen).sum()), int(chosen.sum()), f"{label} conversations",
            PUBLISHED_MIRRORING.get(label))))
    pairs = _pairs(ai, names, n_rows, min_pair, top)
    return ByResponseType(
        conversations=n_rows, stance=_stance(types, ai, names, top),
        before_strong_resistance=before[:top], strong_resistance_conversations=n_strong,
        mirroring=mirroring, pairs=pairs, min_pair_conversations=min_pair,
        pairs_note=None if pairs else
        f"no two AI values held together in {min_pair}+ conversations")


__all__ = ["ByResponseType", "MirroringRow", "StanceValue", "StanceValues", "ValueCount",
           "ValuePair", "by_response_type", "two_proportion_z"]
