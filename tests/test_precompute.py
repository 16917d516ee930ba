"""The app's summaries computed ahead (`annotator.app.precompute`, `annotator summarize`): what is
stored, what a change recomputes, and that the app's pages open from them without computing.

Real SQLite files, the real summary cache on disk and Streamlit's AppTest; no fakes."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from test_app_pages import BOOT, open_app
from test_app_study import V1, V2
from typer.testing import CliRunner

from annotator.app import precompute, summary_cache
from annotator.cli import app
from annotator.datasets.gold import decide
from annotator.db import open_db
from annotator.measure import agreement, frame_store, summaries
from annotator.measure import frames as report
from annotator.models import Labels

runner = CliRunner()


# frequencies and report of 4 tables, agreement, conversations, people to decide, each version's
# scores (against gold, against the annotators, joined) and labels, the v1-v2 comparison
OPENING = 20


@pytest.fixture(autouse=True)
def _fresh_memory():
    summary_cache.clear_memory()  # each test starts as a new process would


def test_precompute_stores_every_opening_summary_once(app_study_copy) -> None:
    first = precompute.precompute(app_study_copy, n_boot=BOOT)
    expected = {s.what for s in precompute.opening_summaries([V1, V2], BOOT)}
    assert first.summaries == len(expected) == OPENING
    assert set(first.computed) == expected and first.already_stored == 0
    again = precompute.precompute(app_study_copy, n_boot=BOOT)
    assert again.computed == [] and again.already_stored == OPENING

    # a person's gold decision: only what reads gold is computed again
    db = open_db(app_study_copy)
    cid = report.gold_frame(db)["conversation_id"].iloc[0]
    decide(db, cid, Labels(ai_values=["honesty"], response_type="neutral", subjective=True),
           "tester")
    db.conn.close()
    after = precompute.precompute(app_study_copy, n_boot=BOOT)
    assert set(after.computed) == {
        "value frequencies (gold)", "the study's report (gold)", "the conversation table",
        "the conversations to decide", f"the scores of prompt {V1}", f"the scores of prompt {V2}",
        f"the scores of prompt {V1} against gold", f"the scores of prompt {V2} against gold",
        f"the comparison of {V1} and {V2}",
    }
    assert after.already_stored == OPENING - 9


def _import_a_label(study, folder) -> None:
    """A new annotator's label of the first gold conversation, imported from a file as
    `annotator import-labels` does, without computing the summaries."""
    db = open_db(study)
    cid = report.gold_frame(db)["conversation_id"].iloc[0]
    db.conn.close()
    labels = folder / "carol.jsonl"
    labels.write_text(json.dumps({"conversation": cid, "ai_values": ["honesty"],
                                  "response_type": "neutral", "subjective": True}) + "\n")
    done = runner.invoke(app, ["import-labels", str(labels), "--annotator", "carol", "--db",
                               str(study), "--no-summaries"])
    assert done.exit_code == 0, done.output


def test_new_labels_recompute_what_reads_annotations_not_the_scores_against_gold(
        app_study_copy, tmp_path) -> None:
    """Labels imported from a file change the annotations alone: each version's scores against
    gold (with their intervals) and the comparison of versions are kept, and the joined scores
    equal a direct computation from the study's frames."""
    precompute.precompute(app_study_copy, n_boot=BOOT)
    _import_a_label(app_study_copy, tmp_path)
    computed = set(precompute.precompute(app_study_copy, n_boot=BOOT).computed)
    assert computed == {
        "value frequencies (annotations)", "the study's report (annotations)",
        "inter-annotator agreement", "the conversation table", "the conversations to decide",
        f"the scores of prompt {V1} against each annotator",
        f"the scores of prompt {V2} against each annotator",
        f"the scores of prompt {V1}", f"the scores of prompt {V2}",
    }
    summary_cache.clear_memory()
    db = open_db(app_study_copy)
    frames = {t: report.table_frame(db, t) for t in ("annotations", "gold", f"extractions:{V2}")}
    db.conn.close()
    sigs = summary_cache.signatures(app_study_copy, summary_cache.fingerprint(app_study_copy))
    summary = precompute.prompt_scores(V2, BOOT)
    stored = summary_cache.get(str(app_study_copy), summary.name, summary.params,
                               summary.dep_signatures(sigs), lambda: pytest.fail("missing"), 0)
    assert stored.bundle is not None and "annotator carol" in stored.bundle.meta["references"]
    direct = summaries.prompt_bundle(frames[f"extractions:{V2}"], frames["gold"],
                                     frames["annotations"], BOOT)
    for name in ("metrics", "confusion", "per_value", "model"):
        pd.testing.assert_frame_equal(stored.bundle.frames[name], direct.frames[name],
                                      check_dtype=False)


