"""The app's summaries, named once and computed ahead of the first visit.

A page of the app opens with a few summaries (`Summary`): inter-annotator agreement, each
prompt version's scores and its comparison with the version before, the per-conversation
outcomes and the value frequencies. At paper scale (300,000 conversations) computing them from
scratch takes most of a minute, and about ten seconds after a thousand new labels, which a
first visitor should not wait for. So the commands that change what they read (`extract`,
`pull`, `adjudicate`, `demo`) end by computing the missing ones into the study's summary
cache, the same files the app reads (`summary_cache`), and `annotator summarize` does it on
demand.

The app asks for the same `Summary` objects, so both sides agree on names, parameters and the
tables each result depends on: a summary is recomputed only when one of those tables changed.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from annotator import config
from annotator.app import summary_cache
from annotator.datasets import gold
from annotator.db import collect_garbage_rarely
from annotator.extract.prompts import few_shot_map
from annotator.measure import agreement, pair_counts, rating_counts, score_counts, summaries
from annotator.measure.agreement import AgreementReport
from annotator.measure.findings import table_counts, table_findings
from annotator.measure.frame_patch import (
    MAX_CHANGED_SHARE,
    Change,
    change_to,
    index_if_unchanged,
    prune_log,
)
from annotator.measure.frame_patch import rows_before as rows_before_change
from annotator.measure.frame_store import (
    has_frame,
    has_index,
    is_frame_table,
    parts_folder,
    read_frame,
    read_frame_part,
    store_joined,
    table_signatures,
)
from annotator.measure.frames import (
    IN_FRAME,
    KeptInterAnnotator,
    StoredFigures,
    StoredGoldScores,
    prompt_list,
    store_frame_part,
    store_patched_annotations,
    table_halves,
    without_few_shot,
)
from annotator.measure.rating_counts import Inconsistent
from annotator.measure.report_counts import ReportCounts
from annotator.measure.shapes import KnownScores
from annotator.measure.summaries import Bundle, level_maps
from annotator.worker_pool import spawned_pool

DEFAULT_BOOT = 200  # bootstrap resamples behind the app's 95% intervals
ANNOTATORS_TOP_K = 20  # values with a figure of their own on the Annotators page, per level


@dataclass(frozen=True)
class Summary:
    """One result a page shows: its cache name and parameters, the tables it reads (their
    signatures key the stored result) and how to compute it from the study file."""

    name: str
    params: dict[str, Any]
    deps: tuple[str, ...]
    what: str  # how a page names it while it computes
    compute: Callable[[str, Mapping[str, str]], Bundle] = field(compare=False, repr=False)
    reads_frames: bool = True  # False: it queries the study itself (its deps key it alone)

    def dep_signatures(self, signatures: Mapping[str, str]) -> dict[str, str]:
        return {table: signatures.get(table, "") for table in self.deps}


def _frame(path: str, signatures: Mapping[str, str], table: str) -> Any:
    return summary_cache.frame(path, table, signatures.get(table, ""))


# what the inter-annotator summary reads of the annotations besides their counts
NOT_LABELS = ["conversation_id", "annotator", "lead_time", "updated_at"]


def annotators(n_boot: int = DEFAULT_BOOT) -> Summary:
    return Summary(
        "annotators", {"n_boot": n_boot, "top_k": ANNOTATORS_TOP_K}, ("annotations",),
        "inter-annotator agreement",
        lambda path, sigs: _annotators(path, sigs, n_boot),
    )


def _annotators(path: str, sigs: Mapping[str, str], n_boot: int) -> Bundle:
    """The inter-annotator summary; after new labels, from the counts stored before them and
    the changed conversations' rows (`rating_counts`), and of the annotations frame only the
    columns that are not labels (who, which conversation, lead time, last update)."""
    before = _before_change(annotators(n_boot), path, sigs, "pair_counts", *rating_counts.FRAMES)
    change = _rows_of_change(path, sigs, before)
    counts = None
    if before is not None and change is not None:
        try:
            stored = rating_counts.from_tables(
                dict(zip(rating_counts.FRAMES, before.tables[1:], strict=True)),
                pair_counts.from_rows(before.tables[0].to_pandas()))
            counts = stored.after(*change, level_maps())
        except (Inconsistent, KeyError, ValueError, TypeError, IndexError):
            counts = None  # damaged, or not the rows before: counted whole
    annotations = None
    if counts is not None and counts.over_budget(n_boot, agreement.BOOT_BUDGET):
        # the frame is stored: `_before_change` saw to it
        annotations = read_frame_part(path, "annotations", sigs.get("annotations", ""),
                                      columns=NOT_LABELS)
    if annotations is None:
        annotations = _frame(path, sigs, "annotations")
    return _annotators_bundle(annotations, n_boot, counts)


def _annotators_bundle(annotations: pd.DataFrame, n_boot: int,
                       counts: rating_counts.RatingCounts | None = None) -> Bundle:
    return summaries.annotators_bundle(annotations, n_boot, top_k=ANNOTATORS_TOP_K,
                                       counts=counts)


def stored_inter_annotator(path: str | Path, signature: str) -> AgreementReport | None:
    """The inter-annotator report of the annotations at `signature`, as the app's summary
    stored it (`annotators`, every level, distance and pair, `DEFAULT_BOOT` resamples), else
    None: read, never computed (`frames.study_agreement` computes what is not stored)."""
    summary = annotators()
    bundle = summary_cache.read_stored(path, summary.name, summary.params,
                                       summary.dep_signatures({"annotations": signature}))
    if bundle is None or "report" not in bundle.meta:
        return None
    try:
        return AgreementReport.model_validate(bundle.meta["report"])
    except ValidationError:  # damaged, or kept by another version: computed instead
        return None


def computed_inter_annotator(path: str, signature: str) -> AgreementReport | None:
    """The app's inter-annotator summary of the annotations frame stored at exactly
    `signature`, computed and stored as `summarize` stores it, and its report (None: that
    frame is no longer stored). `annotator agreement`'s second process runs this on a study
    whose summary is not stored, so the app and the next `agreement` read it."""
    collect_garbage_rarely()  # a spawned worker starts with Python's defaults
    annotations = read_frame(path, "annotations", signature)
    if annotations is None:
        return None
    summary = annotators()
    summary_cache.ensure(path, summary.name, summary.params,
                         summary.dep_signatures({"annotations": signature}),
                         lambda: _annotators_bundle(annotations, DEFAULT_BOOT))
    return stored_inter_annotator(path, signature)


# What `annotator agreement` computes in its second process when the app's summary is not
# stored: that summary's report, whose settings are `agreement_report`'s defaults but these.
KEPT_INTER_ANNOTATOR = KeptInterAnnotator(
    computed_inter_annotator,
    {"levels": (0, 1, 2, 3), "distances": ("masi", "jaccard"), "masi_weights": "exact",
     "n_boot": DEFAULT_BOOT, "top_k": ANNOTATORS_TOP_K, "seed": 0},
)


def prompt_scores(prompt_id: str, n_boot: int = DEFAULT_BOOT) -> Summary:
    """A version's scores against gold and each annotator, and its labels
    (`summaries.prompt_bundle`), joined from its three stored parts: a new annotation
    recomputes the annotators' part alone, a gold decision the gold part alone."""
    table = f"extractions:{prompt_id}"
    return Summary(
        "prompt", {"n_boot": n_boot, "prompt": prompt_id}, (table, "gold", "annotations"),
        f"the scores of prompt {prompt_id}",
        lambda path, sigs: summaries.joined_prompt_parts(
            stored_bundle(prompt_against_gold(prompt_id, n_boot), path, sigs),
            stored_bundle(prompt_against_annotators(prompt_id), path, sigs),
            stored_bundle(prompt_model(prompt_id), path, sigs)),
    )


