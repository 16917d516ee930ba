"""Only decided labels leave as gold (issue 18, items 6 and 7).

New labels re-open a majority decision; a person's decision made before the current labels is
marked "new labels since"; an annotation last changed by someone other than its author (shared
Label Studio) is no one's vote, in agreement, adjudication and anchoring.

Unit tests on real SQLite studies: labels arrive through `import_labels` (files of several
annotators), as in the user trial, or as rows stored the way `pull` stores them. No fakes.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import make_study
from typer.testing import CliRunner

from annotator.cli import app
from annotator.datasets.export import ExportFormat, export, render_export
from annotator.datasets.gold import adjudicate, decide, people_needed
from annotator.datasets.import_labels import import_labels
from annotator.datasets.show import conversation_record
from annotator.db import VOTES, annotation_to_row, open_db
from annotator.errors import AnnotatorError
from annotator.measure.frames import (
    annotations_frame,
    review_annotations_frame,
    set_aside_count,
    study_agreement,
)
from annotator.models import Annotation, Labels

runner = CliRunner()


def _labels_file(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _vote(conversation: str, annotator: str, response_type: str, **more) -> dict:
    return {"conversation": conversation, "annotator": annotator, "response_type": response_type,
            "subjective": True, "ai_values": ["honesty"], **more}


def _three_conversations(path):
    convs = make_study(path, n=3)
    return open_db(path), [c.id for c in convs]


@pytest.fixture
def trial(tmp_path):
    """Two conversations decided by majority: a and b agree on both."""
    path = tmp_path / "study.db"
    db, (first, second, _) = _three_conversations(path)
    import_labels(db, [_labels_file(tmp_path / "round1.jsonl", [
        _vote(first, "a", "reframing"), _vote(first, "b", "reframing"),
        _vote(second, "a", "neutral"), _vote(second, "b", "neutral"),
    ])])
    report = adjudicate(db)
    assert report.decided == 2 and not report.reasons
    return path, db, first, second


def test_a_split_after_a_majority_decision_is_not_exported_and_is_named(trial, tmp_path):
    path, db, first, second = trial
    # the user trial: two more annotators split the conversation the majority had decided
    import_labels(db, [_labels_file(tmp_path / "round2.jsonl", [
        _vote(first, "c", "neutral"), _vote(first, "d", "neutral"),
    ])])

    # export is safe without a new adjudicate: the stale majority is left out, with why
    report = export(db, tmp_path / "before.jsonl")
    exported = [json.loads(line)["conversation_id"]
                for line in (tmp_path / "before.jsonl").read_text().splitlines()]
    assert exported == [second] and report.exported == 1
    left_out = {x.conversation_id: x.reason for x in report.left_out}
    assert left_out == {first: "majority gold no longer decided: 4 annotations split on the "
                               "response type (new labels since it was decided; run `annotator "
                               "adjudicate`)"}
    assert not report.invalid  # left out, not invalid: the exit code stays 0
    printed = runner.invoke(app, ["export", str(tmp_path / "cli.jsonl"), "--db", str(path)])
    assert printed.exit_code == 0, printed.output
    text = " ".join(printed.output.split())
    assert f"left out {first}: majority gold no longer decided" in text and "left out 1" in text

    # the app's queue says the same before adjudicate runs
    needed = people_needed(db)
    assert [(p.conversation_id, p.reason) for p in needed] == [
        (first, "4 annotations split on the response type")]
    assert conversation_record(db, first)["gold"]["majority_out_of_date"] == (
        "4 annotations split on the response type")

    # adjudicate re-opens it: out of gold, its label kept, listed for a person
    old = db["gold"].get(first)
    result = adjudicate(db)
    assert result.need_a_person == [first] and result.reasons == needed
    assert [(r.conversation_id, r.reason) for r in result.reopened] == [
        (first, "4 annotations split on the response type")]
    assert not db["gold"].count_where("conversation_id = ?", [first])
    record = conversation_record(db, first)
    assert record["gold"] is None
    assert record["reopened"]["history"][-1]["response_type"] == old["response_type"]
    again = export(db, tmp_path / "after.jsonl")
    assert {x.conversation_id: x.reason for x in again.left_out} == {
        first: "not adjudicated: 4 annotations split on the response type"}
    assert adjudicate(db).reopened == []  # nothing left to re-open

    # a person decides: the re-opened majority label is the first entry of the gold's history
    decide(db, first, Labels(response_type="neutral", subjective=True), decided_by="ada")
    history = json.loads(db["gold"].get(first)["history"])
    assert [(h["decided_by"], h["response_type"]) for h in history] == [
        ("majority", old["response_type"])]
    assert not db["gold_reopened"].count


def test_other_labels_re_decide_a_majority_and_an_incomplete_label_re_opens_it(trial, tmp_path):
    path, db, first, second = trial
    import_labels(db, [_labels_file(tmp_path / "more.jsonl", [
        # three more say "neutral" for first: the majority now gives other labels
        _vote(first, "c", "neutral"), _vote(first, "d", "neutral"), _vote(first, "e", "neutral"),
        # an incomplete label for second (no subjective): a person looks
        {"conversation": second, "annotator": "c", "response_type": "neutral"},
    ])])
    _, report = render_export(db, ExportFormat.jsonl)
    reasons = {x.conversation_id: x.reason for x in report.left_out}
    assert "now gives other labels" in reasons[first]
    assert "incomplete annotation by c: subjective missing" in reasons[second]
    assert report.exported == 0
    with pytest.raises(AnnotatorError, match="nothing to export: no adjudicated conversations "
                                             "with decided labels; 2 left out"):
        export(db, tmp_path / "empty.jsonl")
    assert not (tmp_path / "empty.jsonl").exists()
    result = adjudicate(db)
    assert result.decided == 1 and db["gold"].get(first)["response_type"] == "neutral"
    assert len(json.loads(db["gold"].get(first)["history"])) == 1
    assert [r.conversation_id for r in result.reopened] == [second]
    assert result.need_a_person == [second]


def test_a_person_decision_with_newer_labels_is_kept_and_marked(trial, tmp_path):
    path, db, first, second = trial
    decide(db, second, Labels(response_type="reframing", subjective=True), decided_by="ada")
    assert adjudicate(db).new_labels_since == []
    assert conversation_record(db, second)["gold"]["new_labels_since"] is False
    text, _ = render_export(db, ExportFormat.jsonl)
    assert {json.loads(line)["new_labels_since"] for line in text.splitlines()} == {False}

    import_labels(db, [_labels_file(tmp_path / "late.jsonl", [_vote(second, "c", "neutral")])])
    result = adjudicate(db)
    assert result.new_labels_since == [second] and result.kept_person_decisions == 1
    assert db["gold"].get(second)["decided_by"] == "ada"  # kept
    assert conversation_record(db, second)["gold"]["new_labels_since"] is True
    text, report = render_export(db, ExportFormat.csv)
    marked = {row["conversation_id"]: row["new_labels_since"]
              for row in csv.DictReader(text.splitlines())}
    assert marked == {first: "false", second: "true"}
    assert report.stats.new_labels_since == 1
    printed = runner.invoke(app, ["adjudicate", "--db", str(path), "--no-summaries"])
    assert "1 person decisions kept with new labels since" in " ".join(printed.output.split())
    shown = runner.invoke(app, ["show", second, "--db", str(path)])
    assert "new labels since" in shown.output

    # a decision stored without a digest (a gold file's): an annotation changed after it counts
    db.execute("update gold set labels_seen = null where conversation_id = ?", [second])
    db.execute("update annotations set updated_at = '2000-01-01T00:00:00+00:00'")
    db.conn.commit()
    assert adjudicate(db).new_labels_since == []
    db.execute("update annotations set updated_at = '2999-01-01T00:00:00+00:00' "
               "where annotator = 'c'")
    db.conn.commit()
    assert adjudicate(db).new_labels_since == [second]


# --- shared mode: edited by someone other than the author ---------------------------------------


def _pulled(db, conversation: str, annotator: str, response_type: str, edited_by: str | None,
            n: int) -> dict:
    """An annotation as `pull` stores one from a shared server (project 1 on `local`)."""
    return annotation_to_row(Annotation(
        id=f"labelstudio:local:1:{n}", conversation_id=conversation, annotator=annotator,
        labels=Labels(response_type=response_type, subjective=True, ai_values=["honesty"]),
        source="labelstudio:local:1", source_id=str(n), edited_by=edited_by,
    ))


@pytest.fixture
def shared(tmp_path):
    path = tmp_path / "shared.db"
    db, ids = _three_conversations(path)
    split, agreed = ids[0], ids[1]
    db["annotations"].insert_all([
        # counted as ada's, bob's edit would make "neutral" a 2-1 majority
        _pulled(db, split, "ada@example.org", "neutral", "bob@example.org", 1),
        _pulled(db, split, "bob@example.org", "neutral", None, 2),
        _pulled(db, split, "cy@example.org", "reframing", None, 3),
        # two own annotations agree; cy's was changed by dan
        _pulled(db, agreed, "ada@example.org", "neutral", None, 4),
        _pulled(db, agreed, "bob@example.org", "neutral", None, 5),
        _pulled(db, agreed, "cy@example.org", "strong support", "dan@example.org", 6),
        # edited_by the author themself is their own
        _pulled(db, ids[2], "ada@example.org", "neutral", "ada@example.org", 7),
    ], pk="id")
    db["tasks"].insert_all([
        {"server": "local", "project_id": 1, "conversation_id": c, "task_id": i,
         "pushed_at": "2025-01-01T00:00:00+00:00", "blind": 1, "prefilled_by": None}
        for i, c in enumerate(ids)
    ], pk=("server", "project_id", "conversation_id"))
    return path, db, split, agreed


def test_an_edited_annotation_is_no_ones_vote_and_export_names_its_editor(shared, tmp_path):
    path, db, split, agreed = shared
    report = adjudicate(db)
    assert report.set_aside == 2
    assert [(r.conversation_id, r.reason) for r in report.reasons] == [
        (split, "2 annotations split on the response type")]
    assert people_needed(db) == report.reasons
    gold = db["gold"].get(agreed)
    assert (gold["response_type"], json.loads(gold["from_annotations"])) == (
        "neutral", ["ada@example.org", "bob@example.org"])

    out = tmp_path / "out.jsonl"
    exported = export(db, out)
    record = json.loads(out.read_text().splitlines()[0])
    assert record["conversation_id"] == agreed and record["n_annotations"] == 3
    assert {a["annotator"]: a["edited_by"] for a in record["annotations"]} == {
        "ada@example.org": None, "bob@example.org": None, "cy@example.org": "dan@example.org"}
    left_out = {x.conversation_id: x.reason for x in exported.left_out}
    assert left_out[split] == ("not adjudicated: 2 annotations split on the response type (1 "
                               "more set aside: last changed by someone other than its author)")

    # a majority gold whose votes were all edited by others does not stand
    db.execute("update annotations set edited_by = 'eve@example.org' where conversation_id = ?",
               [agreed])
    db.conn.commit()
    with pytest.raises(AnnotatorError, match=f"{agreed}: majority gold no longer decided: its 3 "
                                             "annotations were last changed by someone other"):
        export(db, tmp_path / "none.jsonl")
    printed = runner.invoke(app, ["adjudicate", "--db", str(path), "--no-summaries"])
    text = " ".join(printed.output.split())
    assert "set aside 4 annotations: last changed by someone other than their author" in text
    assert f"re-opened {agreed}: its 3 annotations were last changed" in text
    assert not db["gold"].count


def test_edited_annotations_leave_agreement_and_anchoring(shared):
    path, db, split, agreed = shared
    frame = annotations_frame(db)
    assert len(frame) == 5 and set_aside_count(db) == 2
    kept = set(zip(frame["conversation_id"], frame["annotator"], strict=True))
    assert (split, "ada@example.org") not in kept and (agreed, "cy@example.org") not in kept
    report = study_agreement(db, levels=(0,), n_boot=0)
    assert report.settings["set_aside_edited_by_other"] == 2
    assert "last changed by someone other than their author" in report.settings["set_aside_why"]
    reviews = review_annotations_frame(db)
    assert len(reviews) == 5
    assert (split, "ada@example.org") not in set(
        zip(reviews["conversation_id"], reviews["annotator"], strict=True))
    printed = runner.invoke(app, ["agreement", "--db", str(path), "--boot", "0", "--level", "0"])
    assert printed.exit_code == 0, printed.output
    assert "set aside 2 annotations: last changed by someone other than their author" in " ".join(
        printed.output.split())


def _table(db, name: str, drop: tuple[str, ...]) -> list[dict]:
    """A table's rows without the columns that hold the time of a run."""
    return [{k: v for k, v in row.items() if k not in drop}
            for row in db.query(f"select * from {name} order by conversation_id")]


