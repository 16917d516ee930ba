"""Typed shapes that cross module borders. No I/O here."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field


def utc_now() -> datetime:
    return datetime.now(UTC)


def tool_version() -> str:
    """The installed `annotator` package's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("annotator")
    except PackageNotFoundError:
        from annotator import __version__

        return __version__


class Provenance(BaseModel):
    """Where a report or export comes from, so its figures can be traced and joined back: the
    tool and its version, the study (its key's fingerprint), the prompt versions and the label
    source it reads, and when it was made."""

    tool: str = "annotator"
    tool_version: str = Field(default_factory=tool_version)
    study_fingerprint: str | None = None
    prompt_ids: list[str] = Field(default_factory=list)
    label_source: str | None = None
    generated_at: str = Field(default_factory=lambda: utc_now().isoformat())


class Role(StrEnum):
    user = "user"
    assistant = "assistant"
    system = "system"


class ResponseType(StrEnum):
    """The AI's response to the user's values, ordered from support to resistance.

    `no_values` sits outside the order: the user expressed no values to respond to.
    """

    strong_support = "strong support"
    mild_support = "mild support"
    neutral = "neutral"
    reframing = "reframing"
    mild_resistance = "mild resistance"
    strong_resistance = "strong resistance"
    no_values = "no values"

    @property
    def rank(self) -> int | None:
        """Position on the support-to-resistance scale (0..5), None for `no values`."""
        return None if self is ResponseType.no_values else ORDERED_RESPONSE_TYPES.index(self)


ORDERED_RESPONSE_TYPES: tuple[ResponseType, ...] = tuple(
    r for r in ResponseType if r is not ResponseType.no_values
)