def prompt_against_gold(prompt_id: str, n_boot: int = DEFAULT_BOOT) -> Summary:
    table = f"extractions:{prompt_id}"
    return Summary(
        "prompt_gold", {"n_boot": n_boot, "prompt": prompt_id}, (table, "gold"),
        f"the scores of prompt {prompt_id} against gold",
        lambda path, sigs: _without_few_shot(
            path, sigs, prompt_id,
            lambda ext: summaries.prompt_gold_part(ext, _frame(path, sigs, "gold"), n_boot)),
    )


def prompt_against_annotators(prompt_id: str) -> Summary:
    table = f"extractions:{prompt_id}"
    return Summary(
        "prompt_annotators", {"prompt": prompt_id}, (table, "annotations"),
        f"the scores of prompt {prompt_id} against each annotator",
        lambda path, sigs: _against_annotators(path, sigs, prompt_id),
    )


def stored_gold_scores(path: str | Path, prompt_id: str, signatures: Mapping[str, str]
                       ) -> KnownScores | None:
    """A version's scores against gold as the app's summary stored them for its extractions
    and gold at these signatures (`prompt_against_gold`, `DEFAULT_BOOT` resamples, seed 0,
    every level), else None: read, never computed (`frames.study_agreement` computes what
    is not stored)."""
    summary = prompt_against_gold(prompt_id)
    bundle = summary_cache.read_stored(path, summary.name, summary.params,
                                       summary.dep_signatures(signatures))
    if bundle is None:
        return None
    try:
        return score_counts.known_scores(bundle.frames["metrics"], bundle.frames["confusion"],
                                         "gold")
    except (KeyError, ValueError, TypeError, pa.ArrowException):  # damaged: computed instead
        return None


