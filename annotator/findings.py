"""The study's findings, read the way the published study reads them (`annotator report`, the
app's Overview).

From one source of labels (gold, the annotators' labels combined per conversation by majority,
or one prompt version's extractions): the share of subjective conversations; each AI value, and
each cluster at every level of the taxonomy, as a percent of conversations, beside the released
frequencies, with a Spearman rank correlation; the response types beside the published shares;
mirroring (an AI value equal to a value the user stated in the same conversation); and the
conversations whose AI values include an opposing value, flagged as possible jailbreaks.

Shares are of the conversations a source does not label as non-subjective (the study's
frequencies are of its 308,210 subjective conversations); a conversation whose `subjective` is
unknown stays in. Released figures: `pct_convos` (`values_frequencies.csv`) for values, and
`pct_total_occurrences` (`values_tree.csv`, the only figure released for clusters) for every
level, compared with the study's share of value occurrences at that level.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlite_utils
from pydantic import BaseModel, Field

from . import config
from .agreement import RESPONSE_TYPE_LABELS
from .errors import AnnotatorError
from .models import AnnotatorLabels
from .report import (
    PUBLISHED_STUDY,
    annotations_frame,
    extractions_frame,
    gold_frame,
    prompt_list,
)
from .taxonomy import LEVEL_KINDS, LEVELS, Taxonomy, load_taxonomy, normalise

MIN_RANKED = 3  # a rank correlation over fewer values says nothing
FRAME_COLUMNS = ["conversation_id", "ai_values", "human_values", "response_type", "subjective"]
NO_ANNOTATIONS = ("no annotations yet: import or pull some (`annotator import-labels FILE` or "
                  "`annotator pull`)")


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


class FlaggedConversation(BaseModel):
    conversation_id: str
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
    published: str
    published_url: str

    def level(self, level: int) -> LevelShares:
        return next(shares for shares in self.levels if shares.level == level)


# --- sources ----------------------------------------------------------------------------------


def combine_annotations(annotations: pd.DataFrame) -> tuple[pd.DataFrame, int, str | None]:
    """One row per annotated conversation: its annotators' labels combined by majority, the
    rule `adjudicate` decides gold with (`gold.majority_label`), over complete annotations.

    Returns the rows, how many annotated conversations are left out, and why.
    """
    from .gold import majority_label  # imported here: gold brings ingest and the scrubber

    complete = annotations.dropna(subset=["response_type", "subjective"])
    rows: list[tuple[Any, ...]] = []
    split = 0
    for conversation_id, group in complete.groupby("conversation_id", sort=True):
        label = majority_label([
            AnnotatorLabels(annotator=r.annotator, ai_values=list(r.ai_values),
                            human_values=list(r.human_values), response_type=r.response_type,
                            subjective=bool(r.subjective))
            for r in group.itertuples(index=False)
        ])
        if label is None:
            split += 1
            continue
        rows.append((conversation_id, tuple(label.ai_values), tuple(label.human_values),
                     str(label.response_type), label.subjective))
    incomplete = annotations["conversation_id"].nunique() - complete["conversation_id"].nunique()
    reasons = []
    if split:
        reasons.append(f"{split} split on the response type or subjective")
    if incomplete:
        reasons.append(f"{incomplete} with incomplete annotations only")
    combined = pd.DataFrame.from_records(rows, columns=FRAME_COLUMNS)
    return combined, split + incomplete, "; ".join(reasons) or None


def prepared_labels(
    kind: SourceKind, frame: pd.DataFrame
) -> tuple[pd.DataFrame, int, str | None]:
    """One row per conversation (FRAME_COLUMNS) from a source's frame as `report` reads it
    (`gold_frame`, `annotations_frame`, `extractions_frame` of one prompt version), and how many
    labelled conversations are left out and why."""
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


def _count(db: sqlite_utils.Database, sql: str) -> int:
    return int(db.execute(sql).fetchone()[0])


def default_source(db: sqlite_utils.Database) -> tuple[str, str]:
    """What the report reads when no source is named, and why: gold if any, else the
    annotations, else the newest prompt version with extractions."""
    if _count(db, "select count(*) from gold"):
        return "gold", "the study has gold labels"
    if _count(db, "select count(*) from annotations where deleted = 0 and cancelled = 0"):
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
        frame = gold_frame(db)
        if frame.empty:
            live = _count(db, "select count(*) from annotations where deleted = 0")
            raise AnnotatorError(
                "no gold labels: run `annotator adjudicate` (or decide on the app's Gold page), "
                "or load a gold file (`annotator gold load FILE`)" if live else
                f"no gold labels: {NO_ANNOTATIONS}, then `annotator adjudicate`"
            )
        about = ReportSource(kind=SourceKind.gold, label=SOURCE_LABELS[SourceKind.gold],
                             chosen_by_default=default, why=why)
        return (*prepared_labels(SourceKind.gold, frame), about)
    if chosen == SourceKind.annotations:
        raw = annotations_frame(db)
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
    from .prompts import resolve_prompt

    prompt_id = resolve_prompt(chosen, db=db, used=True).id
    frame = extractions_frame(db, prompt_id=prompt_id)
    if frame.empty:
        raise AnnotatorError(f"{_prompt_label(db, prompt_id)} has no successful extractions: "
                             f"see `annotator extract`")
    about = ReportSource(kind=SourceKind.prompt, prompt_id=prompt_id,
                         label=_prompt_label(db, prompt_id), chosen_by_default=default, why=why)
    return (*prepared_labels(SourceKind.prompt, frame), about)


# --- computing --------------------------------------------------------------------------------


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def spearman(study: Sequence[float], released: Sequence[float]) -> RankCorrelation:
    """Spearman's rho (ties take their average rank) of two paired lists of shares."""
    n = len(study)
    if n < MIN_RANKED:
        return RankCorrelation(n=n, note=f"needs at least {MIN_RANKED} values to compare")
    a, b = pd.Series(study, dtype=float), pd.Series(released, dtype=float)
    if a.nunique() < 2 or b.nunique() < 2:
        return RankCorrelation(n=n, note="every share is equal on one side: no ranking")
    rho = float(a.rank().corr(b.rank()))  # Pearson on average ranks: Spearman with ties
    return RankCorrelation(rho=rho, n=n)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class _Keys:
    """The key each value name counts under: its leaf id where the tree has it (so
    "Honesty" and "honesty" are one value), else its normalised name (a free value)."""

    def __init__(self, tree: Taxonomy) -> None:
        self.tree = tree
        self.known: dict[str, tuple[str, bool]] = {}

    def __call__(self, name: str) -> tuple[str, bool]:
        """(key, in the tree)."""
        found = self.known.get(name)
        if found is None:
            leaf = self.tree.level_keys([name], 0)[0]
            found = (leaf, True) if leaf is not None else (normalise(name), False)
            self.known[name] = found
        return found


