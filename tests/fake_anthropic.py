"""A local fake of Anthropic's Messages and Message Batches APIs, for tests and benchmarks.

An ASGI app (Starlette) served by uvicorn on 127.0.0.1, driven through the real SDK via
`base_url`. It follows the public API's shapes: `/v1/messages` replies with `tool_use` content
(or a JSON text block for `output_config.format`) and `usage` including
`cache_creation_input_tokens` / `cache_read_input_tokens` (a 5-minute prompt cache keyed by the
tools + system prefix up to the last `cache_control`); `/v1/messages/batches` creates, retrieves,
lists and cancels batches, and serves results as JSONL at an absolute `results_url`.

Replies come from a rule the test sets: a callable from the request to the tool input (e.g.
`names_in_text_rule(names)`: the values whose names appear in the conversation), cut to the fields a
closed schema in the request allows (a subjectivity-only tool gets only `subjective`). Faults are
injected by rate, by queue or by a callable: 429 with `retry-after`, 529, 500, malformed tool input,
refusal; and, asked for by name, a 200 whose body is not JSON ("garbage") or is cut short
("truncated"), or no answer at all ("silent"; `silent = True` for every request). Every request is
counted per conversation key (the text of the first user message), and "paid" replies (HTTP 200 with
a message, readable or not) are counted separately, so tests can prove that nothing is paid for
twice and every paid call is recorded.

Use in-process (`FakeAnthropic().start()` runs uvicorn in a daemon thread) or as a separate process
(`python tests/fake_anthropic.py --port 0` prints `PORT <n>`; configure it by POSTing JSON to
`/_fake/config`, read counters from `/_fake/stats`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FAULT_KINDS: tuple[str, ...] = ("429", "529", "500", "malformed", "refusal")
TRANSIENT: frozenset[str] = frozenset({"429", "529", "500"})
# Faults of the connection rather than the reply, only when asked for by name (queued, by
# fault_fn or in fault_kinds): a 200 whose body is not JSON ("garbage") or is JSON cut in half
# ("truncated"), both billed; no answer at all until the client gives up ("silent").
BODY_FAULTS: frozenset[str] = frozenset({"garbage", "truncated"})
CACHE_TTL = 300.0
MIN_CACHEABLE_TOKENS = 1024
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, len(text) // 4)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None):
    request_id = "req_" + uuid.uuid4().hex[:24]
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return _json(body, status, {"request-id": request_id, **(headers or {})})


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


@dataclass
class FakeRequest:
    """What a rule sees: the request body and the conversation key (first user message text)."""

    body: dict[str, Any]
    key: str
    attempt: int  # 1 for the first request with this key, 2 for the next, ...

    @property
    def text(self) -> str:
        return self.key

    @property
    def system(self) -> str:
        system = self.body.get("system", "")
        return system if isinstance(system, str) else _text_of(system)


Rule = Callable[[FakeRequest], dict[str, Any]]
FaultFn = Callable[[FakeRequest], "str | None"]


def empty_rule(req: FakeRequest) -> dict[str, Any]:
    return {"subjective": False, "ai_values": [], "human_values": [], "response_type": "no values"}


_TURN = re.compile(r'<turn index="\d+" role="(\w+)">\n(.*?)\n</turn>', re.DOTALL)


_WORDS = re.compile(r"[\w'’-]+")


def names_in_text_rule(names: list[str], max_values: int = 6) -> Rule:
    """A rule: values whose names appear (whole words, any case) in the assistant's turns are AI
    values, in the user's turns human values; evidence is the matched text itself."""
    wanted = {n.lower() for n in names if n.strip()}
    # first word -> name lengths in words, longest first: a regex alternation of hundreds of
    # names costs the fake more CPU than everything else it does for a request
    starts: dict[str, list[int]] = {}
    for name in wanted:
        words = name.split()
        starts.setdefault(words[0], []).append(len(words))
    for lengths in starts.values():
        lengths.sort(reverse=True)

    def found(text: str) -> list[dict[str, str]]:
        words = [(m.group(0).lower(), m.start(), m.end()) for m in _WORDS.finditer(text)]
        seen: dict[str, str] = {}
        for i, (word, start, _) in enumerate(words):
            for n in starts.get(word, ()):
                if i + n > len(words):  # a longer name than the words left: not here
                    continue
                name = " ".join(w for w, _, _ in words[i : i + n])
                if name in wanted:
                    seen.setdefault(name, text[start : words[i + n - 1][2]])
                    break
        return [{"name": n, "evidence": ev} for n, ev in list(seen.items())[:max_values]]

    def rule(req: FakeRequest) -> dict[str, Any]:
        turns = _TURN.findall(req.text) or [("assistant", req.text)]
        ai = found("\n".join(t for role, t in turns if role == "assistant"))
        human = found("\n".join(t for role, t in turns if role == "user"))
        return {
            "subjective": bool(ai or human),
            "ai_values": ai,
            "human_values": human,
            "response_type": "neutral" if human else "no values",
        }

    return rule


