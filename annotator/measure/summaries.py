"""What the app's pages show, computed from the study's frames: plain pandas and numpy, no
Streamlit, no SQL.

Statistics come from `annotator.agreement`; this module shapes its results into the tables the
pages draw, and adds the counts the pages need on top (value frequencies, per-value precision
and recall, per-conversation outcomes, paired deltas between two prompt versions).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from annotator.measure import (
    agreement,
    coefficients,
    intervals,
    model_scores,
    pair_counts,
    rating_counts,
    score_counts,
    shapes,
    value_sets,
)
from annotator.measure.frame_store import one_after_another
from annotator.measure.score_counts import metric_row
from annotator.measure.sorted_keys import distinct, distinct_counts
from annotator.taxonomy import Taxonomy, load_taxonomy

LEVELS: tuple[int, ...] = (0, 1, 2, 3)
LEVEL_LABELS: dict[int, str] = {
    0: "value (leaf)",
    1: "cluster (level 1)",
    2: "cluster (level 2)",
    3: "top category",
}
FIELDS: tuple[str, ...] = ("ai_values", "human_values")
FIELD_LABELS: dict[str, str] = {"ai_values": "AI values", "human_values": "human values"}
RESPONSE_TYPES: tuple[str, ...] = shapes.RESPONSE_TYPE_LABELS
FREE = "free (not in the taxonomy)"
STAT_COLUMNS = ["value", "low", "high", "n_units", "note"]


@dataclass
class Bundle:
    """One page section's results: named frames plus small JSON-able facts."""

    frames: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# --- taxonomy helpers ---------------------------------------------------------------------------


def level_maps(tree: Taxonomy | None = None) -> dict[int, dict[str, str]]:
    tree = tree or load_taxonomy()
    return {lv: tree.level_map(lv) for lv in (1, 2, 3)}


def level_key(name: str, level: int, maps: Mapping[int, Mapping[str, str]]) -> str:
    """The key a value counts under at `level`, exactly as `agreement.map_level` maps it."""
    return name if level == 0 else value_sets.level_name(name, maps[level])


def key_label(key: str, level: int, tree: Taxonomy | None = None) -> str:
    """A readable name for a level key: the cluster's name, a top category's short name."""
    if level == 0:
        return key
    node = (tree or load_taxonomy()).get(key)
    if node is None:
        return key
    return node.short_name if level == 3 else node.name


class _CategoryLookup(dict[str, str | None]):
    """Top category of each value name (None: none), looked up once per distinct name; a
    call gives a list's categories, each once, in the order of their first value. A row's
    names are mapped in C (`map` of the dict's lookup): a study's rows list each name many
    times, and a Python call per name cost more than the rest of a table's column."""

    def __init__(self, maps: Mapping[int, Mapping[str, str]]) -> None:
        super().__init__()
        self.maps = maps
        self.tree = load_taxonomy()

    def __missing__(self, name: str) -> str | None:
        node = self.tree.get(level_key(name, 3, self.maps))
        self[name] = found = node.short_name if node is not None and node.level == 3 else None
        return found

    def __call__(self, names: Sequence[str]) -> tuple[str, ...]:
        categories = dict.fromkeys(map(self.__getitem__, names))
        categories.pop(None, None)
        return tuple(categories)


# --- overview -----------------------------------------------------------------------------------


class NameCounts(NamedTuple):
    """What the value frequencies are made of, each a count that every row adds to on its
    own (`value_frequencies`): so after new labels they are the stored ones, minus the changed
    rows' counts before, plus theirs now (`after`)."""

    names: dict[Any, int]  # each name: how often it is listed
    rows: int
    types: dict[str, int]  # each response type: its rows
    subjective: tuple[int, int] | None  # rows labelled subjective or not, of them subjective

    def after(self, minus: NameCounts, plus: NameCounts) -> NameCounts | None:
        """These counts with `minus` taken off and `plus` added; None when that leaves a
        negative count or drops a column (not the counts of the rows before)."""
        def summed(kept: dict, less: dict, more: dict) -> dict | None:
            out = dict(kept)
            for key, n in [*((k, -n) for k, n in less.items()), *more.items()]:
                out[key] = out.get(key, 0) + n
            return None if any(n < 0 for n in out.values()) else {
                k: n for k, n in out.items() if n}
        names, types = (summed(self.names, minus.names, plus.names),
                        summed(self.types, minus.types, plus.types))
        shapes_of = {c.subjective is None for c in (self, minus, plus)}
        rows = self.rows - minus.rows + plus.rows
        if names is None or types is None or len(shapes_of) > 1 or rows < 0:
            return None
        subjective = None if self.subjective is None else tuple(
            a - b + c for a, b, c in zip(self.subjective, minus.subjective or (0, 0),
                                         plus.subjective or (0, 0), strict=True))
        if subjective is not None and min(subjective) < 0:
            return None
        return NameCounts(names, rows, types, subjective)  # type: ignore[arg-type]

    @staticmethod
    def of_stored(values: pd.DataFrame, types: pd.DataFrame, meta: Mapping[str, Any]
                  ) -> NameCounts:
        """The counts behind a stored `value_frequencies` bundle: its two frames and meta."""
        return NameCounts(
            dict(zip(values["value"].tolist(), values["count"].tolist(), strict=True)),
            int(meta["rows"]),
            {str(t): int(n) for t, n in zip(types["response_type"].tolist(),
                                             types["count"].tolist(), strict=True) if n},
            (int(meta["subjective_labelled"]), int(meta["subjective_true"]))
            if "subjective_labelled" in meta else None)


