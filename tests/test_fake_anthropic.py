"""The fake API is faithful enough to test against: the real SDK parses every reply into its typed
models, raises its typed errors for injected faults, and the counters tell paid from unpaid."""

from __future__ import annotations

import asyncio
import time

import anthropic
import httpx2
import pytest
from conftest import TEST_API_KEY
from fake_anthropic import FakeAnthropic
from pydantic import ValidationError
from waiting import wait_until

from annotator.extract.extractors import ProposedLabels

TOOL = {
    "name": "record_labels",
    "description": "labels",
    "input_schema": {"type": "object", "properties": {}},
}
LONG_SYSTEM = "You label conversations. " * 400  # over the 1,024-token cache minimum


def body(text: str = "Honesty matters to me.", system: str = LONG_SYSTEM) -> dict:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": text}],
        "tools": [TOOL],
        "tool_choice": {"type": "tool", "name": "record_labels"},
    }


def client(fake: FakeAnthropic, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=TEST_API_KEY, base_url=fake.base_url, max_retries=retries)


def test_messages_reply_parses_as_a_typed_message_with_usage(fake_api):
    message = client(fake_api).messages.create(**body("I value honesty and fairness."))
    assert isinstance(message, anthropic.types.Message)
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "record_labels"
    # untagged text counts as the assistant's under this rule
    assert {v["name"] for v in block.input["ai_values"]} >= {"honesty", "fairness"}
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    # first request writes the cache, the next one with the same prefix reads it
    assert message.usage.cache_creation_input_tokens > 1024
    again = client(fake_api).messages.create(**body("Something else entirely."))
    assert again.usage.cache_read_input_tokens == message.usage.cache_creation_input_tokens
    assert again.usage.cache_creation_input_tokens == 0


def test_structured_output_mode_replies_with_json_text(fake_api):
    request = body()
    del request["tools"], request["tool_choice"]
    request["output_config"] = {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    message = client(fake_api).messages.create(**request)
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("{")


def test_faults_raise_the_sdks_typed_errors_and_are_not_paid(fake_api):
    c = client(fake_api)
    fake_api.queued_faults.extend(["429", "529", "500"])
    with pytest.raises(anthropic.RateLimitError) as rate:
        c.messages.create(**body("a"))
    assert rate.value.response.headers["retry-after"] == fake_api.retry_after
    assert rate.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        c.messages.create(**body("b"))
    assert overloaded.value.status_code == 529
    with pytest.raises(anthropic.InternalServerError) as server:
        c.messages.create(**body("c"))
    assert server.value.status_code == 500
    assert fake_api.paid == {} and sum(fake_api.attempts.values()) == 3


def test_sdk_retries_faults_and_pays_once(fake_api):
    fake_api.queued_faults.extend(["429", "500"])
    message = client(fake_api, retries=3).messages.create(**body("retry me"))
    assert message.stop_reason == "tool_use"
    assert fake_api.attempts["retry me"] == 3
    assert fake_api.paid["retry me"] == 1


def test_malformed_and_refusal_replies_are_paid(fake_api):
    fake_api.queued_faults.extend(["malformed", "refusal"])
    bad = client(fake_api).messages.create(**body("I value honesty."))
    with pytest.raises(ValidationError):  # a field missing, a wrong type or an invalid choice
        ProposedLabels.model_validate(bad.content[0].input)
    refused = client(fake_api).messages.create(**body("x"))
    assert refused.stop_reason == "refusal"
    assert refused.stop_details.type == "refusal"
    assert fake_api.paid["I value honesty."] == 1 and fake_api.paid["x"] == 1


def test_requests_are_checked_like_the_real_api(fake_api):
    raw = httpx2.post(
        f"{fake_api.base_url}/v1/messages",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in raw.json()["error"]["message"]
    no_key = httpx2.post(f"{fake_api.base_url}/v1/messages", json=body())
    assert no_key.status_code == 401
    fake_api.api_keys = {"another key"}
    with pytest.raises(anthropic.AuthenticationError):
        client(fake_api).messages.create(**body())


def test_batches_create_poll_and_serve_jsonl_results(fake_api):
    fake_api.batch_seconds = 0.3
    c = client(fake_api)
    requests = [{"custom_id": f"c{i}", "params": body(f"I value honesty {i}")} for i in range(5)]
    batch = c.messages.batches.create(requests=requests)
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 5
    assert [b.id for b in c.messages.batches.list().data] == [batch.id]
    done = wait_until(
        lambda: (b := c.messages.batches.retrieve(batch.id)).processing_status == "ended" and b,
        "the batch to end", interval=0.05,
    )
    assert done.processing_status == "ended" and done.request_counts.succeeded == 5
    assert done.results_url.startswith(fake_api.base_url)  # absolute, as the API gives it
    results = list(c.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == sorted(r["custom_id"] for r in requests)
    assert all(r.result.type == "succeeded" for r in results)
    assert results[0].result.message.usage.service_tier == "batch"
    assert fake_api.batch_creates == 1 and sum(fake_api.paid.values()) == 5


def test_batch_rejects_bad_custom_ids(fake_api):
    with pytest.raises(anthropic.BadRequestError):
        client(fake_api).messages.batches.create(
            requests=[{"custom_id": "has space", "params": body()}]
        )


def test_latency_is_applied_and_64_concurrent_clients_are_served(fake_api):
    fake_api.latency = 0.2
    fake_api.gather = 64  # each request is held until all 64 are in the server at once

    async def main() -> float:
        async with anthropic.AsyncAnthropic(
            api_key=TEST_API_KEY, base_url=fake_api.base_url, max_retries=0
        ) as c:
            started = time.perf_counter()
            await asyncio.gather(*(c.messages.create(**body(f"q{i}")) for i in range(64)))
            return time.perf_counter() - started

    elapsed = asyncio.run(main())
    assert elapsed >= 0.2  # the latency is applied
    # served together: all 64 were held in the server at once (one at a time, or a refused
    # connection, would never gather them and each would get a 500)
    assert fake_api.in_flight_max == 64
    assert sum(fake_api.paid.values()) == 64
