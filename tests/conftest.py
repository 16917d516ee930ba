"""Shared fixtures: the fake Anthropic API and a small study database (extraction), and the
app's test study (built once per session)."""

from __future__ import annotations

import random
import shutil
import sqlite3
from collections.abc import Iterator

import pytest
from fake_anthropic import FakeAnthropic, names_in_text_rule, synthetic_turns

from annotator import db as db_module
from annotator import taxonomy
from annotator.models import Conversation, Turn

TEST_API_KEY = "sk-ant-test-0123456789-SECRET-abcdef"  # a fake key: must never be stored


def value_names(n: int = 300) -> list[str]:
    return [node.name for node in taxonomy.top_values(n)]


@pytest.fixture
def fake_api():
    """The fake Messages/Batches API on 127.0.0.1; replies name the values found in the text."""
    fake = FakeAnthropic(rule=names_in_text_rule(value_names()))
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def make_conversations(n: int, seed: int = 7) -> list[Conversation]:
    rng = random.Random(seed)
    names = value_names(150)
    return [
        Conversation.from_turns(
            [Turn(role=role, text=text) for role, text in synthetic_turns(i, names, rng)],
            source="synthetic",
        )
        for i in range(n)
    ]


def make_study(path, n: int = 12, seed: int = 7) -> list[Conversation]:
    """A study database at `path` holding `n` synthetic conversations."""
    convs = make_conversations(n, seed)
    database = db_module.open_db(path)
    with database.conn:
        database["conversations"].insert_all(
            [db_module.conversation_to_row(c) for c in convs], pk="id"
        )
    database.conn.close()
    return convs


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study.db"
    convs = make_study(path)
    return path, convs


@pytest.fixture
def api_env(monkeypatch, fake_api):
    """Environment of a user with a key, pointed at the fake (the SDK reads the base URL)."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.base_url)
    return fake_api


def iter_conversations(db) -> Iterator[Conversation]:
    """The study's conversations, by id."""
    for row in db["conversations"].rows_where(order_by="id"):
        yield db_module.row_to_conversation(row)


def rows(path, sql: str, params=()) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def app_study(tmp_path_factory):
    """The app's test study (`test_app_study.build_study`), built once per session; tests that
    write take `app_study_copy`."""
    from test_app_study import build_study

    return build_study(tmp_path_factory.mktemp("app-study") / "study.db")


@pytest.fixture
def app_study_copy(app_study, tmp_path):
    target = tmp_path / "study.db"
    shutil.copy(app_study, target)
    return target


@pytest.fixture
def reads_counted(monkeypatch) -> list:
    """Every `halves.RowsRead` a read in two halves makes during the test (its rows counted
    here, `here`, and by the worker, `shared`), each reporting every 2 rows."""
    from annotator.datasets import halves

    made: list[halves.RowsRead] = []
    init = halves.RowsRead.__init__

    def recorded(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(halves.RowsRead, "__init__", recorded)
    monkeypatch.setattr(halves, "PROGRESS_EVERY", 2)
    return made