def name_counts(frame: pd.DataFrame, label: str = "ai_values") -> NameCounts:
    """The counts of `frame`'s rows (see `value_frequencies`)."""
    types = frame["response_type"].dropna().value_counts()
    subjective = None
    if "subjective" in frame.columns:
        given = frame["subjective"].dropna()
        subjective = (int(len(given)), int(given.astype(bool).sum()))
    return NameCounts(
        {name: int(n) for name, n in _every_name(frame[label]).value_counts().items()},
        len(frame), {str(t): int(types[t]) for t in RESPONSE_TYPES if types.get(t, 0)},
        subjective)


def value_frequencies(frame: pd.DataFrame, label: str = "ai_values") -> Bundle:
    """How often each value is listed, with its cluster and top category, and the response types.

    `frame` has one row per labelling (a conversation's gold label, one annotation, one
    extraction) with `label` holding tuples of names and a `response_type` column. Values
    listed equally often come by name.
    """
    return frequencies_of_counts(name_counts(frame, label))


def frequencies_of_counts(counts: NameCounts) -> Bundle:
    """`value_frequencies` from its counts."""
    tree = load_taxonomy()
    rows = counts.rows
    records = []
    for name, n in sorted(counts.names.items(), key=lambda item: (-item[1], str(item[0]))):
        node = tree.resolve(str(name))
        if node is None:
            records.append((name, None, FREE, FREE, int(n)))
            continue
        anc = tree.ancestors(node)
        records.append((name, node.id, anc[1].name, anc[3].short_name, int(n)))
    values = pd.DataFrame.from_records(
        records, columns=["value", "node_id", "cluster", "category", "count"]
    )
    occurrences = int(values["count"].sum()) if len(values) else 0
    values["share_of_rows"] = values["count"] / rows if rows else np.nan
    values["share_of_occurrences"] = values["count"] / occurrences if occurrences else np.nan
    rt = pd.DataFrame({"response_type": RESPONSE_TYPES,
                       "count": [counts.types.get(t, 0) for t in RESPONSE_TYPES]})
    labelled = int(rt["count"].sum())
    rt["share"] = rt["count"] / labelled if labelled else np.nan
    meta: dict[str, Any] = {"rows": rows, "occurrences": occurrences, "rt_labelled": labelled}
    if counts.subjective is not None:
        meta["subjective_labelled"], meta["subjective_true"] = counts.subjective
    return Bundle(frames={"values": values, "response_types": rt}, meta=meta)


def _every_name(series: pd.Series) -> pd.Series:
    """Every name in a column of name lists, in row order, missing ones left out: what
    `series.explode().dropna()` holds, as Python objects (exploding makes two million names
    Arrow strings first, which took 1.8 s of the 2.3 s of the annotations' frequencies at
    300,000 conversations). A cell that is not a list counts as itself, as explode has it."""
    flat: list[Any] = []
    for cell in series.tolist():
        if isinstance(cell, shapes.LIST_CELLS):
            flat.extend(cell)
        else:
            flat.append(cell)
    return pd.Series(flat, dtype=object).dropna()


# --- annotators ---------------------------------------------------------------------------------


def annotators_bundle(
    annotations: pd.DataFrame, n_boot: int, seed: int = 0, top_k: int = 20,
    counts: rating_counts.RatingCounts | None = None,
) -> Bundle:
    """Inter-annotator agreement (with intervals) at every level, kappa matrix, activity;
    and the pair counts behind alpha for sets (`pair_counts`). A study over the bootstrap
    budget keeps the counts its figures were made from (`rating_counts`), from which the
    next bundle's are made after new labels (`counts`: those, made so)."""
    maps = level_maps()
    pairs: dict[tuple[str, int], np.ndarray] = {}
    kept: list[rating_counts.RatingCounts] = []
    report = agreement.agreement_report(
        annotations,
        level_maps=maps,
        n_boot=n_boot,
        seed=seed,
        top_k=top_k,
        pairwise=True,
        counts=counts,
        pair_counts=pairs,
        kept_counts=kept,
    )
    rows = report.to_frame()
    pair_names = [r.pair for r in report.rows if r.pair is not None]
    kappa = rows.loc[[r.pair is not None for r in report.rows], STAT_COLUMNS]
    kappa.insert(0, "a", [a for a, _ in pair_names])
    kappa.insert(1, "b", [b for _, b in pair_names])
    activity = annotator_activity(annotations)
    return Bundle(
        frames={"agreement": rows.loc[rows["metric"] != "cohen_kappa"].reset_index(drop=True),
                "kappa": kappa.reset_index(drop=True),
                "activity": activity,
                "lead_times": lead_time_bins(annotations),
                "pair_counts": pair_counts.as_rows(pairs),
                **(rating_counts.as_frames(kept[0]) if kept else {})},
        meta={
            "n_conversations": report.n_conversations,
            "annotators": report.annotators,
            "how_to_read": report.how_to_read,
            "settings": report.settings,
            # whole, for `annotator agreement` and the dataset card to take their figures
            # from (`agreement.inter_annotator_part`) instead of computing them again
            "report": report.model_dump(),
        },
    )


def annotator_activity(annotations: pd.DataFrame) -> pd.DataFrame:
    """Per annotator: annotations, conversations, lead time (median, mean), last update."""
    if annotations.empty:
        return pd.DataFrame(
            columns=["annotator", "annotations", "conversations", "median_lead_time_s",
                     "mean_lead_time_s", "last_update"]
        )
    grouped = annotations.groupby("annotator", sort=True)
    frame = pd.DataFrame(
        {
            "annotations": grouped.size(),
            "conversations": grouped["conversation_id"].nunique(),
            "median_lead_time_s": grouped["lead_time"].median(),
            "mean_lead_time_s": grouped["lead_time"].mean(),
            "last_update": grouped["updated_at"].max(),
        }
    )
    return frame.reset_index()


LEAD_TIME_EDGES = (0, 10, 30, 60, 120, 300, 600, 1800, math.inf)


