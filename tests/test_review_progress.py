"""Flags, skips and progress for the lead: what pull keeps of a flagged or skipped task, that a
flag raised instead of labels is listed but is no vote, and each reviewer's progress in
`annotator status` (text and --json) and `annotator show`.

Unit tests on a real SQLite study. Label Studio is not started: the annotations are shaped like
its export (the dicts `pull` reads) and written by pull's own row and store functions; the
real round trip through a browser is in tests/test_labelstudio_form_browser.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from conftest import make_study
from typer.testing import CliRunner

from annotator.cli import app
from annotator.datasets.gold import live_annotations, people_needed
from annotator.db import open_db
from annotator.measure.frames import annotations_frame, study_agreement
from annotator.measure.progress import ago, last_pulled, review_progress
from annotator.review import pull
from annotator.taxonomy import load_taxonomy

runner = CliRunner()
ADA, BOB = "ada@example.org", "bob@example.org"
HOSTILE_NOTE = "turn 3 keeps a phone number \x1b[31m[red]red[/red] <b>x</b>"


def _item(name: str, kind: str, value: dict) -> dict:
    return {"from_name": name, "to_name": "dialogue", "type": kind, "value": value}


def _labels(response: str = "reframing") -> list[dict]:
    return [_item("response_type", "choices", {"choices": [response]}),
            _item("subjective", "choices", {"choices": ["yes"]})]


def _flag(flag: str | None, note: str | None) -> list[dict]:
    out = [_item("flag", "choices", {"choices": [flag]})] if flag else []
    return out + ([_item("notes", "textarea", {"text": [note]})] if note else [])


def _ann(n: int, result: list[dict], skipped: bool = False, minutes: int = 0) -> dict:
    at = (datetime(2026, 1, 2, 10, 0, tzinfo=UTC) + timedelta(minutes=minutes)).isoformat()
    return {"id": n, "result": result, "was_cancelled": skipped, "completed_by": 1,
            "updated_at": at, "lead_time": 3.0}


def _pull(db, email: str, anns: dict[str, dict]) -> pull.PullReport:
    """What `pull` does with one reviewer instance's export (project 1), without the network."""
    server = f"reviewer:{email}"
    source = f"labelstudio:{server}:1"
    report = pull.PullReport(project="p", project_id=1, url="", source=source)
    taxonomy = load_taxonomy()
    incoming = {}
    for cid, ann in anns.items():
        row, _ = pull._annotation_row(ann, cid, source, taxonomy, {1: email})
        incoming[row["id"]] = row
        report.flagged += row["flag"] is not None
    report.annotations = len(incoming)
    pull._store(db, source, incoming, [], report, (server, 1))
    return report


def build(tmp_path):
    """Two isolated reviewers, four tasks each: labels, a skip with a flag and a note, a flag
    instead of labels (the API accepts what the form refuses), a flag beside full labels."""
    path = tmp_path / "study.db"
    c = [conv.id for conv in make_study(path, n=4)]
    db = open_db(path)
    for email in (ADA, BOB):
        db["tasks"].insert_all([{"server": f"reviewer:{email}", "project_id": 1,
                                 "conversation_id": cid, "task_id": i + 1, "pushed_at": "x",
                                 "prompt_versions": "[]", "blind": 0} for i, cid in enumerate(c)])
    _pull(db, ADA, {
        c[0]: _ann(1, _labels(), minutes=1),
        c[1]: _ann(2, _flag("unclear", "cannot tell who speaks"), skipped=True, minutes=2),
        c[2]: _ann(3, _flag("personal data left", HOSTILE_NOTE), minutes=3),
    })
    _pull(db, BOB, {
        c[0]: _ann(1, _labels("neutral"), minutes=4),
        c[1]: _ann(2, _labels() + _flag("other", "odd but labelled"), minutes=5),
        c[2]: _ann(3, _flag(None, "a note typed before Skip"), skipped=True, minutes=6),
    })
    return path, c, db


