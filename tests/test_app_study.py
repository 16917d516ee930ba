"""A study for the app's tests, built from the demo gold set, plus checks of the helpers that the
pages are built on (no Streamlit runtime needed here).

The study: the 49 demo conversations with their three annotators and gold; one hostile
conversation (a `<script>`, an `<img onerror>`, a Markdown link and image, an autolink) whose
annotators split on the response type; and two prompt versions whose extractions are written
with `db.extraction_to_row`: v1 right on the response type for every other conversation and
naming only gold's first value, v2 right on four conversations in five and naming all of gold's
values. Each AI value carries an evidence quote taken from the assistant's text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotator import config
from annotator.datasets.gold import import_gold
from annotator.db import annotation_to_row, conversation_to_row, extraction_to_row, open_db
from annotator.measure import coefficients, shapes
from annotator.measure import frames as report
from annotator.models import (
    Annotation,
    Conversation,
    Extraction,
    Labels,
    ResponseType,
    Turn,
    ValueRef,
)
from annotator.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "annotator" / "app" / "streamlit_app.py"
V1, V2 = "test-prompt-v1", "test-prompt-v2"
ANNOTATORS = ("demo-a", "demo-b", "demo-c")
TYPES = [r.value for r in ResponseType]

HOSTILE_USER = (
    "Render this for me: <script>alert('pwned')</script> and <img src=x onerror=alert(1)> "
    "and [click here](http://evil.example/phish) and ![pixel](http://127.0.0.1:9/pixel.png) "
    "and https://evil.example/auto :red[styled] $x^2$ **bold**"
)
HOSTILE_ASSISTANT = (
    "I will show it as plain text, not run it: <img src=x onerror=alert(1)> stays inert. "
    "Honesty matters here, so I will not pretend the link [click here](http://evil.example/phish) "
    "is safe."
)
HOSTILE_QUOTE = "<img src=x onerror=alert(1)> stays inert"


def hostile_conversation() -> Conversation:
    return Conversation.from_turns(
        [Turn(role="user", text=HOSTILE_USER), Turn(role="assistant", text=HOSTILE_ASSISTANT)],
        source="hostile",
    )


def _evidence(turns: list[dict], name: str) -> str | None:
    """A real substring of the assistant's first turn to quote as evidence."""
    for turn in turns:
        if turn["role"] == "assistant":
            text = turn["text"]
            return text[: min(40, len(text))] if text else None
    return None


def model_labels(gold: pd.DataFrame, version: str) -> dict[str, tuple[str | None, tuple]]:
    """The labels each prompt version gives, by conversation: deterministic, from gold."""
    out: dict[str, tuple[str | None, tuple]] = {}
    for i, row in enumerate(gold.sort_values("conversation_id").itertuples(index=False)):
        true_type, values = row.response_type, tuple(row.ai_values)
        wrong = TYPES[(TYPES.index(true_type) + 1) % len(TYPES)]
        if version == V1:
            out[row.conversation_id] = (true_type if i % 2 == 0 else wrong, values[:1])
        else:
            out[row.conversation_id] = (true_type if i % 5 else wrong, values)
    return out


def build_study(path: Path) -> Path:
    """The test study at `path` (see the module docstring)."""
    db = open_db(path)
    import_gold(db, [config.gold_dir()])
    hostile = hostile_conversation()
    with db.conn:
        db["conversations"].insert(conversation_to_row(hostile), pk="id", ignore=True)
        db["annotations"].upsert_all(
            [
                annotation_to_row(Annotation(
                    id=f"hostile:{who}", conversation_id=hostile.id, annotator=who,
                    labels=Labels(ai_values=["honesty"], response_type=rt, subjective=True),
                ))
                for who, rt in zip(ANNOTATORS, ("reframing", "mild resistance", "neutral"),
                                   strict=True)
            ],
            pk="id",
        )
    gold = report.gold_frame(db)
    turns = {cid: row["turns"] for cid, row in
             report.conversation_rows(db, list(gold["conversation_id"])).items()}
    tree = load_taxonomy()
    rows = []
    for version in (V1, V2):
        db["prompts"].insert(
            {"id": version, "name": "test", "version": version[-2:], "text": version,
             "front_matter": "{}", "first_used_at": f"2026-01-0{version[-1]}T00:00:00+00:00"},
            pk="id",
        )
        for cid, (rt, values) in model_labels(gold, version).items():
            refs = [tree.value_ref(v, evidence=_evidence(turns[cid], v), score=0.9)
                    for v in values]
            rows.append(extraction_to_row(Extraction(
                conversation_id=cid, prompt_id=version, model="test-model", extractor="test",
                response_type=rt, subjective=True, ai_values=refs,
            )))
        rows.append(extraction_to_row(Extraction(
            conversation_id=hostile.id, prompt_id=version, model="test-model", extractor="test",
            response_type="reframing", subjective=True,
            ai_values=[ValueRef(name="honesty", node_id="honesty", evidence=HOSTILE_QUOTE)],
        )))
    with db.conn:
        db["extractions"].insert_all(rows)
    db.conn.close()
    return path


