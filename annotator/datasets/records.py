"""The typed shapes of an export: a validated record and its values, a proposal record, the
filters a user chose, and the report of what an export wrote and what it left out, and why.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from annotator.datasets.gold import MAJORITY
from annotator.datasets.writers import ExportFormat, ExportWhat
from annotator.models import AnnotatorLabels, ExtractionStatus, Provenance, ResponseType, Turn


class ExportedValue(BaseModel):
    model_config = ConfigDict(frozen=True)  # one resolved value is shared by every record

    name: str
    node_id: str | None
    category: str | None = Field(description="top category, e.g. 'Practical values'")
    cluster: str | None = Field(description="level-1 cluster name")
    free: bool


class ProposedValue(ExportedValue):
    evidence: str | None = Field(default=None, description="the quote the model gave")
    score: float | None = None


def _named(values: list[ExportedValue]) -> list[ExportedValue]:
    if any(not v.name.strip() for v in values):
        raise ValueError("a value has an empty name")
    return values


class ExportedAnnotation(AnnotatorLabels):
    """One annotator's labels as exported: `edited_by` names who last changed them when that
    was not their author (a shared Label Studio); such labels were no one's vote."""

    edited_by: str | None = None


class ExportRecord(BaseModel):
    """One adjudicated conversation (`validated`; `gold` leaves `annotations` out)."""

    conversation_id: str
    source: str
    external_id: str | None = Field(None, description="its id in the source file, to join back")
    turns: list[Turn] = Field(min_length=1)
    ai_values: list[ExportedValue]
    human_values: list[ExportedValue]
    response_type: ResponseType
    subjective: bool
    task: str | None = Field(None, description="a task category (the study's task list)")
    task_description: str | None = None
    decided_by: str
    decided_at: str | None
    n_annotations: int = Field(0, description="live annotations, complete or not")
    new_labels_since: bool = Field(False, description="a person's decision made before the "
                                   "annotators' current labels (they changed after it)")
    annotations: list[ExportedAnnotation] = Field(default_factory=list)

    _names_present = field_validator("ai_values", "human_values")(_named)


class PlainRecord(NamedTuple):
    """An `ExportRecord` whose fields needed no validation (`export._plain_record` checked
    them): the fields the filters and the stats read, and `row`, the record as
    `model_dump(mode="json")` gives it."""

    conversation_id: str
    source: str
    response_type: ResponseType
    subjective: bool
    task: str | None
    decided_by: str
    n_annotations: int
    new_labels_since: bool
    ai_values: list[ExportedValue]
    row: dict[str, Any]


class PlainProposal(NamedTuple):
    """A `ProposalRecord` whose fields needed no validation (`proposals._plain_proposal`
    checked them): the fields the filters and the stats read, and `row`, the record as
    `model_dump(mode="json")` gives it."""

    conversation_id: str
    source: str
    response_type: ResponseType | None
    subjective: bool | None
    task: str | None
    status: ExtractionStatus
    prompt_id: str
    ai_values: list[ExportedValue]
    row: dict[str, Any]


class ProposalRecord(BaseModel):
    """One extraction: what one prompt version and model proposed for one conversation."""

    conversation_id: str
    source: str
    external_id: str | None = Field(None, description="its id in the source file, to join back")
    turns: list[Turn]
    prompt_id: str
    prompt_name: str | None
    prompt_version: str | None
    model: str
    extractor: str
    status: ExtractionStatus
    error: str | None
    subjective: bool | None
    response_type: ResponseType | None
    task: str | None
    task_description: str | None
    ai_values: list[ProposedValue]
    human_values: list[ProposedValue]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    attempts: int
    model_calls: int = Field(description="rows in model_calls (requests sent, retries included)")
    call_ms: float = Field(description="their summed duration in milliseconds")
    created_at: str


# a record as an export writes it: validated by its model, or plain (its fields checked)
AnyRecord = ExportRecord | PlainRecord | ProposalRecord | PlainProposal


class ExportFilter(BaseModel):
    sources: list[str] = Field(default_factory=list)
    response_types: list[ResponseType] = Field(default_factory=list)
    categories: list[str] = Field(
        default_factory=list, description="keep conversations with an AI value in these"
    )
    decided_by_person_only: bool = False
    subjective_only: bool = False
    min_annotations: int = 0
    include_annotations: bool = True


