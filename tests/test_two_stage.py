"""Two stages (`extract --only-subjective SOURCE`, issue 19 item 5) and the prompt loop without a
key (item 6, the extract half), against the fake API over real HTTP through the real SDK.

The fake keeps to the schema it is sent: the subjectivity-only prompt (`prompts/subjective/v1.md`,
`labels: subjective`) gets only `subjective`. The rule here calls a conversation subjective
unless it is one of the routine "Question i: how do I ..." ones (every third)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import orjson
import pytest
from conftest import TEST_API_KEY, make_study, rows, value_names
from fake_anthropic import FakeRequest, names_in_text_rule
from typer.testing import CliRunner
from waiting import wait_until

from annotator.cli import app
from annotator.db import open_db
from annotator.extract.engine import extract
from annotator.extract.filtering import PUBLISHED_CONVERSATIONS, PUBLISHED_SUBJECTIVE, wilson
from annotator.extract.pricing import load_prices
from annotator.extract.prompts import load_prompt, render

pytestmark = pytest.mark.integration
runner = CliRunner()
STAGE1 = "claude-haiku-4-5"
STAGE2 = "claude-sonnet-4-6"


def routine(text: str) -> bool:
    return "Question " in text and "how do I" in text


@pytest.fixture
def two_stage(tmp_path, fake_api, api_env):
    """(study path, conversations, fake): 12 synthetic conversations, 4 of them routine."""
    path = tmp_path / "study.db"
    convs = make_study(path, 12)
    values = names_in_text_rule(value_names())

    def rule(req: FakeRequest):
        return {**values(req), "subjective": not routine(req.text)}

    fake_api.rule = rule
    return path, convs, fake_api


def cli_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def keys(convs, ref: str) -> dict[str, str]:
    prompt = load_prompt(ref)
    return {c.id: render(prompt, c).user for c in convs}


def subjective_ids(convs) -> set[str]:
    return {c.id for c in convs if not routine(" ".join(t.text for t in c.turns))}


def test_the_full_prompt_runs_only_on_what_stage_1_labels_subjective_and_a_rerun_sends_nothing(
    two_stage,
):
    path, convs, fake = two_stage
    first, second = keys(convs, "subjective/v1"), keys(convs, "values/v1")
    wanted = subjective_ids(convs)
    assert 0 < len(wanted) < len(convs)
    report = cli_json("extract", "--db", str(path), "--only-subjective", "subjective/v1",
                      "--no-summaries")
    assert report["stage1"]["model"] == STAGE1 and report["stage1"]["ok"] == len(convs)
    assert (report["model"], report["ok"], report["calls"]) == (STAGE2, len(wanted), len(wanted))
    assert report["filter"] == {"source": "subjective/v1", "conversations": len(convs),
                                "labelled": len(convs), "subjective": len(wanted),
                                "not_subjective": len(convs) - len(wanted),
                                "not_yet_filtered": 0}
    assert all(fake.paid[first[c.id]] == 1 for c in convs)  # stage 1: every conversation once
    assert {c.id for c in convs if fake.paid[second[c.id]]} == wanted  # stage 2: subjective only
    assert all(fake.paid[second[cid]] == 1 for cid in wanted)
    # stage 1's extractions carry only `subjective`; every call is in the ledger, none twice
    assert rows(path, "select model, count(*), sum(response_type is null), sum(ai_values = '[]')"
                      " from extractions group by 1 order by 1") == [
        (STAGE1, len(convs), len(convs), len(convs)), (STAGE2, len(wanted), 0, 0)]
    assert rows(path, "select count(*) from extractions where model = ? and subjective = 1",
                [STAGE1]) == [(len(wanted),)]
    assert rows(path, "select model, count(*) from model_calls group by 1 order by 1") == [
        (STAGE1, len(convs)), (STAGE2, len(wanted))]
    sent = dict(fake.attempts)
    again = cli_json("extract", "--db", str(path), "--only-subjective", "subjective/v1",
                     "--no-summaries")
    assert dict(fake.attempts) == sent  # neither stage sends anything again
    assert (again["stage1"]["cached"], again["stage1"]["calls"]) == (len(convs), 0)
    assert (again["cached"], again["calls"], again["todo"]) == (len(wanted), 0, 0)


def test_conversations_the_source_has_not_labelled_are_not_sent_and_are_counted(two_stage):
    path, convs, fake = two_stage
    first, second = keys(convs, "subjective/v1"), keys(convs, "values/v1")
    wanted = sorted(subjective_ids(convs))
    failing = first[wanted[0]]
    fake.fault_fn = lambda req: "500" if req.key == failing else None
    report = cli_json("extract", "--db", str(path), "--only-subjective", "subjective/v1",
                      "--max-retries", "0", "--no-summaries")
    assert report["stage1"]["errors"] == 1 and report["filter"]["not_yet_filtered"] == 1
    assert report["ok"] == len(wanted) - 1 and second[wanted[0]] not in fake.attempts
    text = runner.invoke(app, ["extract", "--db", str(path), "--only-subjective",
                               "subjective/v1", "--no-summaries"])
    said = " ".join(text.output.split())
    assert "1 not yet filtered (not sent)" in said and "Stage 1: subjective/v1" in said
    fake.fault_fn = None
    report = cli_json("extract", "--db", str(path), "--only-subjective", "subjective/v1",
                      "--retry-errors", "--no-summaries")
    assert (report["stage1"]["ok"], report["ok"], report["filter"]["not_yet_filtered"]) == (
        1, 1, 0)
    assert fake.paid[second[wanted[0]]] == 1


def test_gold_and_the_baseline_as_the_filter(two_stage):
    path, convs, fake = two_stage
    database = open_db(path)
    chosen = sorted(c.id for c in convs)[:5]
    with database.conn:
        database["gold"].insert_all([{"conversation_id": cid, "subjective": int(i % 2 == 0),
                                      "ai_values": "[]", "human_values": "[]",
                                      "response_type": "no values", "decided_by": "test"}
                                     for i, cid in enumerate(chosen)])
    database.conn.close()
    report = cli_json("extract", "--db", str(path), "--only-subjective", "gold",
                      "--no-summaries")
    assert report["stage1"] is None and report["ok"] == 3  # gold's subjective ones only
    assert report["filter"]["not_yet_filtered"] == len(convs) - 5
    sent = {cid for cid in (c.id for c in convs) if keys(convs, "values/v1")[cid] in fake.paid}
    assert sent == {chosen[0], chosen[2], chosen[4]}
    base = cli_json("extract", "--db", str(path), "--only-subjective", "baseline",
                    "--model", STAGE1, "--no-summaries")
    assert base["stage1"]["extractor"] == "baseline" and base["stage1"]["ok"] == len(convs)
    labelled = rows(path, "select count(*) from extractions where model = 'baseline-v2' and "
                          "subjective = 1")[0][0]
    assert base["filter"]["subjective"] == labelled and base["ok"] == labelled


def test_the_dry_run_prices_both_stages_and_the_saving(two_stage):
    path, convs, fake = two_stage
    dry = cli_json("extract", "--db", str(path), "--only-subjective", "subjective/v1",
                   "--dry-run")
    assert fake.requests == {} and rows(path, "select count(*) from extractions") == [(0,)]
    e, prices = dry["estimate"], load_prices()
    assert dry["stage1"]["model"] == STAGE1 and e["stage1_calls"] == len(convs)
    # nothing labelled yet: the published share stands in, with its interval
    share = PUBLISHED_SUBJECTIVE / PUBLISHED_CONVERSATIONS
    assert e["subjective_share"] == pytest.approx(share, abs=1e-4)
    assert "published" in e["subjective_share_basis"]
    assert e["calls"] == round(share * len(convs)) and e["known_subjective"] == 0
    assert e["cost_usd_low"] <= e["cost_usd"] <= e["cost_usd_high"]
    assert e["cost_usd"] == pytest.approx(share * e["without_filter_cost_usd"], rel=0.02)
    assert e["total_cost_usd"] == pytest.approx(e["stage1_cost_usd"] + e["cost_usd"], abs=1e-4)
    assert e["saving_usd"] == pytest.approx(
        e["without_filter_cost_usd"] - e["total_cost_usd"], abs=1e-4)
    # stage 1 is priced with the small model's prices: cheaper per call than stage 2
    assert 0 < e["stage1_cost_usd"] < e["cost_usd"]
    assert prices.get(STAGE1).input < prices.get(STAGE2).input

    # after stage 1 labelled 6 of them, its own share counts: known ones priced exactly
    cli_json("extract", "--db", str(path), "--prompt", "subjective/v1", "--limit", "6",
             "--no-summaries")
    labelled = rows(path, "select count(*), sum(subjective) from extractions")[0]
    dry = cli_json("extract", "--db", str(path), "--only-subjective", "subjective/v1",
                   "--dry-run")
    e = dry["estimate"]
    assert e["known_subjective"] == labelled[1] and e["labelled_by_stage1_now"] == 6
    assert dry["filter"]["not_yet_filtered"] == len(convs) - 6
    text = " ".join(runner.invoke(app, ["extract", "--db", str(path), "--only-subjective",
                                        "subjective/v1", "--dry-run"]).output.split())
    assert "saving_usd" in text and "Stage 1: subjective/v1" in text


def test_the_expected_share_uses_the_sources_own_labels_once_it_has_enough(
    tmp_path, monkeypatch
):
    """The Wilson interval (against scipy's), and the switch from the published share to the
    source's own once it has labelled MIN_OWN_LABELS conversations (offline)."""
    from scipy.stats import binomtest

    for k, n in ((44, 100), (0, 30), (308_210, 700_000)):
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    path = tmp_path / "study.db"
    make_study(path, 40)
    extract(path, extractor="baseline")
    own = rows(path, "select count(*), sum(subjective) from extractions")[0]
    e = extract(path, only_subjective="baseline", dry_run=True).estimate
    assert own[0] == 40 and e["subjective_share"] == pytest.approx(own[1] / 40, abs=1e-4)
    assert "baseline's own labels so far" in e["subjective_share_basis"]
    assert (e["known_subjective"], e["labelled_by_stage1_now"], e["calls"]) == (own[1], 0, own[1])


def test_without_a_key_a_dry_run_prices_claude_with_the_prompts_model(tmp_path, monkeypatch):
    path = tmp_path / "study.db"
    make_study(path, 6)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    dry = cli_json("extract", "--db", str(path), "--prompt", "values/v1", "--dry-run")
    assert (dry["extractor"], dry["model"]) == ("claude", STAGE2)
    assert dry["estimate"]["calls"] == 6 and dry["estimate"]["cost_usd"] > 0
    assert any(f"priced as Claude {STAGE2}" in n for n in dry["notes"])
    other = cli_json("extract", "--db", str(path), "--model", STAGE1, "--dry-run")
    assert other["model"] == STAGE1
    assert 0 < other["estimate"]["cost_usd"] < dry["estimate"]["cost_usd"]
    text = runner.invoke(app, ["extract", "--db", str(path), "--dry-run"])
    assert f"priced as Claude {STAGE2}" in " ".join(text.output.split())
    # asking for the baseline still gets the baseline's $0; a real run without a key too
    base = cli_json("extract", "--db", str(path), "--extractor", "baseline", "--dry-run")
    assert base["estimate"]["cost_usd"] == 0
    both = cli_json("extract", "--db", str(path), "--only-subjective", "subjective/v1",
                    "--dry-run")
    assert both["stage1"]["model"] == STAGE1 and both["estimate"]["stage1_cost_usd"] > 0
    result = runner.invoke(app, ["extract", "--db", str(path), "--only-subjective",
                                 "subjective/v1"])
    assert result.exit_code == 1 and "set ANTHROPIC_API_KEY" in result.output
    assert rows(path, "select count(*) from model_calls") == [(0,)]


def test_kill_9_in_stage_2_then_the_rerun_resends_no_paid_call(tmp_path, fake_api, api_env):
    path = tmp_path / "study.db"
    convs = make_study(path, 30)
    first, second = keys(convs, "subjective/v1"), keys(convs, "values/v1")
    values = names_in_text_rule(value_names())
    fake_api.rule = lambda req: {**values(req), "subjective": not routine(req.text)}
    fake_api.latency = 0.1
    stage2_keys = set(second.values())

    def stage2_paid() -> int:
        return sum(n for k, n in fake_api.paid.items() if k in stage2_keys)

    fake_api.fault_fn = lambda req: "silent" if stage2_paid() >= 5 else None
    env = {**os.environ, "ANTHROPIC_API_KEY": TEST_API_KEY, "ANTHROPIC_BASE_URL": fake_api.base_url}
    env.pop("ANNOTATOR_DB", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "annotator", "extract", "--db", str(path), "--only-subjective",
         "subjective/v1", "--concurrency", "4", "--no-summaries", "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: stage2_paid() >= 5, "5 paid stage-2 replies", proc=proc)
    wait_until(lambda: rows(path, "select count(*) from model_calls where status = 'in_flight'"
                            )[0][0], "a call in flight", proc=proc)  # fmt: skip
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    fake_api.fault_fn = None
    stage1_sent = {k: fake_api.attempts[k] for k in first.values()}
    assert all(n == 1 for n in stage1_sent.values())  # stage 1 finished before stage 2 began
    report = cli_json("extract", "--db", str(path), "--only-subjective", "subjective/v1",
                      "--no-summaries")
    assert {k: fake_api.attempts[k] for k in first.values()} == stage1_sent  # none resent
    assert report["stage1"]["calls"] == 0
    possibly = rows(path, "select count(*) from model_calls where status = 'possibly_paid'")[0][0]
    # the rerun's first stage settles the dead run's calls in flight, before anything is sent
    assert report["stage1"]["settled_possibly_paid"] == possibly >= 1
    wanted = subjective_ids(convs)
    assert rows(path, "select count(*) from extractions where model = ?", [STAGE2]) == [
        (len(wanted),)]
    paid_twice = sum(max(0, fake_api.paid[second[cid]] - 1) for cid in wanted)
    assert paid_twice <= possibly  # only a call the dead run left without a reply
    assert all(fake_api.paid[second[c.id]] == 0 for c in convs if c.id not in wanted)
