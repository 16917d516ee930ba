"""Checks on the hand-written demo gold set, `gold/demo.jsonl`.

The taxonomy CSV is read directly with `csv` so these checks do not depend on
`annotator.taxonomy` (a separate module with its own tests).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from annotator.models import GoldRecord, ResponseType, Role, conversation_id

ROOT = Path(__file__).resolve().parents[1]
GOLD_FILE = ROOT / "gold" / "demo.jsonl"
TREE_CSV = ROOT / "annotator" / "data" / "values-in-the-wild" / "values_tree.csv"

ANNOTATORS = ["demo-a", "demo-b", "demo-c"]
TOP_CATEGORIES = {
    "Practical values",
    "Epistemic values",
    "Social values",
    "Protective values",
    "Personal values",
}
# Values annotators wrote themselves that are not in the released tree. They are kept on
# purpose (free values are flagged, never dropped); anything else outside the tree is a typo.
ALLOWED_FREE = {
    "religious respect",
    "responsible travel",
    "self-interest",
    "grief processing",
    "whistleblowing",
}


@pytest.fixture(scope="module")
def records() -> list[GoldRecord]:
    lines = GOLD_FILE.read_text(encoding="utf-8").splitlines()
    return [GoldRecord.model_validate_json(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def tree() -> dict[str, dict[str, str]]:
    with TREE_CSV.open(encoding="utf-8", newline="") as f:
        return {row["cluster_id"]: row for row in csv.DictReader(f)}


def top_category(tree: dict[str, dict[str, str]], name: str) -> str | None:
    """Walk parent_cluster_id up from a level-0 value to its level-3 category."""
    row = tree.get(name)
    if row is None or row["level"] != "0":
        return None
    while row["level"] != "3":
        row = tree[row["parent_cluster_id"]]
    return row["name"]


def test_every_line_is_a_gold_record() -> None:
    lines = [line for line in GOLD_FILE.read_text(encoding="utf-8").splitlines() if line]
    assert len(lines) >= 40
    for line in lines:
        GoldRecord.model_validate_json(line)


def test_ids_match_normalised_turns(records: list[GoldRecord]) -> None:
    for r in records:
        assert r.conversation_id == conversation_id(r.turns), r.conversation_id


def test_sorted_by_id_and_unique(records: list[GoldRecord]) -> None:
    ids = [r.conversation_id for r in records]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_source_is_demo(records: list[GoldRecord]) -> None:
    assert {r.source for r in records} == {"demo"}


def test_turns_alternate_starting_with_user(records: list[GoldRecord]) -> None:
    for r in records:
        assert 2 <= len(r.turns) <= 8, r.conversation_id
        expected = [Role.user if i % 2 == 0 else Role.assistant for i in range(len(r.turns))]
        assert [t.role for t in r.turns] == expected, r.conversation_id
        assert all(t.text.strip() for t in r.turns), r.conversation_id


def test_each_record_has_the_three_demo_annotators(records: list[GoldRecord]) -> None:
    for r in records:
        assert [a.annotator for a in r.annotations] == ANNOTATORS, r.conversation_id
        assert r.gold.from_annotations == ANNOTATORS, r.conversation_id
        assert r.gold.decided_by in {"majority", "maintainer"}
        assert r.gold.decided_at is not None and r.gold.decided_at.tzinfo is not None


def test_all_seven_response_types_in_gold(records: list[GoldRecord]) -> None:
    counts = Counter(r.gold.response_type for r in records)
    for rt in ResponseType:
        assert counts[rt] >= 3, f"{rt.value}: {counts[rt]}"


def test_every_label_is_complete(records: list[GoldRecord]) -> None:
    for r in records:
        for labels in [*r.annotations, r.gold]:
            assert labels.response_type is not None, r.conversation_id
            assert labels.subjective is not None, r.conversation_id
            assert len(set(labels.ai_values)) == len(labels.ai_values), r.conversation_id


def test_no_values_gold_has_no_human_values(records: list[GoldRecord]) -> None:
    # "no values" means the user expressed none, so gold cannot list any for the user.
    for r in records:
        if r.gold.response_type is ResponseType.no_values:
            assert r.gold.human_values == [], r.conversation_id


def test_gold_ai_values_resolve_or_are_allowed_free(
    records: list[GoldRecord], tree: dict[str, dict[str, str]]
) -> None:
    for r in records:
        for v in r.gold.ai_values:
            assert top_category(tree, v) is not None or v in ALLOWED_FREE, v


def test_all_values_resolve_or_are_allowed_free(
    records: list[GoldRecord], tree: dict[str, dict[str, str]]
) -> None:
    # Stricter than the gold check: annotators' and human values too, so a typo cannot hide.
    seen_free: set[str] = set()
    for r in records:
        for labels in [*r.annotations, r.gold]:
            for v in [*labels.ai_values, *labels.human_values]:
                if top_category(tree, v) is None:
                    assert v in ALLOWED_FREE, f"{r.conversation_id}: {v!r}"
                    seen_free.add(v)
    # Every allowed free value is really used, so the allow-list cannot grow stale.
    assert seen_free == ALLOWED_FREE


def test_gold_ai_values_cover_five_top_categories(
    records: list[GoldRecord], tree: dict[str, dict[str, str]]
) -> None:
    tops = {top_category(tree, v) for r in records for v in r.gold.ai_values}
    assert not TOP_CATEGORIES - tops, TOP_CATEGORIES - tops


def test_majority_decisions_follow_the_annotations(records: list[GoldRecord]) -> None:
    """Rule of the demo set: where decided_by is "majority", the response type and the
    subjective flag are the ones at least two annotators chose, and a value is in gold
    exactly when at least two annotators listed it. Maintainer decisions are for splits."""
    for r in records:
        anns = r.annotations
        rt_votes = Counter(a.response_type for a in anns)
        if r.gold.decided_by == "maintainer":
            continue
        assert rt_votes[r.gold.response_type] >= 2, r.conversation_id
        assert sum(a.subjective == r.gold.subjective for a in anns) >= 2, r.conversation_id
        for field in ("ai_values", "human_values"):
            votes = Counter(v for a in anns for v in getattr(a, field))
            backed = {v for v, n in votes.items() if n >= 2}
            assert set(getattr(r.gold, field)) == backed, (r.conversation_id, field)


def test_maintainer_decisions_resolve_real_splits(records: list[GoldRecord]) -> None:
    maintained = [r for r in records if r.gold.decided_by == "maintainer"]
    assert maintained, "the demo set should show at least one maintainer decision"
    for r in maintained:
        # A maintainer steps in only when no response type has a majority.
        rt_votes = Counter(a.response_type for a in r.annotations)
        assert max(rt_votes.values()) == 1, r.conversation_id


def test_annotators_disagree_realistically(records: list[GoldRecord]) -> None:
    # Demo data for agreement statistics is useless if annotators always agree or never do.
    unanimous = sum(len({a.response_type for a in r.annotations}) == 1 for r in records)
    assert 0.2 * len(records) < unanimous < 0.8 * len(records)
    one_not_subjective = sum(
        1 for r in records if r.gold.subjective and any(not a.subjective for a in r.annotations)
    )
    assert one_not_subjective >= 2


def test_no_obvious_personal_data(records: list[GoldRecord]) -> None:
    email = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
    long_number = re.compile(r"\+?\d[\d\s().-]{8,}\d")  # phone-like runs of 10+ digits
    for r in records:
        for t in r.turns:
            assert not email.search(t.text), r.conversation_id
            assert not long_number.search(t.text), r.conversation_id
