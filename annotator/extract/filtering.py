"""Two stages: the full prompt runs only on the conversations a cheaper source labels subjective.

The study labelled 700,000 conversations subjective or not and ran its value extraction on the
308,210 subjective ones. `extract --only-subjective SOURCE` does the same: SOURCE is a prompt
version (e.g. `subjective/v1`, `labels: subjective`, for a small model), `baseline` (the offline
extractor's `subjective`) or `gold` (the study's gold table). A conversation SOURCE has not
labelled is never sent to the full prompt: it is counted as "not yet filtered". The engine runs
the first stage (a prompt version or the baseline) before the second; this module says which
source is meant, which conversations it labels subjective (as SQL, so a study of 700,000
conversations is filtered inside SQLite), and the subjective share a dry run expects of the
conversations it has not labelled yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import orjson
import sqlite_utils

from annotator.errors import InputError
from annotator.extract.prompts import USER_MARKER, resolve_prompt
from annotator.models import PromptVersion

GOLD = "gold"
BASELINE = "baseline"
# The published study: 308,210 of 700,000 conversations subjective (Huang et al., 2025).
PUBLISHED_SUBJECTIVE = 308_210
PUBLISHED_CONVERSATIONS = 700_000
MIN_OWN_LABELS = 30  # fewer of the source's own labels than this: the published share is used
Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class SubjectiveSource:
    """Where a conversation's `subjective` label comes from for `--only-subjective`."""

    kind: str  # "gold", "baseline" or "prompt"
    label: str  # as shown: gold, baseline, subjective/v1
    prompt: PromptVersion | None = None  # the version whose extractions count (None for gold)
    model: str | None = None  # the model whose extractions count

    def ids_sql(self, subjective_only: bool) -> tuple[str, list[Any]]:
        """SQL selecting the conversation ids the source has labelled (or labelled subjective),
        and its parameters: usable as `id in (...)`."""
        if self.kind == GOLD:
            sql, args = "select conversation_id from gold where subjective is not null", []
        else:
            assert self.prompt is not None and self.model is not None
            sql = ("select conversation_id from extractions where prompt_id = ? and model = ? "
                   "and status = 'ok' and subjective is not null")
            args = [self.prompt.id, self.model]
        return (sql + " and subjective = 1" if subjective_only else sql), args


def resolve_source(
    ref: str, directory: Path | None, db: sqlite_utils.Database
) -> SubjectiveSource:
    """`gold`, `baseline`, or a prompt version (any `prompts.resolve_prompt` reference) whose
    model is its front matter's: an unknown reference is a one-line InputError."""
    text = ref.strip()
    if text == GOLD:
        return SubjectiveSource(GOLD, GOLD)
    from annotator.extract.baseline import MODEL, BaselineExtractor

    rules = BaselineExtractor.baseline_prompt()
    if text == BASELINE:
        return SubjectiveSource(BASELINE, BASELINE, rules, MODEL)
    try:
        version = resolve_prompt(text, directory, db)
    except InputError as exc:
        raise InputError(f"--only-subjective: {exc} (or give `gold` or `baseline`)") from None
    if version.front_matter.get("extractor") == BASELINE:
        if version.id != rules.id:
            raise InputError(f"--only-subjective {text}: an earlier version of the baseline's "
                             "rules cannot run; give `baseline`")
        return SubjectiveSource(BASELINE, BASELINE, rules, MODEL)
    model = version.front_matter.get("model")
    if USER_MARKER not in version.text or not model:
        raise InputError(f"--only-subjective {text}: not a prompt file a model can run")
    label = f"{version.name}/{version.version}" if version.name else version.id
    return SubjectiveSource("prompt", label, version, str(model))


@dataclass(frozen=True)
class Share:
    """The subjective share a dry run expects of conversations the source has not labelled."""

    value: float
    low: float
    high: float
    n: int  # labels behind it
    basis: str  # how it was estimated, in words

    def as_dict(self) -> dict[str, Any]:
        return {"value": round(self.value, 4), "low": round(self.low, 4),
                "high": round(self.high, 4), "n": self.n, "basis": self.basis}


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a share k/n (sound near 0 and 1, unlike p +- 1.96 SE)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def expected_share(db: sqlite_utils.Database, source: SubjectiveSource) -> Share:
    """The source's own subjective share over every conversation it has labelled in the study,
    when it has labelled at least MIN_OWN_LABELS; else the published study's 308,210 / 700,000.
    Either way with a 95% Wilson interval, so the stage-2 estimate has a range."""
    labelled_sql, args = source.ids_sql(False)
    subjective_sql, _ = source.ids_sql(True)
    n = db.execute(f"select count(*) from ({labelled_sql})", args).fetchone()[0]
    k = db.execute(f"select count(*) from ({subjective_sql})", args).fetchone()[0]
    if n >= MIN_OWN_LABELS:
        low, high = wilson(k, n)
        return Share(k / n, low, high, n,
                     f"{source.label}'s own labels so far: {k} of {n} subjective")
    k, n = PUBLISHED_SUBJECTIVE, PUBLISHED_CONVERSATIONS
    low, high = wilson(k, n)
    return Share(k / n, low, high, n, f"the published study's {k:,} of {n:,} (the source has "
                 f"labelled fewer than {MIN_OWN_LABELS} conversations here)")


def filter_counts(
    db: sqlite_utils.Database, source: SubjectiveSource, scope: Sequence[str] | None = None
) -> dict[str, Any]:
    """Of the conversations in scope (None: the study): how many the source has labelled, how
    many subjective, and how many it has not labelled yet (never sent to the full prompt)."""
    where, args = "", []
    if scope is not None:
        where, args = " where id in (select value from json_each(?))", [
            orjson.dumps(list(scope)).decode()]
    total = db.execute(f"select count(*) from conversations{where}", args).fetchone()[0]
    counts = {}
    for key, subjective_only in (("labelled", False), ("subjective", True)):
        sql, source_args = source.ids_sql(subjective_only)
        joined = " and " if where else " where "
        counts[key] = db.execute(
            f"select count(*) from conversations{where}{joined}id in ({sql})",
            [*args, *source_args]).fetchone()[0]
    return {"source": source.label, "conversations": total, "labelled": counts["labelled"],
            "subjective": counts["subjective"],
            "not_subjective": counts["labelled"] - counts["subjective"],
            "not_yet_filtered": total - counts["labelled"]}
