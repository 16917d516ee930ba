"""Shares and means as every report states them: a count of a named denominator, the share,
its Wilson 95% interval, and one way to print it.

A figure is printed the same way by `annotator report`, the app's Overview and an export's
dataset card (`Share.text`, `Mean.text`), so the three agree to the character. A share of
fewer than `MIN_CONVERSATIONS` conversations is printed as "too few gold conversations: n" rather
than as a share with an interval that says nothing (a Wilson interval from 2 of 2 is still
34% to 100%); the counts and the interval stay in the JSON.

The Wilson score interval is checked against `statsmodels` in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

Z95 = 1.959963984540054
MIN_CONVERSATIONS = 10  # a share of fewer conversations is said to be too few, not printed


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of k successes in n (0..1); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def too_few(n: int, what: str = "conversations") -> str | None:
    """Why a figure over `n` is not stated ("too few conversations: 2"), or None."""
    return f"too few {what}: {n}" if n < MIN_CONVERSATIONS else None


class Share(BaseModel):
    """k of n, named: the share (0..1), its Wilson 95% interval, and the denominator."""

    k: int
    n: int
    value: float | None = Field(description="k / n; None when n is 0")
    low: float
    high: float
    denominator_name: str = Field(description="what n counts")
    note: str | None = Field(None, description="set when n is too small to state the share")
    published_pct: float | None = Field(None, description="the published study's figure, "
                                        "in percent, over its own such denominator")

    @property
    def pct(self) -> float | None:
        return None if self.value is None else 100.0 * self.value

    def text(self) -> str:
        """"28.6% [13.2%-51.0%] (8 of 28 gold conversations)", or why there is no figure."""
        return self._figure(f" {self.denominator_name}")

    def short(self) -> str:
        """`text` without the denominator's name, for a table whose title names it."""
        return self._figure("")

    def _figure(self, named: str) -> str:
        if self.note is not None or self.value is None:
            return self.note or f"too few {self.denominator_name}: {self.n}"
        return (f"{100 * self.value:.1f}% [{100 * self.low:.1f}%-{100 * self.high:.1f}%] "
                f"({self.k:,} of {self.n:,}{named})")

    def published_text(self) -> str:
        return "not published" if self.published_pct is None else f"{self.published_pct:.1f}%"


def share(k: int, n: int, denominator_name: str = "conversations",
          published_pct: float | None = None) -> Share:
    """k of n as a `Share` with its Wilson 95% interval; `note` says when n is too few."""
    k, n = int(k), int(n)
    low, high = wilson(k, n)
    return Share(k=k, n=n, value=k / n if n else None, low=low, high=high,
                 denominator_name=denominator_name, note=too_few(n, denominator_name),
                 published_pct=published_pct)


class Mean(BaseModel):
    """A mean over n units with a normal-approximation 95% interval (mean +- z s / sqrt(n))."""

    n: int
    value: float | None
    low: float | None
    high: float | None
    denominator_name: str
    note: str | None = None
    published: float | None = None

    def text(self) -> str:
        if self.note is not None or self.value is None:
            return self.note or f"too few {self.denominator_name}: {self.n}"
        return (f"{self.value:.2f} [{self.low:.2f}-{self.high:.2f}] "
                f"(mean over {self.n:,} {self.denominator_name})")

    def published_text(self) -> str:
        return "not published" if self.published is None else f"{self.published:.1f}"


def mean(values: Sequence[float], denominator_name: str = "conversations",
         published: float | None = None) -> Mean:
    """The mean of `values` with its 95% interval (sample standard deviation, z = 1.96)."""
    n = len(values)
    if n == 0:
        return Mean(n=0, value=None, low=None, high=None, denominator_name=denominator_name,
                    note=too_few(0, denominator_name), published=published)
    m = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = Z95 * sd / math.sqrt(n)
    return Mean(n=n, value=m, low=m - half, high=m + half, denominator_name=denominator_name,
                note=too_few(n, denominator_name), published=published)


__all__ = ["MIN_CONVERSATIONS", "Mean", "Share", "mean", "share", "too_few", "wilson"]
