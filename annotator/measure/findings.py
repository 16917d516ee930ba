"""The study's findings, read the way the published study reads them (`annotator report`, the
app's Overview).

From one source of labels (gold, the annotators' labels combined per conversation by majority,
or one prompt version's extractions): the share of subjective conversations; each AI value, and
each cluster at every level of the taxonomy, as a percent of conversations, beside the released
frequencies, with a Spearman rank correlation; the response types beside the published shares;
mirroring (an AI value equal to a value the user stated in the same conversation); and the
conversations whose AI values include an opposing value, flagged as possible jailbreaks; and
values by task (`contexts`): which AI values come up disproportionately in which tasks, and
which hold steady across them.

Shares are of the conversations a source does not label as non-subjective (the study's
frequencies are of its 308,210 subjective conversations); a conversation whose `subjective` is
unknown stays in. Released figures: `pct_convos` (`values_frequencies.csv`) for values, and
`pct_total_occurrences` (`values_tree.csv`, the only figure released for clusters) for every
level, compared with the study's share of value occurrences at that level.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import sqlite_utils
from pydantic import BaseModel, Field

from annotator import config
from annotator.db import VOTES, external_ids, provenance
from annotator.errors import NO_ANNOTATIONS, AnnotatorError
from annotator.measure import shares as figures
from annotator.measure.contexts import ValuesByTask, values_by_task_of_counts
from annotator.measure.frames import (
    PUBLISHED_STUDY,
    prompt_list,
    scalar,
    stored_frames,
)
from annotator.measure.model_scores import spearman_rho
from annotator.measure.report_counts import (
    ReportCounts,
    Vocabulary,
    joined,
    left_out_counts,
    report_counts,
    row_names,
)
from annotator.measure.response_types import (
    MIN_PAIR_CONVERSATIONS,
    ByResponseType,
    by_response_type,
)
from annotator.measure.shapes import RESPONSE_TYPE_LABELS
from annotator.measure.sorted_keys import distinct, distinct_counts
from annotator.models import Provenance
from annotator.taxonomy import LEVEL_KINDS, LEVELS, Taxonomy, load_taxonomy

MIN_RANKED = 3  # a rank correlation over fewer values says nothing
RT_DENOMINATOR = "subjective conversations with a response type"
_SHIFT = np.int64(32)  # a (conversation, code) pair packed in one int64: both below 2**31
_LOW = np.int64(0xFFFFFFFF)
FRAME_COLUMNS = ["conversation_id", "ai_values", "human_values", "response_type", "subjective",
                 "task"]


class SourceKind(StrEnum):
    gold = "gold"
    annotations = "annotations"
    prompt = "prompt"


SOURCE_LABELS = {SourceKind.gold: "gold",
                 SourceKind.annotations: "annotations (majority per conversation)"}


class ReportSource(BaseModel):
    """Which labels the report reads, and why these when none was asked for."""

    kind: SourceKind
    prompt_id: str | None = None
    label: str
    chosen_by_default: bool = False
    why: str | None = None


class RankCorrelation(BaseModel):
    """Spearman's rho between the study's shares and the released ones, over `n` values."""

    method: str = "spearman"
    rho: float | None = None
    n: int = 0
    note: str | None = None


class Share(BaseModel):
    """One value (level 0) or cluster (levels 1-3) in the study, beside its released figures."""

    key: str = Field(description="taxonomy node id; a free value's own name")
    name: str
    level: int
    top_category: str | None = None
    free: bool = False
    conversations: int
    pct_convos: float = Field(description="percent of the report's conversations")
    pct_convos_low: float | None = Field(None, description="Wilson 95% interval, percent")
    pct_convos_high: float | None = None

    def interval_text(self) -> str:
        """The Wilson 95% interval of pct_convos as `annotator report` and the app print it."""
        if self.pct_convos_low is None or self.pct_convos_high is None:
            return "-"
        return f"{self.pct_convos_low:.1f}%-{self.pct_convos_high:.1f}%"
    occurrences: int
    pct_occurrences: float | None = Field(
        None, description="percent of the value occurrences at this level that are in the tree")
    released_pct_convos: float | None = Field(
        None, description="values_frequencies.csv pct_convos (values only)")
    released_pct_occurrences: float | None = Field(
        None, description="values_tree.csv pct_total_occurrences")


class LevelShares(BaseModel):
    level: int
    kind: str
    compared_with: str
    rows: list[Share]
    correlation: RankCorrelation


class ResponseTypeShare(BaseModel):
    response_type: str
    conversations: int
    pct: float | None
    published_pct: float | None = None
    published: bool = False
    share: figures.Share | None = Field(
        None, description="of the subjective conversations with a response type, as the "
        "paper's six types, which add up to its 64.3% with user values")


class MirroredValue(BaseModel):
    value: str
    conversations: int = Field(description="conversations with user values where the AI held it")
    mirrored: int = Field(description="of those, where the user stated it too")
    pct: float


class Mirroring(BaseModel):
    conversations_with_human_values: int
    mirrored: int
    pct: float | None
    per_value: list[MirroredValue]
    share: figures.Share | None = None


class Figure(BaseModel):
    """One headline figure as every surface prints it (`Findings.headline`)."""

    figure: str
    text: str
    published: str


class FlaggedConversation(BaseModel):
    conversation_id: str
    external_id: str | None = Field(None, description="its id in the source file")
    opposing_values: list[str]
    response_type: str | None = None
    show_command: str
    app_link: str
    task_urls: list[str] = Field(default_factory=list)


class Findings(BaseModel):
    """The whole report; `annotator report --json` prints it as it is."""

    source: ReportSource
    conversations: int = Field(description="conversations the source labels")
    left_out: int = 0
    left_out_reason: str | None = None
    subjective: int
    subjective_labelled: int
    subjective_pct: float | None
    base_conversations: int = Field(description="conversations the shares are of")
    published_subjective_pct: float
    levels: list[LevelShares]
    free_values: int = Field(description="distinct AI values outside the taxonomy")
    response_types: list[ResponseTypeShare]
    response_types_labelled: int
    mirroring: Mirroring
    opposing_values: list[str]
    opposing_not_in_taxonomy: list[str]
    flagged: list[FlaggedConversation]
    values_by_task: ValuesByTask | None = Field(
        None, description="AI values by task, over the same conversations as the shares")
    subjective_share: figures.Share | None = None
    human_values_present: figures.Share | None = Field(
        None, description="subjective conversations where the user states a value")
    ai_values_per_conversation: figures.Mean | None = None
    by_response_type: ByResponseType | None = None
    published: str
    published_url: str
    provenance: Provenance | None = Field(
        None, description="tool version, study fingerprint, label source, time (from a study)")

    def level(self, level: int) -> LevelShares:
        return next(shares for shares in self.levels if shares.level == level)

    def headline(self) -> list[Figure]:
        """The figures `annotator report`, the app's Overview and the dataset card all print,
        each with its named denominator and interval, beside the published figure."""
        rows: list[tuple[str, figures.Share | figures.Mean | None]] = [
            ("subjective", self.subjective_share),
            ("user values present", self.human_values_present),
            ("AI values per conversation", self.ai_values_per_conversation),
            *((f"response type: {r.response_type}", r.share) for r in self.response_types),
            ("mirroring (any response type)", self.mirroring.share),
        ]
        if self.by_response_type is not None:
            rows += [(f"mirroring: {m.response_type}", m.share)
                     for m in self.by_response_type.mirroring]
        return [Figure(figure=name, text=f.text(), published=f.published_text())
                for name, f in rows if f is not None]


# --- sources ----------------------------------------------------------------------------------


class Combined(NamedTuple):
    """The annotators' labels combined (`combined_annotations`): one row per decided
    conversation (FRAME_COLUMNS, in conversation id order), and the annotated conversations
    left out: split (no majority on the response type or subjective), or with incomplete
    annotations only."""

    rows: pd.DataFrame
    split: list[str]
    incomplete: list[str]

    @property
    def left_out(self) -> tuple[int, str | None]:
        """How many annotated conversations are left out, and why."""
        return left_out_of(len(self.split), len(self.incomplete))


def left_out_of(split: int, incomplete: int) -> tuple[int, str | None]:
    """How many annotated conversations the combined labels leave out, and why."""
    reasons = []
    if split:
        reasons.append(f"{split} split on the response type or subjective")
    if incomplete:
        reasons.append(f"{incomplete} with incomplete annotations only")
    return split + incomplete, "; ".join(reasons) or None


def annotations_counts(annotations: pd.DataFrame, opposing: Sequence[str]) -> ReportCounts:
    """The report's counts (`report_counts`) of the annotators' combined labels, with the
    conversations they leave out."""
    combined = combined_annotations(annotations)
    return joined(report_counts(combined.rows, opposing),
                  left_out_counts(len(combined.split), len(combined.incomplete)))


def combine_annotations(annotations: pd.DataFrame) -> tuple[pd.DataFrame, int, str | None]:
    """`combined_annotations`' rows, and how many annotated conversations are left out and
    why."""
    combined = combined_annotations(annotations)
    return (combined.rows, *combined.left_out)


def combined_annotations(annotations: pd.DataFrame) -> Combined:
    """One row per annotated conversation: its annotators' labels combined by the rule
    `adjudicate` decides gold with (`gold.majority_label`), over its complete annotations: the
    response type and `subjective` that more than half gave (else the conversation is left out,
    as split), and the values that more than half listed.

    Computed for every conversation at once (a pydantic label per annotation, as
    `majority_label` takes them, costs minutes at 900,000 annotations); the tests check that it
    agrees with `majority_label`.
    """
    complete = annotations.dropna(subset=["response_type", "subjective"]).reset_index(drop=True)
    conv_codes, conv_ids = pd.factorize(complete["conversation_id"])
    conv_codes = conv_codes.astype(np.int64)
    need = np.bincount(conv_codes, minlength=len(conv_ids)) // 2 + 1

    def majority(codes: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(conversation, code) pairs that more than half of its annotations hold."""
        packed, counts = distinct_counts((conv_codes[rows] << _SHIFT) | codes)
        conv, code = packed >> _SHIFT, packed & _LOW
        won = counts >= need[conv]
        return conv[won], code[won]

    def decided(column: str) -> tuple[np.ndarray, Any]:
        codes, values = pd.factorize(complete[column].astype(object))
        conv, code = majority(codes.astype(np.int64), np.arange(len(codes)))
        chosen = np.full(len(conv_ids), -1, dtype=np.int64)
        chosen[conv] = code
        return chosen, values

    def agreed(column: str) -> list[list[str]]:
        rows, flat = row_names(complete[column].tolist())
        out: list[list[str]] = [[] for _ in range(len(conv_ids))]
        if flat:
            codes, names = pd.factorize(np.array(flat, dtype=object))
            # each name once per annotation: a name repeated in one list is one vote
            once = distinct((rows << _SHIFT) | codes.astype(np.int64))
            conv, code = majority(once & _LOW, once >> _SHIFT)
            name_of = [str(name) for name in names]  # not the Index, once per name given
            for c, k in zip(conv.tolist(), code.tolist(), strict=True):
                out[c].append(name_of[k])
        return out

    def task_decided() -> list[str | None]:
        """The task more than half of the complete annotations gave (None: no such task)."""
        if "task" not in complete:
            return [None] * len(conv_ids)
        codes, values = pd.factorize(complete["task"].astype(object))
        given = np.flatnonzero(codes >= 0)
        conv, code = majority(codes[given].astype(np.int64), given)
        out: list[str | None] = [None] * len(conv_ids)
        for c, k in zip(conv.tolist(), code.tolist(), strict=True):
            out[c] = str(values[k])
        return out

    rt_code, rt_values = decided("response_type")
    subjective_code, subjective_values = decided("subjective")
    ai, human = agreed("ai_values"), agreed("human_values")
    task = task_decided()
    # plain lists: indexing a pandas Index once per conversation cost seconds at 300,000
    ids, rts, subjectives = conv_ids.tolist(), rt_values.tolist(), subjective_values.tolist()
    rows = [
        (str(ids[c]), tuple(ai[c]), tuple(human[c]), str(rts[rt_code[c]]),
         bool(subjectives[subjective_code[c]]), task[c])
        for c in np.flatnonzero((rt_code >= 0) & (subjective_code >= 0)).tolist()
    ]
    split = [str(ids[c]) for c in
             np.flatnonzero((rt_code < 0) | (subjective_code < 0)).tolist()]
    incomplete = pd.Index(annotations["conversation_id"].unique()).difference(
        pd.Index(conv_ids)).astype(str).tolist()
    combined = pd.DataFrame.from_records(rows, columns=FRAME_COLUMNS)
    combined = combined.sort_values("conversation_id", kind="stable").reset_index(drop=True)
    return Combined(combined, split, incomplete)


