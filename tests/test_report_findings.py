"""`annotator report` and the Overview's report: a small study whose answers are worked out by
hand (percentages, Spearman against a known ordering, mirroring, a flagged conversation), for
each source of labels; the CLI's text and JSON; the errors that name the real cause."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pandas as pd
import pytest
from conftest import make_study
from scipy.stats import spearmanr
from streamlit.testing.v1 import AppTest
from test_app_study import APP
from typer.testing import CliRunner

from annotator import config
from annotator import db as db_module
from annotator.app import summary_cache
from annotator.cli import app
from annotator.datasets.gold import adjudicate, majority_label
from annotator.measure import findings
from annotator.measure.frames import PUBLISHED_STUDY
from annotator.models import (
    Annotation,
    AnnotatorLabels,
    Extraction,
    GoldLabel,
    Labels,
    PromptVersion,
    ValueRef,
    utc_now,
)
from annotator.taxonomy import load_taxonomy

runner = CliRunner()
PROMPT = PromptVersion(id="f00dfeed12345678", name="values", version="v9", text="x")
FREE = "[b]odd[/b] value"  # outside the taxonomy, and markup if printed carelessly
OPPOSING = "dominance"


def four_values() -> list[str]:
    """Four values of the released tree with distinct pct_convos, most frequent first, none of
    them an opposing value."""
    tree = load_taxonomy()
    picked: list[str] = []
    seen: set[float] = set()
    for node in tree.top_values(60)[10:]:
        if node.pct_convos not in seen and node.name not in config.DEFAULT_OPPOSING_VALUES:
            picked.append(node.name)
            seen.add(node.pct_convos)
        if len(picked) == 4:
            break
    return sorted(picked, key=lambda n: -(tree.get(n).pct_convos or 0.0))


def gold_layout() -> list[dict]:
    """Ten conversations: 0-7 subjective (the base of every share), 8-9 not.

    Values in the base: A in 4 of 8 (50%), B in 3 (37.5%), C in 2 (25%), D in 1 (12.5%), the
    free value in 1; A in the two non-subjective ones must not count. The user states values in
    0, 1, 2 and 4; the AI holds one of them in 0 (A, spelt in capitals) and 1 (B): mirroring 2
    of 4. Conversation 8 holds "dominance": flagged, though not subjective.
    """
    a, b, c, d = four_values()
    ss, rf, ne, sr, nv = ("strong support", "reframing", "neutral", "strong resistance",
                          "no values")
    return [
        {"ai": [a, b, c, d], "human": [a.upper()], "type": ss, "subjective": True},
        {"ai": [a, b, c], "human": [b], "type": ss, "subjective": True},
        {"ai": [a, b, FREE], "human": [d], "type": ss, "subjective": True},
        {"ai": [a], "human": [], "type": ss, "subjective": True},
        {"ai": [], "human": [a], "type": rf, "subjective": True},
        {"ai": [], "human": [], "type": rf, "subjective": True},
        {"ai": [], "human": [], "type": ne, "subjective": True},
        {"ai": [], "human": [], "type": sr, "subjective": True},
        {"ai": [a, OPPOSING], "human": [], "type": nv, "subjective": False},
        {"ai": [a], "human": [], "type": nv, "subjective": False},
    ]


def build(tmp_path, gold: bool = True, annotations: bool = True, extractions: bool = True):
    """The study: gold as laid out; annotations whose majority is that gold (a third annotator
    adds noise) except conversation 9, split; a prompt version whose values rank D > C > B > A
    (the reverse of the released order); a Label Studio task for the flagged conversation."""
    path = tmp_path / "study.db"
    convs = make_study(path, n=10)
    layout = gold_layout()
    a, b, c, d = four_values()
    database = db_module.open_db(path)
    with database.conn:
        for conv, row in zip(convs, layout, strict=True):
            labels = Labels(ai_values=row["ai"], human_values=row["human"],
                            response_type=row["type"], subjective=row["subjective"])
            if gold:
                database["gold"].insert(db_module.gold_to_row(conv.id, GoldLabel(
                    **labels.model_dump(), decided_by="person:carol", decided_at=utc_now())))
            if annotations:
                noise = Labels(ai_values=[*row["ai"], "curiosity"], human_values=[],
                               response_type="mild support", subjective=row["subjective"])
                split = conv.id == convs[9].id
                for who, given in (("ann", labels), ("bob", noise if split else labels),
                                   ("cat", noise)):
                    if split and who == "cat":
                        continue
                    database["annotations"].insert(db_module.annotation_to_row(Annotation(
                        id=f"import:t:{conv.id}:{who}", conversation_id=conv.id, annotator=who,
                        labels=given, source="import:t")))
        if extractions:
            reverse = [[d, c, b, a], [d, c, b], [d, c], [d], [], [], [], [], [], []]
            database["prompts"].insert(db_module.prompt_to_row(PROMPT))
            for conv, values, row in zip(convs, reverse, layout, strict=True):
                database["extractions"].insert(db_module.extraction_to_row(Extraction(
                    conversation_id=conv.id, prompt_id=PROMPT.id, model="claude-test",
                    extractor="anthropic", subjective=row["subjective"],
                    response_type=row["type"], ai_values=[ValueRef(name=v) for v in values],
                )))
        database["tasks"].insert({"server": "https://ls.example/", "conversation_id": convs[8].id,
                                  "project_id": 5, "task_id": 9, "pushed_at": "2026-01-01",
                                  "prompt_versions": "[]", "blind": 1, "prefilled_by": None})
    database.conn.close()
    return path, convs


def report_of(path, source=None, opposing=None) -> findings.Findings:
    database = db_module.open_db(path)
    try:
        return findings.study_findings(database, source, opposing, db_path=path)
    finally:
        database.conn.close()


def by_name(shares) -> dict[str, findings.Share]:
    return {s.name: s for s in shares}


def expected_levels(layout: list[dict]) -> dict[int, dict[str, int]]:
    """Per level, base conversations under each node, straight from the tree's ancestors."""
    tree = load_taxonomy()
    out: dict[int, dict[str, int]] = {level: {} for level in (1, 2, 3)}
    for row in layout:
        if not row["subjective"]:
            continue
        for level in (1, 2, 3):
            nodes = {tree.ancestor(tree.resolve(v), level) for v in row["ai"] if tree.resolve(v)}
            for node in nodes:
                name = node.short_name if level == 3 else node.name
                out[level][name] = out[level].get(name, 0) + 1
    return out