def _schema_of(body: dict[str, Any]) -> dict[str, Any]:
    fmt = (body.get("output_config") or {}).get("format") or {}
    if fmt.get("schema"):
        return fmt["schema"]
    tools = body.get("tools") or [{}]
    return tools[0].get("input_schema") or {}


def with_task(labels: dict[str, Any], body: dict[str, Any], req: FakeRequest) -> dict[str, Any]:
    """The rule's labels, plus a task when the request's schema asks for one and the rule gave
    none: the first listed category named in the conversation (its first word, whole), else
    "other" when listed, else the first; the description is the conversation's first words."""
    task = (_schema_of(body).get("properties") or {}).get("task")
    if not task or "task" in labels:
        return labels
    categories = ((task.get("properties") or {}).get("category") or {}).get("enum") or ["other"]
    words = {w.lower() for w in _WORDS.findall(req.text)}
    named = [c for c in categories if c.split()[0] in words]
    category = named[0] if named else ("other" if "other" in categories else categories[0])
    turns = _TURN.findall(req.text)
    description = " ".join((turns[0][1] if turns else req.text).split()[:8]) or "a conversation"
    return {**labels, "task": {"description": description, "category": category}}


def _malformed(rng: random.Random, good: dict[str, Any]) -> dict[str, Any]:
    bad = dict(good)
    choice = rng.randrange(3)
    if choice == 0:
        bad.pop("response_type", None)
    elif choice == 1:
        bad["response_type"] = "somewhat supportive"
    else:
        bad["ai_values"] = "honesty, clarity"
    return bad


@dataclass
class Batch:
    id: str
    created: float
    requests: list[dict[str, Any]]
    status: str = "in_progress"
    ended: float | None = None
    cancel_initiated: float | None = None
    results: list[dict[str, Any]] | None = None
    counts: dict[str, int] = field(default_factory=dict)