class LeftOut(BaseModel):
    """A conversation the export leaves out other than by a filter, and why."""

    conversation_id: str
    reason: str


class ExportStats(BaseModel):
    """What the exported records hold, for the report and the dataset card."""

    conversations: int = 0
    response_types: dict[str, int] = Field(default_factory=dict)
    categories: dict[str, int] = Field(default_factory=dict, description="AI values per top "
                                       "category")
    sources: dict[str, int] = Field(default_factory=dict)
    tasks: dict[str, int] = Field(default_factory=dict, description="records per task "
                                  "category ('none': no task)")
    statuses: dict[str, int] = Field(default_factory=dict, description="proposals: ok, error")
    prompt_ids: list[str] = Field(default_factory=list, description="proposals exported")
    decided_by_person: int = 0
    new_labels_since: int = Field(0, description="a person's decisions with newer labels")
    free_values: int = 0
    _ids: set[str] = PrivateAttr(default_factory=set)

    def add(self, record: AnyRecord) -> None:
        # The counts are set in the model's field dict: an assignment or a private attribute
        # through pydantic cost a microsecond or two, seconds for the 600,000 records of an
        # export (no validator runs on assignment here, so nothing else changes).
        fields = self.__dict__
        ids = self.__pydantic_private__["_ids"]
        if record.conversation_id not in ids:
            ids.add(record.conversation_id)
            fields["conversations"] += 1
            _bump(self.sources, record.source)
        _bump(self.response_types, record.response_type.value if record.response_type else "none")
        _bump(self.tasks, record.task or "none")
        categories, free = self.categories, 0
        for value in record.ai_values:
            _bump(categories, value.category or "free value")
            free += value.free
        if free:
            fields["free_values"] += free
        if isinstance(record, ProposalRecord | PlainProposal):
            _bump(self.statuses, record.status.value)
            if record.prompt_id not in self.prompt_ids:
                self.prompt_ids.append(record.prompt_id)
        elif record.decided_by != MAJORITY:
            fields["decided_by_person"] += 1
            fields["new_labels_since"] += record.new_labels_since

    def conversation_ids(self) -> set[str]:
        return set(self._ids)

    def merge(self, later: ExportStats) -> None:
        """Add the stats of records that came after these, of other conversations (an export's
        second part): as if `add` had counted them here, counts in first-seen order."""
        for name in ("response_types", "categories", "sources", "tasks", "statuses"):
            counts = getattr(self, name)
            for key, n in getattr(later, name).items():
                counts[key] = counts.get(key, 0) + n
        self.prompt_ids.extend(p for p in later.prompt_ids if p not in self.prompt_ids)
        self._ids |= later._ids
        self.conversations = len(self._ids)
        self.decided_by_person += later.decided_by_person
        self.new_labels_since += later.new_labels_since
        self.free_values += later.free_values


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


class ExportReport(BaseModel):
    path: str | None = None
    format: ExportFormat
    what: ExportWhat = ExportWhat.validated
    exported: int = 0
    considered: int = 0  # valid records before the filters
    filtered_out: int = 0
    kept_by_filter: dict[str, int] = Field(default_factory=dict)  # each filter on its own
    invalid: list[tuple[str, str]] = Field(default_factory=list)  # gold that fails validation
    # every annotated or adjudicated conversation not exported and not filtered out: invalid
    # gold, majority gold the live annotations no longer give, and conversations without gold
    # (incomplete or split annotations, not adjudicated)
    left_out: list[LeftOut] = Field(default_factory=list)
    stats: ExportStats = Field(default_factory=ExportStats)
    provenance: Provenance | None = Field(None, description="tool version, study fingerprint, "
                                          "prompt ids, label source and time of the export")

    def merge(self, later: ExportReport) -> None:
        """Add the report of records written after these (an export's second part)."""
        self.exported += later.exported
        self.considered += later.considered
        self.filtered_out += later.filtered_out
        for label, n in later.kept_by_filter.items():
            self.kept_by_filter[label] = self.kept_by_filter.get(label, 0) + n
        self.invalid.extend(later.invalid)
        self.left_out.extend(later.left_out)
        self.stats.merge(later.stats)
