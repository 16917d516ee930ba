"""Values as an export writes them: the name given, the taxonomy node it resolves to (None: a
free value), the node's top category and level-1 cluster; a proposal's also its evidence quote
and score. A study's values repeat (a few thousand names in millions of listings): an export
resolves each once (`functools.cache` of these) and its records share the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from annotator.datasets.records import ExportedValue
from annotator.models import ValueRef
from annotator.taxonomy import Node, load_taxonomy


def value_fields(node: Node | None, name: str) -> dict[str, Any]:
    """`ExportedValue`'s fields, in its order, of `name` resolved to `node`."""
    if node is None:
        return {"name": name, "node_id": None, "category": None, "cluster": None, "free": True}
    ancestors = load_taxonomy().ancestors(node)
    return {"name": node.name, "node_id": node.id, "category": ancestors[3].name,
            "cluster": ancestors[1].name, "free": False}


def exported_value(name: str) -> ExportedValue:
    """A gold label's value, resolved by its name."""
    return ExportedValue(**value_fields(load_taxonomy().resolve(name), name))


def exported_value_and_row(name: str) -> tuple[ExportedValue, dict[str, Any]]:
    """`exported_value` and the row it is written as (`model_dump(mode="json")`)."""
    value = exported_value(name)
    return value, value.model_dump(mode="json")


def proposal_fields(node_id: str | None, name: str) -> dict[str, Any]:
    """A proposed value's fields: the node the extraction stored, else (a node the tree no
    longer has, or none) its name resolved anew."""
    tree = load_taxonomy()
    node = (tree.get(node_id) if node_id else None) or tree.resolve(name)
    return value_fields(node, name)


def proposed_value(
    ref: ValueRef, fields: Callable[[str | None, str], dict[str, Any]] = proposal_fields,
) -> dict[str, Any]:
    """A value as `ProposalRecord` validates it into a `ProposedValue` (no model is made per
    value here). `fields`: `proposal_fields`, or a cache of it (each value resolved once)."""
    return {**fields(ref.node_id, ref.name), "evidence": ref.evidence, "score": ref.score}