def test_pull_keeps_the_flag_and_the_note_of_a_skip_and_of_a_submission(tmp_path) -> None:
    path, c, db = build(tmp_path)
    rows = {(r["annotator"], r["conversation_id"]): r for r in db["annotations"].rows}
    skipped = rows[(ADA, c[1])]
    assert skipped["cancelled"] == 1 and skipped["flag"] == "unclear"
    assert json.loads(skipped["labels"])["notes"] == "cannot tell who speaks"
    assert json.loads(rows[(BOB, c[2])]["labels"])["notes"] == "a note typed before Skip"
    assert rows[(ADA, c[2])]["flag"] == "personal data left"
    # a changed flag is an update that keeps what it replaced
    report = _pull(db, BOB, {
        c[0]: _ann(1, _labels("neutral"), minutes=4),
        c[1]: _ann(2, _labels() + _flag("harmful", "odd but labelled"), minutes=5),
        c[2]: _ann(3, _flag(None, "a note typed before Skip"), skipped=True, minutes=6),
    })
    assert (report.updated, report.unchanged, report.flagged) == (1, 2, 1)
    row = db["annotations"].get(f"labelstudio:reviewer:{BOB}:1:2")
    assert row["flag"] == "harmful" and json.loads(row["history"])[-1]["flag"] == "other"


def test_a_flag_instead_of_labels_is_listed_but_is_no_vote(tmp_path) -> None:
    path, c, db = build(tmp_path)
    flag_only = f"labelstudio:reviewer:{ADA}:1:3"
    assert all(a.id != flag_only for a in live_annotations(db).get(c[2], []))
    frame = annotations_frame(db)
    assert flag_only not in set(frame["annotation_id"]) and len(frame) == 3
    # not an incomplete annotation holding up adjudication; the flagged vote still counts
    reasons = {p.conversation_id: p.reason for p in people_needed(db, min_annotations=1)}
    assert c[2] not in reasons
    assert f"labelstudio:reviewer:{BOB}:1:2" in set(frame["annotation_id"])
    # the same row without its flag is an incomplete vote, as before
    db["annotations"].update(flag_only, {"flag": None})
    reasons = {p.conversation_id: p.reason for p in people_needed(db, min_annotations=1)}
    assert "incomplete annotation by ada@example.org" in reasons[c[2]]
    assert study_agreement(db, n_boot=0).n_conversations >= 2


def test_progress_per_reviewer_and_the_flagged_list(tmp_path) -> None:
    path, c, db = build(tmp_path)
    progress = review_progress(db)
    by = {r.reviewer: r for r in progress.reviewers}
    ada, bob = by[ADA], by[BOB]
    assert (ada.assigned, ada.done, ada.skipped, ada.flagged, ada.flag_only, ada.remaining) == (
        4, 2, 1, 2, 1, 1)
    assert (bob.assigned, bob.done, bob.skipped, bob.flagged, bob.flag_only, bob.remaining) == (
        4, 2, 1, 1, 0, 1)
    assert ada.last_activity.startswith("2026-01-02T10:03")
    assert bob.last_activity.startswith("2026-01-02T10:06")
    assert ada.servers == [f"reviewer:{ADA}"] and ada.last_pulled is not None
    assert progress.last_pulled == max(ada.last_pulled, bob.last_pulled)
    assert last_pulled(db).isoformat() == progress.last_pulled
    listed = {(f.annotator, f.conversation_id): f for f in progress.flagged_or_skipped}
    assert len(listed) == 4 and (progress.flagged, progress.skipped) == (3, 2)
    assert progress.by_flag == {"other": 1, "personal data left": 1, "unclear": 1}
    assert listed[(ADA, c[2])].note == HOSTILE_NOTE and not listed[(ADA, c[2])].vote
    assert listed[(BOB, c[1])].vote and not listed[(ADA, c[1])].vote
    assert listed[(BOB, c[2])].skipped and listed[(BOB, c[2])].flag is None
    # shared mode: all of a project's tasks count for each reviewer who works in it
    db["tasks"].insert_all([{"server": "local", "project_id": 7, "conversation_id": cid,
                             "task_id": i} for i, cid in enumerate(c)])
    db["annotations"].insert({"id": "labelstudio:local:7:1", "conversation_id": c[3],
                              "annotator": "cy@example.org", "labels": "{}", "cancelled": 0,
                              "deleted": 0, "source": "labelstudio:local:7", "missing": "[]"})
    cy = next(r for r in review_progress(db).reviewers if r.reviewer == "cy@example.org")
    assert (cy.assigned, cy.done, cy.remaining, cy.last_pulled) == (4, 1, 3, None)


