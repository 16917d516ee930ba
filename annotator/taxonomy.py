"""The released value tree: load it, look up and normalise names, ancestors per level, counts.

Nodes are keyed by `cluster_id`, never by name: names repeat (two level-1 clusters are both
"Environmental stewardship"; "Methodical rigor" is a level-1 and a level-2 cluster; 29 leaves
differ from another leaf only by a hyphen, e.g. "cost effectiveness" / "cost-effectiveness").
A level-0 node's id is its released name, so a value name that matches exactly is its own id.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from annotator import config
from annotator.models import ValueRef

ATTRIBUTION = (
    'Value taxonomy: dataset "Anthropic/values-in-the-wild" by Anthropic, released with '
    'Huang et al. (2025), "Values in the Wild: Discovering and Analyzing Values in Real-World '
    'Language Model Interactions". Licensed under CC BY 4.0 '
    "(https://creativecommons.org/licenses/by/4.0/)."
)

LEVELS: tuple[int, ...] = (0, 1, 2, 3)
LEAF_LEVEL = 0
TOP_LEVEL = 3
LEVEL_KINDS: dict[int, str] = {
    0: "values",
    1: "clusters (level 1)",
    2: "clusters (level 2)",
    3: "top categories",
}
# Short names of the five top categories, in the released order of frequency.
TOP_CATEGORIES: tuple[str, ...] = ("Practical", "Epistemic", "Social", "Protective", "Personal")

TREE_FILE = "values_tree.csv"
FREQUENCIES_FILE = "values_frequencies.csv"
_TREE_COLUMNS = {
    "cluster_id",
    "description",
    "name",
    "level",
    "parent_cluster_id",
    "pct_total_occurrences",
}
_TOP_SUFFIX = " values"


class TaxonomyError(ValueError):
    """The taxonomy files are missing or inconsistent."""


class Node(BaseModel):
    """One node of the tree. Identity is `id` (the released cluster_id)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    level: int
    parent_id: str | None = None
    description: str | None = None
    pct_total_occurrences: float | None = None
    pct_convos: float | None = None

    @property
    def short_name(self) -> str:
        """The top category's name without " values" ("Practical"); the name otherwise."""
        if self.level == TOP_LEVEL and self.name.endswith(_TOP_SUFFIX):
            return self.name[: -len(_TOP_SUFFIX)]
        return self.name


# --- name normalisation -------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_SEPARATORS = re.compile(r"[-_\u2010-\u2015]+")  # hyphen, underscore, unicode dashes
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
# Stripped from both ends only: quotes, brackets and sentence punctuation around a name.
_SURROUNDING = " \t\r\n\"'`.,;:!?()[]{}<>*\u00ab\u00bb"


def normalise(name: str) -> str:
    """Case-folded, whitespace-collapsed, surrounding quotes and punctuation stripped.

    Hyphens are kept here: the tree has leaves that differ only by a hyphen.
    """
    text = unicodedata.normalize("NFKC", name).translate(_QUOTES)
    text = _SPACES.sub(" ", text).strip(_SURROUNDING)
    return text.casefold()


def loose_key(name: str) -> str:
    """`normalise` plus hyphens and underscores read as spaces."""
    return _loosen(normalise(name))


def _loosen(normalised: str) -> str:
    return _SPACES.sub(" ", _SEPARATORS.sub(" ", normalised)).strip()


def _fold(loose: str) -> str:
    return " ".join(_fold_word(w) for w in loose.split())


def _fold_word(word: str) -> str:
    # A tiny stemmer for simple plurals: applied to both the tree and the query, so it only has
    # to map a singular and its plural to the same string, not to a real word
    # (boundaries/boundary -> "boundari", practices/practice -> "practic", needs/need -> "need").
    word = word.replace("'", "")
    if len(word) > 3 and not word.endswith(("ss", "us", "is")):
        if word.endswith("ies"):
            word = word[:-3] + "i"
        elif word.endswith(("sses", "ches", "shes", "xes", "zes")):
            word = word[:-2]
        elif word.endswith("s"):
            word = word[:-1]
    if len(word) > 3 and word.endswith("y"):
        word = word[:-1] + "i"
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def fold_key(name: str) -> str:
    """`loose_key` with simple plurals folded, word by word."""
    return _fold(loose_key(name))