def prepared_labels(
    kind: SourceKind, frame: pd.DataFrame
) -> tuple[pd.DataFrame, int, str | None]:
    """One row per conversation (FRAME_COLUMNS) from a source's frame as `report` reads it
    (`gold_frame`, `annotations_frame`, `extractions_frame` of one prompt version), and how many
    labelled conversations are left out and why."""
    if "task" not in frame:  # a frame cached before tasks were labelled
        frame = frame.assign(task=None)
    if kind is SourceKind.annotations:
        return combine_annotations(frame)
    if kind is SourceKind.prompt:
        # a version run with several models counts its newest result per conversation
        frame = (frame.sort_values("created_at", kind="stable")
                 .drop_duplicates("conversation_id", keep="last"))
    return frame[FRAME_COLUMNS].reset_index(drop=True), 0, None


def _latest_prompt(db: sqlite_utils.Database) -> str | None:
    versions = prompt_list(db)
    ok = versions.loc[versions["ok"] > 0, "prompt_id"]
    return str(ok.iloc[-1]) if len(ok) else None


def _prompt_label(db: sqlite_utils.Database, prompt_id: str) -> str:
    row = db.execute("select name, version from prompts where id = ?", [prompt_id]).fetchone()
    name = f"{row[0]}/{row[1]}" if row and row[0] else ""
    return f"prompt {name} ({prompt_id})" if name else f"prompt {prompt_id}"