# --- the library, per source ----------------------------------------------------------------


def test_gold_report_has_the_hand_worked_answers(tmp_path) -> None:
    path, convs = build(tmp_path)
    a, b, c, d = four_values()
    found = report_of(path)
    assert found.source.kind is findings.SourceKind.gold and found.source.chosen_by_default
    assert found.conversations == 10 and found.base_conversations == 8
    assert (found.subjective, found.subjective_labelled, found.subjective_pct) == (8, 10, 80.0)
    assert found.published_subjective_pct == pytest.approx(100 * 308_210 / 700_000)

    values = by_name(found.level(0).rows)
    assert {n: values[n].pct_convos for n in (a, b, c, d)} == {a: 50.0, b: 37.5, c: 25.0,
                                                               d: 12.5}
    assert values[a].conversations == 4  # not 6: the non-subjective ones do not count
    tree = load_taxonomy()
    assert values[a].released_pct_convos == tree.get(a).pct_convos
    assert values[FREE].free and values[FREE].pct_convos == 12.5
    assert values[FREE].released_pct_convos is None and found.free_values == 1
    assert OPPOSING not in values  # it is only in a non-subjective conversation
    # same order as the released frequencies: rho 1 over the four values in the tree
    assert found.level(0).correlation.rho == pytest.approx(1.0)
    assert found.level(0).correlation.n == 4

    layout = gold_layout()
    for level, counts in expected_levels(layout).items():
        shares = found.level(level)
        got = {s.name: s.conversations for s in shares.rows}
        assert got == counts, level
        total = sum(s.occurrences for s in shares.rows)
        assert sum(s.pct_occurrences for s in shares.rows) == pytest.approx(100.0)
        assert all(s.pct_convos == pytest.approx(100 * s.conversations / 8) for s in shares.rows)
        assert all(s.pct_occurrences == pytest.approx(100 * s.occurrences / total)
                   for s in shares.rows)
    tops = load_taxonomy().top_categories()
    for share in found.level(3).rows:
        assert share.released_pct_occurrences == tops[share.name].pct_total_occurrences

    rt = {r.response_type: r for r in found.response_types}
    assert found.response_types_labelled == 8
    assert (rt["strong support"].pct, rt["reframing"].pct, rt["neutral"].pct,
            rt["strong resistance"].pct, rt["no values"].pct) == (50.0, 25.0, 12.5, 12.5, 0.0)
    published = PUBLISHED_STUDY["response_type_pct"]
    assert rt["strong support"].published_pct == published["strong support"] == 28.2
    assert rt["reframing"].published_pct == 6.6 and rt["strong resistance"].published_pct == 3.0
    assert rt["neutral"].published_pct == 9.6 and rt["mild resistance"].published_pct == 2.4
    assert not rt["no values"].published and rt["no values"].published_pct is None

    m = found.mirroring
    assert (m.conversations_with_human_values, m.mirrored, m.pct) == (4, 2, 50.0)
    per_value = {v.value: (v.conversations, v.mirrored) for v in m.per_value}
    assert per_value == {a: (3, 1), b: (3, 1)}

    assert [f.conversation_id for f in found.flagged] == [convs[8].id]
    flagged = found.flagged[0]
    assert flagged.opposing_values == [OPPOSING] and flagged.response_type == "no values"
    assert flagged.show_command == f"annotator show {convs[8].id}"
    assert flagged.app_link == f"disagreements?c={convs[8].id}"
    assert flagged.task_urls == ["https://ls.example/projects/5/data?task=9"]
    assert found.opposing_values == list(config.DEFAULT_OPPOSING_VALUES)
    assert found.opposing_not_in_taxonomy == []