# What `annotator agreement` reads of the versions' scores against gold (`stored_gold_scores`)
# and the settings the app computes them with.
STORED_GOLD_SCORES = StoredGoldScores(
    stored_gold_scores, {"n_boot": DEFAULT_BOOT, "seed": 0, "levels": summaries.LEVELS})
# What the dataset card reads of both.
STORED_FIGURES = StoredFigures(stored_inter_annotator, STORED_GOLD_SCORES)


def _against_annotators(path: str, sigs: Mapping[str, str], prompt_id: str) -> Bundle:
    """A version's scores against each annotator; after new labels, from the counts stored
    before them and the changed conversations' rows alone, the version's too."""
    kept = _kept_counts(prompt_against_annotators(prompt_id), path, sigs, prompt_id)
    if kept is not None:
        try:
            return summaries.prompt_annotators_after(kept)
        except Inconsistent:  # not the counts of the rows before: made whole
            pass
    return _without_few_shot(path, sigs, prompt_id, lambda ext: summaries.prompt_annotators_part(
        ext, _frame(path, sigs, "annotations")))


def _kept_counts(summary: Summary, path: str, sigs: Mapping[str, str], prompt_id: str
                 ) -> summaries.KeptCounts | None:
    """A version's counts against each annotator as stored before the annotations' last
    change (`_before_change`), with that change's rows and the version's rows of its
    conversations (few-shot examples out, as the stored counts were made); None: computed
    whole."""
    before = _before_change(summary, path, sigs, *score_counts.FRAMES)
    change = _rows_of_change(path, sigs, before)
    if before is None or change is None:
        return None
    table = f"extractions:{prompt_id}"
    names = _annotator_names(path, sigs.get("annotations", ""))
    extractions = _frame_part(path, table, sigs.get(table, ""),
                              tuple(before.change.conversations))
    if names is None or extractions is None:
        return None
    try:
        counts = score_counts.ScoreCounts.from_tables(before.tables)
    except (KeyError, ValueError, TypeError, pa.ArrowException):  # damaged: made whole
        return None
    with summary_cache.study_db(path) as database:
        examples = few_shot_map(database)
    extractions, _ = without_few_shot(extractions, examples)
    return summaries.KeptCounts(counts, *change, [f"annotator {name}" for name in names],
                                extractions)


def prompt_model(prompt_id: str) -> Summary:
    table = f"extractions:{prompt_id}"
    return Summary(
        "prompt_model", {"prompt": prompt_id}, (table,), f"the labels of prompt {prompt_id}",
        lambda path, sigs: _without_few_shot(path, sigs, prompt_id, summaries.prompt_model_part),
    )


def _without_few_shot(path: str, sigs: Mapping[str, str], prompt_id: str,
                      scores: Callable[[pd.DataFrame], Bundle]) -> Bundle:
    """`scores` of a version's extractions without its few-shot examples
    (`report.without_few_shot`); the bundle's meta says how many were left out
    (`few_shot_left_out`)."""
    with summary_cache.study_db(path) as database:
        examples = few_shot_map(database)
    extractions, left_out = without_few_shot(_frame(path, sigs, f"extractions:{prompt_id}"),
                                             examples)
    bundle = scores(extractions)
    bundle.meta["few_shot_left_out"] = left_out.get(prompt_id, 0)
    return bundle


def conversations() -> Summary:
    return Summary("conversations", {}, ("annotations", "gold"), "the conversation table",
                   _conversations)


def _conversations(path: str, sigs: Mapping[str, str]) -> Bundle:
    """The conversation table; after new labels, from the table stored before them and the
    rows of the conversations they changed (`frame_patch.change_to`), gold unchanged; after
    new gold (a person's decision, `adjudicate`), from the newest table stored for these
    annotations and the rows whose gold changed (`summaries.gold_changed`)."""
    bundle = _after_labels_change(path, sigs)
    if bundle is None:
        gold_frame = _frame(path, sigs, "gold")
        bundle = (_after_gold_change(path, sigs, gold_frame)
                  or summaries.conversations_bundle(_frame(path, sigs, "annotations"),
                                                    gold_frame))
    # what it was made from: the next table after new gold checks it is made from the same
    # annotations
    bundle.meta["made_from"] = {table: sigs.get(table, "") for table in ("annotations", "gold")}
    return bundle