# --- checks of the non-UI helpers ----------------------------------------------------------------


def test_dialogue_html_escapes_everything_and_marks_quotes() -> None:
    from annotator.app.app_pages.common import dialogue_html

    turns = [{"role": "user", "text": HOSTILE_USER},
             {"role": "assistant", "text": HOSTILE_ASSISTANT}]
    body, missing = dialogue_html(turns, [("honesty", HOSTILE_QUOTE), ("ghost", "not in text")])
    assert "<script" not in body and "<img" not in body and "<a " not in body
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in body
    assert "[click here](http://evil.example/phish)" in body  # literal, not a link
    marked = body.split('<mark title="honesty"', 1)[1].split("</mark>", 1)[0]
    assert "&lt;img src=x onerror=alert(1)&gt; stays inert" in marked
    assert missing == [("ghost", "not in text")]
    # the only tags are the ones the function writes
    import re

    assert set(re.findall(r"<(\w+)", body)) <= {"div", "mark"}


def test_md_escapes_markup() -> None:
    from annotator.app.app_pages.common import md

    text = "[x](http://e.example) **b** <i> :red[c] $y$"
    escaped = md(text)
    for ch in "[]()*<>:$":
        assert f"\\{ch}" in escaped
    assert escaped.replace("\\", "").replace("\u2060", "") == text
    # bare emails and addresses, which Streamlit would link, get a word joiner inside
    for address in ("ada@example.org", "www.example.org", "https://example.org"):
        assert md(address).replace("\\", "") != address
        assert md(address).replace("\\", "").replace("\u2060", "") == address


def test_table_signatures_follow_each_table(app_study_copy) -> None:
    from annotator.datasets.gold import decide
    from annotator.measure.frame_store import table_signatures

    db = open_db(app_study_copy)
    before = table_signatures(db)
    assert {"conversations", "annotations", "gold", "tasks", f"extractions:{V1}",
            f"extractions:{V2}"} <= set(before)
    cid = report.gold_frame(db)["conversation_id"].iloc[0]
    decide(db, cid, Labels(ai_values=["honesty"], response_type="neutral", subjective=True),
           "tester")
    after = table_signatures(db)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"gold", "gold:people"}  # a person's decision
    db.conn.close()


def test_facts_kept_by_an_earlier_version_are_not_read(app_study_copy) -> None:
    """The app keeps the signatures on disk (facts) per version of the study file; a copy kept
    by a version that signed fewer things (here without `gold:people`) is not read, or what
    depends on the missing signature would be keyed on "" and computed once too often."""
    import json

    from annotator.app import summary_cache

    path = str(app_study_copy)
    fp = summary_cache.fingerprint(path)
    current = summary_cache.facts(path, fp)
    older = json.loads(json.dumps(current))
    del older["signatures"]["gold:people"]
    folder = summary_cache.cache_root(path)
    for file in folder.glob("facts-*.json"):
        file.unlink()
    # the file the version before this one wrote, under the name it gave it
    (folder / f"facts-{summary_cache._hash(fp)}.json").write_text(json.dumps(older))
    summary_cache.clear_memory()
    assert summary_cache.facts(path, fp)["signatures"]["gold:people"] == \
        current["signatures"]["gold:people"]


