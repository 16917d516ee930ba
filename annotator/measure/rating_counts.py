"""The counts behind the inter-annotator figures, summed over conversations, and made from the
ones stored before a change of the annotations.

Each inter-annotator figure depends on the ratings only through counts that add up over
conversations:

* the response type: how many conversations have each pattern of ratings (so many of each
  label: alpha, Fleiss' kappa, AC1, percent agreement, and their bootstraps, which resample
  the patterns), and per pair of annotators the table of their labels (Cohen's kappa);
* a value at a taxonomy level: how many conversations hold it in h of their m ratings (its
  binary alpha), and how many ratings hold it (which values are the most used);
* alpha for value sets: the pairable ratings and their empty sets, the pairs within a
  conversation by its number of ratings, the two sizes and their overlap (the observed
  disagreement), the distinct pairable sets with how many ratings hold each, and the pair
  counts over the whole study made from them (`pair_counts`: the expected disagreement).

So after new labels the counts are the ones stored before, minus the changed conversations'
counts as they were, plus theirs now (`RatingCounts.after`), in integers: equal to the counts
of the whole study (`rating_counts`), and so is every figure made from them
(`agreement.inter_annotator_rows`). Value-set alpha's interval needs each conversation's
ratings; a study this serves is one whose intervals are over the bootstrap budget
(`over_budget`), as every study of more than a few thousand conversations is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from annotator.measure import pair_counts as pair_counting
from annotator.measure.coefficients import _category_codes, _distinct_rows, _plain
from annotator.measure.shapes import (
    RATER,
    RESPONSE_TYPE,
    RESPONSE_TYPE_LABELS,
    RESPONSE_TYPE_ORDER,
    UNIT,
    as_long,
)
from annotator.measure.sorted_keys import distinct_counts
from annotator.measure.value_sets import (
    SetRatings,
    _AllPairCounter,
    _group,
    _pack,
    _within_pairs,
    hist_of_sets,
    map_level,
    set_ratings,
    value_bits,
)

Patterns = dict[tuple[int, ...], int]  # a pattern of counts -> conversations with it
Sets = dict[int, tuple[np.ndarray, np.ndarray]]  # size -> (ids sorted in a row, weights)


class Inconsistent(ValueError):  # noqa: N818 - what the stored counts are, not an event
    """Stored counts that are not those of the rows the change says it started from: the
    counts are then made whole."""


def _patterns(table: np.ndarray) -> Patterns:
    if table.shape[0] == 0:
        return {}
    rows, counts = _distinct_rows(table)
    return {tuple(int(x) for x in row): int(n) for row, n in zip(rows, counts, strict=True)}


def _add(total: Mapping, part: Mapping, sign: int) -> dict:
    out = dict(total)
    for key, n in part.items():
        out[key] = out.get(key, 0) + sign * n
        if out[key] < 0:
            raise Inconsistent(f"{key}: {out[key]}")
        if out[key] == 0:
            del out[key]
    return out


@dataclass(frozen=True)
class TypeCounts:
    """The response type's counts. Conversations are those with a rating (None is none)."""

    every_label: Patterns  # over RESPONSE_TYPE_LABELS (all zero: only labels outside them)
    ordered: Patterns  # over RESPONSE_TYPE_ORDER, conversations with an ordered label
    outside: int  # ratings outside RESPONSE_TYPE_LABELS
    unordered: int  # ratings outside RESPONSE_TYPE_ORDER
    raters: dict[str, int]  # each annotator's ratings
    pairs: dict[tuple[str, str], np.ndarray]  # (a, b), a < b: their labels' table

    def after(self, before: TypeCounts, now: TypeCounts) -> TypeCounts:
        pairs = dict(self.pairs)
        for sign, part in ((-1, before), (1, now)):
            for key, table in part.pairs.items():
                pairs[key] = pairs.get(key, np.zeros_like(table)) + sign * table
                if (pairs[key] < 0).any():
                    raise Inconsistent(f"pair {key}")
        return TypeCounts(
            _add(_add(self.every_label, before.every_label, -1), now.every_label, 1),
            _add(_add(self.ordered, before.ordered, -1), now.ordered, 1),
            self.outside - before.outside + now.outside,
            self.unordered - before.unordered + now.unordered,
            _add(_add(self.raters, before.raters, -1), now.raters, 1),
            {key: table for key, table in pairs.items() if table.any()},
        )


