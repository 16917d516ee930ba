"""What the benchmarks that build synthetic studies share."""

from __future__ import annotations

import numpy as np


def group_values(conv: np.ndarray, val: np.ndarray, n: int) -> list[np.ndarray]:
    """(conversation, value) pairs -> for each of the n conversations, its distinct values,
    sorted."""
    order = np.lexsort((val, conv))
    conv, val = conv[order], val[order]
    keep = np.ones(conv.size, bool)
    keep[1:] = (conv[1:] != conv[:-1]) | (val[1:] != val[:-1])
    conv, val = conv[keep], val[keep]
    bounds = np.searchsorted(conv, np.arange(n + 1))
    return np.split(val, bounds[1:-1])
