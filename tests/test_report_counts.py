"""The study's report from counts summed over conversations (`report_counts`): made from the
counts before a change, they are the counts of the labels after it, and the report from them
is the report computed whole; and the report does not depend on the order of the rows or of
the names in a row (what lets counts made at different times be added).

Unit tests on random label sets (hypothesis) with real taxonomy names, free values spelt in
several ways and hostile names: real report code, no fakes. The summary that keeps the counts
is tested end to end in `tests/test_frame_patch.py`.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.measure import findings, report_counts
from annotator.measure.report_counts import Inconsistent, ReportCounts

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
OPPOSING = ["dominance", "manipulation", "moon logic"]
# taxonomy values (one spelt two ways), opposing ones, a free value spelt three ways, and
# hostile names: a right-to-left override, a formula, markup, an empty name
NAMES = ["honesty", "Honesty", "wisdom", "self-trust", "agency", "dominance", "manipulation",
         "Moon Logic", "moon logic", "MOON  LOGIC", "x\u202eevil", "=cmd()", "<b>bold</b>", ""]
TYPES = ["strong support", "mild support", "neutral", "reframing", "mild resistance",
         "strong resistance", "no values", "made up", None]
TASKS = ["coding", "writing", "advice", "", None]
SOURCE = findings.ReportSource(kind=findings.SourceKind.gold, label="gold")


@st.composite
def label_row(draw: st.DrawFn, conversation: str) -> tuple:
    names = st.lists(st.sampled_from(NAMES), max_size=5)
    return (conversation, tuple(draw(names)), tuple(draw(names)), draw(st.sampled_from(TYPES)),
            draw(st.sampled_from([True, True, False, None])), draw(st.sampled_from(TASKS)))


@st.composite
def changes(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Labels before, labels after, and the conversations whose row changed (new, removed
    or relabelled)."""
    ids = [f"c{i:02d}" for i in range(draw(st.integers(0, 14)))]
    before = {c: draw(label_row(c)) for c in ids if draw(st.booleans()) or len(ids) < 3}
    after = dict(before)
    changed = draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    for c in changed:
        if draw(st.integers(0, 3)) == 0:
            after.pop(c, None)
        else:
            after[c] = draw(label_row(c))
    return _frame(before.values()), _frame(after.values()), changed


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame(sorted(rows), columns=findings.FRAME_COLUMNS)


def _of(frame: pd.DataFrame, conversations: list[str]) -> pd.DataFrame:
    return frame[frame["conversation_id"].isin(conversations)]


@SETTINGS
@given(changes())
def test_counts_made_from_a_change_are_the_counts_and_give_the_report_computed_whole(
        change) -> None:
    before, after, changed = change
    made = report_counts.report_counts(before, OPPOSING).after(
        report_counts.report_counts(_of(before, changed), OPPOSING),
        report_counts.report_counts(_of(after, changed), OPPOSING))
    whole = report_counts.report_counts(after, OPPOSING)
    pd.testing.assert_frame_equal(made.canonical(), whole.canonical())
    assert (findings.findings_from_counts(made, SOURCE, OPPOSING).model_dump(mode="json")
            == findings.findings_from_labels(after, SOURCE, OPPOSING).model_dump(mode="json"))


@SETTINGS
@given(changes(), st.randoms(use_true_random=False))
def test_the_report_does_not_depend_on_the_order_of_rows_or_names(change, random) -> None:
    """What lets counts made from different rows be added: the names the report gives, the
    order of each list in it, do not depend on which name the frame holds first."""
    _, after, _ = change
    rows = [list(row) for row in after.itertuples(index=False)]
    random.shuffle(rows)
    for row in rows:
        for field in (1, 2):
            row[field] = tuple(random.sample(row[field], len(row[field])))
    shuffled = pd.DataFrame(rows, columns=findings.FRAME_COLUMNS)
    assert (findings.findings_from_labels(shuffled, SOURCE, OPPOSING).model_dump(mode="json")
            == findings.findings_from_labels(after, SOURCE, OPPOSING).model_dump(mode="json"))


@SETTINGS
@given(changes())
def test_counts_stored_and_read_back_are_the_same_counts(change) -> None:
    import pyarrow as pa

    _, after, _ = change
    counts = report_counts.report_counts(after, OPPOSING)
    back = ReportCounts.from_table(pa.Table.from_pandas(counts.table, preserve_index=False))
    pd.testing.assert_frame_equal(back.canonical(), counts.canonical())


def test_counts_not_of_the_rows_before_are_refused() -> None:
    """Taking off rows the counts never held is refused, not a report with a negative."""
    frame = _frame([("c1", ("honesty",), (), "neutral", True, "coding")])
    other = _frame([("c2", ("wisdom", "dominance"), (), "neutral", True, "coding")])
    counts = report_counts.report_counts(frame, OPPOSING)
    with pytest.raises(Inconsistent):
        counts.after(report_counts.report_counts(other, OPPOSING), counts)
    flagged = report_counts.report_counts(other, OPPOSING)
    with pytest.raises(Inconsistent):  # added again: a conversation flagged twice
        flagged.after(report_counts.report_counts(other.iloc[:0], OPPOSING), flagged)


def test_a_free_value_is_shown_in_its_most_used_spelling_ties_by_name() -> None:
    rows = [("c1", ("moon logic",), (), "neutral", True, None),
            ("c2", ("Moon Logic",), (), "neutral", True, None),
            ("c3", ("Moon Logic",), ("MOON  LOGIC",), "neutral", True, None)]
    found = findings.findings_from_labels(_frame(rows), SOURCE, OPPOSING)
    (free,) = [s for s in found.level(0).rows if s.free]
    assert (free.name, free.conversations) == ("Moon Logic", 3)
    assert [f.opposing_values for f in found.flagged] == [["Moon Logic"]] * 3
    tie = findings.findings_from_labels(_frame(rows[:2]), SOURCE, OPPOSING)
    assert [s.name for s in tie.level(0).rows if s.free] == ["Moon Logic"]  # "M" < "m"