def type_counts(annotations: pd.DataFrame) -> TypeCounts:
    """The response type's counts of these conversations' rows (every row of each)."""
    long = as_long(annotations, RESPONSE_TYPE)
    labels = _plain(long[RESPONSE_TYPE]).tolist()
    units = pd.factorize(long[UNIT])[0]
    n_units = int(units.max()) + 1 if units.size else 0
    tables = []
    for scale in (RESPONSE_TYPE_LABELS, RESPONSE_TYPE_ORDER):
        codes = _category_codes(labels, scale)
        keep = codes >= 0
        v = len(scale)
        table = np.bincount(units[keep] * v + codes[keep], minlength=n_units * v)
        tables.append((table.reshape(n_units, v), int((~keep).sum()), codes))
    (every, outside, codes), (ordered, unordered, _) = tables
    raters = long[RATER].astype(str)
    rater_codes, names = pd.factorize(raters)
    grid = np.full((n_units, len(names)), -1, dtype=np.int64)
    grid[units, rater_codes] = codes
    v = len(RESPONSE_TYPE_LABELS)
    pairs = {}
    order = sorted(range(len(names)), key=lambda k: str(names[k]))
    for x, ia in enumerate(order):
        for ib in order[x + 1:]:
            both = (grid[:, ia] >= 0) & (grid[:, ib] >= 0)
            if both.any():
                pairs[(str(names[ia]), str(names[ib]))] = np.bincount(
                    grid[both, ia] * v + grid[both, ib], minlength=v * v).reshape(v, v)
    return TypeCounts(_patterns(every), _patterns(ordered[ordered.sum(1) > 0]), outside,
                      unordered, {str(k): int(n) for k, n in raters.value_counts().items()},
                      pairs)


@dataclass(frozen=True)
class SetCounts:
    """One field's value sets at one taxonomy level. Ids index `names`; a name no rating
    holds any more keeps its id (its usage 0)."""

    names: tuple[str, ...]
    units: int  # conversations with a rating
    ratings: int
    pairable: int  # conversations with two or more ratings
    n: int  # their ratings
    empties: int  # their empty sets
    within: np.ndarray  # [m, a, b, t]: pairs within a conversation of m ratings, a <= b
    sets: Sets  # the distinct non-empty sets of pairable conversations
    usage: np.ndarray  # [id]: ratings holding the value
    hits: np.ndarray  # [id, m, h]: conversations of m ratings, h of them holding it (h >= 1)
    base: np.ndarray  # [m]: conversations of m ratings

    @property
    def n_records(self) -> int:
        """The subset records a bootstrap of alpha would count (`_SetAlphaData.n_records`)."""
        return sum(vals.shape[0] * (2**a - 1) for a, (vals, _) in self.sets.items())

    def after(self, before: SetCounts, now: SetCounts) -> SetCounts:
        names = list(self.names)
        for part in (before, now):
            names += pd.Index(part.names).difference(pd.Index(names), sort=False).tolist()
        index = pd.Index(names)
        m = max(x.base.size for x in (self, before, now))
        s = max(x.within.shape[1] for x in (self, before, now))
        usage, hits = np.zeros(len(names), np.int64), np.zeros((len(names), m, m), np.int64)
        within, base = np.zeros((m, s, s, s), np.int64), np.zeros(m, np.int64)
        sets: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for sign, part in ((1, self), (-1, before), (1, now)):
            ids = index.get_indexer(list(part.names))
            pm, ps = part.base.size, part.within.shape[1]
            usage[ids] += sign * part.usage
            hits[ids, :pm, :pm] += sign * part.hits
            within[:pm, :ps, :ps, :ps] += sign * part.within
            base[:pm] += sign * part.base
            for a, (vals, w) in part.sets.items():
                sets.setdefault(a, []).append((np.sort(ids[vals], axis=1), sign * w))
        if min(usage.min(initial=0), hits.min(initial=0), within.min(initial=0),
               base.min(initial=0)) < 0:
            raise Inconsistent("a count below 0")
        bits = value_bits(len(names))
        merged: Sets = {}
        for a, parts in sorted(sets.items()):
            vals = np.concatenate([p[0] for p in parts])
            weights = np.concatenate([p[1] for p in parts])
            codes, n = _group(_pack(vals, bits))
            summed = np.bincount(codes, weights=weights, minlength=n)
            if (summed < -0.5).any():
                raise Inconsistent(f"sets of size {a}")
            first = np.zeros(n, dtype=np.int64)
            first[codes[::-1]] = np.arange(codes.size)[::-1]
            kept = summed > 0.5
            if kept.any():
                merged[a] = (vals[first[kept]], np.rint(summed[kept]).astype(np.int64))
        return SetCounts(
            tuple(names), self.units - before.units + now.units,
            self.ratings - before.ratings + now.ratings,
            self.pairable - before.pairable + now.pairable, self.n - before.n + now.n,
            self.empties - before.empties + now.empties, within, merged, usage, hits, base)


