"""Claude as an extractor: the only module that imports `anthropic`.

One Messages API call per conversation, with the prompt's static part as a cached system block
and the conversation in the user turn. The reply is structured by forced tool use (or, if the
prompt's front matter says `output: json`, by structured output) and validated with pydantic; a
reply that fails validation is sent back with the error for a corrected one, up to
`max_attempts` calls, then kept as an error row with the raw reply and the reason.
Every HTTP request is one `ModelCall`, handed to the engine's journal (committed "in_flight")
before it is sent: so the SDK's own retries are off (`max_retries=0`) and this module retries
(`max_retries` times, with backoff) what the SDK would, plus what it would not: a request that
gets no answer within `timeout` seconds, and a 200 whose body is not a readable message (cut
short or not JSON). A call ends as "ok", "invalid" or "refusal" (a reply, billed), "rejected"
(an HTTP error status: not billed), "not_sent" (no connection) or "possibly_paid" (sent, but no
usable reply: the API may have billed it). Logged requests omit the API key and headers
entirely, and the long system text is replaced by a reference to the prompt version (which the
prompts table holds).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import orjson
from pydantic import BaseModel, ValidationError

from annotator.extract.extractors import (
    TOOL_NAME,
    CallJournal,
    ClaimLostError,
    FatalExtractorError,
    Outcome,
    ProposedLabels,
    ProposedSpans,
    ProposedSubjectivity,
    labels_schema,
    reply_shape,
)
from annotator.extract.pricing import PriceTable, load_prices
from annotator.extract.prompts import render
from annotator.extract.tasks import TaskList, from_front_matter
from annotator.models import (
    Conversation,
    Extraction,
    ExtractionStatus,
    ModelCall,
    PromptVersion,
    ValueRef,
)
from annotator.taxonomy import load_taxonomy, normalise

TOOL_DESCRIPTION = (
    "Record the labels for the conversation: whether it is subjective, the AI's values, the "
    "human's values (each with a verbatim evidence quote) and the AI's response type."
)
TOOL_DESCRIPTIONS: dict[type[BaseModel], str] = {
    ProposedLabels: TOOL_DESCRIPTION,
    ProposedSubjectivity: "Record whether the conversation is subjective: whether it involves "
    "values at all.",
    ProposedSpans: "Record the personal names and street addresses left in the conversation, "
    "each copied verbatim.",
}
POOL_SHARD = 16
DEFAULT_TIMEOUT = 120.0  # seconds for one request: a labels reply takes a few
BACKOFF_START, BACKOFF_MAX = 0.5, 8.0  # seconds, doubling, as the SDK's own retries did
MAX_RETRY_AFTER = 60.0
ESTIMATED_OUTPUT_TOKENS = 350  # a typical labels reply, for the price of an unanswered call
MIN_CACHEABLE_TOKENS = 1024  # a shorter prefix is not cached
# HTTP statuses worth another try (as the SDK retries them): timeout, conflict, rate limit;
# and every 5xx, 529 (overloaded) included.
_RETRY_STATUSES = frozenset({408, 409, 429})
# Transport errors (httpx2, aiohttp, OS) raised before a request leaves the machine.
_CONNECT_FAILURES = frozenset(
    {"ConnectError", "ClientConnectorError", "ClientConnectorDNSError", "ConnectionRefusedError"}
)
# Failures that no retry fixes: every further call would fail the same way.
_FATAL = (
    anthropic.AuthenticationError,
    anthropic.PermissionDeniedError,
    anthropic.NotFoundError,
)
if hasattr(anthropic, "PaymentRequiredError"):  # 402: billing; present in the 2.x SDK
    _FATAL = (*_FATAL, anthropic.PaymentRequiredError)


@dataclass
class Reply:
    """A model reply read against the schema: labels, or the reason it cannot be used."""

    labels: BaseModel | None  # a ProposedLabels, or the prompt's own reply shape
    raw: str | None
    reason: str | None
    retryable: bool  # a validation failure is worth a corrective turn; a refusal is not


def _summarise(exc: ValidationError, limit: int = 6) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _checked(labels: BaseModel, raw: str, tasks: TaskList | None) -> Reply:
    """A validated reply, with its task checked against the version's categories (spelled as
    the list spells them); a missing or unknown task is worth a corrective turn. A reply shape
    without a task (a subjectivity-only prompt) is taken as it is."""
    if not isinstance(labels, ProposedLabels):
        return Reply(labels, raw, None, False)
    if tasks is None:
        return Reply(labels.model_copy(update={"task": None}), raw, None, False)
    if labels.task is None:
        return Reply(None, raw, "task: Field required", retryable=True)
    category = tasks.category(labels.task.category)
    if category is None:
        reason = (f"task.category: {labels.task.category[:80]!r} is not one of: "
                  f"{', '.join(tasks.names)}")
        return Reply(None, raw, reason, retryable=True)
    task = labels.task.model_copy(update={"category": category})
    return Reply(labels.model_copy(update={"task": task}), raw, None, False)


def read_reply(
    message: dict[str, Any], output: str = "tool", tasks: TaskList | None = None,
    shape: type[BaseModel] = ProposedLabels,
) -> Reply:
    """Labels from a Messages API reply (a dict in the API's JSON shape), read as `shape` (the
    prompt's `extractors.reply_shape`); `tasks`: the categories the prompt version asks the
    task from (None: it asks for none)."""
    stop = message.get("stop_reason")
    content = message.get("content") or []
    if stop == "refusal":
        details = message.get("stop_details") or {}
        category = details.get("category") or "unspecified"
        text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        return Reply(None, text or None, f"refusal: category {category}", retryable=False)
    if output == "json":
        raw = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        if not raw.strip():
            return Reply(None, None, f"no text in the reply (stop_reason={stop})", True)
        try:
            return _checked(shape.model_validate_json(raw), raw, tasks)
        except ValidationError as exc:
            return Reply(None, raw, _summarise(exc), retryable=True)
    block = next(
        (b for b in content if b.get("type") == "tool_use" and b.get("name") == TOOL_NAME), None
    )
    if block is None:
        text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        return Reply(
            None, text or None, f"no {TOOL_NAME} call in the reply (stop_reason={stop})", True
        )
    raw = orjson.dumps(block.get("input")).decode()
    if stop == "max_tokens":
        return Reply(None, raw, "reply truncated at max_tokens", retryable=True)
    try:
        return _checked(shape.model_validate(block.get("input")), raw, tasks)
    except ValidationError as exc:
        return Reply(None, raw, _summarise(exc), retryable=True)


def _usage(message: dict[str, Any]) -> tuple[int, int, int, int]:
    u = message.get("usage") or {}
    return (
        int(u.get("input_tokens") or 0),
        int(u.get("output_tokens") or 0),
        int(u.get("cache_read_input_tokens") or 0),
        int(u.get("cache_creation_input_tokens") or 0),
    )


class ClaudeExtractor:
    """Extractor over the Messages API (and Message Batches, for `extract --batch`)."""

    name = "claude"

    def __init__(
        self,
        *,
        api_key: str | None,
        model: str | None,
        base_url: str | None = None,
        prices: str | Path | PriceTable | None = None,
        max_attempts: int = 3,
        max_retries: int = 4,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = 8,
    ) -> None:
        if not model:
            raise FatalExtractorError("no model: give --model or set `model` in the prompt")
        if timeout <= 0:
            raise FatalExtractorError("--timeout must be more than 0 seconds")
        self.model = model
        self.max_attempts = max(1, max_attempts)
        self.max_retries = max(0, max_retries)
        self.timeout = timeout
        self.prices = prices if isinstance(prices, PriceTable) else load_prices(prices)
        self.taxonomy = load_taxonomy()
        self._tools: dict[type[BaseModel], list[dict[str, Any]]] = {}
        self._refs: dict[str, tuple[str | None, list[str]]] = {}
        self._next = 0
        if api_key is None:  # a dry run without a key: requests are built and priced, not sent
            self._clients: list[Any] = []
            self.client: Any = None
            self.transport = "none"
            return
        # The key is passed explicitly (never read from the environment by the SDK) and lives
        # only in the clients' headers, which are never logged.
        # With aiohttp installed (`anthropic[aiohttp]`) the SDK's aiohttp transport costs less
        # CPU per call. Without it, one client per POOL_SHARD calls in flight: httpcore's pool
        # scans all its connections for every request, so small pools cost less than one large.
        aiohttp = _aiohttp_available()
        shards = 1 if aiohttp else max(1, -(-concurrency // POOL_SHARD))
        self._clients = [
            anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                # Retries are made here, each journaled before it is sent (see the docstring).
                # Batch calls (create, poll, results) are not paid per request: the SDK retries.
                max_retries=0,
                timeout=timeout,
                http_client=anthropic.DefaultAioHttpClient() if aiohttp else None,
            )
            for _ in range(shards)
        ]
        self.transport = "aiohttp" if aiohttp else "httpx"
        self.client = self._clients[0]  # batches and listings
        self._next = 0
        self._tools: dict[str, list[dict[str, Any]]] = {}

    def _tools_for(self, prompt: PromptVersion) -> list[dict[str, Any]]:
        """The forced tool of a prompt version: its reply shape, asking for a task only when the
        version lists task categories. Built once per version (identical bytes: cached)."""
        if prompt.id not in self._tools:
            self._tools[prompt.id] = [
                {"name": TOOL_NAME, "description": _tool_description(prompt),
                 "input_schema": _schema(prompt)}
            ]
        return self._tools[prompt.id]

    def prompt_for(self, prompt: PromptVersion | None) -> PromptVersion:
        if prompt is None:
            raise FatalExtractorError("the claude extractor needs a prompt version")
        return prompt

    async def aclose(self) -> None:
        for client in self._clients:
            await client.close()

    # --- requests ---------------------------------------------------------------------------

    def params(self, conversation: Conversation, prompt: PromptVersion) -> dict[str, Any]:
        """The Messages API request body for one conversation's first attempt."""
        front = prompt.front_matter
        rendered = render(prompt, conversation)
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": int(front["max_tokens"]),
            # Static first, with cache_control: tools + system are one cached prefix.
            "system": [
                {"type": "text", "text": rendered.system, "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [{"role": "user", "content": rendered.user}],
        }
        if front.get("temperature") is not None:
            params["temperature"] = float(front["temperature"])
        if front.get("output", "tool") == "json":
            params["output_config"] = {"format": {"type": "json_schema",
                                                  "schema": _schema(prompt)}}
        else:
            params["tools"] = self._tools_for(prompt)
            params["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return params

    @staticmethod
    def loggable(params: dict[str, Any], prompt: PromptVersion) -> dict[str, Any]:
        """The request as logged: the long system text replaced by its prompt version id."""
        logged = dict(params)
        logged["system"] = [{"type": "text", "prompt_id": prompt.id, "cache_control": True}]
        return logged

    def _repair(self, params: dict[str, Any], message: dict[str, Any], reason: str) -> None:
        """Append the bad reply and the validation error, asking for a corrected reply."""
        content = message.get("content") or []
        params["messages"] = [*params["messages"], {"role": "assistant", "content": content}]
        tool_use = next((b for b in content if b.get("type") == "tool_use"), None)
        note = f"The input failed validation: {reason}. Call {TOOL_NAME} again with valid input."
        if tool_use is not None:
            reply: Any = [
                {"type": "tool_result", "tool_use_id": tool_use["id"], "is_error": True,
                 "content": note}
            ]
        elif params.get("output_config"):
            reply = f"That reply failed validation: {reason}. Reply again with valid JSON only."
        else:
            reply = f"You did not call the tool. Call {TOOL_NAME} to record the labels."
        params["messages"].append({"role": "user", "content": reply})

    # --- one conversation -----------------------------------------------------------------

    async def extract(
        self,
        conversation: Conversation,
        prompt: PromptVersion,
        journal: CallJournal | None = None,
    ) -> Outcome:
        params = self.params(conversation, prompt)
        output = prompt.front_matter.get("output", "tool")
        calls: list[ModelCall] = []
        totals = [0, 0, 0, 0]
        cost = 0.0
        reply = Reply(None, None, "no call made", False)
        for attempt in range(1, self.max_attempts + 1):
            message, failure = await self._send(conversation, prompt, params, journal, calls)
            if message is None:
                # Retries are exhausted: keep an error row so the conversation is not dropped;
                # --retry-errors takes it again.
                reason = f"API error after retries: {failure}"
                return Outcome(
                    self._error(conversation, prompt, reason, reply.raw, totals, cost, attempt),
                    calls,
                )
            usage = _usage(message)
            totals = [a + b for a, b in zip(totals, usage, strict=True)]
            cost += self.prices.cost(self.model, *usage)
            reply = read_reply(message, output, from_front_matter(prompt.front_matter),
                               reply_shape(prompt))
            status = "ok" if reply.labels else ("refusal" if not reply.retryable else "invalid")
            self._complete(calls[-1], message, status)
            if reply.labels is not None:
                return Outcome(
                    self._ok(conversation, prompt, reply, totals, cost, attempt), calls
                )
            if not reply.retryable or attempt == self.max_attempts:
                break
            self._repair(params, message, reply.reason or "invalid")
        reason = reply.reason or "invalid reply"
        if reply.retryable:
            reason = f"invalid reply after {len(calls)} attempts: {reason}"
        return Outcome(
            self._error(conversation, prompt, reason, reply.raw, totals, cost, len(calls)), calls
        )

    async def _send(
        self,
        conversation: Conversation,
        prompt: PromptVersion,
        params: dict[str, Any],
        journal: CallJournal | None,
        calls: list[ModelCall],
    ) -> tuple[dict[str, Any] | None, str]:
        """One request, retried: (the reply, "") or (None, why the last try failed). Each try
        is appended to `calls`, journaled before it is sent; a reply's call is completed by the
        caller, a failed try's here."""
        failure = "no call made"
        for retry in range(self.max_retries + 1):
            call = self._call(conversation, prompt, params, None, "in_flight", time.perf_counter())
            call.estimated_cost_usd = self._estimate(params)
            if journal is not None:
                call.id = await journal.sending(call)
                if call.id is None:  # another run holds the conversation now: send nothing
                    raise ClaimLostError(calls)
            calls.append(call)
            started = time.perf_counter()
            message, status, failure, wait = await self._request(params, calls)
            call.duration_ms = (time.perf_counter() - started) * 1000
            if message is not None:
                return message, ""
            call.status = status
            call.response = {"error": failure}
            if wait is None or retry == self.max_retries:
                break
            await asyncio.sleep(wait if wait >= 0 else _backoff(retry))
        return None, failure

    async def _request(
        self, params: dict[str, Any], calls: list[ModelCall]
    ) -> tuple[dict[str, Any] | None, str, str, float | None]:
        """Send once: (message, "", "", None) or (None, call status, reason, wait) where wait
        is None for "do not retry", -1 for "back off", else the server's retry-after."""
        if not self._clients:
            raise FatalExtractorError("no API key: set ANTHROPIC_API_KEY to send requests")
        client = self._clients[self._next % len(self._clients)]
        self._next += 1
        try:
            # The SDK's timeout bounds each read; this bounds the whole request, so a server
            # that trickles bytes cannot hold a call (or the run) forever either.
            async with asyncio.timeout(self.timeout):
                raw = await client.messages.with_raw_response.create(**_sdk_args(params))
                body = await raw.read()
        except _FATAL as exc:
            calls[-1].status = "rejected"
            calls[-1].response = {"error": _api_error(exc)}
            error = FatalExtractorError(f"the API refused the run: {_api_error(exc)}")
            error.calls = calls
            raise error from exc
        except (TimeoutError, anthropic.APITimeoutError):
            return None, "possibly_paid", f"no reply within {self.timeout:g} s", -1
        except anthropic.APIStatusError as exc:
            retryable = exc.status_code in _RETRY_STATUSES or exc.status_code >= 500
            wait = _retry_after(exc) if retryable else None
            return None, "rejected", _api_error(exc), wait
        except anthropic.APIConnectionError as exc:
            status = "not_sent" if _never_connected(exc) else "possibly_paid"
            return None, status, _api_error(exc), -1
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:  # a 200 cut short, or not JSON at all
            return None, "possibly_paid", f"unreadable reply (HTTP 200): {exc}", -1
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            return None, "possibly_paid", "unreadable reply (HTTP 200): not a message", -1
        return message, "", "", None

    def _estimate(self, params: dict[str, Any]) -> float:
        """The price of a call whose reply never arrived: ~4 characters a token, a typical
        reply, and the static prefix (tools + system) read from the prompt cache when it is
        long enough to be cached, as it is for all but the first calls of a run."""
        prefix = (
            len(orjson.dumps(params.get("tools") or []))
            + sum(len(b.get("text", "")) for b in params.get("system") or [])
        ) // 4
        fresh = len(orjson.dumps(params["messages"])) // 4
        output = min(ESTIMATED_OUTPUT_TOKENS, int(params.get("max_tokens") or 0))
        if prefix < MIN_CACHEABLE_TOKENS:
            return self.prices.cost(self.model, fresh + prefix, output)
        return self.prices.cost(self.model, fresh, output, cache_read_tokens=prefix)

    def _complete(self, call: ModelCall, message: dict[str, Any], status: str) -> None:
        usage = _usage(message)
        call.response = message
        call.status = status
        call.input_tokens = usage[0] + usage[2] + usage[3]
        call.output_tokens = usage[1]

    def _call(
        self,
        conversation: Conversation,
        prompt: PromptVersion,
        params: dict[str, Any],
        message: dict[str, Any] | None,
        status: str,
        started: float,
        batch_id: str | None = None,
    ) -> ModelCall:
        usage = _usage(message) if message else (0, 0, 0, 0)
        return ModelCall(
            conversation_id=conversation.id,
            prompt_id=prompt.id,
            model=self.model,
            request=self.loggable(params, prompt),
            response=message,
            status=status,
            input_tokens=usage[0] + usage[2] + usage[3],
            output_tokens=usage[1],
            duration_ms=(time.perf_counter() - started) * 1000,
            batch_id=batch_id,
        )

    def _resolve(self, proposed: list[Any]) -> list[ValueRef]:
        """Names resolved to taxonomy leaves (free values kept, node_id None), deduplicated.
        Resolutions are memoised: models reuse a few hundred names."""
        out: list[ValueRef] = []
        seen: set[str] = set()
        for value in proposed:
            name = value.name.strip()
            if name not in self._refs:
                ref = self.taxonomy.value_ref(name)
                self._refs[name] = (ref.node_id, ref.path)
            node_id, path = self._refs[name]
            key = node_id or normalise(name)
            if key not in seen:
                seen.add(key)
                out.append(
                    ValueRef(name=name, node_id=node_id, path=list(path), evidence=value.evidence)
                )
        return out

    def _ok(
        self,
        conversation: Conversation,
        prompt: PromptVersion,
        reply: Reply,
        totals: list[int],
        cost: float,
        attempts: int,
    ) -> Extraction:
        labels = reply.labels
        assert labels is not None
        # a subjectivity-only reply leaves the other labels unset (None, no values)
        return Extraction(
            conversation_id=conversation.id,
            prompt_id=prompt.id,
            model=self.model,
            extractor=self.name,
            subjective=getattr(labels, "subjective", None),  # a scrub reply has no labels
            ai_values=self._resolve(getattr(labels, "ai_values", [])),
            human_values=self._resolve(getattr(labels, "human_values", [])),
            response_type=getattr(labels, "response_type", None),
            task=task.category if (task := getattr(labels, "task", None)) else None,
            task_description=task.description if task else None,
            raw_reply=reply.raw,
            input_tokens=totals[0],
            output_tokens=totals[1],
            cache_read_tokens=totals[2],
            cache_write_tokens=totals[3],
            cost_usd=cost,
            attempts=attempts,
        )

    def _error(
        self,
        conversation: Conversation,
        prompt: PromptVersion,
        reason: str,
        raw: str | None,
        totals: list[int],
        cost: float,
        attempts: int,
    ) -> Extraction:
        return Extraction(
            conversation_id=conversation.id,
            prompt_id=prompt.id,
            model=self.model,
            extractor=self.name,
            status=ExtractionStatus.error,
            error=reason,
            raw_reply=raw,
            input_tokens=totals[0],
            output_tokens=totals[1],
            cache_read_tokens=totals[2],
            cache_write_tokens=totals[3],
            cost_usd=cost,
            attempts=attempts,
        )

    # --- Message Batches ------------------------------------------------------------------

    async def create_batch(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit `[{"custom_id", "params"}]`; returns the batch (id, processing_status...)."""
        try:
            batch = await self.client.messages.batches.create(requests=requests)
        except _FATAL as exc:
            raise FatalExtractorError(f"the API refused the batch: {_api_error(exc)}") from exc
        return batch.to_dict(mode="json")

    async def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        batch = await self.client.messages.batches.retrieve(batch_id)
        return batch.to_dict(mode="json")

    async def recent_batches(self, limit: int = 20) -> list[dict[str, Any]]:
        page = await self.client.messages.batches.list(limit=limit)
        return [b.to_dict(mode="json") for b in page.data]

    async def batch_results(self, batch_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(custom_id, result) for each line of the batch's JSONL results."""
        decoder = await self.client.messages.batches.results(batch_id)
        async for item in decoder:
            yield item.custom_id, item.result.to_dict(mode="json")

    def batch_outcome(
        self,
        conversation: Conversation,
        prompt: PromptVersion,
        result: dict[str, Any],
        batch_id: str,
    ) -> Outcome:
        """An extraction from one batch result; no corrective turn (the batch has ended)."""
        params = self.params(conversation, prompt)
        started = time.perf_counter()
        kind = result.get("type")
        if kind != "succeeded":
            error = result.get("error") or {}
            detail = (error.get("error") or error).get("message") or ""
            reason = f"batch result {kind}" + (f": {detail}" if detail else "")
            call = self._call(conversation, prompt, params, None, str(kind), started, batch_id)
            call.response = result
            return Outcome(
                self._error(conversation, prompt, reason, None, [0, 0, 0, 0], 0.0, 1), [call]
            )
        message = result["message"]
        usage = _usage(message)
        cost = self.prices.cost(self.model, *usage, batch=True)
        reply = read_reply(message, prompt.front_matter.get("output", "tool"),
                           from_front_matter(prompt.front_matter), reply_shape(prompt))
        status = "ok" if reply.labels else ("refusal" if not reply.retryable else "invalid")
        call = self._call(conversation, prompt, params, message, status, started, batch_id)
        if reply.labels is not None:
            return Outcome(self._ok(conversation, prompt, reply, list(usage), cost, 1), [call])
        reason = reply.reason or "invalid reply"
        return Outcome(
            self._error(conversation, prompt, reason, reply.raw, list(usage), cost, 1), [call]
        )


def _schema(prompt: PromptVersion) -> dict[str, Any]:
    listed = from_front_matter(prompt.front_matter)
    return labels_schema(listed.names if listed else None, shape=reply_shape(prompt))


def _tool_description(prompt: PromptVersion) -> str:
    shape = reply_shape(prompt)
    if shape is not ProposedLabels or from_front_matter(prompt.front_matter) is None:
        return TOOL_DESCRIPTIONS[shape]
    return TOOL_DESCRIPTION[:-1] + ", and the conversation's task (description and category)."


def _aiohttp_available() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def _sdk_args(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `messages.create`: the 2.x SDK no longer types `temperature` (newer
    models reject sampling parameters), so an older model's temperature goes in `extra_body`."""
    if "temperature" not in params:
        return params
    args = dict(params)
    args["extra_body"] = {"temperature": args.pop("temperature")}
    return args


def _backoff(retry: int) -> float:
    """Seconds before retry `retry` (from 0): doubling, capped, with jitter so that the calls
    a rate limit turned away do not all come back at once."""
    return min(BACKOFF_MAX, BACKOFF_START * 2**retry) * random.uniform(0.75, 1.0)


def _retry_after(exc: Exception) -> float:
    """The server's retry-after (seconds, or milliseconds in retry-after-ms); -1 if none."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name)) * scale
        except (TypeError, ValueError):
            continue
        if 0 <= value <= MAX_RETRY_AFTER:
            return value
    return -1


def _never_connected(exc: BaseException) -> bool:
    """Whether a connection error happened before the request left (nothing to pay for)."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if type(seen).__name__ in _CONNECT_FAILURES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _api_error(exc: Exception) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        return f"HTTP {exc.status_code} {err.get('type', '')}: {err.get('message', exc.message)}"
    return f"{type(exc).__name__}: {exc}"