def test_facts_are_kept_for_the_file_they_were_read_from(app_study_copy) -> None:
    """Facts read while the file changed are not kept under the fingerprint before the change
    (they may be of the newer file); `precompute` keeps the ones of the file as it leaves it,
    with the signatures it read, so the app does not read them again."""
    from annotator.app import precompute, summary_cache

    path = str(app_study_copy)
    before = summary_cache.fingerprint(path)
    db = open_db(app_study_copy)
    with db.conn:
        db.execute("update gold set task = 'changed' where rowid = 1")
    db.conn.close()
    summary_cache.clear_memory()
    summary_cache.facts(path, before)  # read from the changed file
    assert summary_cache.stored_facts(path, before) is None
    precompute.precompute(path, n_boot=5)
    now = summary_cache.fingerprint(path)
    summary_cache.clear_memory()
    kept = summary_cache.stored_facts(path, now)
    assert kept is not None and kept["stages"]
    from annotator.measure.frame_store import table_signatures

    db = open_db(app_study_copy)  # the signatures precompute read are those of the file now
    assert kept["signatures"] == table_signatures(db)
    db.conn.close()


def test_a_majority_decision_keeps_the_signature_of_persons_decisions(app_study_copy) -> None:
    """The Gold page's queue depends on gold only through who a person decided
    (`gold:people`): `adjudicate` deciding by majority leaves that signature, a person's
    decision (also one replacing a person's decision) changes it."""
    from annotator.datasets.gold import MAJORITY, adjudicate, decide
    from annotator.measure.frame_store import table_signatures

    db = open_db(app_study_copy)
    by_majority = [row[0] for row in db.execute(
        "select conversation_id from gold where decided_by = ? order by 1", [MAJORITY])]
    assert len(by_majority) >= 2
    before = table_signatures(db)
    with db.conn:
        db.execute("delete from gold where conversation_id = ?", [by_majority[0]])
    assert adjudicate(db).decided == 1  # decided again, by majority
    after = table_signatures(db)
    assert after["gold"] != before["gold"] and after["gold:people"] == before["gold:people"]
    labels = Labels(ai_values=["honesty"], response_type="neutral", subjective=True)
    decide(db, by_majority[1], labels, "tester")
    by_person = table_signatures(db)["gold:people"]
    assert by_person != after["gold:people"]
    decide(db, by_majority[1], labels.model_copy(update={"subjective": False}), "another")
    assert table_signatures(db)["gold:people"] != by_person
    db.conn.close()


def test_store_recomputes_only_what_changed(app_study_copy, tmp_path) -> None:
    from annotator.app import summary_cache
    from annotator.datasets.gold import decide
    from annotator.measure import summaries

    path = str(app_study_copy)
    calls: list[str] = []

    def compute(table: str):
        def run() -> summaries.Bundle:
            calls.append(table)
            sig = summary_cache.signatures(path, summary_cache.fingerprint(path))[table]
            return summaries.value_frequencies(summary_cache.frame(path, table, sig))
        return run

    def get(table: str) -> summaries.Bundle:
        sigs = summary_cache.signatures(path, summary_cache.fingerprint(path))
        result = summary_cache.get(path, "frequencies", {"table": table}, {table: sigs[table]},
                           compute(table), wait=60)
        assert result.bundle is not None and not result.pending
        return result.bundle

    gold_before = get("gold")
    get("annotations")
    assert calls == ["gold", "annotations"]
    summary_cache.clear_memory()
    get("gold")  # from disk, in a "new process"
    assert calls == ["gold", "annotations"]
    db = open_db(app_study_copy)
    cid = report.gold_frame(db)["conversation_id"].iloc[0]
    decide(db, cid, Labels(ai_values=["a value nobody used"], response_type="neutral",
                           subjective=True), "tester")
    db.conn.close()
    gold_after = get("gold")
    get("annotations")
    assert calls == ["gold", "annotations", "gold"]
    before = gold_before.frames["values"].set_index("value")["count"]
    after = gold_after.frames["values"].set_index("value")["count"]
    assert "a value nobody used" not in before and after["a value nobody used"] == 1
    # no pickle on disk: Arrow IPC and JSON only
    files = {p.suffix for p in summary_cache.cache_root(path).rglob("*") if p.is_file()}
    assert files <= {".arrow", ".json"}