def set_counts(ratings: SetRatings) -> SetCounts:
    """The counts of these ratings (every rating of each conversation)."""
    n_units, n_ratings, n_names = ratings.units.size, ratings.unit.size, ratings.vocab.size
    m_unit = np.bincount(ratings.unit, minlength=n_units)
    m = int(m_unit.max()) + 1 if n_units else 1
    sizes = ratings.sizes
    s = int(sizes.max()) + 1 if n_ratings else 1
    pairable_unit = m_unit >= 2
    i, j = _within_pairs(ratings.unit, m - 1)
    x = ratings.matrix()
    overlap = (np.asarray(x[i].multiply(x[j]).sum(1)).ravel().astype(np.int64) if i.size
               else np.zeros(0, np.int64))
    a, b = np.minimum(sizes[i], sizes[j]), np.maximum(sizes[i], sizes[j])
    within = np.bincount(((m_unit[ratings.unit[i]] * s + a) * s + b) * s + overlap,
                         minlength=m * s * s * s).reshape(m, s, s, s)
    distinct_of, by_size, n_distinct = _AllPairCounter.distinct(
        ratings, pairable_unit[ratings.unit])
    weights = np.bincount(distinct_of[distinct_of >= 0], minlength=n_distinct)
    unit_of = np.repeat(ratings.unit, sizes).astype(np.int64)
    # the ratings come in order of conversation: keys in a few sorted runs
    held, h = distinct_counts(unit_of * max(n_names, 1) + ratings.indices)
    unit, value = np.divmod(held, max(n_names, 1))
    hits = np.bincount((value * m + m_unit[unit]) * m + h,
                       minlength=n_names * m * m).reshape(n_names, m, m)
    return SetCounts(
        tuple(str(v) for v in ratings.vocab.tolist()), int(n_units), int(n_ratings),
        int(pairable_unit.sum()), int(m_unit[pairable_unit].sum()),
        int(((sizes == 0) & pairable_unit[ratings.unit]).sum()), within.astype(np.int64),
        {size: (vals, weights[start:start + vals.shape[0]].astype(np.int64))
         for size, (vals, start) in by_size.items()},
        np.bincount(ratings.indices, minlength=n_names).astype(np.int64),
        hits.astype(np.int64), np.bincount(m_unit, minlength=m).astype(np.int64))


@dataclass(frozen=True)
class RatingCounts:
    """Every count of `rating_counts`, with the pair counts of each field and level."""

    types: TypeCounts | None  # None: no response type column
    sets: dict[tuple[str, int], SetCounts]
    pair_counts: dict[tuple[str, int], np.ndarray]

    def over_budget(self, n_boot: int, boot_budget: float) -> bool:
        """Whether no value-set alpha gets an interval (its resamples over the budget), as the
        figures made from these counts have none: from the ratings and units alone, so a
        whole study and one made from a change decide alike."""
        return n_boot > 0 and all((c.ratings + c.units) * n_boot > boot_budget
                                  for c in self.sets.values())

    def after(self, rows_before: pd.DataFrame, rows_now: pd.DataFrame,
              level_maps: Mapping[int, Mapping[str, str]]) -> RatingCounts:
        """These counts (of the rows before a change) made the counts of the rows now:
        `rows_before`, `rows_now`: every row of each changed conversation, before and now.
        Raises `Inconsistent` when they do not add up."""
        fields = sorted({f for f, _ in self.sets})
        levels = sorted({lv for _, lv in self.sets})
        minus = _counts_only(rows_before, level_maps, levels, fields, self.types is not None)
        plus = _counts_only(rows_now, level_maps, levels, fields, self.types is not None)
        types = None
        if self.types is not None and minus.types is not None and plus.types is not None:
            types = self.types.after(minus.types, plus.types)
        sets, hists = {}, {}
        for key, stored in self.sets.items():
            sets[key] = stored.after(minus.sets[key], plus.sets[key])
            hists[key] = _pair_counts(sets[key], self.pair_counts.get(key),
                                      (plus.ratings[key], minus.ratings[key]))
        return RatingCounts(types, sets, hists)


@dataclass(frozen=True)
class _Only:
    types: TypeCounts | None
    sets: dict[tuple[str, int], SetCounts]
    ratings: dict[tuple[str, int], SetRatings]


