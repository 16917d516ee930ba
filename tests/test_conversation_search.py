"""Finding a conversation by id prefix, task number, the source's id or words of its dialogue,
on a real SQLite study; each hit with a one-line snippet."""

from __future__ import annotations

from annotator.app.conversation_search import conversation_snippets, search_conversations, snippet
from annotator.db import conversation_to_row, open_db
from annotator.models import Conversation, Turn


def _study(tmp_path, n: int = 30):
    db = open_db(tmp_path / "study.db")
    convs = [
        Conversation.from_turns(
            [Turn(role="user", text=f"Question number {i}: should I tell my boss about it?"),
             Turn(role="assistant", text=f"Answer {i}. Honesty with your manager usually helps.")],
            source="test", external_id=f"ext-{i}",
        )
        for i in range(n)
    ]
    odd = Conversation.from_turns(
        [Turn(role="user", text='He said "role-play\n100%_done" <b>bold</b> and\tleft.'),
         Turn(role="assistant", text="Ünïcode Straße answer with a rare word: zephyrine.")],
        source="test",
    )
    convs.append(odd)
    with db.conn:
        db["conversations"].insert_all([conversation_to_row(c) for c in convs], pk="id")
        db["tasks"].insert_all(
            [{"conversation_id": c.id, "project_id": 1, "task_id": 100 + i, "server": "local",
              "pushed_at": "2026-01-01T00:00:00+00:00", "prompt_versions": "[]"}
             for i, c in enumerate(convs)],
            pk=("server", "project_id", "conversation_id"),
        )
    return db, convs


def test_finds_by_task_number_id_prefix_external_id_and_text(tmp_path) -> None:
    db, convs = _study(tmp_path)
    by_task = search_conversations(db, "#105")
    assert [(h.conversation_id, h.matched, h.task_id) for h in by_task] == [
        (convs[5].id, "task", 105)]
    assert search_conversations(db, "105")[0].conversation_id == convs[5].id
    prefix = convs[7].id[:10]
    hits = search_conversations(db, prefix.upper())  # ids print in lower case; either finds it
    assert hits[0].conversation_id == convs[7].id and hits[0].matched == "id"
    assert all(h.conversation_id.startswith(prefix) for h in hits if h.matched == "id")
    assert search_conversations(db, "ext-12")[0].conversation_id == convs[12].id
    words = search_conversations(db, "ZEPHYRINE")
    assert [h.conversation_id for h in words] == [convs[-1].id]
    assert "zephyrine" in words[0].snippet and words[0].snippet.startswith("assistant: ")
    assert words[0].task_id == 100 + len(convs) - 1


def test_text_matches_the_dialogue_not_its_storage(tmp_path) -> None:
    db, convs = _study(tmp_path)
    odd = convs[-1].id
    # quotes, a newline, % and _ are matched literally (the turns are stored as JSON)
    assert [h.conversation_id for h in search_conversations(db, '"role-play\n100%_done"')] == [odd]
    assert search_conversations(db, "100%") and search_conversations(db, "0%_d")
    assert search_conversations(db, "100_") == []  # _ is no wildcard
    # "role" and "text" are JSON keys of every stored turn, not words of these dialogues
    assert [h.conversation_id for h in search_conversations(db, "role")] == [odd]
    assert search_conversations(db, '"text"') == []
    assert [h.conversation_id for h in search_conversations(db, "Straße")] == [odd]
    assert search_conversations(db, "") == [] and search_conversations(db, "   ") == []


def test_limit_and_snippets(tmp_path) -> None:
    db, convs = _study(tmp_path)
    hits = search_conversations(db, "honesty", limit=7)
    assert len(hits) == 7 and len({h.conversation_id for h in hits}) == 7
    for h in hits:
        assert h.matched == "text" and "Honesty" in h.snippet
        assert "\n" not in h.snippet and len(h.snippet) <= 100
    found = conversation_snippets(db, [convs[-1].id, "nosuch", convs[0].id])
    assert list(found) == [convs[-1].id, convs[0].id]
    assert found[convs[-1].id].snippet.startswith('user: He said "role-play 100%_done"')
    assert found[convs[0].id].task_id == 100


def test_snippet_centres_on_the_match_on_one_line() -> None:
    long = "word " * 100 + "NEEDLE in the\nhaystack " + "more " * 100
    text = snippet([{"role": "user", "text": long}], "needle", width=40)
    assert "NEEDLE in the haystack" in text
    assert text.startswith("user: …") and text.endswith("…")
    assert snippet([{"role": "user", "text": "short"}], "absent") == "user: short"
    assert snippet([], "x") == ""