def lead_time_bins(annotations: pd.DataFrame) -> pd.DataFrame:
    """Lead times per annotator in fixed bins (seconds), for a chart that stays small."""
    lead = annotations[["annotator", "lead_time"]].dropna()
    if lead.empty:
        return pd.DataFrame(columns=["annotator", "bin", "order", "count"])
    labels = [
        f"{int(lo)}-{int(hi)} s" if hi != math.inf else f"{int(lo)} s +"
        for lo, hi in zip(LEAD_TIME_EDGES[:-1], LEAD_TIME_EDGES[1:], strict=True)
    ]
    cut = pd.cut(lead["lead_time"], bins=list(LEAD_TIME_EDGES), labels=labels, right=False)
    counts = (
        pd.DataFrame({"annotator": lead["annotator"], "bin": cut})
        .groupby(["annotator", "bin"], observed=False)
        .size()
        .reset_index(name="count")
    )
    counts["order"] = counts["bin"].map({b: i for i, b in enumerate(labels)}).astype(int)
    counts["bin"] = counts["bin"].astype(str)
    return counts


# --- conversations (annotators and gold side by side) ------------------------------------------


def set_key(values: Sequence[str] | None) -> str:
    """A set of value names as one comparable string (order and repeats do not matter)."""
    return "\x1f".join(sorted(set(values or ())))