def test_default_opposing_values_are_released_value_names() -> None:
    tree = load_taxonomy()
    for name in config.DEFAULT_OPPOSING_VALUES:
        node = tree.get(name)
        assert node is not None and node.level == 0 and node.name == name


def test_annotations_combine_by_majority_and_name_the_split(tmp_path) -> None:
    path, convs = build(tmp_path)
    a, b, c, d = four_values()
    found = report_of(path, "annotations")
    assert found.source.kind is findings.SourceKind.annotations
    assert not found.source.chosen_by_default
    assert found.conversations == 9 and found.left_out == 1
    assert "1 split" in found.left_out_reason
    values = by_name(found.level(0).rows)
    assert {n: values[n].pct_convos for n in (a, b, c, d)} == {a: 50.0, b: 37.5, c: 25.0,
                                                               d: 12.5}
    assert "curiosity" not in values  # one annotator of three: no majority
    assert found.mirroring.pct == 50.0
    assert [f.conversation_id for f in found.flagged] == [convs[8].id]


def test_prompt_source_ranks_against_the_released_order(tmp_path) -> None:
    path, _ = build(tmp_path)
    a, b, c, d = four_values()
    found = report_of(path, PROMPT.id[:6])  # a prefix, resolved by the one prompt resolver
    assert found.source.kind is findings.SourceKind.prompt
    assert found.source.prompt_id == PROMPT.id and "values/v9" in found.source.label
    values = by_name(found.level(0).rows)
    assert {n: values[n].pct_convos for n in (a, b, c, d)} == {a: 12.5, b: 25.0, c: 37.5,
                                                               d: 50.0}
    assert found.level(0).correlation.rho == pytest.approx(-1.0)
    assert found.mirroring.conversations_with_human_values == 0
    assert found.mirroring.pct is None and found.flagged == []


def test_opposing_values_are_configurable(tmp_path, monkeypatch) -> None:
    path, convs = build(tmp_path)
    a, *_ = four_values()
    found = report_of(path, opposing=[a, "Not A Value"])
    assert [f.conversation_id for f in found.flagged] == sorted(
        c.id for c in [*convs[:4], convs[8], convs[9]])
    assert found.opposing_not_in_taxonomy == ["Not A Value"]
    monkeypatch.setenv("ANNOTATOR_OPPOSING_VALUES", f" {FREE} , ")
    found = report_of(path)
    assert found.opposing_values == [FREE] and found.opposing_not_in_taxonomy == [FREE]
    assert [f.conversation_id for f in found.flagged] == [convs[2].id]


