"""One small interface: an extractor turns (conversation, prompt version) into an Extraction.

`Extractor.extract` returns an `Outcome`: the extraction plus the model calls it made, so the
engine can commit both in one transaction (a call is never paid for without its result being
kept). `ProposedLabels` is the shape a model must reply with; `labels_schema()` is its JSON
schema for forced tool use or structured output. A prompt whose front matter says
`labels: subjective` asks only whether a conversation is subjective (`ProposedSubjectivity`):
a cheap first stage that decides which conversations the full prompt is run on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from annotator.errors import AnnotatorError
from annotator.models import Conversation, Extraction, ModelCall, PromptVersion, ResponseType

EXTRACTORS: tuple[str, ...] = ("claude", "baseline")
TOOL_NAME = "record_labels"
MAX_VALUES = 12


class ProposedValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=120,
        description="A value name, lower case; a taxonomy value's exact name where one fits.",
    )
    evidence: str = Field(
        min_length=1,
        max_length=600,
        description="A short verbatim quote from the conversation that shows the value.",
    )


class ProposedTask(BaseModel):
    """What the conversation is for: the user's primary purpose (`prompts/tasks.yaml`)."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(
        min_length=1,
        max_length=200,
        description="The user's primary purpose in a few words, without names or personal "
        "details.",
    )
    category: str = Field(
        min_length=1,
        max_length=80,
        description="One task category, spelled exactly as listed.",
    )


class ProposedLabels(BaseModel):
    """What the model must return for one conversation (`gold/README.md`, "Labels")."""

    model_config = ConfigDict(extra="forbid")

    subjective: bool = Field(
        description="Whether the conversation involves values at all (opinions, ethics, "
        "choices about what matters), not only neutral facts or routine tasks."
    )
    ai_values: list[ProposedValue] = Field(
        max_length=MAX_VALUES,
        description="Values the AI's responses express, explicitly or implicitly.",
    )
    human_values: list[ProposedValue] = Field(
        max_length=MAX_VALUES,
        description="Values the user states or clearly shows.",
    )
    response_type: ResponseType = Field(
        description="How the AI responds to the user's values; 'no values' if the user "
        "expresses none."
    )
    # Asked for only by prompt versions that list the task categories (`tasks:` in their front
    # matter); the schema sent to other versions leaves it out, so their requests are unchanged.
    task: ProposedTask | None = None


class ProposedSubjectivity(BaseModel):
    """What a subjectivity-only prompt (`labels: subjective`) must return: one field, so a
    small model answers in a few output tokens; the other labels stay unset."""

    model_config = ConfigDict(extra="forbid")

    subjective: bool = Field(description=ProposedLabels.model_fields["subjective"].description)


MAX_SPANS = 60


class ProposedSpans(BaseModel):
    """What a scrub prompt (`labels: scrub`) must return: the personal names and street
    addresses still in a conversation, verbatim, for `scrub_pass` to replace. No labels."""

    model_config = ConfigDict(extra="forbid")

    names: list[str] = Field(
        max_length=MAX_SPANS,
        description="Personal names of private people, each copied exactly as written.",
    )
    addresses: list[str] = Field(
        max_length=MAX_SPANS,
        description="Street addresses (or parts of one) of private people, copied exactly.",
    )


# A prompt's `labels` front matter -> the reply shape it asks for (`prompts.LABEL_SETS`).
REPLY_SHAPES: dict[str, type[BaseModel]] = {
    "all": ProposedLabels,
    "subjective": ProposedSubjectivity,
    "scrub": ProposedSpans,
}


def reply_shape(prompt: PromptVersion) -> type[BaseModel]:
    """The reply shape a prompt version asks for (default: every label)."""
    return REPLY_SHAPES[str(prompt.front_matter.get("labels", "all"))]


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    # Tool input schemas and structured-output schemas are safest without $ref indirection.
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline_refs(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        out = {k: _inline_refs(v, defs) for k, v in node.items() if k not in ("$defs", "title")}
        if out.get("type") == "object":
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def labels_schema(
    task_categories: Sequence[str] | None = None, shape: type[BaseModel] = ProposedLabels
) -> dict[str, Any]:
    """JSON schema of a reply shape (`ProposedLabels`), self-contained (no $ref), closed
    objects. With `task_categories` (a prompt version that lists them), `task` is required and
    its category one of them; without, `task` is not in the schema at all."""
    schema = shape.model_json_schema()
    out = _inline_refs(schema, schema.get("$defs", {}))
    task = out["properties"].pop("task", None)
    if task_categories and task is not None:
        shape_of_task = next(t for t in task.get("anyOf", [task]) if t.get("type") == "object")
        shape_of_task["properties"]["category"] = {
            "type": "string", "enum": list(task_categories),
            "description": shape_of_task["properties"]["category"].get("description", ""),
        }
        out["properties"]["task"] = shape_of_task
        out["required"] = [*out.get("required", []), "task"]
    return out


@dataclass
class Outcome:
    """An extraction and the model calls made for it (none for the baseline)."""

    extraction: Extraction
    calls: list[ModelCall] = field(default_factory=list)


class FatalExtractorError(AnnotatorError):
    """A failure no retry can fix (bad key, unknown model): the run stops, no result is stored;
    `calls` made before it (journaled) are completed in the ledger."""

    calls: Sequence[ModelCall] = ()


class ClaimLostError(AnnotatorError):
    """This run no longer holds the conversation (its lease ran out and another run took it):
    nothing more is sent for it. `calls` are those already made, to be recorded."""

    def __init__(self, calls: list[ModelCall]) -> None:
        super().__init__("the claim on this conversation passed to another run")
        self.calls = calls


@runtime_checkable
class CallJournal(Protocol):
    """Where an extractor records each model call before sending it (the engine's store)."""

    async def sending(self, call: ModelCall) -> int | None:
        """Commit `call` as "in_flight"; its row id, or None if this run's claim on the
        conversation is gone (then the call must not be sent)."""
        ...


@runtime_checkable
class Extractor(Protocol):
    name: str  # "claude" or "baseline": recorded in every extraction row
    model: str  # recorded as the extraction's model (e.g. "claude-sonnet-4-6", "baseline-v1")

    def prompt_for(self, prompt: PromptVersion | None) -> PromptVersion:
        """The prompt version this extractor records (the baseline records its own rules)."""
        ...

    async def extract(
        self,
        conversation: Conversation,
        prompt: PromptVersion,
        journal: CallJournal | None = None,
    ) -> Outcome: ...

    async def aclose(self) -> None: ...


__all__ = [
    "EXTRACTORS",
    "MAX_VALUES",
    "CallJournal",
    "ClaimLostError",
    "TOOL_NAME",
    "Extractor",
    "FatalExtractorError",
    "Outcome",
    "ProposedLabels",
    "ProposedSpans",
    "ProposedSubjectivity",
    "ProposedTask",
    "ProposedValue",
    "REPLY_SHAPES",
    "labels_schema",
    "reply_shape",
]
