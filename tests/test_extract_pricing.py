"""Prices: the default table, prefix lookup of dated model ids, batch discount, user overrides."""

from __future__ import annotations

import json

import pytest

from annotator.errors import InputError
from annotator.extract.pricing import BATCH_DISCOUNT, load_prices


def test_cost_of_each_token_class_and_the_batch_discount():
    prices = load_prices()
    # Sonnet 4.6: $3 in, $15 out, $3.75 cache write, $0.30 cache read per million tokens
    usd = prices.cost("claude-sonnet-4-6", 1_000_000, 100_000, 2_000_000, 400_000)
    assert usd == pytest.approx(3 + 1.5 + 0.6 + 1.5)
    assert prices.cost("claude-sonnet-4-6", 1000, 1000, batch=True) == pytest.approx(
        BATCH_DISCOUNT * prices.cost("claude-sonnet-4-6", 1000, 1000)
    )


def test_dated_ids_match_their_model_and_unknown_models_cost_nothing():
    prices = load_prices()
    assert prices.get("claude-haiku-4-5-20251001") == prices.get("claude-haiku-4-5")
    # longest prefix wins: a dated Sonnet 5.5 is not priced as Sonnet 5
    assert prices.get("claude-sonnet-5-5-20260928") == prices.get("claude-sonnet-5-5")
    assert prices.get("claude-sonnet-5-5") != prices.get("claude-sonnet-5")
    assert "claude-imaginary-9" not in prices
    assert prices.cost("claude-imaginary-9", 10**6, 10**6) == 0.0


def test_a_user_file_overrides_and_adds_models(tmp_path):
    toml = tmp_path / "prices.toml"
    toml.write_text('[models."claude-sonnet-4-6"]\ninput = 2.5\n\n[models.my-model]\n'
                    "input = 1\noutput = 2\n")
    prices = load_prices(toml)
    sonnet = prices.get("claude-sonnet-4-6")
    assert (sonnet.input, sonnet.output, sonnet.cache_read) == (2.5, 15, 0.25)
    assert prices.get("my-model").cache_write == 1.25
    as_json = tmp_path / "prices.json"
    as_json.write_text(json.dumps({"claude-haiku-4-5": {"output": 4}}))
    assert load_prices(as_json).get("claude-haiku-4-5").output == 4


@pytest.mark.parametrize(
    "content",
    ['{"m": {"input": 1}}', '{"claude-sonnet-4-6": {"inptu": 1}}', "not json", '{"m": 3}'],
)
def test_bad_price_files_are_input_errors(tmp_path, content):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(InputError):
        load_prices(path)