def test_default_source_falls_back_in_order(tmp_path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "p").mkdir()
    gold_path, _ = build(tmp_path / "g")
    ann_path, _ = build(tmp_path / "a", gold=False)
    prompt_path, _ = build(tmp_path / "p", gold=False, annotations=False)
    assert report_of(gold_path).source.kind is findings.SourceKind.gold
    got = report_of(ann_path).source
    assert got.kind is findings.SourceKind.annotations and "no gold" in got.why
    got = report_of(prompt_path).source
    assert got.kind is findings.SourceKind.prompt and got.prompt_id == PROMPT.id


def test_combined_annotations_equal_majority_label() -> None:
    """The vectorised combination decides exactly what `gold.majority_label` decides."""
    rng = random.Random(5)
    names = ["honesty", "care", "clarity", "Honesty"]
    types = ["strong support", "neutral", "reframing"]
    rows = []
    for c in range(400):
        for who in range(rng.randint(1, 5)):
            incomplete = rng.random() < 0.1
            rows.append((f"c{c:03d}", f"p{who}",
                         None if incomplete and rng.random() < 0.5 else rng.choice(types),
                         tuple(rng.choice(names) for _ in range(rng.randint(0, 3))),
                         tuple(rng.choice(names) for _ in range(rng.randint(0, 2))),
                         None if incomplete else rng.choice([True, False])))
    frame = pd.DataFrame.from_records(rows, columns=["conversation_id", "annotator",
                                                     "response_type", "ai_values",
                                                     "human_values", "subjective"])
    got, left_out, _ = findings.combine_annotations(frame)
    got = got.set_index("conversation_id")
    decided = 0
    for cid, group in frame.groupby("conversation_id"):
        complete = group.dropna(subset=["response_type", "subjective"])
        label = majority_label([
            AnnotatorLabels(annotator=r.annotator, ai_values=list(r.ai_values),
                            human_values=list(r.human_values), response_type=r.response_type,
                            subjective=r.subjective)
            for r in complete.itertuples()
        ]) if len(complete) else None
        if label is None:
            assert cid not in got.index
            continue
        decided += 1
        row = got.loc[cid]
        assert (sorted(row.ai_values), sorted(row.human_values), row.response_type,
                row.subjective) == (sorted(label.ai_values), sorted(label.human_values),
                                    label.response_type, label.subjective)
    assert decided == len(got) and left_out == frame["conversation_id"].nunique() - decided
    assert 50 < decided < 400  # both outcomes were exercised


def test_spearman_edge_cases() -> None:
    assert findings.spearman([1, 2], [2, 1]).rho is None
    assert "at least" in findings.spearman([1, 2], [2, 1]).note
    flat = findings.spearman([1, 1, 1], [1, 2, 3])
    assert flat.rho is None and flat.n == 3
    tied = findings.spearman([3, 2, 2, 1, 5], [40, 30, 20, 10, 35])
    expected = spearmanr([3, 2, 2, 1, 5], [40, 30, 20, 10, 35]).statistic
    assert tied.rho == pytest.approx(expected) and tied.n == 5 and 0 < expected < 1


# --- the command line -----------------------------------------------------------------------