def _value_pairs(frame: pd.DataFrame, keys: _Keys) -> pd.DataFrame:
    """One row per (conversation, AI value) with the value's key, counted once per
    conversation, and the spelling shown for a free value (its most common one)."""
    exploded = frame[["conversation_id", "ai_values"]].explode("ai_values")
    exploded = exploded.dropna(subset=["ai_values"])
    names = exploded["ai_values"].astype(str)
    found = [keys(n) for n in names]
    pairs = pd.DataFrame({
        "conversation_id": exploded["conversation_id"].to_numpy(),
        "name": names.to_numpy(),
        "key": [k for k, _ in found],
        "in_tree": np.array([t for _, t in found], dtype=bool),
    })
    return pairs.drop_duplicates(["conversation_id", "key"])


def _level_shares(pairs: pd.DataFrame, base: int, tree: Taxonomy) -> list[LevelShares]:
    known = pairs.loc[pairs["in_tree"]]
    out = []
    for level in LEVELS:
        ids = tree.level_keys(known["key"], level) if len(known) else []
        at = pd.DataFrame({"conversation_id": known["conversation_id"].to_numpy(),
                           "node": np.asarray(ids, dtype=object)})
        grouped = at.groupby("node")
        occurrences = grouped.size()
        conversations = grouped["conversation_id"].nunique()
        total = int(occurrences.sum())
        rows = []
        for node_id, n_occ in occurrences.items():
            node = tree.get(str(node_id))
            if node is None:
                continue
            top = tree.ancestor(node, 3)
            rows.append(Share(
                key=node.id, name=node.short_name if level == 3 else node.name, level=level,
                top_category=top.short_name if top else None,
                conversations=int(conversations[node_id]),
                pct_convos=_pct(int(conversations[node_id]), base) or 0.0,
                occurrences=int(n_occ), pct_occurrences=_pct(int(n_occ), total),
                released_pct_convos=node.pct_convos if level == 0 else None,
                released_pct_occurrences=node.pct_total_occurrences,
            ))
        rows.sort(key=lambda s: (-s.conversations, -s.occurrences, s.name, s.key))
        if level == 0:
            # a value's share of conversations, as values_frequencies.csv gives it
            paired = [(s.pct_convos, s.released_pct_convos) for s in rows]
            compared = "pct_convos (values_frequencies.csv)"
        else:
            # a cluster's share of occurrences: the only figure the tree releases for it
            paired = [(s.pct_occurrences, s.released_pct_occurrences) for s in rows]
            compared = "pct_total_occurrences (values_tree.csv)"
        known_pairs = [(a, b) for a, b in paired if a is not None and b is not None]
        correlation = spearman([a for a, _ in known_pairs], [b for _, b in known_pairs])
        if level == 0:
            rows += _free_rows(pairs.loc[~pairs["in_tree"]], base)
        out.append(LevelShares(level=level, kind=LEVEL_KINDS[level], compared_with=compared,
                               rows=rows, correlation=correlation))
    return out