def default_source(db: sqlite_utils.Database) -> tuple[str, str]:
    """What the report reads when no source is named, and why: gold if any, else the
    annotations, else the newest prompt version with extractions."""
    if scalar(db, "select count(*) from gold"):
        return "gold", "the study has gold labels"
    if scalar(db, f"select count(*) from annotations where {VOTES}"):
        return "annotations", "no gold labels yet; the study has annotations"
    latest = _latest_prompt(db)
    if latest:
        return latest, "no gold labels or annotations yet; the newest prompt version's extractions"
    raise AnnotatorError(
        "nothing to report yet: no gold labels, no annotations and no extractions; run "
        "`annotator extract` (the offline baseline needs no key), or import labels "
        "(`annotator import-labels FILE`)"
    )


def source_labels(
    db: sqlite_utils.Database, source: str | None = None
) -> tuple[pd.DataFrame, int, str | None, ReportSource]:
    """The labels of `source` (gold, annotations, or a prompt reference that
    `prompts.resolve_prompt` resolves), one row per conversation; with none, `default_source`.

    Returns the rows, how many labelled conversations are left out and why, and the source.
    An empty source is an error that names the cause.
    """
    why = None
    chosen = source.strip() if source else None
    if not chosen:
        chosen, why = default_source(db)
    default = why is not None
    if chosen == SourceKind.gold:
        frame = stored_frames(db, ["gold"])["gold"]
        if frame.empty:
            live = scalar(db, "select count(*) from annotations where deleted = 0")
            raise AnnotatorError(
                "no gold labels: run `annotator adjudicate` (or decide on the app's Gold page), "
                "or load a gold file (`annotator gold load FILE`)" if live else
                f"no gold labels: {NO_ANNOTATIONS}, then `annotator adjudicate`"
            )
        about = ReportSource(kind=SourceKind.gold, label=SOURCE_LABELS[SourceKind.gold],
                             chosen_by_default=default, why=why)
        return (*prepared_labels(SourceKind.gold, frame), about)
    if chosen == SourceKind.annotations:
        raw = stored_frames(db, ["annotations"])["annotations"]
        if raw.empty:
            raise AnnotatorError(NO_ANNOTATIONS)
        frame, left_out, reason = prepared_labels(SourceKind.annotations, raw)
        if frame.empty:
            raise AnnotatorError(
                f"no annotated conversation has a majority label: of {left_out} annotated "
                f"conversations, {reason}; see `annotator adjudicate`"
            )
        about = ReportSource(kind=SourceKind.annotations,
                             label=SOURCE_LABELS[SourceKind.annotations],
                             chosen_by_default=default, why=why)
        return frame, left_out, reason, about
    from annotator.extract.prompts import resolve_prompt

    try:
        prompt_id = resolve_prompt(chosen, db=db, used=True).id
    except AnnotatorError as exc:  # say the other two sources too
        raise type(exc)(f"--source is gold, annotations or a prompt version; {exc}") from None
    table = f"extractions:{prompt_id}"
    frame = stored_frames(db, [table])[table]
    if frame.empty:
        raise AnnotatorError(f"{_prompt_label(db, prompt_id)} has no successful extractions: "
                             f"see `annotator extract`")
    about = ReportSource(kind=SourceKind.prompt, prompt_id=prompt_id,
                         label=_prompt_label(db, prompt_id), chosen_by_default=default, why=why)
    return (*prepared_labels(SourceKind.prompt, frame), about)