def _counts_only(annotations: pd.DataFrame, level_maps: Mapping[int, Mapping[str, str]],
                 levels: Sequence[int], fields: Sequence[str], with_types: bool,
                 keep_ratings: bool = True) -> _Only:
    """The counts of these rows without pair counts, and their ratings at each level if
    `keep_ratings` (a change's: the pair counts are made from them)."""
    sets, ratings = {}, {}
    for field in fields:
        leaf = set_ratings(annotations, field)
        for lv in levels:
            mapped = map_level(leaf, level_maps.get(lv))
            sets[(field, lv)] = set_counts(mapped)
            if keep_ratings:
                ratings[(field, lv)] = mapped
    types = type_counts(annotations) if with_types else None
    return _Only(types, sets, ratings)


def _pair_counts(counts: SetCounts, before: np.ndarray | None,
                 change: tuple[SetRatings, SetRatings] | None) -> np.ndarray:
    """The pair counts of `counts`' sets: made from the ones `before` and the change (its
    ratings now, and before) when there are many, else counted from the distinct sets."""
    if (before is not None and change is not None
            and counts.n_records >= pair_counting.MIN_RECORDS):
        made = pair_counting.counts_after_sets(before, pd.Index(counts.names), counts.sets, *change)
        if made is not None:
            return made
    return hist_of_sets(counts.sets, len(counts.names))


def rating_counts(annotations: pd.DataFrame, level_maps: Mapping[int, Mapping[str, str]],
                  levels: Sequence[int], fields: Sequence[str]) -> RatingCounts:
    """Every count of the study's annotations (a frame of every conversation's rows)."""
    fields = [f for f in fields if f in annotations.columns]
    only = _counts_only(annotations, level_maps, levels, fields,
                        RESPONSE_TYPE in annotations.columns, keep_ratings=False)
    return RatingCounts(only.types, only.sets,
                        {key: _pair_counts(c, None, None) for key, c in only.sets.items()})


# --- kept as Arrow tables beside the summary ----------------------------------------------------

FRAMES = ("rating_types", "rating_sets", "rating_values", "rating_hits", "rating_within",
          "rating_base", "rating_distinct", "rating_distinct_ids")


def as_frames(counts: RatingCounts) -> dict[str, pd.DataFrame]:
    """The counts as plain frames (int64 counts, names as strings), to be stored. Each set
    frame's rows are those of one (field, level) after another, in `rating_sets`' order,
    which its column `key` numbers."""
    types: list[tuple[str, str, str, str, int]] = []
    if counts.types is not None:
        t = counts.types
        types += [("every_label", "", "", _key(p), n) for p, n in t.every_label.items()]
        types += [("ordered", "", "", _key(p), n) for p, n in t.ordered.items()]
        types += [("outside", "", "", "", t.outside), ("unordered", "", "", "", t.unordered)]
        types += [("rater", name, "", "", n) for name, n in t.raters.items()]
        types += [("pair", a, b, _key(cell), int(table[cell]))
                  for (a, b), table in t.pairs.items() for cell in zip(*np.nonzero(table),
                                                                        strict=True)]
    sets = []
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in FRAMES[2:]}
    for key, ((field, level), c) in enumerate(counts.sets.items()):
        sets.append((field, level, c.units, c.ratings, c.pairable, c.n, c.empties))
        parts["rating_values"].append(pd.DataFrame({"key": key, "name": list(c.names),
                                                    "usage": c.usage}))
        for name, array in (("rating_hits", c.hits), ("rating_within", c.within),
                            ("rating_base", c.base)):
            where = np.nonzero(array)
            parts[name].append(pd.DataFrame({"key": key, **{f"k{i}": w for i, w in
                                                            enumerate(where)},
                                             "count": array[where]}))
        for size, (vals, weights) in sorted(c.sets.items()):
            parts["rating_distinct"].append(pd.DataFrame({
                "key": np.full(weights.size, key, np.int32),
                "size": np.full(weights.size, size, np.int32), "weight": weights}))
            # millions at the leaf level: ids alone, after one another as the sets above
            parts["rating_distinct_ids"].append(pd.DataFrame(
                {"id": vals.ravel().astype(np.int32)}))
    columns = {"rating_values": ["key", "name", "usage"],
               "rating_hits": ["key", "k0", "k1", "k2", "count"],
               "rating_within": ["key", "k0", "k1", "k2", "k3", "count"],
               "rating_base": ["key", "k0", "count"],
               "rating_distinct": ["key", "size", "weight"],
               "rating_distinct_ids": ["id"]}
    return {
        "rating_types": pd.DataFrame(types, columns=["kind", "a", "b", "key", "count"]),
        "rating_sets": pd.DataFrame(sets, columns=["field", "level", "units", "ratings",
                                                   "pairable", "n", "empties"]),
        **{name: (pd.concat(frames, ignore_index=True) if frames
                  else pd.DataFrame(columns=columns[name]))
           for name, frames in parts.items()},
    }


