"""The app's Gold page: where it writes the study's gold file (beside the study database, or
where `annotator app --gold-dir` says; never into the code tree's gold/ folder), and its list of
conversations that need a person, with why."""

from __future__ import annotations

import json
import os

import pytest
from streamlit.testing.v1 import AppTest
from test_app_study import APP, hostile_conversation

from annotator import config
from annotator.db import open_db


@pytest.fixture(autouse=True)
def _fresh_memory():
    from annotator.app import summary_cache

    summary_cache.clear_memory()
    yield


def gold_page(db_path, conversation: str | None = None) -> AppTest:
    """The Gold page on the study (on `conversation`, as a link to it opens it)."""
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["db_path"] = str(db_path)
    at.session_state["wait_seconds"] = 180.0
    at.session_state["n_boot"] = 0
    at.run()
    at.switch_page("app_pages/gold.py")
    if conversation:
        at.query_params["c"] = conversation
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def decide_on_the_gold_page(db_path) -> AppTest:
    """Open the Gold page on the study, decide the hostile conversation and save."""
    hostile = hostile_conversation()
    at = gold_page(db_path)
    pick = next(s.key for s in at.selectbox if s.key.startswith("gold-pick"))
    at.selectbox(key=pick).set_value(hostile.id).run()
    form_key = f"{hostile.id}-annotator demo-a"
    at.radio(key=f"gold-start-{hostile.id}").set_value("annotator demo-a").run()
    at.selectbox(key=f"gold-type-{form_key}").set_value("mild resistance")
    at.text_input(key="decided_by").input("Ada Reviewer")
    next(b for b in at.button if b.label == "Save gold decision").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def code_tree_gold() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in config.gold_dir().iterdir()}


def written(gold_file) -> dict[str, dict]:
    return {r["conversation_id"]: r for r in map(json.loads, gold_file.read_text().splitlines())}


def test_gold_page_writes_beside_the_study_not_into_the_code_tree(
    app_study_copy, monkeypatch
) -> None:
    monkeypatch.delenv("ANNOTATOR_GOLD_DIR", raising=False)
    before = code_tree_gold()
    at = decide_on_the_gold_page(app_study_copy)
    expected = app_study_copy.parent / "gold" / f"{app_study_copy.stem}.jsonl"
    assert at.session_state["gold_file"] == str(expected)
    success = " ".join(s.value for s in at.success).replace("\\", "")
    assert str(expected) in success
    assert written(expected)[hostile_conversation().id]["gold"]["decided_by"] == "Ada Reviewer"
    assert code_tree_gold() == before, "the app wrote into the code tree's gold/"


def test_gold_page_writes_where_gold_dir_says(app_study_copy, tmp_path, monkeypatch) -> None:
    chosen = tmp_path / "reviewed-gold"
    monkeypatch.setenv("ANNOTATOR_GOLD_DIR", str(chosen))  # what `annotator app --gold-dir` sets
    decide_on_the_gold_page(app_study_copy)
    gold_file = chosen / f"{app_study_copy.stem}.jsonl"
    assert written(gold_file)[hostile_conversation().id]["gold"]["response_type"] == (
        "mild resistance")
    assert not (app_study_copy.parent / "gold").exists()
    db = open_db(app_study_copy)
    assert len(written(gold_file)) == db["gold"].count
    db.conn.close()


def test_annotator_app_passes_gold_dir_to_the_app(app_study_copy, tmp_path, monkeypatch) -> None:
    """`annotator app --gold-dir DIR` reaches the app the way --db does: in its environment."""
    import streamlit.web.cli as streamlit_cli
    from typer.testing import CliRunner

    from annotator.cli import app

    seen: dict[str, str | None] = {}

    def fake_main(args, prog_name=None):  # the server would block: record what it would read
        seen["db"] = os.environ.get("ANNOTATOR_DB")
        seen["gold"] = str(config.study_gold_file(config.settings().db_path))

    monkeypatch.setattr(streamlit_cli, "main", fake_main)
    # serve_app sets both for the app it serves: set first, so the test's end restores them
    monkeypatch.setenv("ANNOTATOR_DB", "elsewhere.db")
    monkeypatch.setenv("ANNOTATOR_GOLD_DIR", "elsewhere")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["app", "--db", str(app_study_copy), "--gold-dir", "out",
                                      "--no-browser"])
    assert result.exit_code == 0, result.output
    assert seen == {"db": str(app_study_copy.resolve()),
                    "gold": str(tmp_path / "out" / f"{app_study_copy.stem}.jsonl")}


def test_gold_page_lists_what_needs_a_person_with_why(app_study_copy) -> None:
    """An incomplete annotation keeps a conversation out of gold: the Gold page's default view
    lists it with the reason, beside the conversations whose annotators split."""
    from test_app_pages import frame_of

    from annotator.db import annotation_to_row
    from annotator.models import Annotation, Labels

    db = open_db(app_study_copy)
    conversation_id = db.execute(
        "select conversation_id from gold where decided_by = 'majority' limit 1").fetchone()[0]
    db["gold"].delete(conversation_id)  # as before its third annotation came in
    db["annotations"].insert(annotation_to_row(Annotation(
        id="labelstudio:local:1:99", conversation_id=conversation_id, annotator="[b]late[/b]",
        labels=Labels(response_type="neutral"), source="labelstudio:local:1", source_id="99",
        missing=["subjective"])), pk="id")
    db.conn.close()
    at = gold_page(app_study_copy)
    queue = frame_of(at, "gold-queue").set_index("conversation_id")
    assert queue.loc[conversation_id, "reason"] == (
        "incomplete annotation by [b]late[/b]: subjective missing")
    assert queue.loc[hostile_conversation().id, "reason"] == (
        "3 annotations split on the response type")
    assert len(queue) == 2


def test_gold_page_marks_new_labels_since_and_an_edit_by_another(app_study_copy) -> None:
    """A person's decision made before the current labels carries a warning, and an annotation
    last changed by someone other than its author is named with its editor, not as its
    author's labels (issue 18)."""
    from annotator.datasets.gold import decide
    from annotator.models import Labels

    hostile = hostile_conversation()
    db = open_db(app_study_copy)
    decide(db, hostile.id, Labels(response_type="neutral", subjective=True), decided_by="ada")
    row = next(db["annotations"].rows_where("conversation_id = ?", [hostile.id],
                                            order_by="annotator"))
    with db.conn:  # a shared server's edit, after the decision
        db["annotations"].update(row["id"], {"edited_by": "mallory@example.org"})
    db.conn.close()
    at = gold_page(app_study_copy, conversation=hostile.id)
    from annotator.app.app_pages.common import md

    starts = at.radio(key=f"gold-start-{hostile.id}").options  # shown as literal Markdown
    assert md(f"annotator {row['annotator']}, edited by mallory@example.org") in starts
    assert md(f"annotator {row['annotator']}") not in starts
    assert any("New labels since this decision" in w.value for w in at.warning)