def test_precomputed_result_equals_a_direct_computation(app_study_copy) -> None:
    precompute.precompute(app_study_copy, n_boot=BOOT)
    summary_cache.clear_memory()
    db = open_db(app_study_copy)
    gold = report.gold_frame(db)
    db.conn.close()
    fp = summary_cache.fingerprint(app_study_copy)
    sigs = summary_cache.signatures(app_study_copy, fp)
    stored = summary_cache.get(str(app_study_copy), "frequencies", {"table": "gold"},
                               {"gold": sigs["gold"]}, lambda: pytest.fail("recomputed"), 0)
    assert stored.bundle is not None
    direct = summaries.value_frequencies(gold).frames["values"]
    got = stored.bundle.frames["values"]
    assert got.set_index("value")["count"].to_dict() == direct.set_index("value")["count"].to_dict()


def test_app_pages_open_from_precomputed_summaries_without_computing(app_study_copy, monkeypatch):
    """With the summaries stored ahead, no page computes: every compute function raises, and
    the pages wait 0 s, yet each shows its content and no "Computing" notice."""
    precompute.precompute(app_study_copy, n_boot=BOOT)
    summary_cache.clear_memory()  # as a freshly started app

    def refuse(*_args, **_kwargs):
        raise AssertionError("the app computed a summary that was stored ahead")

    for name in ("annotators_bundle", "prompt_bundle", "prompt_gold_part",
                 "prompt_annotators_part", "prompt_model_part", "joined_prompt_parts",
                 "conversations_bundle",
                 "value_frequencies", "compare_versions"):
        monkeypatch.setattr(summaries, name, refuse)
    for page, heading in (
        (None, "Response types"), ("annotators", "Pairwise Cohen's kappa"),
        ("prompts", "Per-value precision and recall"), ("disagreements", "Read a conversation"),
        ("gold", "Decide the gold labels"),
    ):
        at = open_app(app_study_copy, page, wait_seconds=0.0)
        texts = [e.value for e in (*at.info, *at.error)]
        assert not any("Computing" in t or "Could not compute" in t for t in texts), texts
        shown = [e.value for e in (*at.subheader, *at.header, *at.markdown)]
        assert any(heading in t for t in shown), (page, shown[:10])