def _after_labels_change(path: str, sigs: Mapping[str, str]) -> Bundle | None:
    """The conversation table made from the one stored before new labels and the rows of
    the conversations they changed, read alone from the stored frames; None when there is no
    such table or change."""
    before = _before_change(conversations(), path, sigs, "conversations")
    change = _rows_of_change(path, sigs, before)
    if before is None or change is None:
        return None
    changed = tuple(before.change.conversations)
    gold_rows = _frame_part(path, "gold", sigs.get("gold", ""), changed)
    return None if gold_rows is None else summaries.conversations_patched(
        *before.tables, changed, change[1], gold_rows)


def _after_gold_change(path: str, sigs: Mapping[str, str], gold_frame: pd.DataFrame
                       ) -> Bundle | None:
    """The conversation table made from the newest one stored for these annotations and
    other gold: the rows whose gold changed made anew; when gold changed for more than a
    quarter of them (`adjudicate`), gold joined anew to every row's columns made from the
    annotations (`summaries.conversations_regolded`). None when there is no such table."""
    summary = conversations()
    found = summary_cache.latest_stored_table(path, summary.name, summary.params,
                                              "conversations")
    if found is None:
        return None
    meta, table = found
    made_from = meta.get("made_from") or {}
    if (made_from.get("annotations") != sigs.get("annotations", "")
            or made_from.get("gold") == sigs.get("gold", "")):
        return None
    many = MAX_CHANGED_SHARE * max(table.num_rows, 1)
    try:  # most gold changed, seen from two columns (cheap), else from every row's gold
        if (summaries.gold_surely_changed(table, gold_frame) > many
                or len(changed := summaries.gold_changed(table, gold_frame)) > many):
            return summaries.conversations_regolded(table, gold_frame)
    except (KeyError, ValueError, TypeError, pa.ArrowException):  # damaged: computed whole
        return None
    return summaries.conversations_patched(table, changed, _frame(path, sigs, "annotations"),
                                           gold_frame)


def frequencies(table: str) -> Summary:
    return Summary(
        "frequencies", {"table": table}, (table,), f"value frequencies ({table})",
        lambda path, sigs: _frequencies(path, sigs, table),
    )


def _frequencies(path: str, sigs: Mapping[str, str], table: str) -> Bundle:
    """A table's value frequencies; the annotations' after new labels from the counts stored
    before them and the changed conversations' rows before and now (`NameCounts.after`)."""
    before = None if table != "annotations" else _before_change(
        frequencies(table), path, sigs, "values", "response_types")
    change = _rows_of_change(path, sigs, before)
    if before is not None and change is not None:
        try:
            stored = summaries.NameCounts.of_stored(
                *(t.to_pandas() for t in before.tables), before.meta)
            counts = stored.after(*(summaries.name_counts(rows) for rows in change))
        except (KeyError, ValueError, TypeError, pa.ArrowException):  # damaged: made whole
            counts = None
        if counts is not None:
            return summaries.frequencies_of_counts(counts)
    return summaries.value_frequencies(_frame(path, sigs, table))


def findings(table: str, opposing: tuple[str, ...] | None = None) -> Summary:
    """The study's report (`findings`) from one source's table: `gold`, `annotations` or
    `extractions:<prompt id>`; the opposing values default to the configured ones."""
    names = list(opposing or config.opposing_values())
    return Summary(
        "findings", {"table": table, "opposing": names}, (table,),
        f"the study's report ({table})",
        lambda path, sigs: _findings(path, sigs, table, names),
    )


def _findings(path: str, sigs: Mapping[str, str], table: str, names: list[str]) -> Bundle:
    """The study's report from one source's table. Its counts are kept with it for the
    annotations; after new labels they are made from the ones kept before them and the
    changed conversations' rows before and now (`ReportCounts.after`)."""
    if table != "annotations":
        return Bundle(meta={"findings": table_findings(
            table, _frame(path, sigs, table), names).model_dump(mode="json")})
    before = _before_change(findings(table, names), path, sigs, "report_counts")
    change = _rows_of_change(path, sigs, before)
    counts = None
    if before is not None and change is not None:
        try:
            counts = ReportCounts.from_table(before.tables[0]).after(
                *(table_counts(table, rows, names) for rows in change))
        except (Inconsistent, KeyError, ValueError, TypeError, pa.ArrowException):
            counts = None  # damaged, or not the rows before: counted whole
    frame = None
    if counts is None:
        frame = _frame(path, sigs, table)
        counts = table_counts(table, frame, names)
    return Bundle(frames={"report_counts": counts.table}, meta={"findings": table_findings(
        table, frame, names, counts=counts).model_dump(mode="json")})


def people_needed() -> Summary:
    """What `annotator adjudicate` leaves to a person, and why (the Gold page's queue): it
    reads every annotation, so a new server's first Gold page does not wait for it. Of gold
    it reads only which conversations a person decided: a decision by majority keeps it."""
    return Summary("people_needed", {}, ("annotations", "gold:people"),
                   "the conversations to decide",
                   _people_needed, reads_frames=False)