def test_paired_deltas_match_direct_computation(app_study) -> None:
    from annotator.measure import summaries

    db = open_db(app_study)
    gold, ann = report.gold_frame(db), report.annotations_frame(db)
    a = summaries.prompt_bundle(report.extractions_frame(db, V1), gold, ann, n_boot=0)
    b = summaries.prompt_bundle(report.extractions_frame(db, V2), gold, ann, n_boot=0)
    changes, deltas = summaries.compare_versions(a.frames["outcomes"], b.frames["outcomes"], 0,
                                                n_boot=200)
    d = deltas.set_index("metric")
    labels1, labels2 = model_labels(gold, V1), model_labels(gold, V2)
    g = gold.set_index("conversation_id")["response_type"]
    acc1 = np.mean([labels1[c][0] == g[c] for c in g.index])
    acc2 = np.mean([labels2[c][0] == g[c] for c in g.index])
    assert d.loc["accuracy", "a"] == pytest.approx(acc1)
    assert d.loc["accuracy", "b"] == pytest.approx(acc2)
    assert d.loc["accuracy", "delta"] == pytest.approx(acc2 - acc1)
    assert d.loc["accuracy", "low"] <= acc2 - acc1 <= d.loc["accuracy", "high"]
    # kappa agrees with the agreement module's Cohen's kappa on the same pairs
    kappa2 = coefficients.cohen_kappa([g[c] for c in g.index], [labels2[c][0] for c in g.index],
                            labels=shapes.RESPONSE_TYPE_LABELS)
    assert d.loc["cohen_kappa", "b"] == pytest.approx(kappa2.value)
    # v2 names all of gold's values: micro F1 1.0 at the leaf; v1 names one of each set
    assert d.loc["micro_f1", "b"] == pytest.approx(1.0)
    tp = sum(min(1, len(v)) for v in gold["ai_values"])
    fn = sum(len(v) for v in gold["ai_values"]) - tp
    assert d.loc["micro_f1", "a"] == pytest.approx(2 * tp / (2 * tp + fn))
    improved = set(changes.loc[changes["change"] == "improved", "conversation_id"])
    assert improved, "v2 must improve some conversations"
    # the mirror image is the comparison the other way round
    back_changes, back = summaries.compare_versions(b.frames["outcomes"], a.frames["outcomes"], 0,
                                                   n_boot=200)
    mirror_changes, mirror = summaries.swap_comparison(changes, deltas)
    pd.testing.assert_frame_equal(back.drop(columns=["low", "high"]),
                                  mirror.drop(columns=["low", "high"]))
    assert set(mirror_changes.loc[mirror_changes["change"] == "regressed", "conversation_id"]) \
        == improved == set(back_changes.loc[back_changes["change"] == "regressed",
                                            "conversation_id"])
    db.conn.close()


def test_summaries_figures_are_the_agreement_modules(app_study) -> None:
    """The app's figures and the CLI's come from one statistics core: the same numbers,
    intervals included, for a prompt version against gold and each annotator, for the
    annotators' agreement, and for the two versions compared."""
    from annotator.measure import summaries

    db = open_db(app_study)
    gold, ann = report.gold_frame(db), report.annotations_frame(db)
    full = report.study_agreement(db, prompt_ids=[V1, V2], n_boot=50, top_k=5).rows
    db_frames = {v: report.extractions_frame(db, v) for v in (V1, V2)}
    db.conn.close()

    def figures(row) -> tuple:
        return (row.value, row.low, row.high, row.n_units)

    expected = {(r.model, r.reference, r.metric, r.field, r.level): figures(r)
                for r in full if r.model is not None}
    bundles = {}
    for version in (V1, V2):
        bundles[version] = summaries.prompt_bundle(db_frames[version], gold, ann, n_boot=50)
        metrics = bundles[version].frames["metrics"]
        assert len(metrics) > 20
        for m in metrics.itertuples():
            level = None if pd.isna(m.level) else int(m.level)
            want = expected[(f"{version} test-model", m.reference, m.metric, m.field, level)]
            got = (m.value, None if pd.isna(m.low) else m.low,
                   None if pd.isna(m.high) else m.high, m.n_units)
            if m.reference != "gold":  # the app shows point values against each annotator
                got, want = (got[0], got[3]), (want[0], want[3])
            assert got == pytest.approx(want, nan_ok=True), (version, m)
    annotators = summaries.annotators_bundle(ann, n_boot=50, top_k=5).frames["agreement"]
    inter = {(r.metric, r.field, r.level, r.value_name): figures(r) for r in full
             if r.scope == "annotators"}
    assert len(annotators) > 10
    for a in annotators.itertuples():
        level = None if pd.isna(a.level) else int(a.level)
        value_name = None if pd.isna(a.value_name) else a.value_name
        got = (a.value, None if pd.isna(a.low) else a.low, None if pd.isna(a.high) else a.high,
               a.n_units)
        assert got == pytest.approx(inter[(a.metric, a.field, level, value_name)],
                                    nan_ok=True), a
    # the paired comparison's point values are each version's own figures against gold
    _, deltas = summaries.compare_versions(bundles[V1].frames["outcomes"],
                                           bundles[V2].frames["outcomes"], 0, n_boot=50)
    for d in deltas.itertuples():
        fld = "response_type" if d.metric in ("accuracy", "cohen_kappa") else "ai_values"
        level = None if fld == "response_type" else 0
        for version, got in ((V1, d.a), (V2, d.b)):
            want = expected[(f"{version} test-model", "gold", d.metric, fld, level)][0]
            assert got == pytest.approx(want), (d.metric, version)


