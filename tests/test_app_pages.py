"""Every page of the app under Streamlit's AppTest, on the test study: the figures shown are
checked against the library computing them directly, not just "no exception"."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_app_study import APP, V1, V2, hostile_conversation, model_labels

from annotator.db import conversation_to_row, open_db
from annotator.measure import coefficients, shapes, value_sets
from annotator.measure import frames as report
from annotator.models import Conversation, Turn

BOOT = 50  # fewer resamples than the default keeps the suite fast; intervals still computed


@pytest.fixture(autouse=True)
def _fresh_memory():
    from annotator.app import summary_cache

    summary_cache.clear_memory()
    yield


def open_app(db_path, page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["db_path"] = str(db_path)
    at.session_state["wait_seconds"] = 180.0  # small studies: wait for every result
    at.session_state["n_boot"] = BOOT
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


# AppTest does not expose a read-only dataframe's key: tables are found by what they hold.
TABLES = {
    "rt-table": {"published study"},
    "categories-table": {"published (released tree)"},
    "subjective-table": {"source", "subjective", "labelled"},
    "rt-agreement": {"metric", "95% interval"},
    "kappa-table": {"pair", "95% interval"},
    "levels-table": {"what", "95% interval"},
    "activity-table": {"annotator", "annotations", "median_lead_time_s"},
    "prompt-summary": {"prompt", "reference", "type accuracy"},
    "delta-table": {"metric", "a", "b", "delta", "interval"},
    "per-value": {"label", "gold", "predicted", "precision", "recall"},
    "changes": {"conversation_id", "type_a", "type_b", "jaccard_a", "jaccard_b"},
    "dis-table": {"conversation_id", "gold_type", "model_type", "annotator_types"},
    "gold-queue": {"conversation_id", "annotator_types", "gold_type", "decided_by"},
}


def frame_of(at: AppTest, name: str) -> pd.DataFrame:
    wanted = TABLES[name]
    found = []
    for d in at.dataframe:
        value = d.value
        columns = set(map(str, value.columns)) | {str(value.index.name)}
        if wanted <= columns:
            found.append(value)
    assert len(found) == 1, f"{len(found)} tables hold {wanted}"
    return found[0]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def study_frames(path):
    db = open_db(path)
    try:
        return report.annotations_frame(db), report.gold_frame(db)
    finally:
        db.conn.close()


# --- empty states ---------------------------------------------------------------------------------


def test_missing_database_says_what_to_run(tmp_path) -> None:
    missing = tmp_path / "nowhere.db"
    at = open_app(missing)
    text = " ".join(i.value for i in at.info)
    assert "annotator demo --db" in text and "annotator init" in text
    assert not missing.exists(), "the app must not create a database by looking at it"


def test_pages_without_labels_say_what_to_run(tmp_path) -> None:
    path = tmp_path / "bare.db"
    db = open_db(path)
    conv = Conversation.from_turns([Turn(role="user", text="hello"),
                                    Turn(role="assistant", text="hi")])
    db["conversations"].insert(conversation_to_row(conv), pk="id")
    db.conn.close()
    expected = {
        "overview": "annotator extract",
        "annotators": "annotator push",
        "prompts": "annotator extract",
        "disagreements": "annotator push",
        "gold": "annotator push",
        "export": "annotator adjudicate",
    }
    for page, command in expected.items():
        at = open_app(path, page)
        text = " ".join(i.value for i in at.info)
        assert command in text, (page, text)


# --- pages ----------------------------------------------------------------------------------------


def share_of(k: int, n: int):
    from annotator.measure.findings import RT_DENOMINATOR
    from annotator.measure.shares import share

    return share(k, n, RT_DENOMINATOR)


def test_overview_counts_and_published_figures(app_study) -> None:
    at = open_app(app_study, "overview")
    m = metrics(at)
    assert m["Conversations"] == "50"
    assert m["Extracted (this prompt)"] == "50"
    assert m["Annotated"] == "50"
    assert m["Adjudicated"] == "49"
    _, gold = study_frames(app_study)
    rt = frame_of(at, "rt-table")
    # one denominator: the gold conversations not labelled non-subjective, as the report
    subjective_gold = gold[gold["subjective"] != False]  # noqa: E712 (None stays in)
    k = int((subjective_gold["response_type"] == "strong support").sum())
    assert rt.loc["strong support", "gold"] == share_of(k, len(subjective_gold)).text()
    assert f"({k} of {len(subjective_gold)} subjective conversations" in rt.loc[
        "strong support", "gold"]
    assert rt.loc["strong support", "published study"] == "28.2%"
    assert rt.loc["strong resistance", "published study"] == "3.0%"
    assert rt.loc["neutral", "published study"] == "9.6%"
    assert rt.loc["no values", "published study"] == "not published"
    cats = frame_of(at, "categories-table")
    released = report.published_category_shares()
    assert cats.loc["Practical", "published (released tree)"] == f"{released['Practical']:.1f}%"
    subjective = frame_of(at, "subjective-table").set_index("source")
    assert subjective.loc["published study", "share"] == "44.0%"
    assert subjective.loc["gold", "subjective"] == int(gold["subjective"].sum())


def test_overview_follows_the_prompt_version(app_study) -> None:
    at = open_app(app_study, "overview")
    rt = frame_of(at, "rt-table")
    assert f"model ({V2})" in rt.columns  # the newest version is chosen first
    at.sidebar.selectbox[0].set_value(V1).run()
    rt = frame_of(at, "rt-table")
    assert f"model ({V1})" in rt.columns and f"model ({V2})" not in rt.columns
    _, gold = study_frames(app_study)
    labels = model_labels(gold, V1)
    types = [t for t, _ in labels.values()] + ["reframing"]  # + the hostile conversation
    share = np.mean([t == "strong support" for t in types])
    assert rt.loc["strong support", f"model ({V1})"].startswith(f"{100 * share:.1f}% [")


def test_annotators_agreement_matches_the_library(app_study) -> None:
    at = open_app(app_study, "annotators")
    m = metrics(at)
    assert m["Annotators"] == "3" and m["Annotations"] == "150"
    annotations, _ = study_frames(app_study)
    table = frame_of(at, "rt-agreement").set_index("metric")
    nominal = coefficients.response_type_alpha(annotations, "nominal")
    assert table.loc["Krippendorff's alpha (nominal)", "value"] == pytest.approx(
        round(nominal.value, 4))
    assert table.loc["Krippendorff's alpha (nominal)", "95% interval"].startswith("[")
    kappa = frame_of(at, "kappa-table").set_index("pair")
    direct = coefficients.pairwise_cohen_kappa(annotations, label="response_type",
                                     labels=shapes.RESPONSE_TYPE_LABELS)
    assert len(kappa) == 3
    for (a, b), stat in direct.items():
        assert kappa.loc[f"{a} ~ {b}", "value"] == pytest.approx(round(stat.value, 4))
    levels = frame_of(at, "levels-table")
    assert len(levels) == 8  # 4 levels x (MASI, Jaccard)
    masi_leaf = value_sets.set_alpha(annotations, "masi")
    row = levels.loc[levels["what"] == "value (leaf) · MASI"].iloc[0]
    assert row["value"] == pytest.approx(round(masi_leaf.value, 4))
    activity = frame_of(at, "activity-table").set_index("annotator")
    assert activity["annotations"].to_dict() == {"demo-a": 50, "demo-b": 50, "demo-c": 50}


def test_prompts_scores_and_comparison(app_study) -> None:
    at = open_app(app_study, "prompts")
    annotations, gold = study_frames(app_study)
    summary = frame_of(at, "prompt-summary")
    assert len(summary) == 2 * 4  # two versions x (gold + three annotators)
    l1, l2 = model_labels(gold, V1), model_labels(gold, V2)
    g = gold.set_index("conversation_id")["response_type"]
    acc1 = np.mean([l1[c][0] == g[c] for c in g.index])
    acc2 = np.mean([l2[c][0] == g[c] for c in g.index])
    row = summary.loc[summary["prompt"].str.endswith(V2) & (summary["reference"] == "gold")]
    assert row.iloc[0]["type accuracy"].startswith(f"{acc2:.3f} [")
    deltas = frame_of(at, "delta-table").set_index("metric")
    assert deltas.loc["response-type accuracy", "delta"] == pytest.approx(round(acc2 - acc1, 4))
    assert m_int(metrics(at)["Improved"]) > 0
    assert m_int(metrics(at)["Regressed"]) == 0 and len(frame_of(at, "changes")) == 0
    # per-value precision and recall: v2 names every gold value, so recall is 1 everywhere
    per = frame_of(at, "per-value")
    assert (per["recall"] == 1.0).all()
    # switching the sidebar's version swaps a and b: the delta changes sign
    at.sidebar.selectbox[0].set_value(V1).run()
    assert not at.exception
    deltas = frame_of(at, "delta-table").set_index("metric")
    assert deltas.loc["response-type accuracy", "delta"] == pytest.approx(round(acc1 - acc2, 4))
    # now a is v2 and b is v1: the regressed list (shown first) holds what v2 improved, each
    # worse in b than in a
    regressed = frame_of(at, "changes")
    assert 0 < len(regressed) <= m_int(metrics(at)["Regressed"])
    for row in regressed.itertuples():
        cid = row.conversation_id
        right_a, right_b = l2[cid][0] == g[cid], l1[cid][0] == g[cid]
        assert (row.type_a, row.type_b) == (l2[cid][0], l1[cid][0])
        assert right_b < right_a or (right_a == right_b and row.jaccard_b < row.jaccard_a)


def m_int(text: str) -> int:
    return int(text.replace(",", ""))


def test_disagreements_filters_and_literal_dialogue(app_study) -> None:
    hostile = hostile_conversation()
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["db_path"] = str(app_study)
    at.session_state["wait_seconds"] = 180.0
    at.session_state["n_boot"] = BOOT
    at.query_params["c"] = hostile.id
    at.run()
    at.switch_page("app_pages/disagreements.py").run()
    assert not at.exception, [e.message for e in at.exception]
    caption = " ".join(c.value for c in at.caption)
    _, gold = study_frames(app_study)
    l2 = model_labels(gold, V2)
    annotations, _ = study_frames(app_study)
    split = annotations.groupby("conversation_id")["response_type"].nunique() > 1
    g = gold.set_index("conversation_id")["response_type"]
    model_wrong = {c for c in g.index if l2[c][0] != g[c]}
    expected = len(model_wrong | set(split[split].index))
    assert f"{expected:,} of 50 conversations" in caption
    rows = frame_of(at, "dis-table").set_index("conversation_id")
    assert rows.loc[hostile.id, "model_type"] == "reframing"  # a model label without gold
    html = [h.value for h in at.get("html")]
    assert html, "the dialogue is shown"
    body = html[0]
    assert "&lt;script&gt;" in body and "<script" not in body and "<img" not in body
    assert "[click here](http://evil.example/phish)" in body
    assert "&lt;img src=x onerror=alert(1)&gt; stays inert" in body.split("<mark", 1)[1]
    # a wide table is paged; a value filter narrows it to conversations naming the value (and
    # the page shown goes back to the first when the table shrinks)
    assert len(frame_of(at, "dis-table")) == 25
    at.pagination[0].set_value(2).run()
    assert len(frame_of(at, "dis-table")) == expected - 25
    at.selectbox(key="dis-value").set_value("honesty").run()
    assert not at.exception, [e.message for e in at.exception]
    caption = " ".join(c.value for c in at.caption)
    names = annotations.groupby("conversation_id")["ai_values"].agg(
        lambda s: {v for t in s for v in t})
    with_honesty = {c for c, vs in names.items() if "honesty" in vs}
    with_honesty |= {c for c in g.index if "honesty" in gold.set_index("conversation_id")
                     .loc[c, "ai_values"]}
    expected_value = len((model_wrong | set(split[split].index)) & with_honesty)
    assert f"{expected_value:,} of 50 conversations" in caption


def test_gold_decision_is_written_with_who_and_when(app_study_copy, tmp_path) -> None:
    hostile = hostile_conversation()
    gold_file = tmp_path / "gold" / "study.jsonl"
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["db_path"] = str(app_study_copy)
    at.session_state["wait_seconds"] = 180.0
    at.session_state["n_boot"] = BOOT
    at.session_state["gold_file"] = str(gold_file)
    at.run()
    at.switch_page("app_pages/gold.py").run()
    assert not at.exception, [e.message for e in at.exception]
    queue = frame_of(at, "gold-queue")
    assert hostile.id in set(queue["conversation_id"])  # its annotators split three ways
    at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("gold-pick"))) \
        .set_value(hostile.id).run()
    start = "annotator demo-a"
    at.radio(key=f"gold-start-{hostile.id}").set_value(start).run()
    form_key = f"{hostile.id}-{start}"
    assert at.multiselect(key=f"gold-ai-{form_key}").value == ["honesty"]
    at.selectbox(key=f"gold-type-{form_key}").set_value("mild resistance")
    at.text_input(key="decided_by").input("Ada Reviewer")
    submit = [b for b in at.button if b.label == "Save gold decision"][0]
    submit.click().run()
    assert not at.exception, [e.message for e in at.exception]
    success = " ".join(s.value for s in at.success)
    assert "Ada Reviewer" in success and str(gold_file) in success.replace("\\", "")
    db = open_db(app_study_copy)
    row = db["gold"].get(hostile.id)
    assert row["decided_by"] == "Ada Reviewer" and row["response_type"] == "mild resistance"
    assert row["decided_at"]
    db.conn.close()
    lines = [json.loads(line) for line in gold_file.read_text().splitlines()]
    assert len(lines) == 50 and [x["conversation_id"] for x in lines] == sorted(
        x["conversation_id"] for x in lines)
    mine = next(x for x in lines if x["conversation_id"] == hostile.id)
    assert mine["gold"]["decided_by"] == "Ada Reviewer"
    # the app sees the new gold at once: the conversation left the "no majority"-and-undecided
    # view of decisions by a person
    at.segmented_control(key="gold-scope").set_value("decided by a person").run()
    assert hostile.id in set(frame_of(at, "gold-queue")[
        "conversation_id"])


def test_export_prepares_a_validated_download(app_study) -> None:
    at = open_app(app_study, "export")
    assert not at.metric  # nothing prepared yet
    at.button[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    m = metrics(at)
    # the 50th conversation is not adjudicated (its annotators split): named, with why
    assert m["Exported"] == "49" and m["Left out"] == "1"
    left_out = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert left_out.to_dict("records") == [{
        "conversation": hostile_conversation().id,
        "reason": "not adjudicated: 3 annotations split on the response type"}]
    assert at.get("download_button")
    first = json.loads(at.code[0].value.splitlines()[0])
    assert {"conversation_id", "turns", "ai_values", "response_type"} <= set(first)
    # CSV, only strong resistance
    at.radio(key="export-format").set_value("csv")
    at.multiselect(key="export-types").set_value(["strong resistance"])
    at.button[0].click().run()
    _, gold = study_frames(app_study)
    expected = int((gold["response_type"] == "strong resistance").sum())
    assert metrics(at)["Exported"] == str(expected)
    header = at.code[0].value.splitlines()[0]
    assert header.startswith("conversation_id,source,external_id,response_type")


def test_cache_follows_the_database(app_study_copy) -> None:
    """A change written by someone else (the CLI) shows on the next run."""
    from annotator.datasets.gold import decide
    from annotator.models import Labels

    at = open_app(app_study_copy, "overview")
    assert metrics(at)["Adjudicated"] == "49"
    db = open_db(app_study_copy)
    decide(db, hostile_conversation().id,
           Labels(ai_values=["honesty"], response_type="neutral", subjective=True), "cli user")
    db.conn.close()
    at.run()
    assert metrics(at)["Adjudicated"] == "50"


def open_conversation(db_path, conversation_id: str) -> AppTest:
    """The Disagreements page opened on one conversation by its link (`?c=ID`)."""
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["db_path"] = str(db_path)
    at.session_state["wait_seconds"] = 180.0
    at.session_state["n_boot"] = BOOT
    at.query_params["c"] = conversation_id
    at.run()
    at.switch_page("app_pages/disagreements.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_conversation_links_to_its_label_studio_task(app_study_copy, monkeypatch) -> None:
    db = open_db(app_study_copy)
    cid = report.gold_frame(db)["conversation_id"].iloc[0]
    # a task as `push` records it on the team's server (LABEL_STUDIO_URL): named by its URL
    db["tasks"].insert({"server": "http://labelstudio.example:8080", "conversation_id": cid,
                        "project_id": 3, "task_id": 42,
                        "pushed_at": "2026-01-01T00:00:00+00:00", "prompt_versions": "[]"})
    db.conn.close()
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://labelstudio.example:8080/")
    at = open_conversation(app_study_copy, cid)
    links = [b.proto.url for b in at.get("link_button")]
    assert links == ["http://labelstudio.example:8080/projects/3/data?task=42"]


def test_conversation_links_to_each_reviewers_task(app_study_copy) -> None:
    """Isolated review puts one task per reviewer's server: the app links every one."""
    db = open_db(app_study_copy)
    cid = report.gold_frame(db)["conversation_id"].iloc[0]
    for n, server in enumerate(("http://ls-ada.example:8081", "http://ls-bob.example:8082")):
        db["tasks"].insert({"server": server, "conversation_id": cid, "project_id": 1,
                            "task_id": 7 + n, "pushed_at": f"2026-01-0{n + 1}T00:00:00+00:00",
                            "prompt_versions": "[]"})
    db.conn.close()
    at = open_conversation(app_study_copy, cid)
    assert [b.proto.url for b in at.get("link_button")] == [
        "http://ls-ada.example:8081/projects/1/data?task=7",
        "http://ls-bob.example:8082/projects/1/data?task=8",
    ]
    assert [b.proto.label for b in at.get("link_button")] == [
        "Open the task in Label Studio (1 of 2)", "Open the task in Label Studio (2 of 2)"]