class FakeAnthropic:
    """The fake server and its knobs; attributes may be changed while it runs."""

    def __init__(
        self,
        rule: Rule | None = None,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = FAULT_KINDS,
        retry_after: str = "0.05",
        batch_seconds: float = 0.0,
        seed: int = 0,
        api_keys: set[str] | None = None,
    ) -> None:
        self.rule: Rule = rule or empty_rule
        self.latency = latency
        self.fault_rate = fault_rate
        self.fault_kinds = fault_kinds
        self.fault_fn: FaultFn | None = None
        self.queued_faults: deque[str] = deque()
        self.retry_after = retry_after  # seconds; kept short so tests do not wait
        self.batch_seconds = batch_seconds
        self.api_keys = api_keys  # None: any non-empty key is accepted
        self.silent = False  # every /v1/messages request gets no answer ("silent" for all)
        self.silent_seconds = 600.0  # how long a silent request waits for the client to leave
        # With `gather` > 0, each /v1/messages request waits until that many have arrived (or
        # `gather_seconds` pass, then fails with a 500 saying so): a test of concurrency waits
        # on that condition instead of a wall-clock margin. `in_flight_max` is the most held
        # at once.
        self.gather = 0
        self.gather_seconds = 60.0
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._cache: dict[str, float] = {}
        self.batches: dict[str, Batch] = {}
        self.reset_counters()
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/messages/batches", self._create_batch, methods=["POST"]),
                Route("/v1/messages/batches", self._list_batches, methods=["GET"]),
                Route("/v1/messages/batches/{bid}", self._get_batch, methods=["GET"]),
                Route("/v1/messages/batches/{bid}/cancel", self._cancel_batch, methods=["POST"]),
                Route("/v1/messages/batches/{bid}/results", self._batch_results, methods=["GET"]),
                Route("/_fake/config", self._config, methods=["POST"]),
                Route("/_fake/stats", self._stats, methods=["GET"]),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # --- counters ---------------------------------------------------------------------------

    def reset_counters(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.requests: Counter[str] = Counter()  # by endpoint
            self.attempts: Counter[str] = Counter()  # /v1/messages requests by conversation key
            self.paid: Counter[str] = Counter()  # billed replies by conversation key
            self.faults: Counter[str] = Counter()  # served faults by kind
            self.statuses: Counter[int] = Counter()
            self.batch_creates = 0
            self.keys_seen: set[str] = set()
            self.arrived = 0  # /v1/messages requests past validation
            self.in_flight = 0
            self.in_flight_max = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "attempts": dict(self.attempts),
                "paid": dict(self.paid),
                "faults": dict(self.faults),
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "batch_creates": self.batch_creates,
                "paid_total": sum(self.paid.values()),
                "max_paid_per_key": max(self.paid.values(), default=0),
            }

    @staticmethod
    def key_of(text: str) -> str:
        """The key a conversation's requests are counted under (first user message text)."""
        return text

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=4096,
            timeout_keep_alive=60,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-anthropic", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Anthropic server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeAnthropic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling ----------------------------------------------------------------------

    def _check_auth(self, request: Request) -> Response | None:
        # The API takes `x-api-key`; the 2.x SDK sends the key as `Authorization: Bearer`.
        key = request.headers.get("x-api-key")
        bearer = request.headers.get("authorization", "")
        if not key and bearer.lower().startswith("bearer "):
            key = bearer[7:].strip()
        if not key:
            return _error(401, "authentication_error", "x-api-key header is required")
        if self.api_keys is not None and key not in self.api_keys:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        self.keys_seen.add(hashlib.sha256(key.encode()).hexdigest())
        return None

    @staticmethod
    def _invalid(body: Any) -> str | None:
        """Why a Messages request would get a 400, or None."""
        if not isinstance(body, dict):
            return "body: expected an object"
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return f"{name}: Field required"
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        if messages[0].get("role") != "user":
            return "messages: first message must use the user role"
        for a, b in zip(messages, messages[1:], strict=False):
            if a.get("role") == b.get("role"):
                return "messages: roles must alternate between user and assistant"
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= float(temperature) <= 1:
            return "temperature: must be between 0 and 1"
        choice = body.get("tool_choice") or {}
        tools = {t.get("name") for t in body.get("tools") or []}
        if choice.get("type") == "tool" and choice.get("name") not in tools:
            return f"tool_choice: tool {choice.get('name')!r} not found in tools"
        return None

    def _key(self, body: dict[str, Any]) -> str:
        first = next((m for m in body["messages"] if m.get("role") == "user"), None)
        return _text_of(first["content"]) if first else ""

    def _choose_fault(self, req: FakeRequest) -> str | None:
        if self.fault_fn is not None:
            return self.fault_fn(req)
        with self._lock:
            if self.queued_faults:
                return self.queued_faults.popleft()
            if self.fault_rate and self.rng.random() < self.fault_rate:
                return self.rng.choice(self.fault_kinds)
        return None

    def _usage(self, body: dict[str, Any], output: Any) -> dict[str, int]:
        tools_text = orjson.dumps(body.get("tools") or []).decode()
        system = body.get("system") or ""
        blocks = [{"text": system}] if isinstance(system, str) else list(system)
        prefix_parts = [tools_text]
        cached_upto = None
        for i, block in enumerate(blocks):
            if block.get("cache_control"):
                cached_upto = i
        system_tokens = sum(tokens(b.get("text", "")) for b in blocks)
        total = tokens(tools_text) + system_tokens + tokens(orjson.dumps(body["messages"]).decode())
        usage = {
            "input_tokens": total,
            "output_tokens": tokens(orjson.dumps(output).decode()) + 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if cached_upto is not None:
            prefix_parts += [b.get("text", "") for b in blocks[: cached_upto + 1]]
            prefix_tokens = sum(tokens(p) for p in prefix_parts)
            if prefix_tokens >= MIN_CACHEABLE_TOKENS:
                digest = hashlib.sha256("\x00".join(prefix_parts).encode()).hexdigest()
                now = time.monotonic()
                with self._lock:
                    hit = self._cache.get(digest, 0.0) > now
                    self._cache[digest] = now + CACHE_TTL
                kind = "cache_read_input_tokens" if hit else "cache_creation_input_tokens"
                usage[kind] = prefix_tokens
                usage["input_tokens"] = total - prefix_tokens
        return usage

    def _message(self, body: dict[str, Any], req: FakeRequest, fault: str | None) -> dict:
        """A complete Message for a request (fault is None, 'malformed' or 'refusal')."""
        labels = self._as_schema(body, with_task(self.rule(req), body, req))
        if fault == "malformed":
            labels = _malformed(self.rng, labels)
        fmt = (body.get("output_config") or {}).get("format")
        if fault == "refusal":
            content: list[dict[str, Any]] = []
            stop_reason = "refusal"
        elif fmt:
            content = [{"type": "text", "text": orjson.dumps(labels).decode()}]
            stop_reason = "end_turn"
        else:
            tool = (body.get("tool_choice") or {}).get("name") or (body.get("tools") or [{}])[0]
            name = tool if isinstance(tool, str) else tool.get("name", "tool")
            content = [
                {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": name,
                 "input": labels}
            ]
            stop_reason = "tool_use"
        message = {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": self._usage(body, labels),
        }
        if fault == "refusal":
            message["stop_details"] = {"type": "refusal", "category": None, "explanation": None}
        return message

    @staticmethod
    def _as_schema(body: dict[str, Any], labels: Any) -> Any:
        """The rule's labels cut to the fields a closed schema (the forced tool's input schema,
        or `output_config.format`'s, with additionalProperties false) allows, as a model keeps
        to the schema it is given: a subjectivity-only tool gets only `subjective`."""
        fmt = (body.get("output_config") or {}).get("format") or {}
        schema = fmt.get("schema")
        if schema is None:
            wanted = (body.get("tool_choice") or {}).get("name")
            tool = next((t for t in body.get("tools") or [] if t.get("name") == wanted), {})
            schema = tool.get("input_schema")
        schema = schema or {}
        allowed = schema.get("properties")
        closed = schema.get("additionalProperties") is False  # an open schema takes anything
        if not closed or not isinstance(labels, dict) or not isinstance(allowed, dict):
            return labels
        return {k: v for k, v in labels.items() if k in allowed}

    def _fault_response(self, fault: str) -> Response:
        if fault == "429":
            return _error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                {"retry-after": self.retry_after},
            )
        if fault == "529":
            return _error(529, "overloaded_error", "Overloaded")
        return _error(500, "api_error", "Internal server error")

    async def _messages(self, request: Request) -> Response:
        with self._lock:
            self.requests["messages"] += 1
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "invalid_request_error", "body: invalid JSON")
        problem = self._invalid(body)
        if problem:
            return _error(400, "invalid_request_error", problem)
        key = self._key(body)
        with self._lock:
            self.attempts[key] += 1
            req = FakeRequest(body=body, key=key, attempt=self.attempts[key])
        fault = "silent" if self.silent else self._choose_fault(req)
        if fault == "silent":
            return await self._say_nothing(request)
        with self._lock:
            self.arrived += 1
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            if self.gather and not await self._gathered():
                return _error(500, "api_error", f"fewer than {self.gather} requests arrived "
                              f"together within {self.gather_seconds} s")
            if self.latency:
                await asyncio.sleep(self.latency)
        finally:
            with self._lock:
                self.in_flight -= 1
        if fault in TRANSIENT:
            with self._lock:
                self.faults[fault] += 1
                self.statuses[int(fault)] += 1
            return self._fault_response(fault)
        message = self._message(body, req, None if fault in BODY_FAULTS else fault)
        with self._lock:
            if fault:
                self.faults[fault] += 1
            self.paid[key] += 1
            self.statuses[200] += 1
        headers = {"request-id": "req_" + uuid.uuid4().hex[:24]}
        if fault == "garbage":
            return Response(b"<html>upstream hiccup</html>", 200, headers=headers,
                            media_type="application/json")
        if fault == "truncated":
            whole = orjson.dumps(message)
            return Response(whole[: len(whole) // 2], 200, headers=headers,
                            media_type="application/json")
        return _json(message, headers=headers)

    async def _gathered(self) -> bool:
        """Wait until `gather` requests have arrived; False at the deadline."""
        deadline = time.monotonic() + self.gather_seconds
        while self.arrived < self.gather:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def _say_nothing(self, request: Request) -> Response:
        """Answer nothing until the client hangs up (then the response goes nowhere)."""
        with self._lock:
            self.faults["silent"] += 1
        deadline = time.monotonic() + self.silent_seconds
        while time.monotonic() < deadline and not await request.is_disconnected():
            await asyncio.sleep(0.05)
        return Response(b"", 204)

    # --- batches ----------------------------------------------------------------------------

    def _batch_json(self, batch: Batch, base: str) -> dict[str, Any]:
        self._advance(batch)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.status == "ended":
            counts.update(batch.counts)
        else:
            counts["processing"] = len(batch.requests)
        ended = batch.status == "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status,
            "request_counts": counts,
            "created_at": _iso(batch.created),
            "expires_at": _iso(batch.created + 86400),
            "ended_at": _iso(batch.ended),
            "archived_at": None,
            "cancel_initiated_at": _iso(batch.cancel_initiated),
            "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _advance(self, batch: Batch, cancel: bool = False) -> None:
        """Finish a batch once its processing time has passed: compute every result then."""
        if batch.status == "ended":
            return
        if not cancel and time.time() < batch.created + self.batch_seconds:
            return
        results = []
        counts: Counter[str] = Counter()
        for item in batch.requests:
            body = item["params"]
            key = self._key(body)
            if cancel:
                result: dict[str, Any] = {"type": "canceled"}
            else:
                with self._lock:
                    self.attempts[key] += 1
                    req = FakeRequest(body=body, key=key, attempt=self.attempts[key])
                fault = self._choose_fault(req)
                if fault in TRANSIENT:
                    kind = "overloaded_error" if fault == "529" else "api_error"
                    result = {
                        "type": "errored",
                        "error": {"type": "error", "error": {"type": kind, "message": fault}},
                    }
                    with self._lock:
                        self.faults[fault] += 1
                else:
                    message = self._message(body, req, fault)
                    message["usage"]["service_tier"] = "batch"
                    result = {"type": "succeeded", "message": message}
                    with self._lock:
                        if fault:
                            self.faults[fault] += 1
                        self.paid[key] += 1
            counts[result["type"]] += 1
            results.append({"custom_id": item["custom_id"], "result": result})
        self.rng.shuffle(results)  # the real API does not keep request order
        batch.results = results
        batch.counts = dict(counts)
        batch.status = "ended"
        batch.ended = time.time()

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def _create_batch(self, request: Request) -> Response:
        with self._lock:
            self.requests["batches.create"] += 1
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        body = orjson.loads(await request.body())
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            return _error(400, "invalid_request_error", "requests: at least one is required")
        seen: set[str] = set()
        for i, item in enumerate(items):
            cid = item.get("custom_id", "")
            if not _CUSTOM_ID.match(cid):
                return _error(400, "invalid_request_error", f"requests.{i}.custom_id: invalid")
            if cid in seen:
                return _error(400, "invalid_request_error", f"duplicate custom_id {cid!r}")
            seen.add(cid)
            problem = self._invalid(item.get("params"))
            if problem:
                return _error(400, "invalid_request_error", f"requests.{i}.params.{problem}")
        batch = Batch(id="msgbatch_" + uuid.uuid4().hex[:24], created=time.time(), requests=items)
        with self._lock:
            self.batches[batch.id] = batch
            self.batch_creates += 1
        return _json(self._batch_json(batch, self._base(request)))

    def _batch_of(self, request: Request, counter: str | None) -> Batch | Response:
        """The batch a request names, or the error response: counted, authenticated, found."""
        if counter is not None:
            with self._lock:
                self.requests[counter] += 1
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        batch = self.batches.get(request.path_params["bid"])
        if batch is None:
            return _error(404, "not_found_error", "batch not found")
        return batch

    async def _get_batch(self, request: Request) -> Response:
        batch = self._batch_of(request, "batches.retrieve")
        if not isinstance(batch, Batch):
            return batch
        return _json(self._batch_json(batch, self._base(request)))

    async def _list_batches(self, request: Request) -> Response:
        with self._lock:
            self.requests["batches.list"] += 1
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        limit = int(request.query_params.get("limit", 20))
        newest = sorted(self.batches.values(), key=lambda b: b.created, reverse=True)[:limit]
        data = [self._batch_json(b, self._base(request)) for b in newest]
        return _json(
            {
                "data": data,
                "has_more": len(self.batches) > limit,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def _cancel_batch(self, request: Request) -> Response:
        batch = self._batch_of(request, None)
        if not isinstance(batch, Batch):
            return batch
        batch.cancel_initiated = time.time()
        self._advance(batch, cancel=True)
        return _json(self._batch_json(batch, self._base(request)))

    async def _batch_results(self, request: Request) -> Response:
        batch = self._batch_of(request, "batches.results")
        if not isinstance(batch, Batch):
            return batch
        self._advance(batch)
        if batch.status != "ended" or batch.results is None:
            return _error(404, "not_found_error", "results are not available yet")
        lines = b"\n".join(orjson.dumps(r) for r in batch.results) + b"\n"
        return Response(lines, media_type="application/x-jsonl")

    # --- control (for a fake in another process) -------------------------------------------------

    async def _config(self, request: Request) -> Response:
        data = orjson.loads(await request.body())
        for name in ("latency", "fault_rate", "retry_after", "batch_seconds", "silent"):
            if name in data:
                setattr(self, name, data[name])
        if "fault_kinds" in data:
            self.fault_kinds = tuple(data["fault_kinds"])
        if "seed" in data:
            self.rng = random.Random(data["seed"])
        if "names" in data:
            self.rule = names_in_text_rule(data["names"])
        if data.get("reset"):
            self.reset_counters()
        return _json({"ok": True})

    async def _stats(self, request: Request) -> Response:
        return _json(self.stats())


# --- synthetic conversations for tests and benchmarks ----------------------------------------

_TOPICS = ("my sister", "my manager", "a neighbour", "my landlord", "an old friend", "my team")
_TASKS = ("sort a list", "parse a date", "merge two tables", "read a CSV file", "retry a request")


def synthetic_turns(i: int, names: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """Two to four turns; value names are sprinkled in so rules can find them (or not)."""
    pick = rng.sample(names, k=min(4, len(names)))
    if i % 3 == 0:  # a routine technical question: no human values
        task = rng.choice(_TASKS)
        return [
            ("user", f"Question {i}: how do I {task} in Python?"),
            ("assistant", f"Here is one way to {task}, with {pick[0]} in mind: use the standard "
                          "library and test the edge cases. " * rng.randint(1, 4)),
        ]
    topic = rng.choice(_TOPICS)
    turns = [
        ("user", f"Case {i}: {topic} asked me for a favour again. I value {pick[0]} and "
                 f"{pick[1]}, but I am tired. What should I do?"),
        ("assistant", f"That sounds hard. {pick[2].capitalize()} matters here, and so does "
                      f"{pick[3]}. You could say no kindly and explain why. " * rng.randint(1, 5)),
    ]
    if rng.random() < 0.4:
        turns += [
            ("user", "Thanks. And if they get upset?"),
            ("assistant", f"Then listen first; {pick[3]} does not mean giving in."),
        ]
    return turns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake Anthropic API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeAnthropic(latency=args.latency)
    fake.start(args.port)
    print(f"PORT {fake.base_url.rsplit(':', 1)[1]}", flush=True)
    parent = os.getppid()
    try:
        while os.getppid() == parent:  # exit with the parent, even if it dies without a word
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    fake.stop()


if __name__ == "__main__":
    sys.exit(main())