# --- computing --------------------------------------------------------------------------------
# From counts (`report_counts`): a study holds 300,000 conversations and a million value names;
# the counts are made vectorised, and after new labels from the ones kept before them.


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def spearman(study: Sequence[float], released: Sequence[float]) -> RankCorrelation:
    """Spearman's rho (ties take their average rank) of two paired lists of shares."""
    n = len(study)
    if n < MIN_RANKED:
        return RankCorrelation(n=n, note=f"needs at least {MIN_RANKED} values to compare")
    rho = spearman_rho(study, released)
    if rho is None:
        return RankCorrelation(n=n, note="every share is equal on one side: no ranking")
    return RankCorrelation(rho=rho, n=n)


class _Named:
    """How the report names each key: a leaf's name, or a free value's most used spelling
    (ties by name)."""

    def __init__(self, tree: Taxonomy, spellings: dict[tuple[str, str], int]) -> None:
        self.tree = tree
        best: dict[str, tuple[int, str]] = {}
        for (key, spelling), n in spellings.items():
            if key not in best or (-n, spelling) < (-best[key][0], best[key][1]):
                best[key] = (n, spelling)
        self.free = {key: spelling for key, (_, spelling) in best.items()}

    def __call__(self, key: str) -> str:
        found = self.free.get(key)
        if found is not None:
            return found
        leaf = self.tree.get(key)
        return leaf.name if leaf is not None else key