_KEYS = (normalise, loose_key, fold_key)


def _all_keys(name: str) -> tuple[str, str, str]:
    """(normalise, loose_key, fold_key) of a name, each computed once."""
    normalised = normalise(name)
    loose = _loosen(normalised)
    return normalised, loose, _fold(loose)


# --- the tree -----------------------------------------------------------------------------------


class Taxonomy:
    """The loaded tree with its indexes. Build it with `load_taxonomy()`; treat it as read-only."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        self._nodes: dict[str, Node] = {}
        for node in nodes:
            if node.id in self._nodes:
                raise TaxonomyError(f"duplicate cluster_id {node.id!r}")
            self._nodes[node.id] = node
        self._children: dict[str, list[str]] = defaultdict(list)
        self._by_level: dict[int, list[Node]] = {level: [] for level in LEVELS}
        for node in self._nodes.values():
            self._check(node)
            self._by_level[node.level].append(node)
            if node.parent_id is not None:
                self._children[node.parent_id].append(node.id)
        self._lineage: dict[str, tuple[str, ...]] = {
            node_id: self._walk_up(node_id) for node_id in self._nodes
        }
        # Name indexes, one per strictness, per level: key -> node ids, most frequent first, so
        # an ambiguous key resolves to the most used of its nodes.
        ranked = sorted(self._nodes.values(), key=_frequency_order)
        self._index: list[dict[int, dict[str, list[str]]]] = [
            {level: {} for level in LEVELS} for _ in _KEYS
        ]
        for node in ranked:
            names = [node.name]
            if node.level == TOP_LEVEL:
                names.append(node.short_name)
            for name in names:
                for index, key in zip(self._index, _all_keys(name), strict=True):
                    bucket = index[node.level].setdefault(key, [])
                    if node.id not in bucket:
                        bucket.append(node.id)
        self._search_key_cache: dict[str, tuple[str, str, str, str]] | None = None
        self._level_maps: dict[int, dict[str, str]] = {}
        self._leaf_key_cache: dict[str, str] | None = None

    def _check(self, node: Node) -> None:
        if node.level not in LEVELS:
            raise TaxonomyError(f"{node.id!r}: level {node.level} is not one of {LEVELS}")
        if node.level == TOP_LEVEL:
            if node.parent_id is not None:
                raise TaxonomyError(f"{node.id!r}: a top category has a parent")
            return
        parent = self._nodes.get(node.parent_id or "")
        if parent is None:
            raise TaxonomyError(f"{node.id!r}: parent {node.parent_id!r} is not in the tree")
        if parent.level != node.level + 1:
            raise TaxonomyError(
                f"{node.id!r}: parent {parent.id!r} is at level {parent.level}, "
                f"expected {node.level + 1}"
            )

    def _walk_up(self, node_id: str) -> tuple[str, ...]:
        """Ids from this node up to its top category (index i = level node.level + i)."""
        chain = [node_id]
        while (parent := self._nodes[chain[-1]].parent_id) is not None:
            chain.append(parent)
        return tuple(chain)

    # lookups by id

    def get(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def nodes_at(self, level: int) -> list[Node]:
        """Nodes at a level, in file order."""
        return list(self._by_level[_check_level(level)])

    def counts(self) -> dict[int, int]:
        return {level: len(nodes) for level, nodes in self._by_level.items()}

    def children(self, node_id: str) -> list[Node]:
        return [self._nodes[c] for c in self._children.get(node_id, [])]

    def node(self, ref: str | Node) -> Node | None:
        """A node from a Node, a node id, or a value name (resolved to a leaf)."""
        if isinstance(ref, Node):
            return ref
        return self._nodes.get(ref) or self.resolve(ref)

    def ancestors(self, ref: str | Node) -> dict[int, Node]:
        """{level: node} from the node's own level up to 3. Raises KeyError if unknown."""
        node = self._require(ref)
        return {
            node.level + i: self._nodes[node_id] for i, node_id in enumerate(self._lineage[node.id])
        }

    def ancestor(self, ref: str | Node, level: int) -> Node | None:
        """The node's ancestor at `level` (itself at its own level); None below its level."""
        _check_level(level)
        node = self._require(ref)
        if level < node.level:
            return None
        return self._nodes[self._lineage[node.id][level - node.level]]

    def path(self, ref: str | Node) -> list[str]:
        """Names from the top category down to the node, e.g. ["Practical values", ..., "x"]."""
        return [self._nodes[i].name for i in reversed(self._lineage[self._require(ref).id])]

    def path_ids(self, ref: str | Node) -> list[str]:
        return list(reversed(self._lineage[self._require(ref).id]))

    def by_path(self, names: Sequence[str]) -> Node | None:
        """The node at a path of names from the top (as Label Studio's Taxonomy reports it).

        A path disambiguates twin names; each step matches exactly first, then normalised.
        """
        if not names:
            return None
        candidates = self.resolve_all(names[0], TOP_LEVEL)
        node = candidates[0] if candidates else None
        for name in names[1:]:
            if node is None:
                return None
            node = self._child_named(node.id, name)
        return node

    def _child_named(self, parent_id: str, name: str) -> Node | None:
        kids = self.children(parent_id)
        for key in (str.strip, *_KEYS):
            wanted = key(name)
            hits = [k for k in kids if key(k.name) == wanted]
            if hits:
                return min(hits, key=_frequency_order)
        return None

    def top_categories(self) -> dict[str, Node]:
        """{"Practical": node, ...} in the released order of frequency."""
        tops = sorted(self._by_level[TOP_LEVEL], key=_frequency_order)
        return {node.short_name: node for node in tops}

    # name resolution

    def resolve(self, name: str) -> Node | None:
        """The level-0 value a free-text name stands for, or None (a free value).

        Tried in order, first hit wins: the name with case, spacing and surrounding quotes or
        punctuation ignored; then hyphens/underscores also read as spaces; then simple plurals
        folded too. Where a step matches several leaves (e.g. "cost_effectiveness" fits both
        hyphen twins), an exact spelling wins, else the most frequent leaf.
        """
        hits = self.resolve_all(name, LEAF_LEVEL)
        return hits[0] if hits else None

    def resolve_all(self, name: str, level: int | None = None) -> list[Node]:
        """Every node at `level` (all levels if None) whose name matches, best first.

        Uses the first matching step of `resolve`'s order; ties go to the more frequent node.
        Top categories also match by short name ("Practical").
        """
        levels = LEVELS if level is None else (_check_level(level),)
        if not isinstance(name, str) or not name.strip():
            return []
        for wanted, index in zip(_all_keys(name), self._index, strict=True):
            if not wanted:
                return []
            ids = [i for lvl in levels for i in index[lvl].get(wanted, [])]
            if ids:
                nodes = [self._nodes[i] for i in ids]
                # an exact spelling beats its twins; then frequency
                nodes.sort(key=lambda n: (n.name != name.strip(), _frequency_order(n)))
                return nodes
        return []

    def value_ref(
        self, name: str, evidence: str | None = None, score: float | None = None
    ) -> ValueRef:
        """A labelled value: resolved to a leaf where possible, kept as a free value otherwise."""
        node = self.resolve(name)
        if node is None:
            return ValueRef(name=name, evidence=evidence, score=score)
        return ValueRef(
            name=name, node_id=node.id, path=self.path(node), evidence=evidence, score=score
        )

    def level_key(self, name_or_node_id: str, level: int) -> str | None:
        """Id of the ancestor at `level` of a node id or a (resolved) value name.

        None for a free value, and for a cluster id asked about a level below its own.
        """
        _check_level(level)
        node = self.node(name_or_node_id)
        if node is None or level < node.level:
            return None
        return self._lineage[node.id][level - node.level]

    def level_map(self, level: int) -> dict[str, str]:
        """{leaf id, normalise(name), loose_key(name) -> ancestor id at `level`} for every leaf.

        Agrees with `level_key` on every key; a miss (a spelling it lacks) goes to `level_key`.
        """
        level = _check_level(level)
        if level not in self._level_maps:
            self._level_maps[level] = {
                key: self._lineage[leaf_id][level] for key, leaf_id in self._leaf_keys().items()
            }
        return self._level_maps[level]

    def _leaf_keys(self) -> dict[str, str]:
        # Built through `node` itself, so a key whose spelling is shared by hyphen twins maps to
        # the same leaf that `level_key` would pick.
        if self._leaf_key_cache is None:
            keys = {
                k
                for leaf in self._by_level[LEAF_LEVEL]
                for k in (leaf.id, normalise(leaf.name), loose_key(leaf.name))
            }
            found = {k: self.node(k) for k in keys}
            self._leaf_key_cache = {k: n.id for k, n in found.items() if n is not None}
        return self._leaf_key_cache

    def level_keys(self, names: Iterable[str], level: int) -> list[str | None]:
        """`level_key` for many names: the map first, the slow path only for misses."""
        mapping = self.level_map(level)
        misses: dict[str, str | None] = {}
        out: list[str | None] = []
        for name in names:
            hit = mapping.get(name)
            if hit is None:
                if name not in misses:
                    misses[name] = self.level_key(name, level)
                hit = misses[name]
            out.append(hit)
        return out

    # search and listings

    def search(
        self, query: str, limit: int = 20, level: int | None = None, descriptions: bool = False
    ) -> list[Node]:
        """Nodes whose name (or description) matches, best first.

        Rank: exact name, same name but for plurals, name prefix, a word of the name starts with
        it, substring, substring with plurals folded, then (if `descriptions`) description
        substring; ties by frequency (most frequent first).
        """
        q = loose_key(query)
        if not q or limit <= 0:
            return []
        qf = fold_key(query)
        levels = LEVELS if level is None else (_check_level(level),)
        search_keys = self._search_keys()
        scored: list[tuple[int, Node]] = []
        for lvl in levels:
            for node in self._by_level[lvl]:
                name, short, folded, description = search_keys[node.id]
                if q in (name, short):
                    rank = 0
                elif qf == folded:
                    rank = 1
                elif name.startswith(q) or short.startswith(q):
                    rank = 2
                elif f" {q}" in f" {name}":
                    rank = 3
                elif q in name:
                    rank = 4
                elif qf and qf in folded:
                    rank = 5
                elif descriptions and q in description:
                    rank = 6
                else:
                    continue
                scored.append((rank, node))
        scored.sort(key=lambda pair: (pair[0], _frequency_order(pair[1])))
        return [node for _, node in scored[:limit]]

    def _search_keys(self) -> dict[str, tuple[str, str, str, str]]:
        # Built on first search, not at load: normalising 300 descriptions is most of the cost.
        if self._search_key_cache is None:
            self._search_key_cache = {}
            for node in self._nodes.values():
                _, loose, folded = _all_keys(node.name)
                self._search_key_cache[node.id] = (
                    loose,
                    loose_key(node.short_name),
                    folded,
                    loose_key(node.description or ""),
                )
        return self._search_key_cache

    def top_values(self, n: int = 20) -> list[Node]:
        """The `n` most frequent leaves by released pct_convos."""
        return sorted(self._by_level[LEAF_LEVEL], key=_frequency_order)[: max(n, 0)]

    def summary(self) -> list[dict[str, object]]:
        """Plain rows for `annotator taxonomy`: one per level, with its most frequent names."""
        rows: list[dict[str, object]] = []
        for level in LEVELS:
            nodes = sorted(self._by_level[level], key=_frequency_order)
            shown = nodes if level == TOP_LEVEL else nodes[:5]
            rows.append(
                {
                    "level": level,
                    "kind": LEVEL_KINDS[level],
                    "count": len(nodes),
                    "most_frequent": ", ".join(n.name for n in shown),
                }
            )
        return rows

    def _require(self, ref: str | Node) -> Node:
        node = self.node(ref)
        if node is None:
            raise KeyError(ref)
        return node