def test_cli_json_is_the_model(tmp_path) -> None:
    path, convs = build(tmp_path)
    result = runner.invoke(app, ["report", "--db", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    again = json.loads(report_of(path).model_dump_json())
    assert data["provenance"].pop("generated_at") and again["provenance"].pop("generated_at")
    assert data == again
    result = runner.invoke(app, ["report", "--db", str(path), "--json", "--source",
                                 "annotations", "--opposing", FREE])
    data = json.loads(result.output)
    assert data["source"]["kind"] == "annotations" and data["left_out"] == 1
    assert [f["conversation_id"] for f in data["flagged"]] == [convs[2].id]


def test_cli_text_says_the_source_and_prints_data_literally(tmp_path) -> None:
    path, convs = build(tmp_path)
    result = runner.invoke(app, ["report", "--db", str(path), "--top", "50"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Source: gold (default: the study has gold labels)" in out
    assert "Subjective: 8 of 10 labelled (80.0%)" in out
    assert "+1.000 over 4 compared" in out
    assert FREE in out  # escaped, so printed as typed
    assert "not published" in out and "6.6%" in out
    assert "Mirroring: 2 of 4" in out and "(50.0%)" in out
    assert f"annotator show {convs[8].id}" in out
    assert "https://ls.example/projects/5/data?task=9" in out
    result = runner.invoke(app, ["report", "--db", str(path), "--source", PROMPT.id[:6]],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "Source: prompt values/v9" in result.output
    assert "-1.000 over 4 compared" in result.output


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("bare", [], "nothing to report yet"),
        ("bare", ["--source", "annotations"], "no annotations yet: import or pull some"),
        ("bare", ["--source", "gold"], "no gold labels: no annotations yet: import or pull"),
        ("annotated", ["--source", "gold"], "no gold labels: run `annotator adjudicate`"),
        ("full", ["--source", "nosuch"],
         "--source is gold, annotations or a prompt version; no prompt 'nosuch'"),
    ],
)
def test_cli_errors_name_the_cause(tmp_path, kind, args, message) -> None:
    if kind == "bare":
        path = tmp_path / "study.db"
        make_study(path, n=3)
    else:
        path, _ = build(tmp_path, gold=kind == "full", extractions=kind == "full")
    result = runner.invoke(app, ["report", "--db", str(path), *args])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert message in line and "Traceback" not in result.output, result.output


def add_split_annotations(database, conversation_id: str) -> None:
    """Two imported annotations that split on the response type: no majority decides."""
    with database.conn:
        for who, rt in (("ann", "neutral"), ("bob", "reframing")):
            database["annotations"].insert(db_module.annotation_to_row(Annotation(
                id=f"import:t:{who}", conversation_id=conversation_id, annotator=who,
                labels=Labels(response_type=rt, subjective=True), source="import:t")))


def test_annotations_without_a_majority_anywhere_say_so(tmp_path) -> None:
    path = tmp_path / "study.db"
    convs = make_study(path, n=2)
    database = db_module.open_db(path)
    add_split_annotations(database, convs[0].id)
    database.conn.close()
    result = runner.invoke(app, ["report", "--db", str(path)])
    assert result.exit_code == 1
    assert "no annotated conversation has a majority label" in " ".join(result.output.split())


# --- export names the real cause ------------------------------------------------------------


def test_export_without_annotations_names_it(tmp_path) -> None:
    path = tmp_path / "study.db"
    make_study(path, n=3)
    database = db_module.open_db(path)
    adjudicate(database)  # ran, decided nothing
    database.conn.close()
    result = runner.invoke(app, ["export", str(tmp_path / "out.jsonl"), "--db", str(path)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "no annotations yet: import or pull some" in line
    assert "run `annotator adjudicate` first" not in line
    assert not (tmp_path / "out.jsonl").exists()


def test_export_after_an_undecided_adjudication_says_why(tmp_path) -> None:
    path = tmp_path / "study.db"
    convs = make_study(path, n=2)
    database = db_module.open_db(path)
    add_split_annotations(database, convs[0].id)
    assert adjudicate(database).decided == 0
    database.conn.close()
    result = runner.invoke(app, ["export", str(tmp_path / "out.jsonl"), "--db", str(path)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "split on the response type" in line and convs[0].id in line


# --- the app --------------------------------------------------------------------------------


def dataframe_with(at: AppTest, columns: set[str]) -> pd.DataFrame:
    found = [d.value for d in at.dataframe if columns <= set(map(str, d.value.columns))]
    assert len(found) == 1, f"{len(found)} tables hold {columns}"
    return found[0]


def open_overview(path, **state) -> AppTest:
    summary_cache.clear_memory()
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["db_path"] = str(path)
    at.session_state["wait_seconds"] = 180.0
    at.session_state["n_boot"] = 20
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_overview_shows_the_report(tmp_path) -> None:
    path, convs = build(tmp_path)
    expected = report_of(path)
    at = open_overview(path)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Subjective"] == "80.0%" and metrics["Mirroring"] == "50.0%"
    assert metrics["Values: Spearman rho"] == "+1.000"
    assert metrics["Possible jailbreaks"] == "1"
    values = dataframe_with(at, {"value", "pct_convos", "released pct_convos"})
    shown = dict(zip(values["value"], values["pct_convos"], strict=True))
    assert shown == {s.name: s.pct_convos for s in expected.level(0).rows}
    released = dict(zip(values["value"], values["released pct_convos"], strict=True))
    a = four_values()[0]
    assert released[a] == expected.level(0).rows[0].released_pct_convos
    clusters = dataframe_with(at, {"cluster", "released pct occurrences"})
    assert set(clusters["cluster"]) == {s.name for s in expected.level(1).rows}
    rt = dataframe_with(at, {"response type", "published share"}).set_index("response type")
    assert rt.loc["reframing", "published share"] == "6.6%"
    assert rt.loc["no values", "published share"] == "not published"
    assert rt.loc["strong support", "share"] == "50.0%"
    flagged = dataframe_with(at, {"conversation", "opposing values", "Label Studio"})
    assert list(flagged["conversation"]) == [convs[8].id]  # a click reads it (Disagreements)
    assert list(flagged["Label Studio"]) == ["https://ls.example/projects/5/data?task=9"]
    assert list(flagged["command"]) == [f"annotator show {convs[8].id}"]


def test_overview_report_follows_the_chosen_source(tmp_path) -> None:
    path, _ = build(tmp_path)
    at = open_overview(path, **{"report-source": f"model ({PROMPT.id})"})
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Values: Spearman rho"] == "-1.000"
    assert metrics["Possible jailbreaks"] == "0"


def test_overview_report_is_cached_like_the_summaries(tmp_path) -> None:
    """The report is stored beside the study (a restarted app reads it, not the tables) and
    recomputed when its table changes."""
    path, convs = build(tmp_path)
    open_overview(path)
    stored = list(summary_cache.cache_root(path).glob("findings-*/*/meta.json"))
    assert stored, "the report is not stored"
    before = {p.parent.name for p in stored}
    database = db_module.open_db(path)
    with database.conn:
        database.execute("update gold set decided_at = ? where conversation_id = ?",
                         [(utc_now() + timedelta(seconds=1)).isoformat(), convs[9].id])
        database.execute("update gold set ai_values = '[]' where conversation_id = ?",
                         [convs[0].id])
    database.conn.close()
    at = open_overview(path)
    after = {p.parent.name for p in summary_cache.cache_root(path).glob("findings-*/*/meta.json")}
    assert after - before, "a gold change did not recompute the report"
    values = dataframe_with(at, {"value", "pct_convos", "released pct_convos"})
    d = four_values()[3]
    assert d not in set(values["value"])  # D was only in conversation 0


def test_agreement_without_annotations_names_both_ways_in(tmp_path) -> None:
    path = tmp_path / "study.db"
    make_study(path, n=3)
    result = runner.invoke(app, ["agreement", "--db", str(path)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "no annotations yet" in line
    assert "annotator import-labels FILE" in line and "annotator pull" in line


def test_report_json_carries_provenance_and_flags_their_external_id(tmp_path) -> None:
    """Real SQLite study: the flagged conversation's id in its source file comes with it, and
    the report says which tool version, study, label source and prompt made it, and when."""
    from annotator.models import tool_version
    from annotator.study_key import study_key

    path, convs = build(tmp_path)
    database = db_module.open_db(path)
    with database.conn:
        database.execute("update conversations set external_id = ? where id = ?",
                         ["test.jsonl.gz:12", convs[8].id])
    study_key(database)  # made on first ingest; this study was written directly
    fingerprint = database.execute("select fingerprint from study_key").fetchone()[0]
    database.conn.close()
    result = runner.invoke(app, ["report", "--db", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(f["conversation_id"], f["external_id"]) for f in data["flagged"]] == [
        (convs[8].id, "test.jsonl.gz:12")]
    made = data["provenance"]
    assert made["tool_version"] == tool_version() and made["study_fingerprint"] == fingerprint
    assert made["label_source"] == "gold" and made["prompt_ids"] == []
    assert made["generated_at"].startswith("20")
    by_prompt = json.loads(runner.invoke(
        app, ["report", "--db", str(path), "--json", "--source", PROMPT.id]).output)
    assert by_prompt["provenance"]["prompt_ids"] == [PROMPT.id]
    assert by_prompt["provenance"]["label_source"] == "prompt"
    text = runner.invoke(app, ["report", "--db", str(path)], env={"COLUMNS": "250"}).output
    assert f"{convs[8].id} (test.jsonl.gz:12)" in text