def _level_shares(counts: ReportCounts, named: _Named, base: int) -> list[LevelShares]:
    """Per level, each node's conversations and occurrences among (conversation, value)
    pairs, beside the released figures; free values listed after the values."""
    tree = named.tree
    values = counts.one("value")
    nodes = counts.two("node")
    out = []
    for level in LEVELS:
        mapping = tree.level_map(level)
        occurrences: dict[str, int] = {}
        for key, n in values.items():
            node_id = None if key in named.free else mapping.get(key)
            if node_id is not None:
                occurrences[node_id] = occurrences.get(node_id, 0) + n
        total = sum(occurrences.values())
        shares = []
        for node_id, occurred in occurrences.items():
            node = tree.get(str(node_id))
            if node is None or not occurred:
                continue
            top = tree.ancestor(node, 3)
            held = nodes.get((str(level), node_id), 0)
            shares.append(Share(
                key=node.id, name=node.short_name if level == 3 else node.name, level=level,
                top_category=top.short_name if top else None,
                conversations=held, pct_convos=_pct(held, base) or 0.0,
                **_interval(held, base), occurrences=occurred,
                pct_occurrences=_pct(occurred, total),
                released_pct_convos=node.pct_convos if level == 0 else None,
                released_pct_occurrences=node.pct_total_occurrences,
            ))
        shares.sort(key=lambda s: (-s.conversations, -s.occurrences, s.name, s.key))
        if level == 0:
            # a value's share of conversations, as values_frequencies.csv gives it
            paired = [(s.pct_convos, s.released_pct_convos) for s in shares]
            compared = "pct_convos (values_frequencies.csv)"
        else:
            # a cluster's share of occurrences: the only figure the tree releases for it
            paired = [(s.pct_occurrences, s.released_pct_occurrences) for s in shares]
            compared = "pct_total_occurrences (values_tree.csv)"
        known_pairs = [(a, b) for a, b in paired if a is not None and b is not None]
        correlation = spearman([a for a, _ in known_pairs], [b for _, b in known_pairs])
        if level == 0:
            shares += _free_rows(values, named, base)
        out.append(LevelShares(level=level, kind=LEVEL_KINDS[level], compared_with=compared,
                               rows=shares, correlation=correlation))
    return out


