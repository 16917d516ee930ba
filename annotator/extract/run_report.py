"""What a run reports: `ExtractReport` (counts, tokens, cost, what was skipped and why) and
`ExtractProgress` (what a progress callback receives as results arrive).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from annotator.extract import ledger
from annotator.extract.extractors import Outcome
from annotator.models import ModelCall


@dataclass
class ExtractReport:
    """What a run did (or, for a dry run, would do)."""

    prompt_id: str
    prompt: str
    model: str
    extractor: str
    mode: str  # online, batch or dry-run
    in_scope: int = 0  # conversations in the study
    cached: int = 0  # already done for this prompt version and model: not sent
    todo: int = 0  # taken by this run
    ok: int = 0
    errors: int = 0
    skipped_unscrubbed: int = 0
    in_open_batches: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    priced: bool = True
    batch_ids: list[str] = field(default_factory=list)
    error_reasons: dict[str, int] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    run_id: str | None = None
    held_elsewhere: int = 0  # pending, but claimed by another live run: skipped
    held_by: list[str] = field(default_factory=list)  # those runs (id, pid, host)
    lost_claims: int = 0  # taken over by another run mid-way (this run's lease ran out)
    possibly_paid_calls: int = 0  # this run's calls sent without a usable reply
    settled_possibly_paid: int = 0  # calls left in flight by runs that died, marked now
    lock_wait_seconds: float = 0.0  # time spent waiting for another writer to let go
    ledger: dict[str, Any] | None = None  # the study's call ledger after the run
    notes: list[str] = field(default_factory=list)  # for the user, e.g. an option ignored
    # --only-subjective: the source's labels of the conversations in scope (labelled,
    # subjective, not yet filtered), and the first stage's own report
    filter: dict[str, Any] | None = None
    stage1: dict[str, Any] | None = None
    taken_ids: list[str] = field(default_factory=list, repr=False)  # not reported

    def add(self, outcome: Outcome) -> None:
        self.add_calls(outcome.calls)
        e = outcome.extraction
        if e.status == "ok":
            self.ok += 1
        else:
            self.errors += 1
            reason = (e.error or "error").split(":")[0][:80]
            self.error_reasons[reason] = self.error_reasons.get(reason, 0) + 1
        self.input_tokens += e.input_tokens
        self.output_tokens += e.output_tokens
        self.cache_read_tokens += e.cache_read_tokens
        self.cache_write_tokens += e.cache_write_tokens
        self.cost_usd += e.cost_usd

    def add_calls(self, calls: list[ModelCall]) -> None:
        self.calls += len(calls)
        self.possibly_paid_calls += sum(c.status == ledger.POSSIBLY_PAID for c in calls)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["taken_ids"]
        data["lock_wait_seconds"] = round(self.lock_wait_seconds, 3)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["seconds"] = round(self.seconds, 3)
        data["per_second"] = round(self.ok_or_error / self.seconds, 2) if self.seconds else None
        return data

    @property
    def ok_or_error(self) -> int:
        return self.ok + self.errors


@dataclass(frozen=True)
class ExtractProgress:
    """Where a run is, for the caller's display (the CLI draws a bar from these)."""

    what: str  # the model, or a batch and its processing status
    done: int  # conversations whose result is stored
    total: int
    cost_usd: float  # so far, this run
    errors: int  # so far, this run


ProgressFn = Callable[[ExtractProgress], None]


class _Tracker:
    """Counts a run's stored results and tells the caller's callback (if any) after each."""

    def __init__(self, callback: ProgressFn | None, report: ExtractReport) -> None:
        self.callback, self.report = callback, report
        self.what, self.done, self.total = "", 0, 0

    def start(self, what: str, total: int) -> None:
        self.what, self.done, self.total = what, 0, total
        self._tell()

    def advance(self) -> None:
        self.done += 1
        self._tell()

    def describe(self, what: str) -> None:
        self.what = what
        self._tell()

    def _tell(self) -> None:
        if self.callback is not None:
            r = self.report
            self.callback(ExtractProgress(self.what, self.done, self.total, r.cost_usd, r.errors))