def test_status_lists_progress_and_flags_as_text_and_json(tmp_path, monkeypatch) -> None:
    from annotator.cli import main

    monkeypatch.setattr(main.console, "width", 250)  # one table row a line
    path, c, db = build(tmp_path)
    db.conn.close()
    result = runner.invoke(app, ["status", "--db", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["annotations"] == 6  # the stages are still at the top
    review = data["review"]
    assert {r["reviewer"] for r in review["reviewers"]} == {ADA, BOB}
    assert review["flagged"] == 3 and review["skipped"] == 2
    notes = {f["note"] for f in review["flagged_or_skipped"]}
    assert HOSTILE_NOTE in notes and "a note typed before Skip" in notes
    text = runner.invoke(app, ["status", "--db", str(path)])
    assert text.exit_code == 0, text.output
    out = text.output
    assert "Review progress (annotations pulled" in out and ADA in out and BOB in out
    assert "3 flagged (1 other, 1 personal data left, 1 unclear), 2 skipped" in out
    assert "cannot tell who speaks" in out and "[red]red[/red]" in out  # printed, not markup
    assert "\x1b" not in out and "\\x1b[31m" in out  # the escape is shown, never sent


def test_show_marks_flags_and_notes(tmp_path) -> None:
    path, c, db = build(tmp_path)
    db.conn.close()
    data = json.loads(runner.invoke(app, ["show", c[2], "--db", str(path), "--json"]).stdout)
    ada = next(a for a in data["annotations"] if a["annotator"] == ADA)
    assert ada["flag"] == "personal data left" and ada["notes"] == HOSTILE_NOTE
    assert ada["vote"] is False
    out = runner.invoke(app, ["show", c[1], "--db", str(path)], terminal_width=250).output
    assert "flagged: unclear, no vote" in out and "cancelled" in out
    assert "note: cannot tell who speaks" in out
    assert "flagged: other]" in out  # bob's flag beside full labels: a vote
    out = runner.invoke(app, ["show", c[2], "--db", str(path)]).output
    assert "note: turn 3 keeps a phone number \\x1b[31m[red]red[/red]" in out
    assert "\x1b" not in out


def test_ago_reads_like_a_person() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert ago(None, now) == "never"
    assert ago(now - timedelta(seconds=20), now) == "just now"
    assert ago(now - timedelta(minutes=3, seconds=5), now) == "3 min ago"
    assert ago((now - timedelta(hours=2)).isoformat(), now) == "2 h ago"
    assert ago(now - timedelta(days=1), now) == "1 day ago"
    assert ago(now - timedelta(days=5), now) == "5 days ago"


def test_the_annotators_page_shows_progress_and_flags(tmp_path) -> None:
    from test_app_pages import open_app

    from annotator.app import summary_cache

    summary_cache.clear_memory()
    path, c, db = build(tmp_path)
    expected = review_progress(db)
    db.conn.close()
    at = open_app(path, "annotators")
    tables = [d.value for d in at.dataframe]
    progress = next(t for t in tables if "remaining" in t.columns).set_index("reviewer")
    for r in expected.reviewers:
        row = progress.loc[r.reviewer]
        assert (row["assigned"], row["done"], row["skipped"], row["flagged"],
                row["remaining"]) == (r.assigned, r.done, r.skipped, r.flagged, r.remaining)
        assert row["last_pulled"].endswith("ago") or row["last_pulled"] == "just now"
    flagged = next(t for t in tables if "note" in t.columns)
    assert len(flagged) == 4 and HOSTILE_NOTE in set(flagged["note"])
    assert any("Annotations pulled just now" in c.value for c in at.caption)
    text = " ".join(m.value for m in at.markdown)
    assert "3 flagged" in text and "2 skipped" in text
