"""The study's headline figures with named denominators and Wilson intervals, values by
response type, and the three surfaces that print them (`annotator report`, the app's Overview,
the dataset card) agreeing to the character.

Unit tests build one row per conversation by hand (no database); the agreement test uses a real
SQLite study, the real CLI, the real export and the real Overview (Streamlit's AppTest).
`statsmodels` is the oracle for the Wilson interval and the two-proportion z, in tests only.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint, proportions_ztest
from test_report_findings import build, four_values, open_overview, runner

from annotator.cli import app
from annotator.measure import findings
from annotator.measure.findings import FRAME_COLUMNS, ReportSource, SourceKind
from annotator.measure.response_types import by_response_type
from annotator.measure.shares import MIN_CONVERSATIONS, mean, share, wilson

# --- shares ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (2, 2), (0, 10), (8, 28), (8, 24), (3, 7),
                                 (50, 100), (999, 1000), (1, 308210)])
def test_wilson_matches_statsmodels(k, n) -> None:
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson(k, n) == pytest.approx((low, high), abs=1e-12)
    s = share(k, n, "gold conversations")
    assert (s.k, s.n, s.value) == (k, n, k / n)
    assert (s.low, s.high) == pytest.approx((low, high), abs=1e-12)


def test_a_share_names_its_denominator_or_says_too_few() -> None:
    s = share(8, 28, "subjective conversations", published_pct=28.2)
    low, high = proportion_confint(8, 28, method="wilson")
    assert s.text() == (f"{800 / 28:.1f}% [{100 * low:.1f}%-{100 * high:.1f}%] "
                        "(8 of 28 subjective conversations)")
    assert s.published_text() == "28.2%"
    # two positives out of two: no degenerate "100% [100%-100%]", but how few there are
    assert share(2, 2).text() == "too few conversations: 2"
    assert s.short() == s.text().removesuffix(" subjective conversations)") + ")"
    assert share(0, 0).text() == "too few conversations: 0" and share(0, 0).value is None
    assert share(MIN_CONVERSATIONS - 1, MIN_CONVERSATIONS - 1).note is not None
    assert share(MIN_CONVERSATIONS, MIN_CONVERSATIONS).note is None


def test_mean_interval_is_normal_approximation() -> None:
    values = [1.0, 2.0, 2.0, 3.0, 4.0, 6.0, 0.0, 2.0, 5.0, 5.0, 3.0]
    m = mean(values, "subjective conversations", published=4.0)
    sd = pd.Series(values).std()  # sample standard deviation
    half = 1.959963984540054 * sd / math.sqrt(len(values))
    assert m.value == pytest.approx(3.0)
    assert (m.low, m.high) == pytest.approx((3.0 - half, 3.0 + half))
    assert m.text().endswith("(mean over 11 subjective conversations)")
    assert m.published_text() == "4.0"


# --- values by response type, worked by hand -------------------------------------------------


def hand_layout() -> list[tuple[list[str], list[str], str, bool, int]]:
    """(AI values, user values, response type, subjective, how many such conversations).

    Base: 15 subjective conversations (the 16th is not). Mirrored: the 4 strong support, 1 of
    the 3 strong resistance, 1 of the 2 reframing. Resisting: 4 (3 strong, 1 mild); supporting:
    6 (4 strong, 2 mild). AI values held: a 9, b 8, c 5, d 4; together: (a, b) 6, (a, c) 2,
    (c, d) 3.
    """
    a, b, c, d = four_values()
    return [
        ([a, b], [a], "strong support", True, 4),
        ([a, c], [d], "mild support", True, 2),
        ([c, d], [b], "strong resistance", True, 2),
        ([c, d], [d], "strong resistance", True, 1),
        ([d], [b], "mild resistance", True, 1),
        ([b], [b], "reframing", True, 1),
        ([b], [c], "reframing", True, 1),
        ([a], [c], "neutral", True, 1),
        ([a, b], [], "no values", True, 2),
        ([a, b, c, d], [a], "strong resistance", False, 1),  # not subjective: counts nowhere
    ]


def hand_findings() -> findings.Findings:
    rows, i = [], 0
    for ai, human, rt, subjective, times in hand_layout():
        for _ in range(times):
            rows.append((f"c{i:02d}", tuple(ai), tuple(human), rt, subjective, None))
            i += 1
    frame = pd.DataFrame.from_records(rows, columns=FRAME_COLUMNS)
    return findings.findings_from_labels(
        frame, ReportSource(kind=SourceKind.gold, label="gold"), opposing=["dominance"])


def test_headline_figures_by_hand() -> None:
    f = hand_findings()
    rt = {r.response_type: r.share for r in f.response_types}
    assert (rt["strong support"].k, rt["strong support"].n) == (4, 15)
    assert rt["strong support"].denominator_name == findings.RT_DENOMINATOR
    assert rt["strong support"].published_pct == 28.2 and rt["neutral"].published_pct == 9.6
    assert (f.human_values_present.k, f.human_values_present.n) == (13, 15)
    assert f.human_values_present.published_pct == 64.3
    assert f.ai_values_per_conversation.value == pytest.approx(26 / 15)
    assert f.ai_values_per_conversation.published == 4.0
    assert (f.mirroring.share.k, f.mirroring.share.n) == (6, 13)
    assert (f.subjective_share.k, f.subjective_share.n) == (15, 16)
    texts = {h.figure: h.text for h in f.headline()}
    assert texts["user values present"] == share(13, 15, "subjective conversations").text()


def test_mirroring_per_response_type_by_hand() -> None:
    by_type = {m.response_type: m.share for m in hand_findings().by_response_type.mirroring}
    assert {t: (s.k, s.n) for t, s in by_type.items()} == {
        "support (strong + mild)": (4, 6), "strong support": (4, 4), "mild support": (0, 2),
        "neutral": (0, 1), "reframing": (1, 2), "mild resistance": (0, 1),
        "strong resistance": (1, 3)}
    assert by_type["support (strong + mild)"].published_pct == 20.1
    assert by_type["reframing"].published_pct == 15.3
    assert by_type["strong resistance"].published_pct == 1.2
    assert by_type["neutral"].published_text() == "not published"


def test_values_when_resisting_and_supporting_by_hand() -> None:
    a, b, c, d = four_values()
    stance = hand_findings().by_response_type.stance
    assert (stance.resisting_conversations, stance.supporting_conversations) == (4, 6)
    counts = {v.value: (v.resisting.k, v.supporting.k) for v in stance.values}
    assert counts == {a: (0, 6), b: (0, 4), c: (3, 2), d: (4, 0)}
    assert [v.value for v in stance.most_resisting] == [d, c]
    assert [v.value for v in stance.most_supporting] == [a, b]
    for v in stance.values:
        z, _ = proportions_ztest([v.resisting.k, v.supporting.k], [4, 6])
        assert v.z == pytest.approx(z)
    assert stance.note == "too few resisting conversations: 4"


def test_user_values_before_strong_resistance_by_hand() -> None:
    _, b, _, d = four_values()
    found = hand_findings().by_response_type
    assert found.strong_resistance_conversations == 3
    assert [(v.value, v.share.k, v.share.n) for v in found.before_strong_resistance] == [
        (b, 2, 3), (d, 1, 3)]
    assert (found.before_strong_resistance[0].share.text()
            == "too few strong-resistance conversations: 3")


def test_value_pairs_by_lift_by_hand() -> None:
    a, b, c, d = four_values()
    f = hand_findings().by_response_type
    assert [({p.a, p.b}, p.together) for p in f.pairs] == [({a, b}, 6)]  # 5+ together only
    # the same pairs with a lower floor: lift = n_ab N / (n_a n_b), N = 15, from the counts
    # of these 15 conversations' sets
    from collections import Counter
    from itertools import combinations

    names = [a, b, c, d]
    sets = [[0, 1]] * 4 + [[0, 2]] * 2 + [[2, 3]] * 3 + [[3]] + [[1]] * 2 + [[0]] + [[0, 1]] * 2
    held = Counter(names[k] for s in sets for k in s)
    together = Counter(pair for s in sets for pair in combinations([names[k] for k in s], 2))
    pairs = by_response_type(15, {"neutral": 15}, {}, {}, {}, held,
                             [(x, y, n) for (x, y), n in together.items()], min_pair=2).pairs
    assert [({p.a, p.b}, p.together, p.lift) for p in pairs] == [
        ({c, d}, 3, pytest.approx(3 * 15 / (5 * 4))),
        ({a, b}, 6, pytest.approx(6 * 15 / (9 * 8))),
        ({a, c}, 2, pytest.approx(2 * 15 / (9 * 5)))]


# --- one figure, one text, everywhere -------------------------------------------------------


def test_report_overview_and_card_print_the_same_figures(tmp_path) -> None:
    """`annotator report` (text and --json), the Overview and an export's dataset card on one
    study: the same headline figures, character for character, gold's response types out of
    the subjective conversations (8 of them), not every gold conversation (10)."""
    path, _ = build(tmp_path)
    result = runner.invoke(app, ["report", "--db", str(path), "--json"])
    assert result.exit_code == 0, result.output
    from_json = findings.Findings.model_validate(json.loads(result.output)).headline()
    strong = next(h for h in from_json if h.figure == "response type: strong support")
    assert strong.text == "too few subjective conversations with a response type: 8"
    rts = {r["response_type"]: r["share"] for r in json.loads(result.output)["response_types"]}
    assert (rts["strong support"]["k"], rts["strong support"]["n"]) == (4, 8)
    subjective = next(h for h in from_json if h.figure == "subjective")
    assert subjective.text.endswith("(8 of 10 conversations labelled subjective or not)")
    assert len(from_json) >= 15
    text = runner.invoke(app, ["report", "--db", str(path)])
    assert text.exit_code == 0, text.output
    for h in from_json:
        assert f"  {h.figure}: {h.text}; published: {h.published}" in text.output
    out = tmp_path / "card-export"
    exported = runner.invoke(app, ["export", str(out), "--format", "hf", "--db", str(path)])
    assert exported.exit_code == 0, exported.output
    card = (out / "README.md").read_text(encoding="utf-8")
    for h in from_json:
        assert f"| {h.figure} | {h.text} | {h.published} |" in card
    at = open_overview(path)
    shown = next(d.value for d in at.dataframe
                 if {"figure", "text", "published"} <= set(map(str, d.value.columns)))
    assert shown.to_dict("records") == [h.model_dump() for h in from_json]
    mirroring = next(d.value for d in at.dataframe
                     if {"response type", "mirroring"} <= set(map(str, d.value.columns)))
    assert [f"mirroring: {t}" for t in mirroring["response type"]] == [
        h.figure for h in from_json if h.figure.startswith("mirroring: ")]
    assert list(mirroring["mirroring"]) == [
        h.text for h in from_json if h.figure.startswith("mirroring: ")]
    # the Overview's response-type table too: gold's column is the report's text
    rt = next(d.value for d in at.dataframe if d.value.index.name == "response_type")
    for h in from_json:
        if h.figure.startswith("response type: "):
            assert rt.loc[h.figure.removeprefix("response type: "), "gold"] == h.text


# --- agreement tables: no degenerate per-value figures, no free value as a category ---------


def test_per_value_alpha_from_few_conversations_says_so_and_lists_no_free_category() -> None:
    """Unit test on a hand-made frame: 30 conversations rated by two annotators. "rare" is
    held in 2 of them (both agree: alpha would read 1.000 [1.000-1.000]); "free one" is not in
    the taxonomy and must not be listed as a top category, only counted."""
    import math

    from annotator.measure import agreement

    level_maps = {3: {"honesty": "cat-ethical", "clarity": "cat-practical",
                      "rare": "cat-epistemic"}}
    rows = []
    for i in range(30):
        values = ("honesty",) if i % 2 else ("clarity",)
        if i < 2:
            values = (*values, "rare")
        if i % 3 == 0:
            values = (*values, "free one")
        for who in ("a", "b"):
            mine = values if who == "a" or i % 5 else values[:1]
            rows.append((f"u{i}", who, mine))
    annotations = pd.DataFrame(rows, columns=["conversation_id", "annotator", "ai_values"])
    report = agreement.agreement_report(annotations, None, None, level_maps, levels=(0, 3),
                                        value_fields=("ai_values",), n_boot=20, top_k=10)
    per = {(r.level, r.value_name): r for r in report.rows if r.metric == "value_alpha"}
    rare = per[(0, "rare")]
    assert math.isnan(rare.value) and rare.low is None and rare.note == (
        "too few conversations: 2")
    assert not math.isnan(per[(0, "honesty")].value)  # 15 conversations: a figure
    assert {name for level, name in per if level == 3} == {
        "cat-ethical", "cat-practical", "cat-epistemic"}
    assert (0, "free one") in per  # a free value is still a value
    assert report.settings["free_values_not_listed"] == {"ai_values": {"3": 1}}


def test_agreement_cli_counts_free_values_apart_and_says_too_few(tmp_path) -> None:
    """The real CLI on a real study: the free value is counted at the top-category level, not
    listed as a category; per-value rows from under 10 conversations say how few."""
    path, _ = build(tmp_path, extractions=False)
    result = runner.invoke(app, ["agreement", "--db", str(path), "--level", "0",
                                 "--level", "3", "--boot", "20"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "ai_values L3: 1 free values (not in the taxonomy)" in result.output
    assert "too few conversations:" in result.output
    data = json.loads(runner.invoke(app, ["agreement", "--db", str(path), "--level", "3",
                                          "--boot", "0", "--json"]).output)
    listed = {r["value_name"] for r in data["rows"]
              if r["metric"] == "value_alpha" and r["level"] == 3}
    assert listed and "[b]odd[/b] value" not in listed
    few = [r for r in data["rows"] if r["metric"] == "value_alpha" and r["value"] is None]
    assert few and all(r["note"].startswith("too few conversations: ") and r["low"] is None
                       for r in few)


def test_value_and_cluster_shares_carry_their_wilson_interval() -> None:
    f = hand_findings()
    a = four_values()[0]
    row = next(s for s in f.level(0).rows if s.name == a)
    low, high = proportion_confint(9, 15, method="wilson")  # a: 9 of the 15 subjective
    assert (row.conversations, f.base_conversations) == (9, 15)
    assert (row.pct_convos_low, row.pct_convos_high) == pytest.approx((100 * low, 100 * high))
    assert row.interval_text() == f"{100 * low:.1f}%-{100 * high:.1f}%"
    for level in (1, 2, 3):
        for s in f.level(level).rows:
            low, high = proportion_confint(s.conversations, 15, method="wilson")
            assert s.pct_convos_low == pytest.approx(100 * low)
