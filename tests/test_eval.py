"""`annotator eval PROMPT`: the prompt gate (issue 11, item 5), and few-shot prompts left out of
their own scores (item 6), against the fake API through the real SDK.

The study holds the demo gold set. The fake answers as an oracle (gold's own labels) when the
system prompt carries ORACLE, and "no values, nothing" otherwise, so figures and differences have
known directions without hard-coding them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import TEST_API_KEY, rows
from test_app_pages import open_app
from typer.testing import CliRunner

from annotator import config
from annotator.app import precompute, summary_cache
from annotator.cli import app
from annotator.datasets.gold import import_gold
from annotator.db import open_db, row_to_conversation
from annotator.extract.prompts import render_conversation, resolve_prompt
from annotator.measure.eval_metrics import METRICS

pytestmark = pytest.mark.integration
runner = CliRunner()
DEMO = Path(__file__).resolve().parents[1] / "gold" / "demo.jsonl"
ORACLE = "ORACLE: answer as gold would."


def _version(text: str, version: str, extra_front: str = "", extra_system: str = "") -> str:
    text = text.replace("version: v1\n", f"version: {version}\n{extra_front}")
    return text.replace("\n<!-- user -->", f"\n{extra_system}\n\n<!-- user -->")


@pytest.fixture
def gate(tmp_path, fake_api, monkeypatch):
    """(study path, prompt folder, fake): the demo gold in a study; values/v1 (answers nothing),
    v2 (the oracle) and v3 (the oracle, with four few-shot examples from the demo gold)."""
    path = tmp_path / "study.db"
    database = open_db(path)
    import_gold(database, [DEMO])
    gold = {r["conversation_id"]: r for r in database["gold"].rows}
    rendered = {
        render_conversation(row_to_conversation(database["conversations"].get(cid))): cid
        for cid in gold
    }
    database.conn.close()
    folder = tmp_path / "prompts"
    (folder / "values").mkdir(parents=True)
    v1 = (config.default_prompts_dir() / "values" / "v1.md").read_text(encoding="utf-8")
    (folder / "values" / "v1.md").write_text(v1, encoding="utf-8")
    (folder / "values" / "v2.md").write_text(_version(v1, "v2", extra_system=ORACLE))
    few = f"few_shot: {{gold: {DEMO}, k: 4, seed: 1}}\n"
    (folder / "values" / "v3.md").write_text(_version(v1, "v3", few, ORACLE))

    systems: set[str] = set()  # every system prompt the fake received

    def rule(req):
        systems.add(req.system)
        cid = next((c for text, c in rendered.items() if text in req.text), None)
        if ORACLE not in req.system or cid is None:
            return {"subjective": False, "ai_values": [], "human_values": [],
                    "response_type": "no values"}
        g = gold[cid]

        def values(field):
            return [{"name": n, "evidence": n} for n in json.loads(g[field] or "[]")]

        return {"subjective": bool(g["subjective"]), "ai_values": values("ai_values"),
                "human_values": values("human_values"), "response_type": g["response_type"]}

    fake_api.rule = rule
    fake_api.systems = systems
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.base_url)
    monkeypatch.setenv("ANNOTATOR_PROMPTS_DIR", str(folder))
    return path, folder, fake_api, len(gold)


def run_eval(path, *args: str) -> tuple[int, dict | None, str]:
    result = runner.invoke(app, ["eval", *args, "--db", str(path), "--json", "--boot", "50"])
    try:
        data = json.loads(result.stdout)
    except ValueError:
        data = None
    return result.exit_code, data, result.output


def figure(report: dict, name: str) -> float:
    return next(f["value"] for f in report["figures"] if f["name"] == name)


def test_gate_passes_and_fails_on_thresholds_and_a_rerun_is_cached(gate):
    path, _, fake, n_gold = gate
    code, report, out = run_eval(path, "values/v2", "--fail-under", "response_kappa=0.9",
                                 "--fail-under", "values_f1=0.9")
    assert code == 0, out
    assert report["prompt"]["extracted"] == n_gold and report["passed"]
    assert figure(report, "response_kappa") >= 0.9 and figure(report, "values_f1") >= 0.9
    assert [g["passed"] for g in report["gates"]] == [True, True]
    sent = sum(fake.attempts.values())
    assert sent == n_gold == rows(path, "select count(*) from model_calls")[0][0]

    code, report, out = run_eval(path, "values/v1", "--fail-under", "response_kappa=0.5",
                                 "--fail-under", "values_recall=0")
    assert code == 1, out
    assert [(g["metric"], g["passed"]) for g in report["gates"]] == [
        ("response_kappa", False), ("values_recall", True)]
    assert not report["passed"]
    assert report["worst"] and report["worst"][0]["reason"].startswith("response type")

    sent = sum(fake.attempts.values())
    code, again, out = run_eval(path, "values/v2", "--fail-under", "response_kappa=0.9")
    assert code == 0, out
    assert sum(fake.attempts.values()) == sent  # cached: no new call
    assert (again["prompt"]["cached"], again["prompt"]["calls"]) == (n_gold, 0)

    text = runner.invoke(app, ["eval", "values/v1", "--db", str(path), "--fail-under",
                               "response_kappa=0.5"])
    assert text.exit_code == 1
    out = " ".join(text.output.split())
    assert "FAIL response_kappa" in out and "gate failed" in out
    assert "most at odds with gold" in out and sum(fake.attempts.values()) == sent


def test_baseline_difference_is_paired_and_points_the_right_way(gate):
    path, _, _, n_gold = gate
    code, report, out = run_eval(path, "values/v2", "--baseline", "values/v1")
    assert code == 0, out
    assert report["compared"] == n_gold
    diffs = {d["name"]: d for d in report["differences"]}
    assert set(diffs) == {"response_accuracy", "response_kappa", "values_f1", "values_jaccard"}
    acc = diffs["response_accuracy"]
    assert acc["delta"] == pytest.approx(acc["prompt"] - acc["baseline"])
    assert acc["prompt"] == pytest.approx(figure(report, "response_accuracy"))
    assert acc["delta"] > 0 and acc["low"] > 0  # the oracle beats "no values" everywhere
    code, reverse, _ = run_eval(path, "values/v1", "--baseline", "values/v2")
    rev = {d["name"]: d for d in reverse["differences"]}
    assert rev["response_accuracy"]["delta"] == pytest.approx(-acc["delta"])


def test_dry_run_sends_nothing_and_prices_the_calls(gate):
    path, _, fake, n_gold = gate
    code, report, out = run_eval(path, "values/v2", "--baseline", "values/v1", "--dry-run",
                                 "--fail-under", "response_kappa=0.99")
    assert code == 0, out
    assert sum(fake.requests.values()) == 0
    assert rows(path, "select count(*) from model_calls") == [(0,)]
    assert rows(path, "select count(*) from extractions") == [(0,)]
    for run in (report["prompt"], report["baseline"]):
        assert run["estimate"]["calls"] == n_gold and run["estimate"]["cost_usd"] > 0
    assert report["figures"] == [] and report["gates"] == []
    text = runner.invoke(app, ["eval", "values/v2", "--db", str(path), "--dry-run"])
    out = " ".join(text.output.split())
    assert text.exit_code == 0 and f"{n_gold} calls to make" in out and "estimated $" in out
    assert "nothing was sent" in out and sum(fake.requests.values()) == 0


def test_unknown_prompt_and_metric_are_one_line_errors_before_any_call(gate):
    path, _, fake, _ = gate
    for args, said in (
        (["nosuch"], "no prompt 'nosuch'"),
        ([resolve_prompt("values/v1").id[:2]], "too short to be an id prefix"),
        (["values/v2", "--baseline", "values/v9"], "no prompt 'values/v9'"),
        (["values/v2", "--fail-under", "kappa=0.5"], "unknown metric 'kappa'"),
        (["values/v2", "--fail-under", "response_kappa"], "METRIC=VALUE"),
        (["values/v2", "--fail-under", "response_kappa=high"], "is not a number"),
        (["values/v2", "--against", "nowhere.jsonl"], "neither `gold` nor a gold file"),
    ):
        result = runner.invoke(app, ["eval", *args, "--db", str(path)])
        assert result.exit_code == 1, (args, result.output)
        assert said in result.output and len(result.output.strip().splitlines()) <= 2
    unknown = runner.invoke(app, ["eval", "values/v2", "--db", str(path), "--fail-under", "x=1"])
    assert all(name in " ".join(unknown.output.split()) for name in METRICS)
    assert sum(fake.requests.values()) == 0
    help_text = " ".join(runner.invoke(app, ["eval", "--help"]).output.split())
    assert all(name in help_text for name in METRICS)


def test_against_a_gold_file_and_without_a_key_the_baseline_stands_in(gate, monkeypatch):
    path, _, fake, n_gold = gate
    code, report, out = run_eval(path, "values/v2", "--against", str(DEMO))
    assert code == 0, out
    assert report["gold_conversations"] == n_gold and figure(report, "response_accuracy") == 1.0
    outside = path.parent / "outside.jsonl"
    first = json.loads(DEMO.read_text().splitlines()[0])
    stranger = {**first, "conversation_id": "not-in-the-study",
                "turns": [{"role": "user", "text": "a conversation this study never saw"}]}
    outside.write_text(DEMO.read_text() + json.dumps(stranger) + "\n")
    result = runner.invoke(app, ["eval", "values/v2", "--db", str(path), "--against",
                                 str(outside)])
    assert result.exit_code == 1
    assert f"1 of the {n_gold + 1} conversations" in " ".join(result.output.split())
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    sent = sum(fake.attempts.values())
    code, report, out = run_eval(path, "values/v2")
    assert code == 0, out
    assert report["prompt"]["extractor"] == "baseline" and report["prompt"]["calls"] == 0
    assert any("stand in for values/v2" in n for n in report["notes"])
    assert sum(fake.attempts.values()) == sent


def test_few_shot_examples_are_not_extracted_nor_scored_for_their_version(gate):
    path, folder, fake, n_gold = gate
    code, report, out = run_eval(path, "values/v3")
    assert code == 0, out
    run = report["prompt"]
    assert (run["few_shot_left_out"], run["in_scope"]) == (4, n_gold - 4)
    database = open_db(path)
    version = json.loads(database["prompts"].get(run["prompt_id"])["front_matter"])
    examples = set(version["few_shot"]["ids"])
    assert len(examples) == 4
    # the examples are in the prompt the model saw, and none was sent to be labelled
    rendered = {cid: render_conversation(row_to_conversation(database["conversations"].get(cid)))
                for cid in examples}
    (system,) = fake.systems
    assert "Worked examples from adjudicated gold" in system
    assert all(text.removeprefix("<conversation>") in system for text in rendered.values())
    sent_keys = list(fake.attempts)
    assert not any(text in key for text in rendered.values() for key in sent_keys)
    assert all(f["n"] == n_gold - 4 for f in report["figures"])
    assert not examples & {w["conversation_id"] for w in report["worst"]}

    # extracted anyway (a plain `extract`), they stay out of agreement and the app's scores
    result = runner.invoke(app, ["extract", "--db", str(path), "--prompt", "values/v3",
                                 "--no-summaries", "--json"])
    assert result.exit_code == 0, result.output
    assert rows(path, "select count(*) from extractions where prompt_id = ?",
                [run["prompt_id"]]) == [(n_gold,)]
    result = runner.invoke(app, ["agreement", "--db", str(path), "--prompt", "values/v3",
                                 "--json", "--boot", "0"])
    agreement = json.loads(result.stdout)
    assert agreement["settings"]["few_shot_left_out"] == {run["prompt_id"]: 4}
    vs_gold = [r for r in agreement["rows"] if r["scope"].endswith("vs gold")
               and r["metric"] == "accuracy"]
    assert [r["n_units"] for r in vs_gold] == [n_gold - 4]
    text = runner.invoke(app, ["agreement", "--db", str(path), "--prompt", "values/v3",
                               "--boot", "0"])
    assert "4 conversations left out of its scores" in " ".join(text.output.split())
    summary_cache.clear_memory()
    fp = summary_cache.fingerprint(path)
    sigs = summary_cache.signatures(path, fp)
    bundle = precompute.prompt_scores(run["prompt_id"], 0).compute(str(path), sigs)
    assert bundle.meta["few_shot_left_out"] == 4
    assert not examples & set(bundle.frames["outcomes"]["conversation_id"])
    assert len(bundle.frames["outcomes"]) == n_gold - 4
    database.conn.close()
    # against a version without examples: compared on the conversations both were scored on
    code, compared, out = run_eval(path, "values/v3", "--baseline", "values/v2")
    assert code == 0, out
    assert compared["compared"] == n_gold - 4 and compared["baseline"]["in_scope"] == n_gold
    assert all(d["n"] == n_gold - 4 for d in compared["differences"])
    page = open_app(path, "prompts")
    said = " ".join(" ".join(c.value.split()) for c in page.caption)
    assert "as its own few-shot examples" in said and "4 conversations" in said


def test_a_copied_study_prompt_folder_keeps_the_few_shot_gold_beside_it(gate, tmp_path):
    path, folder, _, _ = gate
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    text = (moved / "values" / "v3.md").read_text().replace(str(DEMO), "mine.jsonl")
    (moved / "values" / "v3.md").write_text(text)
    missing = runner.invoke(app, ["eval", "values/v3", "--db", str(path), "--prompts",
                                  str(moved), "--dry-run"])
    assert missing.exit_code == 1 and "'mine.jsonl' not found" in missing.output
    shutil.copy(DEMO, moved / "values" / "mine.jsonl")
    found = runner.invoke(app, ["eval", "values/v3", "--db", str(path), "--prompts",
                                str(moved), "--dry-run"])
    assert found.exit_code == 0, found.output


# --- issue 19: gates on intervals and regressions, batches, subjectivity, no key ---------------


def test_a_low_gate_tests_the_intervals_lower_bound_not_the_point(gate):
    path, _, _, n_gold = gate
    code, report, out = run_eval(path, "values/v1")
    point = next(f for f in report["figures"] if f["name"] == "response_accuracy")
    assert point["low"] < point["value"] - 0.02  # 49 conversations: a wide interval
    line = f"response_accuracy={point['value'] - 0.01:.4f}"
    low_line = f"response_accuracy.low={point['value'] - 0.01:.4f}"
    code, report, out = run_eval(path, "values/v1", "--fail-under", line, "--fail-under",
                                 low_line)
    assert code == 1, out
    assert [(g["bound"], g["passed"]) for g in report["gates"]] == [("value", True),
                                                                    ("low", False)]
    assert report["gates"][1]["value"] == pytest.approx(point["low"])
    text = runner.invoke(app, ["eval", "values/v1", "--db", str(path), "--fail-under",
                               low_line, "--boot", "50"])
    assert text.exit_code == 1 and "FAIL response_accuracy.low" in " ".join(text.output.split())
    code, report, out = run_eval(path, "values/v2", "--fail-under", "response_kappa.low=0.9")
    assert code == 0 and report["gates"][0]["value"] >= 0.9, out


def test_fail_on_regression_fails_when_a_paired_interval_lies_below_zero(gate):
    path, _, _, n_gold = gate
    code, report, out = run_eval(path, "values/v1", "--baseline", "values/v2",
                                 "--fail-on-regression")
    assert code == 1, out
    regressions = [g for g in report["gates"] if g["bound"] == "regression"]
    diffs = {d["name"]: d for d in report["differences"]}
    assert regressions and {g["metric"] for g in regressions} <= set(diffs)
    for g in regressions:  # fails exactly when the whole interval is below 0
        assert g["passed"] == (diffs[g["metric"]]["high"] >= 0)
    assert not next(g for g in regressions if g["metric"] == "response_accuracy")["passed"]
    code, report, out = run_eval(path, "values/v2", "--baseline", "values/v1",
                                 "--fail-on-regression")
    assert code == 0 and report["passed"], out
    # without the flag the same comparison only reports; an empty comparison is not a failure
    code, report, out = run_eval(path, "values/v1", "--baseline", "values/v2")
    assert code == 0 and report["gates"] == [], out
    text = runner.invoke(app, ["eval", "values/v1", "--db", str(path), "--baseline",
                               "values/v2", "--fail-on-regression", "--boot", "50"])
    said = " ".join(text.output.split())
    assert text.exit_code == 1 and "wholly below 0 (a regression)" in said


def test_interval_gates_are_one_line_errors_when_they_cannot_be_tested(gate):
    path, _, fake, _ = gate
    for args, said in (
        (["--fail-on-regression"], "--fail-on-regression needs --baseline"),
        (["--fail-under", "response_kappa.low=0.5", "--boot", "0"], "give --boot more than 0"),
        (["--baseline", "values/v1", "--fail-on-regression", "--boot", "0"], "--boot"),
        (["--fail-under", "response_kappa.high=0.5"], "only `.low`"),
    ):
        result = runner.invoke(app, ["eval", "values/v2", *args, "--db", str(path)])
        assert result.exit_code == 1, (args, result.output)
        assert said in " ".join(result.output.split()), (args, result.output)
    assert sum(fake.requests.values()) == 0


def test_eval_batch_extracts_through_the_batches_api_and_a_rerun_is_cached(gate):
    path, _, fake, n_gold = gate
    code, report, out = run_eval(path, "values/v2", "--batch", "--poll-interval", "0.05",
                                 "--fail-under", "response_kappa.low=0.9")
    assert code == 0, out
    assert fake.batch_creates == 1 and fake.requests.get("messages", 0) == 0
    assert report["prompt"]["extracted"] == n_gold and report["passed"]
    assert rows(path, "select status, request_count from batches") == [("collected", n_gold)]
    assert rows(path, "select count(*), count(batch_id) from model_calls") == [(n_gold, n_gold)]
    full = rows(path, "select sum(cost_usd) from extractions")[0][0]
    code, again, out = run_eval(path, "values/v2", "--batch", "--poll-interval", "0.05")
    assert code == 0 and fake.batch_creates == 1 and again["prompt"]["cached"] == n_gold, out
    # billed at the batch price: half what the same tokens cost online
    from annotator.extract.pricing import load_prices

    tokens = rows(path, "select model, input_tokens, output_tokens, cache_read_tokens, "
                        "cache_write_tokens from extractions")
    online = sum(load_prices().cost(*t) for t in tokens)
    assert full == pytest.approx(online / 2)


def test_eval_scores_a_filters_subjectivity_against_gold(gate):
    path, folder, fake, n_gold = gate
    source = (config.default_prompts_dir() / "subjective" / "v1.md").read_text()
    (folder / "subjective").mkdir()
    (folder / "subjective" / "v1.md").write_text(_version(source, "v1", extra_system=ORACLE))
    database = open_db(path)
    truth = [bool(r["subjective"]) for r in database["gold"].rows]
    database.conn.close()
    assert 0 < sum(truth) < len(truth)
    code, report, out = run_eval(path, "subjective/v1", "--fail-under",
                                 "subjective_recall.low=0.9")
    assert code == 0, out
    assert [f["name"] for f in report["figures"]] == [
        "subjective_precision", "subjective_recall", "subjective_accuracy"]
    assert all(f["value"] == 1.0 and f["n"] == len(truth) for f in report["figures"])
    assert report["prompt"]["model"] == "claude-haiku-4-5"
    # values/v1 (here: never subjective) lets nothing through: recall 0, precision undefined
    code, report, out = run_eval(path, "values/v1")
    figures = {f["name"]: f for f in report["figures"]}
    assert figures["subjective_recall"]["value"] == 0.0
    assert figures["subjective_precision"]["value"] is None
    assert "never said subjective" in figures["subjective_precision"]["note"]
    assert figures["subjective_accuracy"]["value"] == pytest.approx(1 - sum(truth) / len(truth))
    text = runner.invoke(app, ["eval", "subjective/v1", "--db", str(path), "--boot", "20"])
    assert "subjective_recall" in text.output and text.exit_code == 0


def test_a_dry_run_without_a_key_prices_claude_not_the_baseline(gate, monkeypatch):
    path, _, fake, n_gold = gate
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    code, report, out = run_eval(path, "values/v2", "--baseline", "values/v1", "--dry-run")
    assert code == 0, out
    for run in (report["prompt"], report["baseline"]):
        assert (run["extractor"], run["model"]) == ("claude", "claude-sonnet-4-6")
        assert run["estimate"]["calls"] == n_gold and run["estimate"]["cost_usd"] > 0
    assert any("priced as Claude claude-sonnet-4-6" in n for n in report["notes"])
    assert sum(fake.requests.values()) == 0
    text = runner.invoke(app, ["eval", "values/v2", "--db", str(path), "--dry-run"])
    said = " ".join(text.output.split())
    assert "priced as Claude claude-sonnet-4-6" in said and "estimated $0.0000" not in said


def test_worst_conversations_carry_their_external_id_and_the_report_its_provenance(gate):
    """Against the fake over HTTP, a real study: each of the worst conversations names its id
    in the source file, and the report the tool version, study and prompt versions."""
    from annotator.models import tool_version

    path, _, _, _ = gate
    database = open_db(path)
    with database.conn:
        database.execute("update conversations set external_id = 'test.jsonl.gz:' || rowid")
    expected = dict(database.execute("select id, external_id from conversations").fetchall())
    database.conn.close()
    code, report, out = run_eval(path, "values/v1", "--baseline", "values/v2")
    assert report is not None, out
    assert report["worst"]
    assert all(w["external_id"] == expected[w["conversation_id"]] for w in report["worst"])
    made = report["provenance"]
    assert made["tool_version"] == tool_version() and made["label_source"] == "gold (gold)"
    assert made["prompt_ids"] == sorted({report["prompt"]["prompt_id"],
                                         report["baseline"]["prompt_id"]})