def _free_rows(free: pd.DataFrame, base: int) -> list[Share]:
    rows = []
    for key, group in free.groupby("key", sort=False):
        n = int(group["conversation_id"].nunique())
        rows.append(Share(key=str(key), name=Counter(group["name"]).most_common(1)[0][0],
                          level=0, free=True, conversations=n,
                          pct_convos=_pct(n, base) or 0.0, occurrences=len(group)))
    rows.sort(key=lambda s: (-s.conversations, s.name))
    return rows


def _response_types(frame: pd.DataFrame) -> tuple[list[ResponseTypeShare], int]:
    published = PUBLISHED_STUDY["response_type_pct"]
    types = frame["response_type"].dropna().astype(str)
    counts = types.value_counts()
    labelled = int(len(types))
    shares = []
    for rt in RESPONSE_TYPE_LABELS:
        n = int(counts.get(rt, 0))
        pct = published.get(rt)
        shares.append(ResponseTypeShare(response_type=rt, conversations=n, pct=_pct(n, labelled),
                                        published_pct=pct, published=pct is not None))
    return shares, labelled


def _names(values: Any) -> list[str]:
    """A cell of value names (a tuple, a list or an array) as strings; nothing if empty."""
    if isinstance(values, (tuple, list, np.ndarray)):
        return [str(v) for v in values]
    return []


def _mirroring(frame: pd.DataFrame, keys: _Keys) -> Mirroring:
    with_human = 0
    mirrored = 0
    held: Counter[str] = Counter()
    matched: Counter[str] = Counter()
    names: dict[str, str] = {}
    for ai, human in zip(frame["ai_values"], frame["human_values"], strict=True):
        human_keys = {keys(h)[0] for h in _names(human)}
        if not human_keys:
            continue
        with_human += 1
        ai_keys: dict[str, str] = {}
        for name in _names(ai):
            ai_keys.setdefault(keys(name)[0], name)
        if human_keys & set(ai_keys):
            mirrored += 1
        for key, name in ai_keys.items():
            names.setdefault(key, name)
            held[key] += 1
            matched[key] += key in human_keys
    per_value = [
        MirroredValue(value=names[key], conversations=held[key], mirrored=matched[key],
                      pct=100.0 * matched[key] / held[key])
        for key in held
        if matched[key]
    ]
    per_value.sort(key=lambda m: (-m.mirrored, -m.pct, m.value))
    return Mirroring(conversations_with_human_values=with_human, mirrored=mirrored,
                     pct=_pct(mirrored, with_human), per_value=per_value)