def _people_needed(path: str, sigs: Mapping[str, str]) -> Bundle:
    """The Gold page's queue; after new labels, the queue stored before them with only the
    conversations they changed looked at anew (`frame_patch.change_to`), the decisions of
    people unchanged."""
    before = _before_change(people_needed(), path, sigs, "needed")
    with summary_cache.study_db(path) as database:
        rows = [(p.conversation_id, p.reason) for p in gold.people_needed(
            database, conversations=None if before is None else before.change.conversations)]
    if before is not None:  # the stored queue but the changed conversations, in id order
        changed = set(before.change.conversations)
        (table,) = before.tables
        kept = zip(table.column("conversation_id").to_pylist(),
                   table.column("reason").to_pylist(), strict=True)
        rows = sorted([*(row for row in kept if row[0] not in changed), *rows])
    return Bundle(frames={"needed": pd.DataFrame(rows, columns=["conversation_id", "reason"])})


class _Before(NamedTuple):
    """A summary's frames and meta as stored before the annotations' last change, and that
    change."""

    tables: list[pa.Table]
    change: Change
    meta: dict[str, Any]


def _before_change(summary: Summary, path: str, sigs: Mapping[str, str], *frame_names: str
                   ) -> _Before | None:
    """`summary`'s frames as stored for the annotations frame the current one was made from
    (`frame_patch.change_to`) and every other table as it is now; None when the current
    frame was built whole, or that result is not stored."""
    _stored(path, "annotations", sigs.get("annotations", ""))  # its index notes the change
    change = change_to(path, sigs.get("annotations", ""))
    if change is None:
        return None
    deps = summary.dep_signatures({**sigs, "annotations": change.since})
    stored = summary_cache.read_stored(path, summary.name, summary.params, deps)
    tables = [summary_cache.read_stored_table(path, summary.name, summary.params, deps, name)
              for name in frame_names]
    return None if stored is None or any(t is None for t in tables) else _Before(
        tables, change, stored.meta)