def _frequency_order(node: Node) -> tuple[float, float, int, str, str]:
    """Sort key: most frequent first (share of occurrences, then of conversations), stable."""
    return (
        -(node.pct_total_occurrences or 0.0),
        -(node.pct_convos or 0.0),
        node.level,
        node.name,
        node.id,
    )


def _check_level(level: int) -> int:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return level


# --- loading ------------------------------------------------------------------------------------


def _float(text: str | None) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def read_taxonomy(directory: Path) -> Taxonomy:
    """Read and check the released files in `directory` (uncached; see `load_taxonomy`)."""
    tree_path = directory / TREE_FILE
    freq_path = directory / FREQUENCIES_FILE
    try:
        with tree_path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = _TREE_COLUMNS - set(reader.fieldnames or [])
            if missing:
                raise TaxonomyError(f"{tree_path}: missing columns {sorted(missing)}")
            rows = list(reader)
        with freq_path.open(encoding="utf-8", newline="") as fh:
            frequencies = {row["value"]: _float(row["pct_convos"]) for row in csv.DictReader(fh)}
    except OSError as exc:
        raise TaxonomyError(f"cannot read the taxonomy in {directory}: {exc}") from exc
    except (KeyError, ValueError) as exc:
        raise TaxonomyError(f"malformed taxonomy file in {directory}: {exc}") from exc
    nodes = []
    for line, row in enumerate(rows, start=2):
        try:
            level = int(row["level"])
            nodes.append(
                Node(
                    id=row["cluster_id"],
                    name=row["name"],
                    level=level,
                    parent_id=row["parent_cluster_id"] or None,
                    description=row["description"] or None,
                    pct_total_occurrences=_float(row["pct_total_occurrences"]),
                    pct_convos=frequencies.get(row["cluster_id"]) if level == 0 else None,
                )
            )
        except ValueError as exc:
            raise TaxonomyError(f"{tree_path}:{line}: {exc}") from exc
    return Taxonomy(nodes)


