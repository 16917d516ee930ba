"""Per-model token prices and the cost of a call; a user file can override or add models.

Prices are USD per million tokens, as listed on Anthropic's pricing page
(platform.claude.com/docs/en/about-claude/pricing; 5-minute cache writes). They change: a user
points `extract(prices=...)` / `annotator extract --prices FILE` at a JSON or TOML file shaped like
`{"claude-x": {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3}}` to override.
The Message Batches API bills every token class at half price (`BATCH_DISCOUNT`).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotator.errors import InputError

BATCH_DISCOUNT = 0.5
PER_TOKEN = 1e-6  # prices are per million tokens


@dataclass(frozen=True)
class Price:
    """USD per million tokens for each token class the API reports."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def of(cls, input: float, output: float, cache_read_ratio: float = 0.1) -> Price:
        # Cache writes (5 minutes) cost 1.25x input everywhere; reads are 0.1x unless listed.
        return cls(input, output, round(input * 1.25, 6), round(input * cache_read_ratio, 6))


# Model id -> price. A dated id ("claude-haiku-4-5-20251001") matches its undated prefix.
DEFAULT_PRICES: dict[str, Price] = {
    "claude-fable-5-2": Price.of(10, 50, 0.025),
    "claude-fable-5-1": Price.of(10, 50, 0.025),
    "claude-mythos-5-1": Price.of(10, 50, 0.025),
    "claude-fable-5": Price.of(10, 50),
    "claude-mythos-5": Price.of(10, 50),
    "claude-opus-5-5": Price(4, 20, 5, 0.2),
    "claude-opus-5": Price.of(5, 25),
    "claude-opus-4-8": Price.of(5, 25),
    "claude-opus-4-7": Price.of(5, 25),
    "claude-opus-4-6": Price.of(5, 25),
    "claude-opus-4-5": Price.of(5, 25),
    "claude-opus-4-1": Price.of(15, 75),
    "claude-opus-4": Price.of(15, 75),
    "claude-sonnet-5-5": Price.of(2, 10, 0.05),
    "claude-sonnet-5": Price.of(2, 10),
    "claude-sonnet-4-6": Price.of(3, 15),
    "claude-sonnet-4-5": Price.of(3, 15),
    "claude-sonnet-4": Price.of(3, 15),
    "claude-haiku-5-5": Price.of(0.1, 0.5),
    "claude-haiku-4-5": Price.of(1, 5),
    "claude-3-5-haiku": Price.of(0.8, 4),
    # The offline baseline costs nothing; listed so reports show $0 rather than "unknown".
    "baseline-v1": Price(0, 0, 0, 0),
}


class PriceTable:
    """Looks a model up by exact id, then by the longest known prefix."""

    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = dict(prices)
        self._prefixes = sorted(self._prices, key=len, reverse=True)

    def get(self, model: str) -> Price | None:
        if model in self._prices:
            return self._prices[model]
        for known in self._prefixes:
            if model.startswith(known + "-"):
                return self._prices[known]
        return None

    def __contains__(self, model: str) -> bool:
        return self.get(model) is not None

    def cost(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        batch: bool = False,
    ) -> float:
        """USD for one call; 0.0 for a model without a price (the run reports it as unpriced)."""
        price = self.get(model)
        if price is None:
            return 0.0
        usd = (
            input_tokens * price.input
            + output_tokens * price.output
            + cache_read_tokens * price.cache_read
            + cache_write_tokens * price.cache_write
        ) * PER_TOKEN
        return usd * BATCH_DISCOUNT if batch else usd

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {m: vars(p).copy() for m, p in self._prices.items()}


def _read_overrides(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except OSError as exc:
        raise InputError(f"cannot read the price file {path}: {exc}") from exc
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"the price file {path} is not valid JSON/TOML: {exc}") from exc
    # Accept either {"model": {...}} or {"models": {"model": {...}}}.
    if isinstance(data, dict) and isinstance(data.get("models"), dict):
        data = data["models"]
    if not isinstance(data, dict):
        raise InputError(f"the price file {path} must map model ids to prices")
    return data


def _price_from(model: str, entry: Any, base: Price | None, path: Path) -> Price:
    if not isinstance(entry, dict):
        raise InputError(f"{path}: the price of {model!r} must be a table of numbers")
    unknown = set(entry) - {"input", "output", "cache_write", "cache_read"}
    if unknown:
        raise InputError(f"{path}: unknown price fields for {model!r}: {sorted(unknown)}")
    try:
        values = {k: float(v) for k, v in entry.items()}
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: prices of {model!r} must be numbers") from exc
    if base is None:
        if not {"input", "output"} <= set(values):
            raise InputError(f"{path}: a new model {model!r} needs at least input and output")
        base = Price.of(values["input"], values["output"])
        # Derived cache prices follow the new input price unless given.
    merged = {**vars(base), **values}
    if "input" in values and "cache_write" not in values:
        merged["cache_write"] = round(values["input"] * 1.25, 6)
    if "input" in values and "cache_read" not in values:
        merged["cache_read"] = round(values["input"] * 0.1, 6)
    return Price(**merged)


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The default table, with a user's JSON/TOML file (if given) overriding or adding models."""
    prices = dict(DEFAULT_PRICES)
    if path is not None:
        path = Path(path)
        base = PriceTable(prices)
        for model, entry in _read_overrides(path).items():
            prices[model] = _price_from(model, entry, base.get(model), path)
    return PriceTable(prices)