def _rows_of_change(path: str, sigs: Mapping[str, str], before: _Before | None
                    ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The annotation rows of the conversations the last change touched, as they were before
    it and as they are now (a summary kept as counts takes the first off and adds the
    second); None when there is no such change, or those rows are not kept."""
    if before is None:
        return None
    signature = sigs.get("annotations", "")
    rows_before = rows_before_change(path, signature)
    rows_now = _frame_part(path, "annotations", signature, tuple(before.change.conversations))
    return None if rows_before is None or rows_now is None else (rows_before, rows_now)


def _frame_part(path: str, table: str, signature: str, conversations: tuple[str, ...]
                ) -> pd.DataFrame | None:
    """The stored frame's rows of these conversations (`read_frame_part`), read once per
    process (`summary_cache.memo`): every summary made from a change reads the same ones. A
    frame not stored yet (no worker stored it first) is made and stored first."""
    def read() -> pd.DataFrame | None:
        _stored(path, table, signature)
        return read_frame_part(path, table, signature, conversations)
    return summary_cache.memo(("frame part", path, table, signature, conversations), read)


def _stored(path: str, table: str, signature: str) -> None:
    if not has_frame(path, table, signature):
        summary_cache.frame(path, table, signature)


def _annotator_names(path: str, signature: str) -> list[str] | None:
    """The names of the annotators with rows in the annotations frame at `signature`, in
    `shapes.by_rater`'s order; None when it is not stored."""
    def read() -> list[str] | None:
        _stored(path, "annotations", signature)
        column = read_frame_part(path, "annotations", signature, columns=["annotator"])
        return None if column is None else sorted({str(a) for a in column["annotator"].unique()})
    return summary_cache.memo(("annotator names", path, signature), read)


def comparison(first: str, second: str, level: int = 0, n_boot: int = DEFAULT_BOOT) -> Summary:
    """Two prompt versions against gold, conversation by conversation, with paired deltas.

    `first` and `second` in sorted order: the other order is the mirror image
    (`summaries.swap_comparison`). Reads the two versions' stored scores against gold.
    """
    return Summary(
        "comparison", {"first": first, "second": second, "level": level, "n_boot": n_boot},
        (f"extractions:{first}", f"extractions:{second}", "gold"),
        f"the comparison of {first} and {second}",
        lambda path, sigs: _comparison(path, sigs, first, second, level, n_boot),
    )


def stored_bundle(summary: Summary, path: str, signatures: Mapping[str, str]) -> Bundle:
    """The summary for these signatures: read from the cache, else computed and stored."""
    deps = summary.dep_signatures(signatures)

    def compute() -> Bundle:
        return summary.compute(path, signatures)

    summary_cache.ensure(path, summary.name, summary.params, deps, compute)
    found = summary_cache.get(path, summary.name, summary.params, deps, compute, wait=0)
    if found.bundle is None:  # stored just above: only a failure to read it back lands here
        raise RuntimeError(found.error or f"{summary.what}: not computed")
    return found.bundle


def _comparison(path: str, sigs: Mapping[str, str], first: str, second: str, level: int,
                n_boot: int) -> Bundle:
    a, b = (stored_bundle(prompt_against_gold(p, n_boot), path, sigs).frames["outcomes"]
            for p in (first, second))
    changes, deltas = summaries.compare_versions(a, b, level, n_boot)
    return Bundle(frames={"changes": changes, "deltas": deltas}, meta={"n": len(changes)})


def opening_summaries(
    prompt_ids: list[str], n_boot: int = DEFAULT_BOOT, has_gold: bool = True
) -> list[Summary]:
    """What the app's pages open with, for every prompt version (any one may be chosen): with
    gold, each version's comparison with the one before it (the Prompts page's default)."""
    out = [frequencies("gold"), frequencies("annotations")]
    out += [frequencies(f"extractions:{p}") for p in prompt_ids]
    out += [findings("gold"), findings("annotations")]
    out += [findings(f"extractions:{p}") for p in prompt_ids]
    out += [annotators(n_boot), conversations(), people_needed()]
    for p in prompt_ids:
        out += [prompt_against_gold(p, n_boot), prompt_against_annotators(p), prompt_model(p)]
    out += [prompt_scores(p, n_boot) for p in prompt_ids]
    if has_gold:
        pairs = dict.fromkeys(tuple(sorted(pair)) for pair in pairwise(prompt_ids))
        out += [comparison(a, b, 0, n_boot) for a, b in pairs]
    return out


def summary_named(name: str, params: Mapping[str, Any]) -> Summary:
    """The `Summary` with this cache name and parameters (how a worker process rebuilds one:
    a Summary's compute function cannot cross a process border)."""
    if name == "annotators":
        return annotators(params["n_boot"])
    if name == "prompt":
        return prompt_scores(params["prompt"], params["n_boot"])
    if name == "prompt_gold":
        return prompt_against_gold(params["prompt"], params["n_boot"])
    if name == "prompt_annotators":
        return prompt_against_annotators(params["prompt"])
    if name == "prompt_model":
        return prompt_model(params["prompt"])
    if name == "conversations":
        return conversations()
    if name == "people_needed":
        return people_needed()
    if name == "frequencies":
        return frequencies(params["table"])
    if name == "findings":
        return findings(params["table"], tuple(params["opposing"]))
    if name == "comparison":
        return comparison(params["first"], params["second"], params["level"], params["n_boot"])
    raise ValueError(f"no summary named {name!r}")


# the heaviest first, so that two workers finish together (after new labels: the
# inter-annotator figures 1.9 s at 300,000 conversations, the annotations' report 0.9 s)
_WEIGHT = {"prompt_gold": 0, "annotators": 1, "findings": 1.5, "prompt_annotators": 2,
           "conversations": 2, "people_needed": 2, "prompt_model": 3, "frequencies": 4}
# joined from the prompt scores' parts, or read them: computed once those are stored
AFTER_SCORES = {"prompt", "comparison"}
PARALLEL_MIN_CONVERSATIONS = 20_000  # below this, starting processes costs more than it saves
MAX_DEFAULT_WORKERS = 2  # each holds the study's frames: at 300,000, each peaks at about 1.4 GB


class PrecomputeReport(BaseModel):
    """What `precompute` did: summaries already stored for the current data, and computed."""

    study: str
    summaries: int
    already_stored: int
    computed: list[str]
    workers: int
    seconds: float


def _compute(path: str, name: str, params: dict[str, Any], signatures: dict[str, str],
             in_worker: bool = False) -> bool:
    collect_garbage_rarely()  # a spawned worker starts with Python's defaults
    summary = summary_named(name, params)
    done = summary_cache.ensure(path, summary.name, summary.params,
                                summary.dep_signatures(signatures),
                                lambda: summary.compute(path, signatures))
    if in_worker:  # a large study: what the summary freed is given back before the next one
        gc.collect()  # (`frame_store`: Python's free lists hold on to the heap until then)
    return done


def _tables_read(wanted: list[Summary]) -> list[str]:
    """The frame tables these summaries read, the largest (annotations) first."""
    tables = dict.fromkeys(t for s in wanted if s.reads_frames for t in s.deps
                           if is_frame_table(t))
    return sorted(tables, key=lambda t: (t != "annotations", t))


def _unstored(path: str, signatures: Mapping[str, str], wanted: list[Summary]) -> list[str]:
    """The frame tables these summaries read that are not stored at their signatures."""
    return [t for t in _tables_read(wanted) if not has_frame(path, t, signatures.get(t, ""))]


def _store_frame(path: str, table: str, signature: str) -> None:
    """Build and store a table's frame. Not kept in this worker: building leaves its memory
    fragmented, and a summary that needs the frame reads it back into a heap freed of that."""
    collect_garbage_rarely()
    summary_cache.store_frame(path, table, signature)


def _frame_parts(pool: ProcessPoolExecutor, path: str, folder: Path, table: str
                 ) -> dict[Future, Path]:
    """The halves of `table`'s frame (annotations or gold), each built by a worker into a
    file in `folder`."""
    with summary_cache.study_db(path) as database:
        halves = table_halves(database, table)
    return {pool.submit(store_frame_part, path, table, rowids, str(folder / f"{table}-{i}")):
            folder / f"{table}-{i}" for i, rowids in enumerate(halves)}


def _joined(path: str, table: str, signature: str, parts: dict[Future, Path]) -> bool:
    """Whether the parts, read at `signature`, are stored as `table`'s frame; False: it is to
    be built whole (the table changed between the parts' reads, or their columns differ in
    type)."""
    read_at = [future.result() for future in parts]
    return (all(sig == signature for sig in read_at)
            and store_joined(path, table, signature, list(parts.values())))


def _after_new_labels(path: str, signatures: dict[str, str], missing: list[Summary],
                      unstored: list[str], keep_facts: Callable[[], None],
                      finished: Callable[[Summary, bool], None]) -> bool:
    """`precompute`'s work after new labels (only the annotations changed, their frame to be
    made from the one stored before it), in this process and one worker, not two workers:
    what is left to compute is made from the change and light, so a second worker's start
    (importing pandas, Arrow and the statistics: 0.7 s of a core) would cost more than it
    gives. The worker starts while this process makes the frame, then takes the heaviest
    summary (the inter-annotator figures), and the heaviest left whenever it is free; this
    process computes the lightest left, one after another. False, having computed nothing: the
    frame could not be made so (it is then built whole, in two workers)."""
    annotations_at = signatures.get("annotations", "")
    if unstored != ["annotations"] or not has_index(path, "annotations"):
        return False
    with spawned_pool(1) as pool:
        pool.submit(collect_garbage_rarely)  # the worker starts (a pool starts it at a task)
        if not store_patched_annotations(path, annotations_at):
            return False
        left = sorted(missing, key=lambda s: _WEIGHT[s.name])  # heaviest first
        running = {pool.submit(_compute, path, s.name, s.params, signatures, True): s
                   for s in left[:1]}
        left = left[1:]
        keep_facts()
        while left:
            for future in [f for f in running if f.done()]:
                finished(running.pop(future), future.result())
                if left:  # the worker takes the heaviest left
                    summary = left.pop(0)
                    running[pool.submit(_compute, path, summary.name, summary.params,
                                        signatures, True)] = summary
            if left:  # this process the lightest
                summary = left.pop()
                finished(summary, _compute(path, summary.name, summary.params, signatures))
        for future in as_completed(running):
            finished(running[future], future.result())
    return True


def precompute(
    path: str | Path,
    n_boot: int = DEFAULT_BOOT,
    progress: Callable[[str, int, int], None] | None = None,
    workers: int | None = None,
) -> PrecomputeReport:
    """Compute every opening summary missing for the study's current data, and store it.

    Large studies are computed in worker processes (`workers`, default: one per core up to 2,
    from 20,000 conversations), the heaviest summaries first. `progress(what, done, total)` is
    called as each summary is done.
    """
    started = time.perf_counter()
    path = str(path)
    if summary_cache.fingerprint(path) is None:
        raise FileNotFoundError(path)
    with summary_cache.study_db(path) as database:
        prune_log(database, path)  # before the facts are read: it writes the file
        fp = summary_cache.fingerprint(path)
        facts = summary_cache.stored_facts(path, fp)
        if facts is None:  # what this needs of them now; the app's whole facts (the stage
            # counts and sources take 0.9 s at 300,000 conversations) while the workers work
            signatures = table_signatures(database)
            prompt_ids = prompt_list(database)["prompt_id"].tolist()
        else:
            signatures = dict(facts["signatures"])
            prompt_ids = [p["prompt_id"] for p in facts["prompts"]]

    def keep_facts() -> None:
        if facts is None and fp is not None:  # the signatures read above, of the file at fp
            summary_cache.facts(path, fp, signatures)

    has_gold = not signatures.get("gold", "0").startswith("0:")
    wanted = opening_summaries(prompt_ids, n_boot, has_gold)
    missing = [s for s in wanted
               if not summary_cache.stored(path, s.name, s.params, s.dep_signatures(signatures))]
    later = [s for s in missing if s.name in AFTER_SCORES]
    missing = sorted((s for s in missing if s.name not in AFTER_SCORES),
                     key=lambda s: _WEIGHT[s.name])
    if workers is None:
        large = int(signatures.get("conversations", "0").split(":", 1)[0] or 0) >= (
            PARALLEL_MIN_CONVERSATIONS)
        workers = min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS) if large else 1
    workers = max(1, min(workers, len(missing) or 1))
    computed: list[str] = []
    done = len(wanted) - len(missing) - len(later)
    if progress:
        progress("stored", done, len(wanted))

    def finished(summary: Summary, was_computed: bool) -> None:
        nonlocal done
        if was_computed:
            computed.append(summary.what)
        done += 1
        if progress:
            progress(summary.what, done, len(wanted))

    unstored = _unstored(path, signatures, missing + later)  # (cheap: a file's presence each)
    if workers == 1:  # each frame is built (or read) when a summary first needs it
        keep_facts()
        for summary in missing:
            finished(summary, _compute(path, summary.name, summary.params, signatures))
    elif not _after_new_labels(path, signatures, missing, unstored, keep_facts, finished):
        # (`spawned_pool`: spawned, not forked.) Each worker reads the frames it needs itself
        # and writes its result to the cache (atomic renames).
        with spawned_pool(workers) as pool:
            # the frames the summaries read, built and stored first, one table per worker at a
            # time: else each worker would build the same tables itself
            annotations_at = signatures.get("annotations", "")
            with parts_folder(path) as folder:
                # the annotations frame, the largest: made from the one stored before it and
                # the rows changed since (`frame_patch`), else in two parts at once, joined
                patching = (pool.submit(store_patched_annotations, path, annotations_at)
                            if "annotations" in unstored and has_index(path, "annotations")
                            else None)
                if patching is not None:  # the second worker started while the first patches
                    pool.submit(collect_garbage_rarely)  # (a worker starts at its first task)
                parts = (_frame_parts(pool, path, folder, "annotations")
                         if "annotations" in unstored and folder is not None and patching is None
                         else {})
                # gold too, in two parts: after `adjudicate` it is the one frame to build, and
                # every summary left waits for it (4.9 s whole at 700,000 conversations)
                gold_at = signatures.get("gold", "")
                gold_parts = (_frame_parts(pool, path, folder, "gold")
                              if "gold" in unstored and folder is not None else {})
                in_parts = {"annotations": bool(parts or patching), "gold": bool(gold_parts)}
                building = [pool.submit(_store_frame, path, t, signatures.get(t, ""))
                            for t in unstored if not in_parts.get(t)]
                # a summary reading no frame still to be built starts now, on a worker the
                # frames leave free (after new labels, only the annotations frame is built);
                # while the annotations frame is made from the one before it, what reads the
                # annotations waits for the change it notes (the Gold page's queue reads it)
                ready = [s for s in missing if not set(_tables_read([s])) & set(unstored)
                         and (patching is None or "annotations" not in s.deps)]
                futures = {pool.submit(_compute, path, s.name, s.params, signatures, True): s
                           for s in ready}
                keep_facts()  # here, while the workers work
                if patching is not None and not patching.result():  # to be built whole
                    if folder is not None:
                        parts = _frame_parts(pool, path, folder, "annotations")
                    else:
                        building.append(pool.submit(_store_frame, path, "annotations",
                                                    annotations_at))
                if gold_parts and not _joined(path, "gold", gold_at, gold_parts):
                    building.append(pool.submit(_store_frame, path, "gold", gold_at))
                if parts and not _joined(path, "annotations", annotations_at, parts):
                    building.append(pool.submit(_store_frame, path, "annotations", annotations_at))
                elif parts:  # the next frame is made from this one: its row index kept
                    with summary_cache.study_db(path) as database:
                        index_if_unchanged(database, path, annotations_at, IN_FRAME)
            for built in building:
                built.result()
            futures.update({
                pool.submit(_compute, path, s.name, s.params, signatures, True): s
                for s in missing if s not in ready
            })
            for future in as_completed(futures):
                finished(futures[future], future.result())
    for summary in later:  # light, and they read what the loop above stored
        finished(summary, _compute(path, summary.name, summary.params, signatures))
    summary_cache.clear_memory()  # the frames read for this are not needed after it
    return PrecomputeReport(
        study=path, summaries=len(wanted), already_stored=len(wanted) - len(computed),
        computed=computed, workers=workers, seconds=round(time.perf_counter() - started, 2),
    )