def opposing_keys(
    names: Iterable[str], tree: Taxonomy | None = None
) -> tuple[dict[str, str], list[str]]:
    """{key: name} of the opposing values, and those of them that are not in the taxonomy
    (still matched, by their normalised name, against free values)."""
    keys = _Keys(tree or load_taxonomy())
    found: dict[str, str] = {}
    missing = []
    for name in names:
        key, in_tree = keys(name)
        found.setdefault(key, name)
        if not in_tree:
            missing.append(name)
    return found, missing


def _flagged(frame: pd.DataFrame, opposing: dict[str, str], keys: _Keys) -> list[
        FlaggedConversation]:
    out = []
    for cid, ai, response_type in zip(frame["conversation_id"], frame["ai_values"],
                                      frame["response_type"], strict=True):
        hits = list(dict.fromkeys(name for name in _names(ai) if keys(name)[0] in opposing))
        if hits:
            out.append(FlaggedConversation(
                conversation_id=str(cid), opposing_values=hits,
                response_type=None if _missing(response_type) else str(response_type),
                show_command=f"annotator show {cid}", app_link=f"disagreements?c={cid}",
            ))
    out.sort(key=lambda f: f.conversation_id)
    return out


def findings_from_labels(
    frame: pd.DataFrame,
    source: ReportSource,
    opposing: Sequence[str] | None = None,
    left_out: int = 0,
    left_out_reason: str | None = None,
) -> Findings:
    """The report from one row per conversation (FRAME_COLUMNS): no database, no output."""
    tree = load_taxonomy()
    keys = _Keys(tree)
    names = list(opposing) if opposing else list(config.opposing_values())
    subjective = frame["subjective"].map(lambda v: None if _missing(v) else bool(v))
    labelled = subjective.dropna()
    base_frame = frame.loc[subjective.map(lambda v: v is not False)]
    base = len(base_frame)
    pairs = _value_pairs(base_frame, keys)
    levels = _level_shares(pairs, base, tree)
    response_types, rt_labelled = _response_types(base_frame)
    wanted, not_in_tree = opposing_keys(names, tree)
    published = PUBLISHED_STUDY
    return Findings(
        source=source,
        conversations=len(frame),
        left_out=left_out,
        left_out_reason=left_out_reason,
        subjective=int(labelled.astype(bool).sum()),
        subjective_labelled=len(labelled),
        subjective_pct=_pct(int(labelled.astype(bool).sum()), len(labelled)),
        base_conversations=base,
        published_subjective_pct=100.0 * published["conversations_subjective"]
        / published["conversations_sampled"],
        levels=levels,
        free_values=sum(1 for s in levels[0].rows if s.free),
        response_types=response_types,
        response_types_labelled=rt_labelled,
        mirroring=_mirroring(base_frame, keys),
        opposing_values=names,
        opposing_not_in_taxonomy=not_in_tree,
        flagged=_flagged(frame, wanted, keys),
        published=published["source"],
        published_url=published["url"],
    )


def table_findings(
    table: str, frame: pd.DataFrame, opposing: Sequence[str] | None = None,
    label: str | None = None,
) -> Findings:
    """The report from one of the app's cached frames: `gold`, `annotations` or
    `extractions:<prompt id>` (no task links: those need the database)."""
    kind_name, _, prompt_id = table.partition(":")
    kind = SourceKind.prompt if kind_name == "extractions" else SourceKind(kind_name)
    rows, left_out, reason = prepared_labels(kind, frame)
    about = ReportSource(kind=kind, prompt_id=prompt_id or None,
                         label=label or SOURCE_LABELS.get(kind) or f"prompt {prompt_id}")
    return findings_from_labels(rows, about, opposing, left_out, reason)


def task_links(
    db: sqlite_utils.Database, conversation_ids: Sequence[str], db_path: Path | None
) -> dict[str, list[str]]:
    """Label Studio links of these conversations' tasks, where the server's address is known."""
    from .show import task_url

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
    """The findings with each flagged conversation's Label Studio links filled in."""
    links = task_links(db, [f.conversation_id for f in findings.flagged], db_path)
    for flagged in findings.flagged:
        flagged.task_urls = links.get(flagged.conversation_id, [])
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
    "combine_annotations",
    "default_source",
    "findings_from_labels",
    "opposing_keys",
    "prepared_labels",
    "source_labels",
    "spearman",
    "study_findings",
    "table_findings",
    "task_links",
    "with_task_links",
]
