"""The Prompts page shows anchoring per prompt version: the figures the library computes, and
the statement, including "too few blind tasks"."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from test_anchoring import build_review_study
from test_app_study import APP

from annotator.db import open_db
from annotator.measure import frames as report

BOOT = 50


@pytest.fixture(autouse=True)
def _fresh_memory():
    from annotator.app import summary_cache

    summary_cache.clear_memory()
    yield


def prompts_page(db_path) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["db_path"] = str(db_path)
    at.session_state["wait_seconds"] = 180.0
    at.session_state["n_boot"] = BOOT
    at.run()
    at.switch_page("app_pages/prompts.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_prompts_page_shows_anchoring_as_the_library_computes_it(tmp_path) -> None:
    path = tmp_path / "study.db"
    build_review_study(path, n_prefilled=150, n_blind=60)
    at = prompts_page(path)
    [table] = [d.value for d in at.dataframe if "anchoring" in d.value.columns]
    db = open_db(path)
    [expected] = report.study_anchoring(db, n_boot=BOOT)
    db.conn.close()
    accuracy = table.loc[table["metric"] == "type accuracy"].iloc[0]
    m = next(x for x in expected.metrics if x.metric == "accuracy")
    assert accuracy["anchoring"] == round(m.anchoring.value, 3)
    assert accuracy["pre-filled"] == round(m.prefilled.value, 3)
    assert accuracy["blind"] == round(m.blind.value, 3)
    assert accuracy["95% interval"] == f"[{m.anchoring.low:.3f}, {m.anchoring.high:.3f}]"
    assert accuracy["conversations (pre-filled / blind)"] == "150 / 60"
    said = " ".join(i.value for i in at.info).replace("\\", "")
    assert "response-type accuracy: anchoring, reviewers agree more with the model" in said


def test_prompts_page_says_when_blind_tasks_are_too_few(tmp_path) -> None:
    path = tmp_path / "study.db"
    build_review_study(path, n_prefilled=100, n_blind=7)
    at = prompts_page(path)
    warned = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "Too few blind tasks to tell: 7 annotated blind conversations" in warned
