"""Tasks and values by task: the statistics against scipy and statsmodels on hand-made tables
(oracles only), the task list and its errors, the baseline's keyword rule, prompt values/v2
and Claude's reply (the real SDK against the local fake API), Label Studio's config (a unit
test of the XML), import-labels, gold files, exports, and the report on the demo gold set."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import TEST_API_KEY, make_study
from scipy import stats
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.proportion import proportion_confint
from typer.testing import CliRunner

from annotator import config
from annotator import db as db_module
from annotator.cli import app
from annotator.datasets.gold import import_gold
from annotator.datasets.import_labels import import_labels
from annotator.errors import InputError
from annotator.extract import tasks as task_module
from annotator.extract.baseline import BaselineExtractor
from annotator.extract.claude import read_reply
from annotator.extract.engine import extract
from annotator.extract.extractors import labels_schema
from annotator.extract.prompts import body_parts, load_prompt, prompt_files
from annotator.measure import contexts
from annotator.measure.findings import study_findings
from annotator.models import Conversation, Extraction, Turn
from annotator.review import interface as lsc
from annotator.taxonomy import load_taxonomy

runner = CliRunner()
TABLES = [
    np.array([[12, 5, 9], [30, 41, 22]]),
    np.array([[3, 0, 7, 2], [10, 14, 6, 9]]),
    np.array([[40, 2], [5, 60]]),
]


# --- the statistics, against the oracles ----------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_chi_square_expected_and_p_match_scipy(table) -> None:
    stat, p, dof, expected = stats.chi2_contingency(table, correction=False)
    mine, my_dof = contexts.chi_square(table)
    assert mine == pytest.approx(stat) and my_dof == dof
    assert contexts.expected_counts(table) == pytest.approx(expected)
    assert contexts.chi2_sf(mine, my_dof) == pytest.approx(p, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("table", TABLES)
def test_adjusted_residuals_match_the_formula_and_statsmodels(table) -> None:
    n = table.sum()
    r = table.sum(axis=1, keepdims=True)
    c = table.sum(axis=0, keepdims=True)
    e = r * c / n
    by_hand = (table - e) / np.sqrt(e * (1 - r / n) * (1 - c / n))
    assert contexts.adjusted_residuals(table) == pytest.approx(by_hand)
    assert contexts.adjusted_residuals(table) == pytest.approx(
        np.asarray(Table(table, shift_zeros=False).standardized_resids))


@pytest.mark.parametrize(("x", "dof"), [(0.5, 1), (3.0, 2), (25.6, 11), (120.0, 30), (7.0, 7)])
def test_chi2_survival_matches_scipy(x, dof) -> None:
    assert contexts.chi2_sf(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-9)


@pytest.mark.parametrize(("k", "n"), [(0, 5), (3, 8), (8, 8), (40, 1000)])
def test_wilson_matches_statsmodels(k, n) -> None:
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert contexts.wilson(k, n) == pytest.approx((low, high), abs=1e-9)


def test_cv_and_residual_p_match_scipy() -> None:
    shares = np.array([0.1, 0.25, 0.4, 0.05])
    assert contexts.coefficient_of_variation(shares) == pytest.approx(stats.variation(shares))
    assert contexts.normal_two_sided(2.1) == pytest.approx(2 * stats.norm.sf(2.1))


def test_values_by_task_on_a_hand_made_study() -> None:
    """Coding conversations hold "technical precision", advice ones "user autonomy"; empathy
    sits evenly in both. Each figure is recomputed here from the 2 x T table."""
    rows = ([("coding", ["technical precision", "empathy"])] * 6
            + [("coding", ["technical precision"])] * 6
            + [("advice", ["user autonomy", "empathy"])] * 6
            + [("advice", ["user autonomy"])] * 5 + [("advice", ["technical precision"])]
            + [(None, ["empathy"])] * 2)
    found = contexts.values_by_task([t for t, _ in rows], [v for _, v in rows],
                                    order=["coding", "advice"])
    assert found.conversations == 24 and found.without_task == 2
    assert [t.task for t in found.tasks] == ["coding", "advice"]
    assert found.values_tested == 3 and found.cells_tested == 6
    coding = found.tasks[0].top[0]
    assert coding.value == "technical precision" and coding.conversations == 12
    table = np.array([[12, 1], [0, 11]])  # with / without the value, coding / advice
    expected_residual = np.asarray(Table(table, shift_zeros=False).standardized_resids)[0, 0]
    assert coding.residual == pytest.approx(expected_residual)
    assert coding.p_bonferroni == pytest.approx(min(1, 6 * 2 * stats.norm.sf(expected_residual)))
    assert coding.significant
    assert (coding.low, coding.high) == pytest.approx(
        proportion_confint(12, 12, method="wilson"), abs=1e-9)
    test = next(t for t in found.tests if t.value == "technical precision")
    assert test.chi2 == pytest.approx(stats.chi2_contingency(table, correction=False)[0])
    assert found.tasks[1].top[0].value == "user autonomy"
    empathy = next(r for r in found.invariant if r.value == "empathy")
    assert empathy.cv == pytest.approx(stats.variation([6 / 12, 6 / 12]))  # 0: invariant
    assert found.invariant[0].value == "empathy"
    assert empathy.low is not None and empathy.low <= empathy.cv <= empathy.high


# --- the task list ----------------------------------------------------------------------------


def test_the_shipped_list_loads_with_a_fallback_and_descriptions() -> None:
    listed = task_module.load_task_list()
    assert 10 <= len(listed.names) <= 15 and listed.fallback == "other"
    assert all(c.description for c in listed.categories)
    assert listed.category("  Coding ") == "coding" and listed.category("cooking") is None


@pytest.mark.parametrize(("text", "says"), [
    ("categories: [", "not valid YAML"),
    ("- a\n- b\n", "`categories:` list"),
    ("categories:\n  - name: a\n    description: x\n", "at least two"),
    ("categories:\n  - {name: a, description: x}\n  - {name: a, description: y}\n",
     "listed twice"),
    ("categories:\n  - {name: a, description: x}\n  - {name: b}\n", "a `description`"),
    ("fallback: zz\ncategories:\n  - {name: a, description: x}\n  - {name: b, description: y}\n",
     "fallback 'zz'"),
    ("categories:\n  - {name: '<b>', description: x}\n  - {name: b, description: y}\n",
     "lower-case letters"),
])
def test_a_bad_list_is_one_line_naming_the_file(tmp_path, monkeypatch, text, says) -> None:
    (tmp_path / "tasks.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("ANNOTATOR_PROMPTS_DIR", str(tmp_path))
    with pytest.raises(InputError) as err:
        task_module.load_task_list()
    message = str(err.value)
    assert says in message and "\n" not in message and "tasks.yaml" in message


def test_a_study_list_makes_a_new_prompt_version_and_a_new_baseline(tmp_path, monkeypatch):
    shipped = load_prompt("values/v2")
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "v2.md").write_text(
        (config.default_prompts_dir() / "values" / "v2.md").read_text(encoding="utf-8"))
    (tmp_path / "tasks.yaml").write_text(
        "fallback: chat\ncategories:\n  - {name: cooking, description: recipes and meals}\n"
        "  - {name: chat, description: anything else, keywords: [hello]}\n")
    monkeypatch.setenv("ANNOTATOR_PROMPTS_DIR", str(tmp_path))
    own = next(p for p in prompt_files(tmp_path) if p.version == "v2")
    assert own.id != shipped.id  # same file, another list: another version
    system, _ = body_parts(own)
    assert "- cooking: recipes and meals" in system and "{tasks}" not in system
    assert BaselineExtractor.baseline_prompt().id != BaselineExtractor.baseline_prompt(
        task_module.load_task_list(config.default_prompts_dir() / "tasks.yaml")).id


# --- the baseline's rule ----------------------------------------------------------------------


def conversation(user: str, assistant: str = "Sure.") -> Conversation:
    return Conversation.from_turns([Turn(role="user", text=user),
                                    Turn(role="assistant", text=assistant)])


def test_the_baseline_guesses_the_task_by_whole_keywords() -> None:
    base = BaselineExtractor()
    assert base.label(conversation("My Python function throws an error")).task == "coding"
    assert base.label(conversation("A short poem about autumn, please")).task == "creative work"
    # "codec" and "encoding" hold "code" but not as a word: nothing matches, the fallback
    assert base.label(conversation("Which codec? Encodings confuse me.")).task == "other"
    # the user's words count twice: one user keyword beats one assistant keyword
    mixed = base.label(conversation("My sister is upset", "Try a story together."))
    assert mixed.task == "relationships and personal"
    assert mixed.task_description == "My sister is upset"


# --- the model's reply ------------------------------------------------------------------------


def test_v2_asks_for_the_task_and_v1_does_not() -> None:
    v1, v2 = load_prompt("values/v1"), load_prompt("values/v2")
    assert "task" not in labels_schema() and "tasks" not in v1.front_matter
    listed = task_module.from_front_matter(v2.front_matter)
    assert listed is not None and listed.names == task_module.load_task_list().names
    schema = labels_schema(listed.names)
    assert "task" in schema["required"]
    assert schema["properties"]["task"]["properties"]["category"]["enum"] == listed.names
    system, _ = body_parts(v2)
    assert "- coding: " in system and "`task`" in system


def reply(task: dict | None) -> dict:
    labels = {"subjective": False, "ai_values": [], "human_values": [],
              "response_type": "no values"}
    if task is not None:
        labels["task"] = task
    return {"stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "t", "name": "record_labels", "input": labels}]}


def test_a_reply_without_a_listed_task_is_sent_back_for_a_corrected_one() -> None:
    listed = task_module.load_task_list()
    good = read_reply(reply({"description": "a sort", "category": "Coding"}), tasks=listed)
    assert good.labels.task.category == "coding"
    for bad in (None, {"description": "x", "category": "cooking"}):
        answer = read_reply(reply(bad), tasks=listed)
        assert answer.labels is None and answer.retryable and "task" in answer.reason
    # a version that asks for none keeps none, whatever the model adds
    assert read_reply(reply({"description": "x", "category": "coding"})).labels.task is None


def test_claude_extraction_with_v2_records_the_task(tmp_path, fake_api) -> None:
    path = tmp_path / "study.db"
    convs = make_study(path, n=3)
    report = extract(path, extractor="claude", api_key=TEST_API_KEY,
                     base_url=fake_api.base_url, prompt="values/v2")
    assert report.ok == 3
    database = db_module.open_db(path)
    names = task_module.load_task_list().names
    got = [db_module.row_to_extraction(r) for r in database["extractions"].rows]
    assert {e.conversation_id for e in got} == {c.id for c in convs}
    assert all(e.task in names and e.task_description for e in got)
    sent = json.loads(next(database["model_calls"].rows)["request"])
    assert sent["tools"][0]["input_schema"]["properties"]["task"]


# --- Label Studio (the XML: a unit test, no server) -------------------------------------------


def test_the_form_offers_the_task_list_and_a_prediction_round_trips() -> None:
    tree = load_taxonomy()
    listed = task_module.load_task_list()
    xml = lsc.label_config(tree, {"honesty"}, listed)
    schema = lsc.parse_config(xml)
    assert schema.controls[lsc.TASK] == "choices"
    assert schema.choices[lsc.TASK] == set(listed.names)
    assert 'hint="writing, debugging' in xml
    extraction = Extraction(conversation_id="c", prompt_id="p", model="m", extractor="claude",
                            task="health and wellbeing")
    pred = lsc.prediction(tree, extraction, "values/v2")
    assert lsc.validate(pred, schema) == []
    assert lsc.parse_result(tree, pred["result"]).labels.task == "health and wellbeing"
    grown = lsc.with_task_names(listed, ["retired category"])
    assert "retired category" in lsc.parse_config(lsc.label_config(tree, {"honesty"}, grown)
                                                  ).choices[lsc.TASK]


# --- import-labels, gold files, exports -------------------------------------------------------


def test_import_labels_reads_the_task_and_rejects_one_outside_the_list(tmp_path) -> None:
    path = tmp_path / "study.db"
    convs = make_study(path, n=2)
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        json.dumps({"conversation": convs[0].id, "annotator": "ann", "response_type": "neutral",
                    "subjective": True, "task": "Writing and Editing",
                    "task_description": "a cover letter"}) + "\n"
        + json.dumps({"conversation": convs[1].id, "annotator": "ann", "task": "cooking",
                      "response_type": "neutral", "subjective": True}) + "\n")
    database = db_module.open_db(path)
    report = import_labels(database, [labels])
    assert report.new == 1 and [r.line for r in report.rejected] == [2]
    assert "cooking" in report.rejected[0].reason and "\n" not in report.rejected[0].reason
    stored = db_module.row_to_annotation(next(database["annotations"].rows))
    assert (stored.labels.task, stored.labels.task_description) == (
        "writing and editing", "a cover letter")
    assert import_labels(database, [labels]).unchanged == 1


def test_gold_files_carry_the_task_into_gold_and_exports(tmp_path) -> None:
    path = tmp_path / "study.db"
    database = db_module.open_db(path)
    demo = config.gold_dir() / "demo.jsonl"
    bad = tmp_path / "bad.jsonl"
    first = json.loads(demo.read_text(encoding="utf-8").splitlines()[0])
    first["gold"]["task"] = "astrology"
    bad.write_text(json.dumps(first) + "\n", encoding="utf-8")
    rejected = import_gold(database, [bad])
    assert rejected.gold_labels == 0 and [r.line for r in rejected.rejected] == [1]
    report = import_gold(database, [demo])
    assert report.gold_labels == 49 and not report.rejected
    rows = list(database.query("select task, task_description from gold"))
    assert len(rows) == 49 and all(r["task"] and r["task_description"] for r in rows)
    out = tmp_path / "gold.csv"
    result = runner.invoke(app, ["export", str(out), "--what", "gold", "--db", str(path)])
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8", newline="") as handle:
        exported = list(csv.DictReader(handle))
    by_task = {r["task"] for r in exported}
    assert by_task == {r["task"] for r in rows} and all(r["task_description"] for r in exported)


# --- the report on the demo gold set ----------------------------------------------------------


def test_report_reads_values_by_task_from_the_demo_gold(tmp_path) -> None:
    path = tmp_path / "study.db"
    database = db_module.open_db(path)
    import_gold(database, [config.gold_dir() / "demo.jsonl"])
    found = study_findings(database, "gold").values_by_task
    assert found is not None and found.without_task == 0
    assert found.conversations == study_findings(database, "gold").base_conversations
    assert [t.task for t in found.tasks] == [n for n in task_module.load_task_list().names
                                             if n in {t.task for t in found.tasks}]
    for task in found.tasks:
        assert len(task.top) <= 5
        assert [v.residual for v in task.top] == sorted((v.residual for v in task.top),
                                                        reverse=True)
        assert all(v.residual > 0 and v.low <= v.share <= v.high for v in task.top)
        assert all(v.task_conversations == task.conversations for v in task.top)
    assert [r.cv for r in found.invariant] == sorted(r.cv for r in found.invariant) or any(
        r.value in contexts.PUBLISHED_CV for r in found.invariant)
    result = runner.invoke(app, ["report", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert "Values by task" in result.output and "transparency 1.23" in result.output
    data = json.loads(runner.invoke(app, ["report", "--db", str(path), "--json"]).output)
    assert data["values_by_task"]["cells_tested"] == found.cells_tested
    assert not math.isnan(data["values_by_task"]["tasks"][0]["top"][0]["residual"])