class Turn(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    text: str


def _collapse_whitespace(text: str) -> str:
    """" ".join(text.split()), without the split for ASCII text that is already collapsed.

    Substring scans run at C speed; most turns have nothing to collapse and skip the split.
    The tests are chained, not an any() over a tuple: ingest runs this for every turn, and
    the generator cost more than the scans.
    """
    if (
        text.isascii()
        and "  " not in text
        and "\n" not in text
        and "\t" not in text
        and "\r" not in text
        # The rest of what str.split() treats as whitespace in ASCII.
        and "\x0b" not in text
        and "\x0c" not in text
        and "\x1c" not in text
        and "\x1d" not in text
        and "\x1e" not in text
        and "\x1f" not in text
        and text[:1] != " "
        and text[-1:] != " "
    ):
        return text
    return " ".join(text.split())


def content_id(pairs: Iterable[tuple[str, str]]) -> str:
    """Stable id from normalised content: role and whitespace-collapsed text of every turn.

    Whitespace differences between exports of the same dialogue do not create a new id.
    """
    normalised = [[role, _collapse_whitespace(text)] for role, text in pairs]
    return hashlib.sha256(orjson.dumps(normalised)).hexdigest()[:24]


def keyed_id(key: bytes, pairs: Iterable[tuple[str, str]]) -> str:
    """A conversation's id in a study: HMAC-SHA256 under the study's key (`study_key`) of the
    same normalised content as `content_id`, computed from the text as read, before scrubbing.

    Two conversations that differ only in personal data keep two ids (a hash of the scrubbed
    text merged them); without the key an id reveals nothing about the text it came from.
    """
    normalised = [[role, _collapse_whitespace(text)] for role, text in pairs]
    # hmac.digest: OpenSSL's one-shot HMAC, several microseconds cheaper than hmac.new.
    return hmac.digest(key, orjson.dumps(normalised), "sha256").hex()[:24]


def conversation_id(turns: Iterable[Turn]) -> str:
    """The unkeyed content id: conversations made in code (tests, benchmarks), the bundled
    gold file, and studies' conversations from before keyed ids."""
    return content_id((t.role.value, t.text) for t in turns)


class Conversation(BaseModel):
    id: str
    turns: list[Turn]
    source: str = ""
    external_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    scrubbed: bool = True
    ingested_at: datetime | None = None

    @classmethod
    def from_turns(cls, turns: list[Turn], key: bytes | None = None, **fields: Any) -> Conversation:
        """A conversation with its id: keyed (as ingest makes it) when a study's `key` is
        given, else the unkeyed content id."""
        if key is None:
            return cls(id=conversation_id(turns), turns=turns, **fields)
        return cls(id=keyed_id(key, ((t.role.value, t.text) for t in turns)), turns=turns, **fields)


class ValueRef(BaseModel):
    """A value as labelled: the name given, the taxonomy node it resolved to (None = free value)."""

    name: str
    node_id: str | None = None
    path: list[str] = Field(default_factory=list)
    evidence: str | None = None
    score: float | None = None

    @property
    def free(self) -> bool:
        return self.node_id is None


# Every gold label has these, and a reviewer's form refuses to submit without them; an
# annotation without one is incomplete (Label Studio's API accepts an empty result).
REQUIRED_FIELDS = ("response_type", "subjective")


class Labels(BaseModel):
    """One source's labels for one conversation (annotator, model or gold)."""

    ai_values: list[str] = Field(default_factory=list)
    human_values: list[str] = Field(default_factory=list)
    response_type: ResponseType | None = None
    subjective: bool | None = None
    notes: str | None = None
    # What the conversation is for: a category of the study's task list (`prompts/tasks.yaml`)
    # and, optionally, a short description. Not required: older labels have none.
    task: str | None = None
    task_description: str | None = None

    def missing_fields(self) -> list[str]:
        """The required fields (`REQUIRED_FIELDS`) these labels leave empty."""
        return [name for name in REQUIRED_FIELDS if getattr(self, name) is None]

    @classmethod
    def same_json(cls, a: str | None, b: str | None) -> bool:
        """Whether two stored labels (JSON) say the same: a field one of them lacks (stored
        before the field existed) counts as its default."""
        if a == b:
            return True
        if a is None or b is None:
            return False
        return cls.model_validate_json(a) == cls.model_validate_json(b)


class AnnotatorLabels(Labels):
    annotator: str


# Who decided gold that the majority rule decided (`gold.adjudicate`); any other `decided_by`
# names the person who decided.
MAJORITY = "majority"


class GoldLabel(Labels):
    decided_by: str = MAJORITY
    decided_at: datetime | None = None
    from_annotations: list[str] = Field(default_factory=list)


class GoldRecord(BaseModel):
    """One line of a `gold/*.jsonl` file."""

    conversation_id: str
    turns: list[Turn]
    annotations: list[AnnotatorLabels] = Field(default_factory=list)
    gold: GoldLabel
    source: str = "gold"


class ExtractionStatus(StrEnum):
    ok = "ok"
    error = "error"


class Extraction(BaseModel):
    conversation_id: str
    prompt_id: str
    model: str
    extractor: str
    subjective: bool | None = None
    ai_values: list[ValueRef] = Field(default_factory=list)
    human_values: list[ValueRef] = Field(default_factory=list)
    response_type: ResponseType | None = None
    task: str | None = None  # a task category (prompt versions that ask for it; the baseline)
    task_description: str | None = None
    status: ExtractionStatus = ExtractionStatus.ok
    error: str | None = None
    raw_reply: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    attempts: int = 1
    created_at: datetime = Field(default_factory=utc_now)


SET_ASIDE_WHY = ("last changed by someone other than their author (edited_by): their labels "
                 "are not their author's, so no agreement, majority vote or anchoring counts them")


class Annotation(BaseModel):
    """One person's labels of one conversation, from one source.

    `source` says where the row came from ("labelstudio:<server>:<project id>",
    "gold:<file source>", "import:<file>", "app"); an operation changes only rows of its own
    source. `missing` lists required fields left empty: such an annotation is incomplete and
    never decides gold on its own. `flag` is what the reviewer flagged the conversation for
    (the note is `labels.notes`); flagged with a required field empty, it is no vote at all.
    """

    id: str
    conversation_id: str
    annotator: str
    labels: Labels
    source: str = ""
    source_id: str | None = None
    missing: list[str] = Field(default_factory=list)
    edited_by: str | None = None
    flag: str | None = None
    lead_time: float | None = None
    cancelled: bool = False
    deleted: bool = False
    updated_at: datetime | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def edited_by_other(self) -> bool:
        """Last changed by someone other than its author (a shared Label Studio lets anyone
        edit anyone's annotation): its labels are not its author's, so nothing counts them as
        the author's (agreement, gold by majority, anchoring)."""
        return bool(self.edited_by) and self.edited_by != self.annotator


class PromptVersion(BaseModel):
    id: str
    name: str
    version: str
    text: str
    front_matter: dict[str, Any] = Field(default_factory=dict)


class ModelCall(BaseModel):
    """One HTTP request to a model API: written "in_flight" before it is sent (then `id` is its
    row), completed with the reply; `estimated_cost_usd` prices it should no reply arrive."""

    id: int | None = None
    conversation_id: str | None
    prompt_id: str | None
    model: str
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    status: str = "ok"
    input_tokens: int = 0
    output_tokens: int = 0
    duration_ms: float = 0.0
    batch_id: str | None = None
    estimated_cost_usd: float | None = None
    created_at: datetime = Field(default_factory=utc_now)


class RejectedRecord(BaseModel):
    """An input record that did not land, with where and why."""

    file: str
    line: int
    reason: str


class IngestReport(BaseModel):
    """What an ingest did. `rejected` holds the first `rejected_kept` rejections (millions of bad
    lines must not fill memory); `rejected_total` and `rejected_per_file` count all of them, and
    `rejects_file`, when asked for, lists every one."""

    files: list[str] = Field(default_factory=list)
    read: int = 0
    landed: int = 0
    duplicates: int = 0
    rejected: list[RejectedRecord] = Field(default_factory=list)
    rejected_total: int = 0
    rejected_per_file: dict[str, int] = Field(default_factory=dict)
    rejected_kept: int = 1000
    rejects_file: str | None = None
    scrubbed: bool = True
    scrub_counts: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected_total and not self.rejected