@cache
def _load(directory: Path) -> Taxonomy:
    return read_taxonomy(directory)


def load_taxonomy(directory: Path | str | None = None) -> Taxonomy:
    """The tree shipped with the package (or in `directory`), read once per process."""
    return _load_named(str(directory or config.TAXONOMY_DIR))


@cache
def _load_named(directory: str) -> Taxonomy:
    # Keyed by the folder as named, before `resolve`: callers ask once per value (an export of
    # 300,000 conversations a million times), and resolving a path costs a system call for
    # each of its parts. Two names of one folder still share one tree (`_load`).
    return _load(Path(directory).resolve())


# --- module-level shortcuts on the shipped tree --------------------------------------------------


def get(node_id: str) -> Node | None:
    return load_taxonomy().get(node_id)


def resolve(name: str) -> Node | None:
    return load_taxonomy().resolve(name)


def resolve_all(name: str, level: int | None = None) -> list[Node]:
    return load_taxonomy().resolve_all(name, level)


def value_ref(name: str, evidence: str | None = None, score: float | None = None) -> ValueRef:
    return load_taxonomy().value_ref(name, evidence=evidence, score=score)


def level_key(name_or_node_id: str, level: int) -> str | None:
    return load_taxonomy().level_key(name_or_node_id, level)


def level_map(level: int) -> dict[str, str]:
    return load_taxonomy().level_map(level)


def level_keys(names: Iterable[str], level: int) -> list[str | None]:
    return load_taxonomy().level_keys(names, level)


def ancestors(ref: str | Node) -> dict[int, Node]:
    return load_taxonomy().ancestors(ref)


def path(ref: str | Node) -> list[str]:
    return load_taxonomy().path(ref)


def by_path(names: Sequence[str]) -> Node | None:
    return load_taxonomy().by_path(names)


def children(node_id: str) -> list[Node]:
    return load_taxonomy().children(node_id)


def nodes_at(level: int) -> list[Node]:
    return load_taxonomy().nodes_at(level)


def counts() -> dict[int, int]:
    return load_taxonomy().counts()


def top_categories() -> dict[str, Node]:
    return load_taxonomy().top_categories()


def top_values(n: int = 20) -> list[Node]:
    return load_taxonomy().top_values(n)


def search(
    query: str, limit: int = 20, level: int | None = None, descriptions: bool = False
) -> list[Node]:
    return load_taxonomy().search(query, limit=limit, level=level, descriptions=descriptions)


def summary() -> list[dict[str, object]]:
    return load_taxonomy().summary()