def _interval(k: int, n: int) -> dict[str, float]:
    low, high = figures.wilson(k, n)
    return {"pct_convos_low": 100.0 * low, "pct_convos_high": 100.0 * high}


def _free_rows(values: dict[str, int], named: _Named, base: int) -> list[Share]:
    rows = [
        Share(key=key, name=named(key), level=0, free=True, conversations=n,
              pct_convos=_pct(n, base) or 0.0, occurrences=n, **_interval(n, base))
        for key, n in values.items() if key in named.free and n
    ]
    rows.sort(key=lambda s: (-s.conversations, s.name))
    return rows


def _response_types(types: dict[str, int]) -> tuple[list[ResponseTypeShare], int]:
    published = PUBLISHED_STUDY["response_type_pct"]
    labelled = sum(types.values())
    shares = []
    for rt in RESPONSE_TYPE_LABELS:
        n = types.get(rt, 0)
        pct = published.get(rt)
        shares.append(ResponseTypeShare(
            response_type=rt, conversations=n, pct=_pct(n, labelled), published_pct=pct,
            published=pct is not None, share=figures.share(n, labelled, RT_DENOMINATOR, pct)))
    return shares, labelled


def _mirroring(counts: ReportCounts, named: _Named, totals: dict[str, int]) -> Mirroring:
    """Conversations where an AI value equals a value the user stated, of those where the
    user stated any; per AI value, of the conversations with user values that hold it."""
    held = counts.one("held")
    per_value = [MirroredValue(value=named(key), conversations=held[key], mirrored=n,
                               pct=100.0 * n / held[key])
                 for key, n in counts.one("matched").items()]
    per_value.sort(key=lambda m: (-m.mirrored, -m.pct, m.value))
    with_human, mirrored = totals.get("with_human", 0), totals.get("mirrored", 0)
    return Mirroring(conversations_with_human_values=with_human, mirrored=mirrored,
                     pct=_pct(mirrored, with_human), per_value=per_value,
                     share=figures.share(mirrored, with_human,
                                         "subjective conversations with user values"))


def _flagged(counts: ReportCounts, named: _Named) -> list[FlaggedConversation]:
    held: dict[str, list[str]] = {}
    for conversation, key in counts.two("flagged"):
        held.setdefault(conversation, []).append(named(key))
    types = {c: t for c, t in counts.two("flagged_type")}
    return [
        FlaggedConversation(
            conversation_id=c, opposing_values=sorted(held[c]), response_type=types.get(c),
            show_command=f"annotator show {c}", app_link=f"disagreements?c={c}")
        for c in sorted(held)
    ]