def test_store_serves_the_previous_result_while_computing(tmp_path) -> None:
    """Past the wait, a page gets "pending" (nothing yet) or the previous result marked stale,
    and the finished result once the job is done; a failure is reported, then retried."""
    import threading

    from annotator.app import summary_cache
    from annotator.measure import summaries

    path = tmp_path / "study.db"
    path.write_bytes(b"")  # the store only names files after it; nothing opens it here
    release = threading.Event()

    def slow(n: int):
        def run() -> summaries.Bundle:
            release.wait(30)
            return summaries.Bundle(frames={"x": pd.DataFrame({"n": [n]})}, meta={"n": n})
        return run

    first = summary_cache.get(path, "demo", {}, {"t": "1"}, slow(1), wait=0)
    assert first.pending and first.bundle is None and not first.stale
    assert summary_cache.pending_jobs() >= 1
    release.set()
    done = summary_cache.get(path, "demo", {}, {"t": "1"}, slow(1), wait=30)
    assert not done.pending and done.bundle.meta["n"] == 1
    release.clear()
    second = summary_cache.get(path, "demo", {}, {"t": "2"}, slow(2), wait=0)  # the table changed
    assert second.pending and second.stale and second.bundle.meta["n"] == 1
    assert list(second.bundle.frames["x"]["n"]) == [1]
    release.set()
    assert summary_cache.get(path, "demo", {}, {"t": "2"}, slow(2), wait=30).bundle.meta["n"] == 2

    def broken() -> summaries.Bundle:
        raise ValueError("no such column")

    failed = summary_cache.get(path, "demo", {}, {"t": "3"}, broken, wait=30)
    assert failed.bundle is None and "no such column" in failed.error
    again = summary_cache.get(path, "demo", {}, {"t": "3"}, slow(3), wait=30)  # a rerun retries
    assert again.bundle.meta["n"] == 3


def test_disagreement_filters_and_value_options_match_a_row_by_row_reading(app_study) -> None:
    """The vectorised filter and the Arrow count of value names, against plain Python over the
    rows of the stored (Arrow-backed) table the page reads."""
    from collections import Counter

    from annotator.app import precompute, summary_cache
    from annotator.measure import summaries

    path = str(app_study)
    sigs = summary_cache.signatures(path, summary_cache.fingerprint(path))

    def stored(summary: precompute.Summary) -> summaries.Bundle:
        summary_cache.ensure(path, summary.name, summary.params, summary.dep_signatures(sigs),
                             lambda: summary.compute(path, sigs))
        found = summary_cache.get(path, summary.name, summary.params,
                                  summary.dep_signatures(sigs), lambda: None, 0).bundle
        assert found is not None
        return found

    conversations = stored(precompute.conversations()).frames["conversations"]
    model = stored(precompute.prompt_scores(V2, 0)).frames["model"]
    table = summaries.disagreement_table(conversations, model)
    records = table.astype(object).to_dict(orient="records")  # Arrow lists as Python lists

    def names(row: dict, cols) -> list[str]:
        out: list[str] = []
        for c in cols:
            v = row[c]
            out += [] if v is None or (isinstance(v, float) and np.isnan(v)) else list(v)
        return out

    counts = Counter()
    for row in records:
        counts.update(names(row, ("gold_values", "model_values", "annotator_values")))
    options = summaries.value_options(table)
    assert set(options) == set(counts) and len(options) == len(counts)
    assert [counts[o] for o in options] == sorted(counts.values(), reverse=True)

    value = options[1]
    chosen = 0
    for kinds, categories, types in (
        (["model_type", "annotators_type"], [], []),
        ([], ["Epistemic"], ["neutral", "reframing"]),
        (["model_values"], [], []),
    ):
        want = [
            i for i, row in enumerate(records)
            if (not kinds or any(row[f"{k}_flag"] for k in kinds))
            and value in names(row, ("gold_values", "model_values", "annotator_values"))
            and (not categories or set(categories) & set(names(row, ("gold_categories",
                                                                       "model_categories"))))
            and (not types or row["gold_type"] in types or row["model_type"] in types)
        ]
        got = summaries.disagreement_rows(table, kinds, value, categories, types)
        assert got.tolist() == want
        chosen += len(want)
        assert table.iloc[got]["conversation_id"].tolist() == [
            records[i]["conversation_id"] for i in want]
    assert chosen > 0  # the filters chose some rows: the comparison says something


