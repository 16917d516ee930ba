"""Pull touches only what it pulled: gold-file annotations survive a real Label Studio round trip.

Integration: the demo's gold files and baseline proposals in a real SQLite study, a real Label
Studio server (see labelstudio_fixtures), two reviewers annotating through its API.
"""

from __future__ import annotations

import pytest
from labelstudio_fixtures import labelstudio, reviewer_client  # noqa: F401

from annotator import config
from annotator.datasets.gold import import_gold
from annotator.db import open_db
from annotator.extract.baseline import VERSION
from annotator.extract.engine import extract
from annotator.review import pull, push, sync

pytestmark = pytest.mark.integration


def _result(response: str) -> list[dict]:
    def item(name: str, kind: str, value: dict) -> dict:
        return {"from_name": name, "to_name": "dialogue", "type": kind, "value": value}

    return [
        item("response_type", "choices", {"choices": [response]}),
        item("subjective", "choices", {"choices": ["yes"]}),
    ]


def _gold_rows(db_path) -> list[dict]:
    return list(open_db(db_path).query(
        "select * from annotations where source like 'gold:%' order by id"
    ))  # fmt: skip


def test_pull_changes_only_its_own_annotations(labelstudio):  # noqa: F811
    db_path = labelstudio.db("sources")
    imported = import_gold(open_db(db_path), [config.gold_dir()])
    extract(db_path, extractor="baseline")
    gold_before = _gold_rows(db_path)
    assert len(gold_before) == imported.annotations > 100  # 147 in the bundled demo set

    pushed = push.push(db_path, project="sources", overlap=2)
    assert pushed.tasks_created == imported.conversations
    # reviewers see the prediction's name, not a hash; the study still keys on prompt ids
    admin = labelstudio.admin()
    names = {p.model_version for t in admin.tasks.list(project=pushed.project_id, fields="all")
             for p in (t.predictions or [])}  # fmt: skip
    assert len(names) == 1 and next(iter(names)).startswith(f"offline baseline {VERSION} · ")
    assert pushed.prefilled_by == next(iter(names))
    # a mapping lost in a crash is read back by name, and no prediction is sent twice
    db = open_db(db_path)
    lost = [r["conversation_id"] for r in db["tasks"].rows_where("blind = 0", limit=2)]
    db["tasks"].delete_where("conversation_id in (?, ?)", lost)
    again = push.push(db_path, project="sources", overlap=2)
    assert (again.tasks_recovered, again.tasks_created, again.predictions_added) == (2, 0, 0)
    assert 0 < again.blind_tasks < imported.conversations / 3  # about 10% of 49
    tasks = sorted(r["task_id"] for r in open_db(db_path)["tasks"].rows)
    ada = sync.add_user(db_path, "ada-src@example.org", shared=True)
    bob = sync.add_user(db_path, "bob-src@example.org", shared=True)
    as_ada = reviewer_client(labelstudio.url, ada.email, ada.password)
    as_bob = reviewer_client(labelstudio.url, bob.email, bob.password)
    made = []
    for task_id in tasks[:7]:
        made.append(as_ada.annotations.create(id=task_id, result=_result("reframing")))
    for task_id in tasks[:6]:
        made.append(as_bob.annotations.create(id=task_id, result=_result("neutral")))

    first = pull.pull(db_path, project="sources")
    assert (first.new, first.deleted, first.updated) == (13, 0, 0)
    second = pull.pull(db_path, project="sources")
    assert (second.new, second.unchanged, second.deleted, second.updated) == (0, 13, 0, 0)

    gone = made[3]
    as_ada.annotations.delete(id=gone.id)
    third = pull.pull(db_path, project="sources")
    assert (third.deleted, third.unchanged, third.new) == (1, 12, 0)
    db = open_db(db_path)
    deleted = [r["source_id"] for r in db.query(
        "select source_id from annotations where deleted = 1"
    )]  # fmt: skip
    assert deleted == [str(gone.id)]
    assert _gold_rows(db_path) == gold_before  # every gold-file annotation byte for byte
    sources = {r["source"]: r["n"] for r in db.query(
        "select source, count(*) n from annotations group by source"
    )}  # fmt: skip
    assert sources[first.source] == 13 and first.source.startswith("labelstudio:local:")
    assert sum(n for s, n in sources.items() if s.startswith("gold:")) == len(gold_before)


def test_an_empty_required_field_is_pulled_as_incomplete(labelstudio):  # noqa: F811
    db_path = labelstudio.db("incomplete")
    import_gold(open_db(db_path), [config.gold_dir()])
    push.push(db_path, project="incomplete")
    task_id = min(r["task_id"] for r in open_db(db_path)["tasks"].rows)
    admin = labelstudio.admin()
    # The API accepts what the form's `required` refuses: no response type, no subjective.
    admin.annotations.create(id=task_id, result=[])
    report = pull.pull(db_path, project="incomplete")
    assert report.incomplete == 1
    row = next(open_db(db_path)["annotations"].rows_where("source = ?", [report.source]))
    assert row["missing"] == '["response_type","subjective"]'
