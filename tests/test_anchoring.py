"""Anchoring: model-human agreement on pre-filled and on blind tasks, and their difference.

Pure computation (`agreement.anchoring`) on a worked example, on random data against a plain
pair-by-pair count (hypothesis), and on synthetic studies; the study query
(`report.study_anchoring`) on a real SQLite file.
"""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.errors import InputError
from annotator.measure import anchoring
from annotator.models import ResponseType

TYPES = [r.value for r in ResponseType]
VALUES = ["honesty", "care", "clarity", "rigor", "respect", "autonomy"]


def frames(model_rows, human_rows):
    model = pd.DataFrame(model_rows, columns=["conversation_id", "response_type", "ai_values"])
    humans = pd.DataFrame(human_rows, columns=["conversation_id", "annotator", "blind",
                                               "response_type", "ai_values"])
    return model, humans


def by_metric(report: anchoring.AnchoringReport) -> dict[str, anchoring.AnchoringMetric]:
    return {m.metric: m for m in report.metrics}


def test_worked_example():
    model, humans = frames(
        [("A", "neutral", ("honesty", "care")), ("B", "reframing", ("care",)),
         ("C", "neutral", ("honesty",)), ("D", "mild support", ())],
        [
            # pre-filled: A twice (one agrees), B once (agrees): accuracy 2/3
            ("A", "x", False, "neutral", ("honesty",)),  # tp 1, fp 1 (care), fn 0
            ("A", "y", False, "reframing", ("honesty", "care")),  # tp 2
            ("B", "x", False, "reframing", ("care", "rigor")),  # tp 1, fn 1 (rigor)
            # blind: C disagrees, D agrees: accuracy 1/2
            ("C", "x", True, "reframing", ("clarity",)),  # fp 1, fn 1
            ("D", "y", True, "mild support", ()),  # nothing either side
        ],
    )
    report = anchoring.anchoring(model, humans, prompt_id="p", min_blind=2, n_boot=0)
    acc, f1 = by_metric(report)["accuracy"], by_metric(report)["micro_f1"]
    assert acc.prefilled.value == pytest.approx(2 / 3)
    assert acc.blind.value == pytest.approx(1 / 2)
    assert acc.anchoring.value == pytest.approx(1 / 6)
    # pre-filled: tp 4, fp 1, fn 1 -> 8 / 10; blind: tp 0, fp 1, fn 1 -> 0
    assert f1.prefilled.value == pytest.approx(0.8)
    assert f1.blind.value == pytest.approx(0.0)
    assert f1.anchoring.value == pytest.approx(0.8)
    assert (report.prefilled_conversations, report.blind_conversations) == (2, 2)
    assert (report.prefilled_annotations, report.blind_annotations) == (3, 2)
    assert (acc.prefilled.n_units, acc.blind.n_units, acc.anchoring.n_units) == (2, 2, 4)
    assert report.enough_blind