def test_a_file_that_is_not_a_study_is_reported(tmp_path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not SQLite\n" * 100)
    at = open_app(path)
    assert "is not a study database" in " ".join(e.value for e in at.error)


def test_disagreements_picker_searches_every_conversation(app_study) -> None:
    hostile = hostile_conversation()
    at = open_app(app_study, "disagreements")
    picker = next(s for s in at.selectbox if s.label == "Conversation")
    shown = list(frame_of(at, "dis-table")["conversation_id"])
    # without a search: the rows of the table's page, each with its snippet
    assert [o.split(" · ")[0] for o in picker.options] == [c[:12] for c in shown]
    assert all(" · user: " in o for o in picker.options)
    # by text: found wherever it is, the snippet on the words, kept literal
    at.text_input(key="dis-search").set_value("pwned").run()
    assert not at.exception, [e.message for e in at.exception]
    picker = next(s for s in at.selectbox if s.label == "Conversation")
    assert len(picker.options) == 1 and picker.options[0].startswith(hostile.id[:12])
    assert "<script>alert('pwned')</script>" in picker.options[0]
    assert picker.value == hostile.id
    assert "Render this for me" in next(h.value for h in at.get("html"))
    # by id prefix: a conversation the table's first page does not show
    _, gold = study_frames(app_study)
    elsewhere = sorted(set(gold["conversation_id"]) - set(shown))[0]
    at.text_input(key="dis-search").set_value(elsewhere[:8]).run()
    picker = next(s for s in at.selectbox if s.label == "Conversation")
    assert picker.value == elsewhere
    # nothing found: said so, and the page stops there
    at.text_input(key="dis-search").set_value("no conversation says this").run()
    assert "No conversation has this id prefix" in " ".join(i.value for i in at.info)
    assert not [s for s in at.selectbox if s.label == "Conversation"]
    # a conversation opened from a table (?c=) is shown, and the old search is cleared
    at.query_params["c"] = elsewhere
    at.run()
    assert at.text_input(key="dis-search").value == ""
    assert next(s for s in at.selectbox if s.label == "Conversation").value == elsewhere


def test_shares_of_zero_read_0_percent(app_study) -> None:
    from annotator.app.app_pages.common import share
    from annotator.measure import summaries

    assert [share(x) for x in (0, 0.0, 0.0004, 0.282, 1, None, float("nan"))] == [
        "0%", "0%", "<0.1%", "28.2%", "100.0%", "unavailable", "unavailable"]
    at = open_app(app_study)
    cats = frame_of(at, "categories-table")
    # the released tree has no free values: 0% of its occurrences, not a missing figure
    assert cats.loc[summaries.FREE, "published (released tree)"] == "0%"
    cells = [str(v) for v in cats.to_numpy().ravel()]
    assert "unavailable" not in cells and "0.0%" not in cells
    rt = frame_of(at, "rt-table")
    assert "0.0%" not in [str(v) for v in rt.to_numpy().ravel()]