def _groups(frame: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted-by-`key` frame -> (group keys, start and end row of each group)."""
    keys = frame[key].to_numpy()
    if len(keys) == 0:
        return keys, np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(keys)]])
    return keys[starts], starts, ends


def _no_majority(types: pd.Series, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per group of rows (starts, ends): whether its most frequent response type has at most
    half of its labelled votes, with two or more (missing types are no vote). Counted over
    (group, type) codes at once: a pandas group-by of 800,000 rows took most of a second."""
    group = np.repeat(np.arange(len(starts), dtype=np.int64), ends - starts)
    labelled = types.notna().to_numpy(bool)
    codes, kinds = pd.factorize(types[labelled].astype(object))
    votes = np.bincount(group[labelled], minlength=len(starts))
    pair, count = distinct_counts(group[labelled] * max(len(kinds), 1) + codes)
    top = np.zeros(len(starts), dtype=np.int64)
    np.maximum.at(top, pair // max(len(kinds), 1), count)
    return (votes >= 2) & (top <= votes // 2)


def conversations_bundle(annotations: pd.DataFrame, gold: pd.DataFrame) -> Bundle:
    """One row per conversation with annotations or gold: the labels and where people split.

    Vectorised over groups (a study has hundreds of thousands of conversations): per-group
    Python work is one slice of a list.
    """
    maps = level_maps()
    ann = annotations.sort_values(["conversation_id", "annotator"], kind="stable")
    ids, starts, ends = _groups(ann, "conversation_id")
    # a missing type is "", whether the frame holds it as None (just built) or NaN (read
    # back from its Arrow file): str(NaN) showed "nan" as an annotator's response type
    types = ann["response_type"].fillna("").astype(str).tolist()
    values = ann["ai_values"].tolist()
    set_codes = pd.factorize(pd.Series([frozenset(v) for v in values], dtype=object))[0]
    per = pd.DataFrame({
        "conversation_id": ids,
        "n_annotations": (ends - starts).astype(int),
        "annotator_types": [tuple(types[s:e]) for s, e in zip(starts, ends, strict=True)],
        "annotator_values": [tuple(dict.fromkeys(chain.from_iterable(values[s:e])))
                             for s, e in zip(starts, ends, strict=True)],
    })
    per["rt_split"] = _no_majority(ann["response_type"], starts, ends)
    # distinct value sets per conversation: its distinct (conversation, set) pairs, counted
    group = np.repeat(np.arange(len(ids), dtype=np.int64), ends - starts)
    width = int(set_codes.max()) + 1 if len(set_codes) else 1
    pairs = distinct(group * width + set_codes)
    per["values_split"] = np.bincount(pairs // width, minlength=len(ids)) > 1
    per["types_differ"] = [len(set(t)) > 1 for t in per["annotator_types"].tolist()]
    return _with_gold(per, gold, maps)


# The conversation table's columns made from the annotations alone (`conversations_bundle`'s
# `per`), in its order: what a change of gold leaves as it was.
ANNOTATION_PART = ("conversation_id", "n_annotations", "annotator_types", "annotator_values",
                   "rt_split", "values_split", "types_differ")


def conversations_regolded(before: pa.Table, gold: pd.DataFrame) -> Bundle | None:
    """`conversations_bundle` after new gold of many conversations (`adjudicate`), from its
    table stored for the same annotations (`before`, as stored): the columns made from the
    annotations are kept, and gold is joined to them anew. None when no row has annotations
    (computing it whole then costs nothing)."""
    annotated = before.select(ANNOTATION_PART)
    with_annotations = pc.greater(annotated["n_annotations"], 0)
    if not pc.all(with_annotations).as_py():  # rows of gold alone: the lists' copy is paid
        annotated = annotated.filter(with_annotations)  # only then
    if not annotated.num_rows:
        return None
    columns = annotated.to_pydict()
    per = pd.DataFrame({
        "conversation_id": np.asarray(columns["conversation_id"], dtype=object),
        "n_annotations": np.asarray(columns["n_annotations"], dtype=int),
        "annotator_types": [tuple(v) for v in columns["annotator_types"]],
        "annotator_values": [tuple(v) for v in columns["annotator_values"]],
        **{name: np.asarray(columns[name], dtype=bool)
           for name in ("rt_split", "values_split", "types_differ")},
    })
    return _with_gold(per, gold, level_maps())


def _with_gold(per: pd.DataFrame, gold: pd.DataFrame, maps: Mapping[int, Mapping[str, str]]
               ) -> Bundle:
    """The conversation table: the annotations' columns (`per`, a row per annotated
    conversation, in id order) and gold's, side by side for every conversation either has."""
    g = gold[["conversation_id", "response_type", "ai_values", "decided_by", "decided_at"]].rename(
        columns={"response_type": "gold_type", "ai_values": "gold_values"})
    table = per.merge(g, on="conversation_id", how="outer", sort=True)
    for col in ("annotator_types", "annotator_values", "gold_values"):
        table[col] = [v if isinstance(v, tuple) else () for v in table[col].tolist()]
    table["n_annotations"] = table["n_annotations"].fillna(0).astype(int)
    table["rt_split"] = table["rt_split"].astype("boolean").fillna(False).astype(bool)
    table["values_split"] = table["values_split"].astype("boolean").fillna(False).astype(bool)
    table["types_differ"] = table["types_differ"].astype("boolean").fillna(False).astype(bool)
    table["gold_key"] = [set_key(v) for v in table["gold_values"].tolist()]
    lookup = _CategoryLookup(maps)
    table["gold_categories"] = [lookup(v) for v in table["gold_values"].tolist()]
    table["has_gold"] = table["gold_type"].notna() | table["decided_by"].notna()
    return Bundle(
        frames={"conversations": table},
        meta={"n": len(table), "rt_split": int(table["rt_split"].sum())},
    )


def gold_changed(before: pa.Table, gold: pd.DataFrame) -> list[str]:
    """The conversations whose gold in the conversation table `before` (as stored) is not
    their gold in `gold` now: other labels, decided by someone else or at another time, gold
    new or gone. A row reads gold through these four columns alone (`conversations_bundle`),
    so these are the rows a change of gold changes, whoever wrote it."""
    stored = before.select(["conversation_id", "has_gold", "gold_type", "gold_values",
                            "decided_by", "decided_at"]).to_pydict()
    has = stored.pop("has_gold")
    was_ids, *was_columns = (list(compress(column, has)) for column in stored.values())
    was_columns[1] = [tuple(values or ()) for values in was_columns[1]]
    now_ids = gold["conversation_id"].tolist()
    now_columns = [_none_for_nan(gold["response_type"]),
                   [tuple(v) if isinstance(v, tuple | list) else () for v in gold["ai_values"]],
                   _none_for_nan(gold["decided_by"]), _none_for_nan(gold["decided_at"])]
    was, now = list(zip(*was_columns, strict=True)), list(zip(*now_columns, strict=True))
    if was_ids == now_ids:  # the same conversations have gold: compared in one C loop
        differ = np.fromiter(map(operator.ne, was, now), dtype=bool, count=len(was))
        return [was_ids[i] for i in np.flatnonzero(differ)]
    old, new = dict(zip(was_ids, was, strict=True)), dict(zip(now_ids, now, strict=True))
    return sorted(cid for cid in old.keys() | new.keys() if old.get(cid) != new.get(cid))


def gold_surely_changed(before: pa.Table, gold: pd.DataFrame) -> int:
    """How many conversations surely have other gold than in the conversation table `before`
    (as stored): gold new or gone, or decided at another time. At most `gold_changed`'s
    count, and read from two columns by a join in Arrow: enough to know that most gold
    changed (`adjudicate`) without comparing every row's labels."""
    was = before.select(["conversation_id", "decided_at", "has_gold"])
    was = was.filter(was["has_gold"]).drop_columns("has_gold")
    now = pa.table({name: pa.array(gold[name], from_pandas=True).cast(
        was.schema.field(name).type) for name in ("conversation_id", "decided_at")})
    both = was.join(now, "conversation_id", join_type="full outer", left_suffix=" was",
                    right_suffix=" now")
    left, right = both["decided_at was"], both["decided_at now"]
    # a time on one side alone: gold new, gone, or first timed; none on either: not sure
    differ = pc.fill_null(pc.not_equal(left, right),
                          pc.xor(pc.is_null(left), pc.is_null(right)))
    return int(pc.sum(differ).as_py() or 0)


def _none_for_nan(column: pd.Series) -> list[Any]:
    """A frame's column as a list, missing values None (a stored table's missing text)."""
    return column.astype(object).where(column.notna(), None).tolist()


def conversations_patched(before: pa.Table, changed: Sequence[str], annotations: pd.DataFrame,
                          gold: pd.DataFrame) -> Bundle | None:
    """`conversations_bundle` of these frames, from its table stored before a change (`before`,
    as stored) and the rows of the `changed` conversations computed anew: each row depends on
    its conversation's annotations and gold alone. None when the rows do not join (a column
    typed otherwise by the new rows than by the stored ones): then it is computed whole."""
    wanted = sorted(set(changed))
    new_rows = conversations_bundle(annotations[annotations["conversation_id"].isin(wanted)],
                                    gold[gold["conversation_id"].isin(wanted)]).frames
    part = pa.Table.from_pandas(new_rows["conversations"].reset_index(drop=True),
                                preserve_index=False)
    both = one_after_another([before, part])
    if both is None:
        return None
    before, part = both.slice(0, before.num_rows), both.slice(before.num_rows)
    # The stored rows in runs between the changed conversations, each changed one's old row
    # left out and its new row (if it has one) put in its place, in conversation id order as
    # the whole table's merge sorts it. Filtering and sorting every row of the list columns
    # would cost a second or two at 300,000 conversations.
    ids = before["conversation_id"].to_numpy(zero_copy_only=False)
    at = np.searchsorted(ids, np.array(wanted, dtype=object)).tolist()
    new_at = {cid: i for i, cid in enumerate(part["conversation_id"].to_pylist())}
    pieces, start = [], 0
    for cid, cut in zip(wanted, at, strict=True):
        pieces.append(before.slice(start, cut - start))
        start = cut
        if cid in new_at:
            pieces.append(part.slice(new_at[cid], 1))
        if cut < len(ids) and ids[cut] == cid:
            start = cut + 1  # its old row
    pieces.append(before.slice(start))
    table = pa.concat_tables(p for p in pieces if p.num_rows).to_pandas(types_mapper=arrow_lists)
    return Bundle(frames={"conversations": table},
                  meta={"n": len(table), "rt_split": int(table["rt_split"].sum())})


def arrow_lists(kind: pa.DataType) -> pd.ArrowDtype | None:
    """List columns kept as Arrow lists when read into pandas (a stored bundle's frames are
    read so: no Python object per name until a page shows a row)."""
    return pd.ArrowDtype(kind) if pa.types.is_list(kind) or pa.types.is_large_list(kind) else None


# --- a prompt version against gold and each annotator -----------------------------------------


def prompt_bundle(
    extractions: pd.DataFrame,
    gold: pd.DataFrame,
    annotations: pd.DataFrame,
    n_boot: int,
    seed: int = 0,
) -> Bundle:
    """One prompt version against gold (with intervals) and each annotator (point values):
    response-type accuracy, kappa and confusion; value scores at every level; per-value counts
    and per-conversation outcomes against gold; the model's labels. The three parts
    (`prompt_gold_part`, `prompt_annotators_part`, `prompt_model_part`) read different tables,
    so the app stores them apart: a new annotation recomputes only the second, a gold decision
    only the first."""
    return joined_prompt_parts(prompt_gold_part(extractions, gold, n_boot, seed),
                               prompt_annotators_part(extractions, annotations),
                               prompt_model_part(extractions))


def prompt_gold_part(extractions: pd.DataFrame, gold: pd.DataFrame, n_boot: int,
                     seed: int = 0) -> Bundle:
    """`prompt_bundle`'s part that reads gold: its scores with intervals, the per-value counts
    and the per-conversation outcomes."""
    maps = level_maps()
    references = [("gold", gold, n_boot)] if len(gold) else []
    metrics, confusion = _reference_scores(extractions, references, maps, seed)
    per_value, outcomes = gold_outcomes(extractions, gold, maps)
    frames = {"metrics": metrics, "confusion": confusion, "per_value": per_value,
              "outcomes": outcomes}
    return Bundle(
        frames=frames,
        meta={"n_extracted": len(extractions), "n_with_gold": len(outcomes),
              "references": [r[0] for r in references]},
    )


def prompt_annotators_part(extractions: pd.DataFrame, annotations: pd.DataFrame) -> Bundle:
    """`prompt_bundle`'s part that reads the annotations: the scores against each annotator
    (point values, no intervals), made from counts summed over conversations
    (`score_counts`), which it keeps for `prompt_annotators_after`."""
    raters = _by_reference(annotations)
    return _annotators_part(score_counts.score_counts(extractions, raters, level_maps()),
                            list(raters))


def prompt_annotators_after(kept: KeptCounts) -> Bundle:
    """`prompt_annotators_part` after a change of the annotations, from its counts as stored
    before it and the changed conversations' rows alone (the version's and the annotators',
    before and now). Raises `Inconsistent` when the stored counts are not those of the rows
    before."""
    maps = level_maps()
    return _annotators_part(kept.counts.after(*(
        score_counts.score_counts(kept.extractions, _by_reference(frame), maps)
        for frame in (kept.rows_before, kept.rows_now))), kept.annotators)


def _annotators_part(counts: score_counts.ScoreCounts, references: list[str]) -> Bundle:
    metrics, confusion = score_counts.scores_of_counts(counts, references)
    counts = counts._replace(confusion=confusion)  # the references that have rows, in order
    return Bundle(frames={"metrics": metrics, **counts.frames()},
                  meta={"references": references})


def _by_reference(annotations: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {f"annotator {name}": rows for name, rows in shapes.by_rater(annotations).items()}


class KeptCounts(NamedTuple):
    """A version's counts against each annotator as stored before the annotations' last
    change, the changed conversations' annotation rows before it and now, the references now
    (each annotator with rows), and the version's rows of those conversations."""

    counts: score_counts.ScoreCounts
    rows_before: pd.DataFrame
    rows_now: pd.DataFrame
    annotators: list[str]
    extractions: pd.DataFrame


def prompt_model_part(extractions: pd.DataFrame) -> Bundle:
    """`prompt_bundle`'s part that reads the extractions alone: the model's labels of every
    conversation it labelled (`model_labels`)."""
    return Bundle(frames={"model": model_labels(extractions, level_maps())})


def joined_prompt_parts(gold_part: Bundle, annotators_part: Bundle, model_part: Bundle
                        ) -> Bundle:
    """`prompt_bundle` from its three parts: gold's rows first, then each annotator's."""
    frames = {**gold_part.frames, **model_part.frames}
    for name in ("metrics", "confusion"):
        # one frame of both parts' rows, typed as if built at once (a part's column of point
        # values only holds None for its interval, which beside gold's floats is NaN)
        frames[name] = pd.DataFrame.from_records(
            [*gold_part.frames[name].to_dict("records"),
             *annotators_part.frames[name].to_dict("records")])
    # a stored part's meta also holds the cache's own notes ("_saved_at"): not the join's
    meta = {key: value for key, value in gold_part.meta.items() if not key.startswith("_")}
    meta["references"] = [*gold_part.meta["references"], *annotators_part.meta["references"]]
    return Bundle(frames=frames, meta=meta)


def _reference_scores(
    extractions: pd.DataFrame, references: list[tuple[str, pd.DataFrame, int]],
    maps: Mapping[int, Mapping[str, str]], seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The metrics and confusion rows of one prompt version against each (name, frame,
    resamples) reference, in order."""
    metrics: list[dict] = []
    confusion: list[dict] = []
    # each frame's value sets encoded once per field, shared by every pairing below
    vocabs = {fld: model_scores.Vocabulary() for fld in FIELDS}
    units = model_scores.UnitCodes()  # every frame's conversations coded alike
    model = model_scores.last_rows(extractions, units)
    model_sets = {fld: model_scores.encode_sets(model, fld, vocabs[fld]) for fld in FIELDS}
    model_types = model_scores.last_labels(model, "response_type", RESPONSE_TYPES)
    for ref_name, frame, boot in references:
        ref = model_scores.last_rows(frame, units)
        acc, kap, table = model_scores.response_type_scores(
            model_types, model_scores.last_labels(ref, "response_type", RESPONSE_TYPES),
            n_boot=boot, seed=seed)
        metrics.append(metric_row(ref_name, "accuracy", "response_type", None, acc))
        metrics.append(metric_row(ref_name, "cohen_kappa", "response_type", None, kap))
        confusion += score_counts.confusion_rows(ref_name, table)
        for fld in FIELDS:
            leaf = model_scores.pair_sets(
                model_sets[fld], model_scores.encode_sets(ref, fld, vocabs[fld]),
                vocabs[fld].names())
            by_level = model_scores.value_scores_of_pairs(
                leaf, {lv: maps.get(lv) for lv in LEVELS}, n_boot=boot, seed=seed)
            for lv, scores in by_level.items():
                for metric, stat in scores.items():
                    metrics.append(metric_row(ref_name, metric, fld, lv, stat))
    return pd.DataFrame(metrics), pd.DataFrame(confusion)


def model_labels(extractions: pd.DataFrame, maps: Mapping[int, Mapping[str, str]]) -> (
    pd.DataFrame
):
    """The model's labels of every conversation it labelled, gold or not."""
    model = extractions.drop_duplicates("conversation_id", keep="last")
    values = [tuple(v) if v else () for v in model["ai_values"].tolist()]
    lookup = _CategoryLookup(maps)
    return pd.DataFrame({
        "conversation_id": model["conversation_id"].to_numpy(dtype=object),
        "model_type": model["response_type"].to_numpy(dtype=object),
        "model_values": pd.Series(values, dtype=object).to_numpy(),
        "model_categories": pd.Series([lookup(v) for v in values], dtype=object).to_numpy(),
        "model_key": [set_key(v) for v in values],
    })


def gold_outcomes(
    extractions: pd.DataFrame, gold: pd.DataFrame, maps: Mapping[int, Mapping[str, str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-value counts (true positives, predicted, in gold) at every level, and per
    conversation: the model's and gold's labels, whether the response type matches, and the
    true positives, false positives and false negatives of the AI values at every level."""
    model = extractions.drop_duplicates("conversation_id", keep="last")
    ref = gold.drop_duplicates("conversation_id", keep="last")
    both = model[["conversation_id", "response_type", "ai_values"]].merge(
        ref[["conversation_id", "response_type", "ai_values"]],
        on="conversation_id", suffixes=("_model", "_gold"),
    )
    for col in ("ai_values_model", "ai_values_gold"):
        both[col] = [tuple(v) if v else () for v in both[col].tolist()]
    ids = both["conversation_id"].to_numpy(dtype=object)
    outcomes = pd.DataFrame({
        "conversation_id": ids,
        "model_type": both["response_type_model"].to_numpy(dtype=object),
        "gold_type": both["response_type_gold"].to_numpy(dtype=object),
        "model_values": both["ai_values_model"].to_numpy(dtype=object),
        "gold_values": both["ai_values_gold"].to_numpy(dtype=object),
    })
    outcomes["type_match"] = (
        outcomes["model_type"].notna()
        & outcomes["gold_type"].notna()
        & (outcomes["model_type"] == outcomes["gold_type"])
    )
    lookup = _CategoryLookup(maps)
    outcomes["model_categories"] = [lookup(v) for v in outcomes["model_values"].tolist()]
    per_value: list[pd.DataFrame] = []
    if len(ids) == 0:
        for lv in LEVELS:
            for kind in ("tp", "fp", "fn"):
                outcomes[f"{kind}_{lv}"] = np.zeros(0, dtype=np.int64)
        empty = pd.DataFrame(columns=["level", "key", "label", "tp", "predicted", "gold",
                                      "precision", "recall", "f1"])
        return empty, outcomes
    tree = load_taxonomy()
    # the model's and gold's sets, aligned by the merge (model first)
    leaf = model_scores.pair_ratings(ids, both["ai_values_model"].tolist(),
                                     both["ai_values_gold"].tolist())
    for lv in LEVELS:
        r = value_sets.map_level(leaf, maps.get(lv))
        counts = model_scores.set_counts(r)
        # the counts' rows follow r.units (sorted by conversation): put them in outcomes' order
        order = pd.Index(r.units).get_indexer(ids)
        outcomes[f"tp_{lv}"] = counts.tp[order].astype(np.int64)
        outcomes[f"fp_{lv}"] = counts.fp[order].astype(np.int64)
        outcomes[f"fn_{lv}"] = counts.fn[order].astype(np.int64)
        tpv = np.asarray(counts.hits.sum(0)).ravel()
        pv = np.asarray(counts.predicted.sum(0)).ravel()
        rv = np.asarray(counts.reference.sum(0)).ravel()
        used = (pv > 0) | (rv > 0)
        keys = r.vocab[used]
        precision, recall, f1 = model_scores.per_value_scores(tpv[used], pv[used], rv[used], np.nan)
        per_value.append(pd.DataFrame({
            "level": lv,
            "key": keys,
            "label": [key_label(str(k), lv, tree) for k in keys],
            "tp": tpv[used].astype(np.int64),
            "predicted": pv[used].astype(np.int64),
            "gold": rv[used].astype(np.int64),
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }))
    return pd.concat(per_value, ignore_index=True), outcomes


# --- two prompt versions ----------------------------------------------------------------------


DELTA_METRICS: tuple[str, ...] = ("accuracy", "cohen_kappa", "micro_f1", "mean_jaccard")


def compare_versions(
    a: pd.DataFrame, b: pd.DataFrame, level: int, n_boot: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two prompt versions against gold, on the conversations both extracted.

    Returns (per-conversation changes, metric deltas). A conversation improved when version b
    gets the response type right where a did not, or its value Jaccard is higher; it regressed
    in the opposite case. Deltas (b - a) come with 95% paired bootstrap intervals over
    conversations: each resample draws the same conversations for both versions. Every metric
    here depends on a conversation only through a small pattern (the two correctness flags,
    the gold and model types, the two (tp, fp, fn) triples), so resampling draws pattern
    counts from the equivalent multinomial: the same distribution, at a fraction of the cost.
    """
    cols = ["conversation_id", "gold_type", "model_type", "type_match", "gold_values",
            "model_values", *(f"{k}_{level}" for k in ("tp", "fp", "fn"))]
    merged = a[cols].merge(b[cols], on="conversation_id", suffixes=("_a", "_b"))
    ja, jb = (model_scores.jaccard_index(*(merged[f"{k}_{level}_{side}"].to_numpy(float)
                                           for k in ("tp", "fp", "fn")))
              for side in ("a", "b"))
    ca = merged["type_match_a"].to_numpy(bool)
    cb = merged["type_match_b"].to_numpy(bool)
    changes = pd.DataFrame({
        "conversation_id": merged["conversation_id"],
        "gold_type": merged["gold_type_a"],
        "type_a": merged["model_type_a"],
        "type_b": merged["model_type_b"],
        "jaccard_a": ja,
        "jaccard_b": jb,
        "gold_values": merged["gold_values_a"],
        "values_a": merged["model_values_a"],
        "values_b": merged["model_values_b"],
    })
    type_change = cb.astype(int) - ca.astype(int)
    value_change = np.sign(np.round(jb - ja, 12))
    changes["change"] = np.select(
        [(type_change > 0) | ((type_change == 0) & (value_change > 0)),
         (type_change < 0) | ((type_change == 0) & (value_change < 0))],
        ["improved", "regressed"],
        "same",
    )
    changes.loc[(type_change > 0) & (value_change < 0), "change"] = "mixed"
    changes.loc[(type_change < 0) & (value_change > 0), "change"] = "mixed"
    deltas = paired_deltas(merged, level, n_boot, seed)
    return changes, deltas


def swap_comparison(
    changes: pd.DataFrame, deltas: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison of b with a, from that of a with b: no recomputation, same resamples."""
    swapped = changes.rename(columns={"type_a": "type_b", "type_b": "type_a",
                                      "jaccard_a": "jaccard_b", "jaccard_b": "jaccard_a",
                                      "values_a": "values_b", "values_b": "values_a"})
    swapped["change"] = swapped["change"].map(
        {"improved": "regressed", "regressed": "improved"}).fillna(swapped["change"])
    d = deltas.rename(columns={"a": "b", "b": "a"})
    d["delta"] = -deltas["delta"]
    d["low"] = -deltas["high"]
    d["high"] = -deltas["low"]
    return swapped[changes.columns], d[deltas.columns]


DELTA_COLUMNS = ["metric", "a", "b", "delta", "low", "high", "n_units"]


def paired_deltas(merged: pd.DataFrame, level: int, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Metric values of a and b and their difference b - a, with paired bootstrap intervals
    (`agreement.paired_stats`). The metrics draw their resamples in turn from one seeded
    stream."""
    n = len(merged)
    if n == 0:
        return pd.DataFrame(columns=DELTA_COLUMNS)
    rows = []
    rng = np.random.default_rng(seed)
    index = {t: i for i, t in enumerate(RESPONSE_TYPES)}
    k = len(RESPONSE_TYPES)

    def add(metric: str, patterns_w: np.ndarray, fa: Callable[[np.ndarray], float],
            fb: Callable[[np.ndarray], float]) -> None:
        b, a, delta = intervals.paired_stats(
            patterns_w, fb, fa, n_units=(n, n, n), undefined=("undefined",) * 3,
            n_boot=n_boot if n > 1 else 0, seed=rng)
        rows.append({"metric": metric, "a": a.value, "b": b.value, "delta": delta.value,
                     "low": delta.low, "high": delta.high, "n_units": n})

    # response type: accuracy and kappa from the (gold, a, b) cell of each conversation
    g = merged["gold_type_a"].map(index)
    ta = merged["model_type_a"].map(index)
    tb = merged["model_type_b"].map(index)
    ok = (g.notna() & ta.notna() & tb.notna()).to_numpy()
    cells = (g[ok].astype(int) * k * k + ta[ok].astype(int) * k + tb[ok].astype(int)).to_numpy()
    cw = np.bincount(cells, minlength=k**3).astype(float)
    if cw.sum() > 0:
        cube = np.arange(k**3)
        gi, ai, bi = cube // (k * k), (cube // k) % k, cube % k

        def table_stat(which: np.ndarray, stat: Callable[[np.ndarray], tuple[float, str | None]]
                       ) -> Callable[[np.ndarray], float]:
            def f(w: np.ndarray) -> float:
                # the (gold, version) confusion table of the resampled conversations
                table = np.zeros((k, k))
                np.add.at(table, (gi, which), w)
                return stat(table)[0]
            return f

        add("accuracy", cw, table_stat(ai, coefficients.accuracy_from_table),
            table_stat(bi, coefficients.accuracy_from_table))
        add("cohen_kappa", cw, table_stat(ai, coefficients.kappa_from_table),
            table_stat(bi, coefficients.kappa_from_table))
    # values: micro F1 and mean Jaccard from each conversation's (tp, fp, fn) for a and b
    t = np.stack([merged[f"{kind}_{level}{s}"].to_numpy(np.int64)
                  for s in ("_a", "_b") for kind in ("tp", "fp", "fn")], axis=1)
    # one int64 per conversation (10 bits per count; a set has far fewer than 1,024 values),
    # so the distinct patterns come from a 1-D unique instead of a row-wise one
    bits = 10
    if t.size and t.max() >= 1 << bits:
        pats, inv = np.unique(t, axis=0, return_inverse=True)
    else:
        packed = np.zeros(len(t), dtype=np.int64)
        for j in range(t.shape[1]):
            packed |= t[:, j] << (bits * j)
        keys, inv = np.unique(packed, return_inverse=True)
        pats = np.stack([(keys >> (bits * j)) & ((1 << bits) - 1) for j in range(t.shape[1])],
                        axis=1)
    pw = np.bincount(inv.ravel(), minlength=len(pats)).astype(float)
    pa, pb = pats[:, :3].astype(float), pats[:, 3:].astype(float)

    def micro_f1(p: np.ndarray) -> Callable[[np.ndarray], float]:
        return lambda w: model_scores.micro_scores(p[:, 0], p[:, 1], p[:, 2], w)["f1"]

    add("micro_f1", pw, micro_f1(pa), micro_f1(pb))
    ja, jb = model_scores.jaccard_index(*pa.T), model_scores.jaccard_index(*pb.T)
    add("mean_jaccard", pw, lambda w: float(w @ ja / w.sum()), lambda w: float(w @ jb / w.sum()))
    return pd.DataFrame(rows)


# --- disagreements ------------------------------------------------------------------------------


KINDS: dict[str, str] = {
    "model_type": "model ≠ gold: response type",
    "model_values": "model ≠ gold: AI values",
    "annotators_type": "annotators differ: response type",
    "annotators_values": "annotators differ: AI values",
}


def disagreement_table(conversations: pd.DataFrame, model: pd.DataFrame | None) -> pd.DataFrame:
    """Conversations with the labels of gold, the model (one prompt version) and the annotators,
    and a flag per kind of disagreement. `model` is a prompt bundle's "model" frame.

    Vectorised: the bundles carry each label set's canonical key and the annotators' flags, so
    nothing here loops over conversations.
    """
    if model is not None and len(model):
        table = conversations.merge(model, on="conversation_id", how="left")
    else:
        table = conversations.assign(model_type=None, model_values=None, model_categories=None,
                                     model_key=None)
    has_model = table["model_type"].notna()
    has_gold = table["has_gold"].astype(bool)
    table["model_type_flag"] = (has_model & has_gold & (
        table["model_type"].astype(object) != table["gold_type"].astype(object))).astype(bool)
    table["model_values_flag"] = (has_model & has_gold & (
        table["model_key"].astype(object) != table["gold_key"].astype(object))).astype(bool)
    table["annotators_type_flag"] = table["types_differ"].astype(bool)
    table["annotators_values_flag"] = table["values_split"].astype(bool)
    return table.reset_index(drop=True)


def _flatten(series: pd.Series) -> pd.Series:
    """Every name in a column of name lists, indexed by its row."""
    if isinstance(series.dtype, pd.ArrowDtype):
        return series.list.flatten()
    return series.explode().dropna()


def _rows_naming(table: pd.DataFrame, columns: Sequence[str], wanted: set[str]) -> np.ndarray:
    hit = pd.Index([])
    for col in columns:
        flat = _flatten(table[col])
        hit = hit.union(flat.index[flat.isin(wanted).to_numpy(bool)])
    return table.index.isin(hit)


def _names_arrow(series: pd.Series) -> list[pa.Array]:
    """Every name in a column of name lists, as Arrow string arrays."""
    if isinstance(series.dtype, pd.ArrowDtype):
        flat = pc.list_flatten(pa.array(series))
    else:
        flat = pa.array(series.explode().dropna().astype(str).tolist(), type=pa.string())
    if flat.type != pa.string():
        flat = flat.cast(pa.string())
    return flat.chunks if isinstance(flat, pa.ChunkedArray) else [flat]


def value_options(table: pd.DataFrame) -> list[str]:
    """Values named by any source, most frequent first (ties in order of first appearance).

    Counted in Arrow: at paper scale the table holds about two million names, and a page
    waits for this list on its first run for each prompt version.
    """
    chunks = [c for col in ("gold_values", "model_values", "annotator_values")
              for c in _names_arrow(table[col])]
    counts = pc.value_counts(pa.chunked_array(chunks, type=pa.string()).drop_null())
    values = counts.field("values").to_pylist()  # in order of first appearance
    n = counts.field("counts").to_numpy()
    return [values[i] for i in np.argsort(-n, kind="stable")]


def disagreement_rows(
    table: pd.DataFrame,
    kinds: Sequence[str],
    value: str | None = None,
    categories: Sequence[str] = (),
    types: Sequence[str] = (),
) -> np.ndarray:
    """Positions of the rows with any of the chosen kinds of disagreement (all rows when none
    is chosen), naming `value` in some source, with an AI value in one of `categories`, and
    gold or model response type in `types`. Positions, not rows: a page copies only the rows
    it shows."""
    keep = np.ones(len(table), dtype=bool)
    if kinds:
        keep &= np.logical_or.reduce([table[f"{k}_flag"].to_numpy(bool) for k in kinds])
    if value:
        keep &= _rows_naming(table, ("gold_values", "model_values", "annotator_values"), {value})
    if categories:
        keep &= _rows_naming(table, ("gold_categories", "model_categories"), set(categories))
    if types:
        wanted_types = list(types)
        keep &= (table["gold_type"].astype(object).isin(wanted_types)
                 | table["model_type"].astype(object).isin(wanted_types)).to_numpy(bool)
    return np.flatnonzero(keep)