def _by_task(counts: ReportCounts, named: _Named, base: int) -> ValuesByTask:
    """Values by task over the report's base conversations, values named as the report names
    them, tasks in the study's task list order."""
    from annotator.extract.tasks import load_task_list

    try:
        order = load_task_list().names
    except AnnotatorError:  # a broken list must not hide the rest of the report
        order = []
    sizes = counts.one("task")
    by_name = {(task, named(key)): n for (task, key), n in counts.two("task_value").items()}
    return values_by_task_of_counts(sizes, by_name, base - sum(sizes.values()), order)


def _per_conversation(counts: ReportCounts, named: _Named, totals: dict[str, int]
                      ) -> dict[str, Any]:
    """Over the report's base conversations: user values present, AI values per
    conversation, and values by response type."""
    published = PUBLISHED_STUDY
    base = totals.get("base", 0)
    held = counts.one("per_conversation")
    per_conversation = np.repeat(np.array([int(k) for k in held], dtype=float),
                                 np.array(list(held.values()), dtype=np.int64))

    def typed(kind: str) -> dict[tuple[str, str], int]:
        return {(rt, named(key)): n for (rt, key), n in counts.two(kind).items()}

    together = counts.of("together")
    together = together[together["n"] >= MIN_PAIR_CONVERSATIONS]
    return {
        "human_values_present": figures.share(
            totals.get("with_human", 0), base, "subjective conversations",
            published["human_values_present_pct"]),
        "ai_values_per_conversation": figures.mean(
            per_conversation.tolist(), "subjective conversations",
            published["ai_values_per_conversation"]),
        "by_response_type": by_response_type(
            base, counts.one("type"), counts.one("mirrored_type"), typed("ai_type"),
            typed("human_type"), {named(key): n for key, n in counts.one("value").items()},
            [(named(a), named(b), n) for a, b, n in zip(
                together["a"].tolist(), together["b"].tolist(), together["n"].tolist(),
                strict=True)]),
    }


def findings_from_labels(
    frame: pd.DataFrame,
    source: ReportSource,
    opposing: Sequence[str] | None = None,
    left_out: int = 0,
    left_out_reason: str | None = None,
) -> Findings:
    """The report from one row per conversation (FRAME_COLUMNS): no database, no output."""
    names = list(opposing) if opposing else list(config.opposing_values())
    return findings_from_counts(report_counts(frame, names), source, names, left_out,
                                left_out_reason)


def findings_from_counts(
    counts: ReportCounts,
    source: ReportSource,
    opposing: Sequence[str] | None = None,
    left_out: int | None = None,
    left_out_reason: str | None = None,
) -> Findings:
    """The report from its counts (`report_counts`). The conversations left out are the
    counts' own where they hold them (the annotators' combined labels), else `left_out`."""
    tree = load_taxonomy()
    names = list(opposing) if opposing else list(config.opposing_values())
    totals = counts.one("total")
    if left_out is None:
        left_out, left_out_reason = left_out_of(totals.get("split", 0),
                                                totals.get("incomplete", 0))
    named = _Named(tree, counts.two("spelling"))
    base = totals.get("base", 0)
    subjective, labelled = totals.get("subjective", 0), totals.get("labelled", 0)
    levels = _level_shares(counts, named, base)
    response_types, rt_labelled = _response_types(counts.one("type"))
    published = PUBLISHED_STUDY
    subjective_pct = 100.0 * published["conversations_subjective"] / published[
        "conversations_sampled"]
    vocab = Vocabulary(tree)
    return Findings(
        source=source,
        conversations=totals.get("conversations", 0),
        left_out=left_out,
        left_out_reason=left_out_reason,
        subjective=subjective,
        subjective_labelled=labelled,
        subjective_pct=_pct(subjective, labelled),
        base_conversations=base,
        published_subjective_pct=subjective_pct,
        levels=levels,
        free_values=sum(1 for s in levels[0].rows if s.free),
        response_types=response_types,
        response_types_labelled=rt_labelled,
        mirroring=_mirroring(counts, named, totals),
        opposing_values=names,
        opposing_not_in_taxonomy=[n for n in names if not vocab.in_tree[vocab.key_of(n)]],
        flagged=_flagged(counts, named),
        values_by_task=_by_task(counts, named, base),
        subjective_share=figures.share(subjective, labelled,
                                       "conversations labelled subjective or not",
                                       round(subjective_pct, 1)),
        **_per_conversation(counts, named, totals),
        published=published["source"],
        published_url=published["url"],
    )