def _key(cells: Sequence[int]) -> str:
    return ",".join(str(int(x)) for x in cells)


def from_tables(tables: Mapping[str, pa.Table], pair_counts: Mapping[tuple[str, int], np.ndarray]
                ) -> RatingCounts:
    """`as_frames` read back (the Arrow tables stored); raises `Inconsistent` when a table is
    not of that shape."""
    try:
        return _from_tables(tables, pair_counts)
    except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException) as exc:
        raise Inconsistent(str(exc)) from exc


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    return {name: table.column(name).to_numpy(zero_copy_only=False)
            for name in table.column_names}


def _from_tables(tables: Mapping[str, pa.Table],
                 pair_counts: Mapping[tuple[str, int], np.ndarray]) -> RatingCounts:
    t = _columns(tables["rating_types"])
    types = None
    if t["kind"].size:
        parts: dict[str, dict] = {"every_label": {}, "ordered": {}, "rater": {}, "pair": {}}
        scalars = {"outside": 0, "unordered": 0}
        v = len(RESPONSE_TYPE_LABELS)
        for kind, a, b, key, n in zip(t["kind"], t["a"], t["b"], t["key"], t["count"],
                                      strict=True):
            if kind in scalars:
                scalars[kind] = int(n)
            elif kind == "rater":
                parts["rater"][str(a)] = int(n)
            elif kind == "pair":
                table = parts["pair"].setdefault((str(a), str(b)), np.zeros((v, v), np.int64))
                table[tuple(int(x) for x in key.split(","))] = int(n)
            else:
                parts[kind][tuple(int(x) for x in key.split(","))] = int(n)
        types = TypeCounts(parts["every_label"], parts["ordered"], scalars["outside"],
                           scalars["unordered"], parts["rater"], parts["pair"])
    sets: dict[tuple[str, int], SetCounts] = {}
    scal = _columns(tables["rating_sets"])
    parts = {name: _by_key(_columns(tables[name]), scal["field"].size) for name in FRAMES[2:-1]}
    flat = tables["rating_distinct_ids"].column("id").to_numpy().astype(np.int64)
    start = 0
    for key in range(scal["field"].size):
        values, h, w, b, distinct = (parts[name][key] for name in FRAMES[2:-1])
        names = tuple(str(n) for n in values["name"])
        m = 1 + int(max(h["k1"].max(initial=0), h["k2"].max(initial=0), w["k0"].max(initial=0),
                        b["k0"].max(initial=0)))
        s = 1 + int(max(w["k1"].max(initial=0), w["k2"].max(initial=0), w["k3"].max(initial=0)))
        hits = np.zeros((len(names), m, m), np.int64)
        within = np.zeros((m, s, s, s), np.int64)
        base = np.zeros(m, np.int64)
        hits[h["k0"], h["k1"], h["k2"]] = h["count"]
        within[w["k0"], w["k1"], w["k2"], w["k3"]] = w["count"]
        base[b["k0"]] = b["count"]
        by_size: Sets = {}
        for size in np.unique(distinct["size"]).tolist():
            weights = distinct["weight"][distinct["size"] == size]
            end = start + weights.size * size
            by_size[size] = (flat[start:end].reshape(weights.size, size), weights)
            start = end
        sets[(str(scal["field"][key]), int(scal["level"][key]))] = SetCounts(
            names, int(scal["units"][key]), int(scal["ratings"][key]),
            int(scal["pairable"][key]), int(scal["n"][key]), int(scal["empties"][key]), within,
            by_size, values["usage"].astype(np.int64), hits, base)
    if start != flat.size:
        raise ValueError("the distinct sets' ids do not add up")
    return RatingCounts(types, sets, dict(pair_counts))


def _by_key(columns: dict[str, np.ndarray], n_keys: int) -> list[dict[str, np.ndarray]]:
    """Each key's rows (`as_frames` writes them one key after another)."""
    keys = columns["key"].astype(np.int64)
    if (np.diff(keys) < 0).any():
        raise ValueError("rows not in the order of their keys")
    bounds = np.searchsorted(keys, np.arange(n_keys + 1))
    columns = {name: col if name == "name" else col.astype(np.int64)
               for name, col in columns.items() if name != "key"}
    return [{name: col[bounds[k]:bounds[k + 1]] for name, col in columns.items()}
            for k in range(n_keys)]