def test_adjudicate_in_two_halves_decides_as_one_pass(tmp_path, monkeypatch, reads_counted):
    """Real SQLite, a real worker process: from `halves.MIN_ROWS` annotations (lowered here) a
    second process reads the second half of the conversations. Every kind of outcome, in both
    halves (a new majority, other labels, a split, an incomplete label, a person's decision
    with newer labels, nothing changed): the same report, lists in the same order, and the
    same gold and re-opened rows, as one pass gives."""
    from annotator.datasets import gold as gold_module
    from annotator.datasets import halves

    path = tmp_path / "study.db"
    ids = sorted(c.id for c in make_study(path, n=14))
    db = open_db(path)
    import_labels(db, [_labels_file(tmp_path / "round1.jsonl", [
        _vote(cid, who, "neutral") for cid in ids[:12] for who in ("a", "b")])])
    assert adjudicate(db).decided == 12
    for cid in (ids[2], ids[9]):
        decide(db, cid, Labels(response_type="reframing", subjective=True), decided_by="ada")
    more = []
    for half in (0, 7):
        first, split, person, incomplete, new = (ids[half + k] for k in (0, 1, 2, 3, 5))
        more += [*(_vote(first, who, "mild support") for who in ("c", "d", "e")),
                 _vote(split, "c", "reframing"), _vote(split, "d", "reframing"),
                 _vote(person, "c", "neutral"),
                 {"conversation": incomplete, "annotator": "c", "response_type": "neutral"},
                 _vote(new, "a", "neutral"), _vote(new, "b", "neutral")]
    import_labels(db, [_labels_file(tmp_path / "round2.jsonl", more)])
    copies = []
    for name in ("one", "two"):
        copy = open_db(tmp_path / f"{name}.db")
        db.conn.backup(copy.conn)
        copies.append(copy)
    one = adjudicate(copies[0])
    started = []
    in_worker = gold_module.in_worker

    def spy(*args):
        started.append(args[4])  # the conversation ids the worker reads
        return in_worker(*args)

    monkeypatch.setattr(halves, "MIN_ROWS", 1)
    monkeypatch.setattr(gold_module, "in_worker", spy)
    two = adjudicate(copies[1])
    assert len(started) == 1 and ids[0] < started[0][0] <= ids[-1]
    assert two.model_dump() == one.model_dump()
    assert (one.decided, one.new_labels_since) == (3, [ids[2], ids[9]])
    assert [r.conversation_id for r in one.reopened] == one.need_a_person == [
        ids[1], ids[3], ids[8], ids[10]]
    for table, when in (("gold", ("decided_at", "history")), ("gold_reopened", ("reopened_at",
                                                                                  "history"))):
        assert _table(copies[1], table, when) == _table(copies[0], table, when)
    assert [json.loads(r["history"])[-1]["response_type"] for r in
            copies[1].query("select history from gold_reopened order by conversation_id")] == [
        "neutral"] * 4

    # with its progress shown: the same decisions; the votes read in both halves are counted
    # together (the worker adds to a count shared with this process), and the last report is
    # (total, total)
    three = open_db(tmp_path / "three.db")
    db.conn.backup(three.conn)
    counters = reads_counted
    seen: list[tuple[int, int]] = []
    assert adjudicate(three, progress=lambda read, of: seen.append((read, of))).model_dump() == (
        one.model_dump())
    votes = three.execute(f"select count(*) from annotations where {VOTES}").fetchone()[0]
    assert seen[-1] == (votes, votes) and len(seen) > 3
    assert [read for read, _ in seen] == sorted(read for read, _ in seen)
    assert counters[0].here > 0 and counters[0].shared.value > 0