@st.composite
def reviewed(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = draw(st.integers(1, 12))
    model_rows, human_rows = [], []
    for c in range(n):
        if draw(st.booleans()) or c == 0:
            model_rows.append((f"c{c}", draw(st.sampled_from(TYPES)),
                               tuple(draw(st.sets(st.sampled_from(VALUES), max_size=3)))))
        blind = draw(st.booleans())
        for a in range(draw(st.integers(1, 3))):
            rt = draw(st.one_of(st.none(), st.sampled_from(TYPES)))
            values = tuple(draw(st.sets(st.sampled_from(VALUES), max_size=3)))
            human_rows.append((f"c{c}", f"a{a}", blind, rt, values))
    return frames(model_rows, human_rows)


def plain_counts(model: pd.DataFrame, humans: pd.DataFrame, blind: bool) -> tuple[float, float]:
    """Accuracy and micro F1 over the pairs of one side, counted one pair at a time."""
    labels = {r.conversation_id: r for r in model.itertuples()}
    right = seen = tp = fp = fn = 0
    for h in humans.itertuples():
        m = labels.get(h.conversation_id)
        if m is None or h.blind != blind:
            continue
        if not pd.isna(h.response_type):
            seen += 1
            right += h.response_type == m.response_type
        tp += len(set(h.ai_values) & set(m.ai_values))
        fp += len(set(m.ai_values) - set(h.ai_values))
        fn += len(set(h.ai_values) - set(m.ai_values))
    nan = float("nan")
    return (right / seen if seen else nan,
            2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reviewed())
def test_each_side_is_the_plain_count_and_anchoring_their_difference(data):
    model, humans = data
    report = anchoring.anchoring(model, humans, n_boot=20)
    got = by_metric(report)
    for blind, side in ((False, "prefilled"), (True, "blind")):
        accuracy, f1 = plain_counts(model, humans, blind)
        assert same(getattr(got["accuracy"], side).value, accuracy)
        assert same(getattr(got["micro_f1"], side).value, f1)
    for m in got.values():
        assert same(m.anchoring.value, m.prefilled.value - m.blind.value)
    # which side is blind is the only thing that matters: swapping negates the difference
    swapped = anchoring.anchoring(model, humans.assign(blind=~humans["blind"].astype(bool)),
                                  n_boot=0)
    for m in swapped.metrics:
        assert same(m.anchoring.value, -got[m.metric].anchoring.value)


def synthetic(n_prefilled: int, n_blind: int, accept: float, agree_blind: float,
              seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two reviewers a conversation; on a pre-filled task each keeps the model's labels with
    probability `accept`, on a blind task matches them with probability `agree_blind`, and
    otherwise labels at random."""
    rng = random.Random(seed)
    model_rows, human_rows = [], []
    for c in range(n_prefilled + n_blind):
        blind = c >= n_prefilled
        rt = rng.choice(TYPES)
        values = tuple(rng.sample(VALUES, 2))
        model_rows.append((f"c{c}", rt, values))
        for reviewer in ("r1", "r2"):
            if rng.random() < (agree_blind if blind else accept):
                human_rows.append((f"c{c}", reviewer, blind, rt, values))
            else:
                human_rows.append((f"c{c}", reviewer, blind, rng.choice(TYPES),
                                   tuple(rng.sample(VALUES, 2))))
    return frames(model_rows, human_rows)


def test_reviewers_who_accept_the_prefill_show_anchoring():
    model, humans = synthetic(n_prefilled=150, n_blind=60, accept=0.9, agree_blind=0.4)
    report = anchoring.anchoring(model, humans, prompt_id="v1", n_boot=400)
    assert report.enough_blind and report.blind_conversations == 60
    for m in report.metrics:
        assert m.anchoring.value > 0.3
        assert m.anchoring.low is not None and m.anchoring.low > 0  # the interval excludes 0
        assert m.anchoring.low <= m.anchoring.value <= m.anchoring.high
        assert "anchoring, reviewers agree more" in m.reading
    assert report.statement.startswith("response-type accuracy: anchoring")


def test_no_anchoring_when_blind_and_prefilled_reviewers_agree_alike():
    model, humans = synthetic(n_prefilled=150, n_blind=150, accept=0.6, agree_blind=0.6)
    report = anchoring.anchoring(model, humans, n_boot=400)
    for m in report.metrics:
        assert m.anchoring.low < 0 < m.anchoring.high
        assert "no anchoring detected, the interval includes 0" in m.reading


def test_too_few_blind_tasks_say_so():
    model, humans = synthetic(n_prefilled=150, n_blind=12, accept=0.9, agree_blind=0.4)
    report = anchoring.anchoring(model, humans, n_boot=100)
    assert not report.enough_blind and report.blind_conversations == 12
    assert report.statement == (
        "Too few blind tasks to tell: 12 annotated blind conversations with an extraction by "
        "this prompt version, at least 20 needed to measure anchoring; push more blind tasks "
        "(`annotator push --blind-share`).")
    none_blind = anchoring.anchoring(*synthetic(30, 0, 0.9, 0.4), n_boot=50)
    assert none_blind.statement.startswith("Too few blind tasks to tell: 0 annotated")
    acc = by_metric(none_blind)["accuracy"]
    assert math.isnan(acc.blind.value) and acc.blind.reason == "no annotated blind task"
    assert math.isnan(acc.anchoring.value)


# --- the study query ------------------------------------------------------------------------------


def build_review_study(path, n_prefilled: int, n_blind: int, accept: float = 0.9,
                       agree_blind: float = 0.4, prompt_id: str = "v1") -> None:
    """A study as push and pull leave it: each conversation a task in Label Studio project 1
    (blind, or pre-filled by `prompt_id`), two reviewers' annotations from that project, one
    extraction by `prompt_id`; plus rows the measure must ignore (a gold-file annotation that
    always disagrees, an incomplete Label Studio annotation)."""
    from conftest import make_conversations

    from annotator.db import (
        annotation_to_row,
        conversation_to_row,
        dumps,
        extraction_to_row,
        open_db,
    )
    from annotator.models import Annotation, Extraction, Labels, ValueRef

    model, humans = synthetic(n_prefilled, n_blind, accept, agree_blind)
    conversations = make_conversations(len(model))
    ids = {f"c{i}": c.id for i, c in enumerate(conversations)}
    db = open_db(path)
    with db.conn:
        db["conversations"].insert_all([conversation_to_row(c) for c in conversations], pk="id")
        db["extractions"].insert_all([extraction_to_row(Extraction(
            conversation_id=ids[r.conversation_id], prompt_id=prompt_id, model="m",
            extractor="baseline", response_type=r.response_type, subjective=True,
            ai_values=[ValueRef(name=v) for v in r.ai_values],
        )) for r in model.itertuples()])
        blind = dict(zip(humans["conversation_id"], humans["blind"], strict=False))
        db["tasks"].insert_all([{
            "server": "local", "project_id": 1, "conversation_id": ids[c], "task_id": i,
            "pushed_at": "2026-01-01", "prompt_versions": dumps([] if b else [prompt_id]),
            "blind": int(b), "prefilled_by": None if b else prompt_id,
        } for i, (c, b) in enumerate(blind.items())])
        rows = []
        for i, h in enumerate(humans.itertuples()):
            labels = Labels(response_type=h.response_type, ai_values=list(h.ai_values),
                            subjective=True)
            for source, who, given, missing in (
                ("labelstudio:local:1", h.annotator, labels, []),
                ("gold:demo", f"file-{h.annotator}", Labels(response_type="no values",
                                                            subjective=False), []),
                ("labelstudio:local:1", f"{h.annotator}-draft", Labels(), ["response_type",
                                                                          "subjective"]),
            ):
                rows.append(annotation_to_row(Annotation(
                    id=f"{source}:{who}:{i}", conversation_id=ids[h.conversation_id],
                    annotator=who, labels=given, source=source, source_id=str(i),
                    missing=missing)))
        db["annotations"].insert_all(rows, pk="id")
    db.conn.close()


def test_study_anchoring_reads_label_studio_annotations_with_their_tasks(tmp_path):
    from annotator.db import open_db
    from annotator.measure import frames as report

    path = tmp_path / "study.db"
    build_review_study(path, n_prefilled=150, n_blind=60)
    db = open_db(path)
    reviews = report.review_annotations_frame(db)
    assert len(reviews) == 2 * 210 and set(reviews["annotator"]) == {"r1", "r2"}
    assert int(reviews["blind"].sum()) == 2 * 60
    assert set(reviews.loc[~reviews["blind"], "prefilled_by"]) == {"v1"}
    [found] = report.study_anchoring(db, n_boot=200)
    model, humans = synthetic(150, 60, 0.9, 0.4)
    direct = anchoring.anchoring(model, humans, prompt_id="v1", n_boot=200)
    assert found.prompt_id == "v1" and found.blind_conversations == 60
    for got, expected in zip(found.metrics, direct.metrics, strict=True):
        assert got.anchoring.value == pytest.approx(expected.anchoring.value)
        assert got.anchoring.low > 0
    # a reference to no used version is an error naming the used ones, not an empty answer
    with pytest.raises(InputError, match="no prompt 'other' among the versions used.*v1"):
        report.study_anchoring(db, prompt_ids=["other"])
    assert [a.prompt_id for a in report.study_anchoring(db, prompt_ids=["v1"], n_boot=0)] == ["v1"]
    # a task neither blind nor pre-filled (its form opened empty) belongs to neither side
    db.execute("update tasks set prefilled_by = null where task_id = 0")
    assert len(report.review_annotations_frame(db)) == 2 * 210 - 2
    db.conn.close()


def test_agreement_command_shows_anchoring_and_says_when_blind_tasks_are_too_few(tmp_path):
    import json

    from typer.testing import CliRunner

    from annotator.cli import app

    runner = CliRunner()
    enough, few = tmp_path / "enough.db", tmp_path / "few.db"
    build_review_study(enough, n_prefilled=150, n_blind=60)
    build_review_study(few, n_prefilled=150, n_blind=5)
    result = runner.invoke(app, ["agreement", "--db", str(enough), "--boot", "100", "--json"])
    assert result.exit_code == 0, result.output
    [found] = json.loads(result.output)["anchoring"]
    assert found["prompt_id"] == "v1" and found["enough_blind"] is True
    accuracy = next(m for m in found["metrics"] if m["metric"] == "accuracy")
    assert accuracy["anchoring"]["low"] > 0
    printed = runner.invoke(app, ["agreement", "--db", str(enough), "--boot", "100"])
    text = " ".join(printed.output.split())
    assert "anchoring: model v1 vs each Label Studio annotation" in text
    assert "response-type accuracy: anchoring, reviewers agree more with the model" in text
    printed = runner.invoke(app, ["agreement", "--db", str(few), "--boot", "50"])
    text = " ".join(printed.output.split())
    assert "Too few blind tasks to tell: 5 annotated blind conversations" in text