def test_summarize_command(app_study_copy, tmp_path) -> None:
    missing = runner.invoke(app, ["summarize", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code != 0 and "no study database" in missing.output
    assert not (tmp_path / "none.db").exists()

    done = runner.invoke(app, ["summarize", "--db", str(app_study_copy), "--n-boot", str(BOOT),
                               "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["summaries"] == OPENING and len(data["computed"]) == OPENING
    text = runner.invoke(app, ["summarize", "--db", str(app_study_copy), "--n-boot", str(BOOT)])
    assert text.exit_code == 0
    assert f"0 computed, {OPENING} of {OPENING} already up to date" in text.output


def test_adjudicate_refreshes_summaries_unless_told_not_to(app_study_copy) -> None:
    cache = summary_cache.cache_root(app_study_copy)
    skipped = runner.invoke(app, ["adjudicate", "--db", str(app_study_copy), "--no-summaries",
                                  "--json"])
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.output)["app_summaries"] is None
    assert not cache.exists()

    done = runner.invoke(app, ["adjudicate", "--db", str(app_study_copy), "--json"])
    assert done.exit_code == 0, done.output
    summaries_done = json.loads(done.output)["app_summaries"]
    assert summaries_done["summaries"] == OPENING and len(summaries_done["computed"]) == OPENING
    assert any(cache.glob("prompt-*"))


def test_worker_processes_store_the_same_summaries(app_study_copy, tmp_path) -> None:
    """The parallel path (used from 20,000 conversations) on the small study: every summary
    lands once, and equals what one process computes."""
    other = tmp_path / "other" / "study.db"
    other.parent.mkdir()
    shutil.copy(app_study_copy, other)
    seen: list[tuple[str, int, int]] = []
    parallel = precompute.precompute(app_study_copy, n_boot=BOOT, workers=2,
                                     progress=lambda *a: seen.append(a))
    assert parallel.workers == 2 and len(parallel.computed) == OPENING
    # 0 stored, then one per summary
    assert [done for _, done, _ in seen] == list(range(OPENING + 1))
    single = precompute.precompute(other, n_boot=BOOT, workers=1)
    assert single.workers == 1 and len(single.computed) == OPENING
    summary_cache.clear_memory()
    for path in (app_study_copy, other):
        sigs = summary_cache.signatures(path, summary_cache.fingerprint(path))
        summary = precompute.annotators(BOOT)
        result = summary_cache.get(str(path), summary.name, summary.params,
                                   summary.dep_signatures(sigs), lambda: pytest.fail("missing"), 0)
        assert result.bundle is not None
        table = summary_cache.get(str(path), "conversations", {}, precompute.conversations(
            ).dep_signatures(sigs), lambda: pytest.fail("missing"), 0).bundle
        if path == app_study_copy:
            first = result.bundle.frames["agreement"]
            conversations = table.frames["conversations"]
            # the gold frame, built in two halves by the workers, is the frame built whole
            pd.testing.assert_frame_equal(frame_store.read_frame(path, "gold", sigs["gold"]),
                                          report.gold_frame(open_db(path)))
        else:
            assert result.bundle.frames["agreement"].equals(first)
            pd.testing.assert_frame_equal(table.frames["conversations"], conversations)


def test_extract_refreshes_the_new_prompt_versions_summaries(app_study_copy) -> None:
    """The offline baseline labels the study under a new prompt version: the command's report
    names that version's scores among the summaries it computed."""
    done = runner.invoke(app, ["extract", "--db", str(app_study_copy), "--extractor", "baseline",
                               "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    computed = data["app_summaries"]["computed"]
    assert f"the scores of prompt {data['prompt_id']}" in computed
    assert f"value frequencies (extractions:{data['prompt_id']})" in computed
    dry = runner.invoke(app, ["extract", "--db", str(app_study_copy), "--extractor", "baseline",
                              "--dry-run", "--json"])
    assert dry.exit_code == 0 and json.loads(dry.output)["app_summaries"] is None


def test_a_failure_after_adjudicate_is_reported_and_the_gold_is_kept(app_study_copy, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(precompute, "precompute", broken)
    db = open_db(app_study_copy)
    with db.conn:
        db.execute("delete from gold")
    db.conn.close()
    done = runner.invoke(app, ["adjudicate", "--db", str(app_study_copy), "--json"])
    assert done.exit_code == 0, done.output
    assert "Could not compute the app's summaries (OSError: disk full)" in done.stderr
    data = json.loads(done.stdout)
    assert data["decided"] > 0 and data["app_summaries"] == {"error": "OSError: disk full"}
    db = open_db(app_study_copy)
    assert db["gold"].count == data["decided"]
    db.conn.close()
    # asked for by name, the same failure is the command's error
    asked = runner.invoke(app, ["summarize", "--db", str(app_study_copy)])
    assert asked.exit_code != 0 and "disk full" in asked.output


def test_a_result_stored_twice_keeps_the_first_for_its_readers(app_study_copy) -> None:
    """The app and `annotator summarize` may finish the same summary at once: the second
    store leaves the first in place, so frames a page has not read yet stay readable."""
    fp = summary_cache.fingerprint(app_study_copy)
    sigs = summary_cache.signatures(app_study_copy, fp)
    summary = precompute.frequencies("gold")
    deps = summary.dep_signatures(sigs)
    assert summary_cache.ensure(str(app_study_copy), summary.name, summary.params, deps,
                                lambda: summary.compute(str(app_study_copy), sigs))
    summary_cache.clear_memory()
    first = summary_cache.get(str(app_study_copy), summary.name, summary.params, deps,
                              lambda: pytest.fail("recomputed"), 0).bundle
    assert first is not None
    files = sorted(p for p in summary_cache.cache_root(app_study_copy).rglob("*.arrow"))
    inodes = {p: p.stat().st_ino for p in files}
    # a second process storing the same result (its own compute, its own save)
    summary_cache._compute_and_store(
        summary_cache._bundle_dir(app_study_copy, summary.name,
                                  summary_cache._hash(summary_cache.BUNDLE_VERSION,
                                                      summary.name, summary.params)),
        summary_cache._hash(deps), ("other process",),
        lambda: summary.compute(str(app_study_copy), sigs),
    )
    assert {p: p.stat().st_ino for p in files} == inodes  # the same files, untouched
    assert len(first.frames["values"]) > 0  # read only now


def _agreement_and_card(study, folder) -> tuple[str, list[str]]:
    """`annotator agreement --json` and the dataset card `export --format hf` writes (but
    the time it was written)."""
    figures = runner.invoke(app, ["agreement", "--json", "--db", str(study)])
    assert figures.exit_code == 0, figures.output
    done = runner.invoke(app, ["export", str(folder / "data"), "--format", "hf", "--db",
                               str(study)])
    assert done.exit_code == 0, done.output
    card = (folder / "data" / "README.md").read_text().splitlines()
    return figures.output, [line for line in card if not line.startswith("| exported at |")]


def test_agreement_and_the_card_read_the_stored_annotators_figures(app_study_copy, tmp_path,
                                                                    monkeypatch) -> None:
    """Once `annotator summarize` stored the app's inter-annotator summary for the current
    annotations, `annotator agreement` and the dataset card take their inter-annotator figures
    from it instead of computing them, and print exactly what they printed computing them; a
    new label makes the stored one out of date, and they compute again."""
    computing: list[int] = []
    compute_rows = agreement._inter_annotator_rows
    monkeypatch.setattr(agreement, "_inter_annotator_rows",
                        lambda *args: computing.append(1) or compute_rows(*args))
    for name in ("computed", "stored", "new label", "new label stored"):
        (tmp_path / name).mkdir()
    computed = _agreement_and_card(app_study_copy, tmp_path / "computed")
    assert len(computing) == 2  # agreement, then the card
    done = runner.invoke(app, ["summarize", "--db", str(app_study_copy)])
    assert done.exit_code == 0, done.output
    computing.clear()
    assert _agreement_and_card(app_study_copy, tmp_path / "stored") == computed
    assert computing == []

    _import_a_label(app_study_copy, tmp_path)
    computing.clear()
    changed = _agreement_and_card(app_study_copy, tmp_path / "new label")
    assert changed != computed and len(computing) == 2
    summarized = runner.invoke(app, ["summarize", "--db", str(app_study_copy)])
    assert summarized.exit_code == 0, summarized.output
    computing.clear()
    assert _agreement_and_card(app_study_copy, tmp_path / "new label stored") == changed
    assert computing == []

    # a stored report that does not read back (damaged, another version's) is computed again
    for meta in summary_cache.cache_root(app_study_copy).glob("annotators-*/*/meta.json"):
        stored = json.loads(meta.read_text())
        stored["meta"]["report"]["rows"] = [{"scope": "annotators", "value": "not a number"}]
        meta.write_text(json.dumps(stored))
    (tmp_path / "damaged").mkdir()
    assert _agreement_and_card(app_study_copy, tmp_path / "damaged") == changed
    assert len(computing) == 2


def test_agreement_on_a_study_never_seen_keeps_the_annotators_figures_for_the_app(
        app_study_copy, tmp_path, monkeypatch) -> None:
    """`annotator agreement` on a study whose summaries are not stored computes the
    inter-annotator figures in its second process as the app's summary (a real spawned
    process): it prints what it prints computing them alone, the summary is stored as
    `summarize` stores it, and the app and the next `agreement` read it. A request the
    summary does not hold (other resamples), or fewer levels than it holds (which would wait
    for the others), is computed as asked, and nothing is kept."""
    one_process = runner.invoke(app, ["agreement", "--json", "--db", str(app_study_copy)])
    assert one_process.exit_code == 0, one_process.output
    assert not list(summary_cache.cache_root(app_study_copy).glob("annotators-*/*/meta.json"))

    # the study is small: from one annotation on, the figures go to the second process
    study_agreement = report.study_agreement
    monkeypatch.setattr(report, "study_agreement", lambda *args, **kwargs: study_agreement(
        *args, **kwargs, parallel_min_annotations=1))
    kept = runner.invoke(app, ["agreement", "--json", "--db", str(app_study_copy)])
    assert kept.exit_code == 0, kept.output
    assert kept.output == one_process.output

    db = open_db(app_study_copy)
    signature = report._study_signatures(db)["annotations"]
    summary = precompute.annotators()
    stored = summary_cache.read_stored(app_study_copy, summary.name, summary.params,
                                       summary.dep_signatures({"annotations": signature}))
    assert stored is not None
    summarized = precompute.precompute(app_study_copy)
    assert "inter-annotator agreement" not in summarized.computed
    # as `summarize` stores it when it computes it
    for directory in summary_cache.cache_root(app_study_copy).glob("annotators-*"):
        shutil.rmtree(directory)
    summary_cache.clear_memory()
    deps = summary.dep_signatures({"annotations": signature})
    assert summary_cache.ensure(app_study_copy, summary.name, summary.params, deps,
                                lambda: summary.compute(str(app_study_copy), deps))
    direct = summary_cache.read_stored(app_study_copy, summary.name, summary.params, deps)
    assert (agreement.AgreementReport.model_validate(stored.meta["report"]).model_dump_json()
            == agreement.AgreementReport.model_validate(direct.meta["report"]).model_dump_json())
    assert list(stored.frames) == list(direct.frames)
    for name, frame in direct.frames.items():
        pd.testing.assert_frame_equal(stored.frames[name], frame)

    # read, not computed, by the next `agreement`
    computing: list[int] = []
    compute_rows = agreement._inter_annotator_rows
    monkeypatch.setattr(agreement, "_inter_annotator_rows",
                        lambda *args: computing.append(1) or compute_rows(*args))
    again = runner.invoke(app, ["agreement", "--json", "--db", str(app_study_copy)])
    assert again.exit_code == 0 and again.output == one_process.output and computing == []

    # other resamples than the summary's, or fewer levels: computed as asked (in the second
    # process), not kept
    for asked in ({"n_boot": 20, "top_k": 3}, {"levels": (0,), "top_k": 3}):
        shutil.rmtree(summary_cache.cache_root(app_study_copy))
        other = study_agreement(db, **asked, parallel_min_annotations=1,
                                stored_inter_annotator=precompute.stored_inter_annotator,
                                kept_inter_annotator=precompute.KEPT_INTER_ANNOTATOR)
        alone = study_agreement(db, **asked, parallel_min_annotations=10**9)
        assert [repr(r.model_dump()) for r in other.rows] == [repr(r.model_dump())
                                                              for r in alone.rows]
        assert not list(summary_cache.cache_root(app_study_copy).glob(
            "annotators-*/*/meta.json"))


def test_agreement_takes_each_versions_scores_against_gold_from_the_app(
        app_study_copy, tmp_path, monkeypatch) -> None:
    """Once `annotator summarize` stored each version's scores against gold, `annotator
    agreement` and the dataset card take them instead of computing them and print exactly
    what they printed computing them, in one process and with a second process (a real
    spawned one); other resamples than the app's, a new gold decision, or a damaged stored
    summary: computed."""
    taken: list[str] = []
    known_rows = agreement._known_rows
    monkeypatch.setattr(agreement, "_known_rows", lambda report, known, scope, *rest: (
        taken.append(scope) or known_rows(report, known, scope, *rest)))
    versions = [f"model {V1} test-model vs gold", f"model {V2} test-model vs gold"]

    def figures(*extra: str) -> str:
        done = runner.invoke(app, ["agreement", "--json", "--db", str(app_study_copy), *extra])
        assert done.exit_code == 0, done.output
        return done.output

    for name in ("computed", "stored", "damaged", "decided"):
        (tmp_path / name).mkdir()
    computed, other_boot = _agreement_and_card(app_study_copy, tmp_path / "computed"), figures(
        "--boot", "30")
    assert taken == []
    assert runner.invoke(app, ["summarize", "--db", str(app_study_copy)]).exit_code == 0
    assert _agreement_and_card(app_study_copy, tmp_path / "stored") == computed
    assert sorted(taken) == sorted(versions * 2)  # agreement, then the card
    taken.clear()
    assert figures("--boot", "30") == other_boot and taken == []

    study_agreement = report.study_agreement
    monkeypatch.setattr(report, "study_agreement", lambda *args, **kwargs: study_agreement(
        *args, **kwargs, parallel_min_annotations=1))
    assert figures() == computed[0]  # the later version scored in the second process
    assert taken == versions[:1]  # here; the other there
    monkeypatch.setattr(report, "study_agreement", study_agreement)

    for metrics in summary_cache.cache_root(app_study_copy).glob("prompt_gold-*/*/metrics.arrow"):
        metrics.write_bytes(b"not an Arrow file")
    taken.clear()
    assert _agreement_and_card(app_study_copy, tmp_path / "damaged") == computed
    assert taken == []

    db = open_db(app_study_copy)
    conversation = db.execute("select conversation_id from gold limit 1").fetchone()[0]
    decide(db, conversation, Labels(response_type="neutral", ai_values=["care"], subjective=True),
           "pat")
    assert runner.invoke(app, ["summarize", "--db", str(app_study_copy)]).exit_code == 0
    taken.clear()
    changed = _agreement_and_card(app_study_copy, tmp_path / "decided")
    assert changed[0] != computed[0] and sorted(taken) == sorted(versions * 2)
    monkeypatch.setattr(agreement, "_known_rows", lambda *args: False)  # computed instead
    (tmp_path / "decided, computed").mkdir()
    assert _agreement_and_card(app_study_copy, tmp_path / "decided, computed") == changed