def table_findings(
    table: str, frame: pd.DataFrame | None, opposing: Sequence[str] | None = None,
    label: str | None = None, counts: ReportCounts | None = None,
) -> Findings:
    """The report from one of the app's cached frames: `gold`, `annotations` or
    `extractions:<prompt id>` (no task links: those need the database). `counts`: the
    frame's report counts already made (`annotations_counts` for `annotations`); the frame
    is then not read (None will do)."""
    kind_name, _, prompt_id = table.partition(":")
    kind = SourceKind.prompt if kind_name == "extractions" else SourceKind(kind_name)
    about = ReportSource(kind=kind, prompt_id=prompt_id or None,
                         label=label or SOURCE_LABELS.get(kind) or f"prompt {prompt_id}")
    names = list(opposing) if opposing else list(config.opposing_values())
    if counts is None:
        if frame is None:
            raise ValueError("table_findings: a frame, or its counts")
        counts = table_counts(table, frame, names)
    return findings_from_counts(counts, about, names)


def table_counts(table: str, frame: pd.DataFrame, opposing: Sequence[str]) -> ReportCounts:
    """The report counts of one of the app's cached frames (see `table_findings`), with the
    conversations left out."""
    kind_name = table.partition(":")[0]
    kind = SourceKind.prompt if kind_name == "extractions" else SourceKind(kind_name)
    if kind is SourceKind.annotations:
        if "task" not in frame:  # a frame cached before tasks were labelled
            frame = frame.assign(task=None)
        return annotations_counts(frame, opposing)
    rows, _, _ = prepared_labels(kind, frame)
    return report_counts(rows, opposing)


def task_links(
    db: sqlite_utils.Database, conversation_ids: Sequence[str], db_path: Path | None
) -> dict[str, list[str]]:
    """Label Studio links of these conversations' tasks, where the server's address is known."""
    from annotator.review.instances import task_url

    links: dict[str, list[str]] = {}
    ids = list(conversation_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for row in db.query(
            f"select * from tasks where conversation_id in ({','.join('?' * len(chunk))}) "
            "order by server, project_id", chunk,
        ):
            url = task_url(db_path, row)
            if url:
                links.setdefault(row["conversation_id"], []).append(url)
    return links


def with_task_links(
    findings: Findings, db: sqlite_utils.Database, db_path: Path | None
) -> Findings:
    """The findings with each flagged conversation's Label Studio links and external id filled
    in, and their provenance."""
    ids = [f.conversation_id for f in findings.flagged]
    links = task_links(db, ids, db_path)
    external = external_ids(db, ids)
    for flagged in findings.flagged:
        flagged.task_urls = links.get(flagged.conversation_id, [])
        flagged.external_id = external.get(flagged.conversation_id)
    about = findings.source
    findings.provenance = provenance(
        db, [about.prompt_id] if about.prompt_id else [], about.kind.value)
    return findings


def study_findings(
    db: sqlite_utils.Database,
    source: str | None = None,
    opposing: Sequence[str] | None = None,
    db_path: Path | None = None,
) -> Findings:
    """The study's report from `source` (see `source_labels`), flagged conversations linked."""
    frame, left_out, reason, about = source_labels(db, source)
    found = findings_from_labels(frame, about, opposing, left_out, reason)
    return with_task_links(found, db, db_path)


__all__ = [
    "Findings",
    "FlaggedConversation",
    "LevelShares",
    "Mirroring",
    "RankCorrelation",
    "ReportSource",
    "Share",
    "SourceKind",
    "Combined",
    "annotations_counts",
    "combine_annotations",
    "combined_annotations",
    "default_source",
    "findings_from_counts",
    "findings_from_labels",
    "left_out_of",
    "prepared_labels",
    "source_labels",
    "spearman",
    "study_findings",
    "table_counts",
    "table_findings",
    "task_links",
    "with_task_links",
]