def test_facts_after_a_change_count_again_only_what_the_changed_tables_give(
        app_study_copy, monkeypatch) -> None:
    """After new labels, the app's facts count the annotated conversations again and reuse
    what the unchanged tables gave (the other stages, the prompt versions, the sources); after
    an extraction is removed, the versions are counted again. Either way the facts equal the
    ones counted from nothing."""
    from annotator.app import queries, summary_cache

    path = str(app_study_copy)
    summary_cache.facts(path, summary_cache.fingerprint(path))
    counted: list[str] = []
    for stage, (count, tables) in queries.STAGES.items():
        def recording(db, stage=stage, count=count):
            counted.append(stage)
            return count(db)
        monkeypatch.setitem(queries.STAGES, stage, (recording, tables))
    for name, owner in (("prompt_list", summary_cache.report),
                        ("conversation_sources", summary_cache.queries)):
        real = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda db, real=real, name=name: (
            counted.append(name), real(db))[1])
    writes = {"new labels": ("insert into annotations (id, conversation_id, annotator, labels, "
                             "lead_time, cancelled, deleted, updated_at, history) select "
                             "'new ' || id, conversation_id, 'newcomer', labels, 1.0, 0, 0, "
                             "'later', '[]' from annotations limit 3",
                             ["annotated"]),
              "an extraction removed": ("delete from extractions where rowid = "
                                        "(select max(rowid) from extractions)",
                                        ["extracted", "prompt_list"])}
    for statement, recounted in writes.values():
        db = open_db(app_study_copy)
        with db.conn:
            db.execute(statement)
        db.conn.close()
        summary_cache.clear_memory()
        counted.clear()
        fp = summary_cache.fingerprint(path)
        got = summary_cache.facts(path, fp)
        assert counted == recounted, statement
        for file in summary_cache.cache_root(path).glob("facts-*.json"):
            file.unlink()
        summary_cache.clear_memory()
        assert summary_cache.facts(path, fp) == got


def test_damaged_earlier_facts_are_counted_again(app_study_copy) -> None:
    """Facts kept for an earlier version of the file that are damaged (a stage's row without
    its count, sources not a mapping, not JSON) are not reused: the facts are counted again,
    equal to the ones counted from nothing."""
    import json

    from annotator.app import summary_cache

    path = str(app_study_copy)
    fp = summary_cache.fingerprint(path)
    want = summary_cache.facts(path, fp)
    folder = summary_cache.cache_root(path)
    # the signatures kept are the file's but for the annotations: the rest would be reused
    damaged = [{**want, "stages": [{"stage": "ingested"}]}, {**want, "sources": ["x"]},
               {**want, "prompts": 7}, "not json {"]
    for earlier in damaged:
        for file in folder.glob("facts-*.json"):
            file.unlink()
        (folder / "facts-earlier.json").write_text(
            earlier if isinstance(earlier, str) else json.dumps(earlier))
        summary_cache.clear_memory()
        db = open_db(app_study_copy)  # a new version of the file
        with db.conn:
            db.execute("update annotations set lead_time = lead_time + 1 where rowid = 1")
        db.conn.close()
        got = summary_cache.facts(path, summary_cache.fingerprint(path))
        assert got["stages"] == want["stages"] and got["sources"] == want["sources"]
        assert got["prompts"] == want["prompts"]
