"""Push, review and pull against a real Label Studio server (see labelstudio_fixtures)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from labelstudio_fixtures import labelstudio, make_study, reviewer_client  # noqa: F401
from typer.testing import CliRunner

from annotator.cli import app
from annotator.db import open_db
from annotator.models import Labels, ResponseType
from annotator.review import pull, push, server, sync
from annotator.taxonomy import load_taxonomy

pytestmark = pytest.mark.integration
runner = CliRunner()


def _result(values: list[list[str]], response: str, other: str = "", human: str = "") -> list:
    def item(name: str, kind: str, value: dict) -> dict:
        return {"from_name": name, "to_name": "dialogue", "type": kind, "value": value}

    out = [
        item("ai_values", "taxonomy", {"taxonomy": values}),
        item("response_type", "choices", {"choices": [response]}),
        item("subjective", "choices", {"choices": ["yes"]}),
    ]
    if other:
        out.append(item("ai_values_other", "textarea", {"text": [other]}))
    if human:
        out.append(item("human_values", "textarea", {"text": [human]}))
    return out


def _rows(db_path) -> dict[str, dict]:
    """Pulled annotations by Label Studio's own annotation id."""
    return {r["source_id"]: r for r in open_db(db_path)["annotations"].rows}


def test_push_review_pull_roundtrip(labelstudio):  # noqa: F811
    db_path = labelstudio.db("roundtrip")
    ids = make_study(db_path, n=6, prompts=("p1", "p2"))
    admin = labelstudio.admin()

    # 1. push prompt p1: one task per conversation, one prediction each, mapping stored
    first = push.push(db_path, prompt_id="p1", project="roundtrip", overlap=2)
    assert first.created_project and first.tasks_created == 6
    db = open_db(db_path)
    tasks = {r["conversation_id"]: r for r in db["tasks"].rows}
    assert set(tasks) == set(ids)
    project = admin.projects.get(id=first.project_id)
    assert project.maximum_annotations == 2
    server_tasks = list(admin.tasks.list(project=first.project_id, fields="all"))
    assert len(server_tasks) == 6
    for task in server_tasks:
        assert tasks[task.data["conversation_id"]]["task_id"] == task.id
        assert [p.model_version for p in task.predictions] == ["p1"]
        assert task.predictions[0].score == pytest.approx(0.7)

    # 2. push again: nothing new on the server
    again = push.push(db_path, prompt_id="p1", project="roundtrip")
    assert (again.tasks_created, again.predictions_added, again.tasks_existing) == (0, 0, 6)
    assert admin.projects.get(id=first.project_id).task_number == 6

    # 3. a new prompt version adds its predictions to the same tasks
    second = push.push(db_path, prompt_id="p2", project="roundtrip")
    assert (second.tasks_created, second.predictions_added) == (0, 6)
    for task in admin.tasks.list(project=first.project_id, fields="all"):
        assert sorted(p.model_version for p in task.predictions) == ["p1", "p2"]
        assert task.data["prefilled_by"] == "p2"  # the task says which version pre-fills it
    assert second.tasks_refreshed == 6 and second.prefilled_by == "p2"
    assert {json.dumps(json.loads(r["prompt_versions"])) for r in db["tasks"].rows} == {
        '["p1", "p2"]'
    }

    # 4. two reviewers who can log in annotate through the API
    ada = sync.add_user(db_path, "ada@example.org", shared=True)
    bob = sync.add_user(db_path, "bob@example.org", password="bob-pass-123", shared=True)
    assert ada.created and bob.password == "bob-pass-123"
    as_ada = reviewer_client(labelstudio.url, ada.email, ada.password)
    as_bob = reviewer_client(labelstudio.url, bob.email, bob.password)
    honesty = load_taxonomy().path("honesty")
    by_task = {tasks[c]["task_id"]: c for c in ids}
    task_ids = sorted(by_task)
    a1 = as_ada.annotations.create(
        id=task_ids[0],
        result=_result([honesty], "reframing", other="Intellectual-Honesty\nzany whimsy",
                       human="forgiveness"),
        lead_time=12.5,
    )  # fmt: skip
    a2 = as_bob.annotations.create(id=task_ids[0], result=_result([honesty], "neutral"))
    a3 = as_bob.annotations.create(id=task_ids[1], result=[], was_cancelled=True)
    a4 = as_ada.annotations.create(id=task_ids[2], result=_result([honesty], "mild support"))

    # 5. pull: every annotation lands, labels mapped back to taxonomy names
    pulled = pull.pull(db_path, project="roundtrip")
    assert (pulled.annotations, pulled.new, pulled.cancelled) == (4, 4, 1)
    rows = _rows(db_path)
    assert set(rows) == {str(a.id) for a in (a1, a2, a3, a4)}
    r1 = rows[str(a1.id)]
    assert r1["annotator"] == "ada@example.org"
    assert r1["conversation_id"] == by_task[task_ids[0]]
    assert r1["lead_time"] == 12.5
    labels = Labels.model_validate_json(r1["labels"])
    assert labels.ai_values == ["honesty", "intellectual honesty", "zany whimsy"]
    assert labels.human_values == ["forgiveness"]
    assert labels.response_type is ResponseType.reframing and labels.subjective is True
    assert pulled.free_values == 1  # "zany whimsy" is kept, and counted as outside the tree
    assert rows[str(a3.id)]["cancelled"] == 1 and rows[str(a3.id)]["annotator"] == bob.email

    # 6. pulling again changes nothing
    before = _rows(db_path)
    twice = pull.pull(db_path, project="roundtrip")
    assert (twice.new, twice.updated, twice.deleted, twice.unchanged) == (0, 0, 0, 4)
    assert _rows(db_path) == before

    # 7. an edit is updated with the old version in history; a deletion is marked
    as_bob.annotations.update(id=a2.id, result=_result([honesty], "strong resistance"))
    as_ada.annotations.delete(id=a4.id)
    third = pull.pull(db_path, project="roundtrip")
    assert (third.updated, third.deleted, third.unchanged) == (1, 1, 2)
    rows = _rows(db_path)
    edited = rows[str(a2.id)]
    assert Labels.model_validate_json(edited["labels"]).response_type is (
        ResponseType.strong_resistance
    )
    history = json.loads(edited["history"])
    assert len(history) == 1 and history[0]["labels"]["response_type"] == "neutral"
    assert rows[str(a4.id)]["deleted"] == 1
    assert json.loads(rows[str(a4.id)]["history"])[-1]["event"] == "deleted"
    assert pull.pull(db_path, project="roundtrip").deleted == 0  # marked once


def test_restart_keeps_projects_and_annotations(labelstudio):  # noqa: F811
    db_path = labelstudio.db("restart")
    make_study(db_path, n=2)
    report = push.push(db_path, project="restart")
    admin = labelstudio.admin()
    task = next(iter(admin.tasks.list(project=report.project_id)))
    admin.annotations.create(id=task.id, result=_result([], "neutral"))
    server_db = labelstudio.study / "server.db"
    server.stop(server_db)
    assert not server.status(server_db).running
    started = server.start(server_db)
    assert started.answering and started.message == "started"
    again_started = server.start(server_db)  # idempotent: no second server
    assert again_started.message == "already running" and again_started.pid == started.pid
    assert pull.pull(db_path, project="restart").annotations == 1
    again = push.push(db_path, project="restart")
    assert again.tasks_created == 0 and again.tasks_existing == 2
    # the new port is in the state file, and the fixture's URL follows it
    labelstudio.url = started.url


def test_secrets_stay_out_of_logs_and_process_list(labelstudio):  # noqa: F811
    db = labelstudio.study / "server.db"
    state_file = server.state_path(db)
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    state = server.read_state(db)
    assert state is not None and state.token == labelstudio.token
    cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
    assert labelstudio.token.encode() not in cmdline
    assert state.password.encode() not in cmdline
    log = server.log_path(db).read_text()
    assert labelstudio.token not in log and state.password not in log
    assert labelstudio.token not in repr(state)
    status = runner.invoke(app, ["labelstudio", "status", "--db", str(db)])
    assert status.exit_code == 0 and "answering" in status.output
    assert labelstudio.token not in status.output
    login = runner.invoke(app, ["labelstudio", "status", "--db", str(db), "--login"])
    assert labelstudio.token in login.output  # asked for: shown


def _one_line_error(args: list[str], env: dict | None = None, secret: str = "") -> str:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert text.startswith("error:"), text
    assert len(text.replace("\n", " ").split("error:")) == 2  # one message
    if secret:
        assert secret not in result.output
    return " ".join(text.split())


def test_errors_are_one_line_with_what_to_do(labelstudio, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    lonely = tmp_path / "lonely.db"
    make_study(lonely, n=1)
    # server down: this study never started one
    msg = _one_line_error(["push", "--db", str(lonely)])
    assert "annotator labelstudio start" in msg
    # wrong URL: nothing listens there
    dead = f"http://127.0.0.1:{server.free_port()}"
    env = {"LABEL_STUDIO_URL": dead, "LABEL_STUDIO_API_KEY": labelstudio.token}
    msg = _one_line_error(["push", "--db", str(lonely)], env, labelstudio.token)
    assert "cannot reach" in msg and dead in msg
    # a URL that answers, but is not the API
    env = {"LABEL_STUDIO_URL": labelstudio.url + "/static", "LABEL_STUDIO_API_KEY": "x" * 40}
    msg = _one_line_error(["pull", "--db", str(lonely)], env)
    assert "does not look like Label Studio" in msg
    # bad token
    bad = "0" * 40
    env = {"LABEL_STUDIO_URL": labelstudio.url, "LABEL_STUDIO_API_KEY": bad}
    msg = _one_line_error(["pull", "--db", str(lonely)], env, bad)
    assert "rejected the API key" in msg and "LABEL_STUDIO_API_KEY" in msg
    # only one of the two variables
    msg = _one_line_error(["labelstudio", "status", "--db", str(lonely)],
                          {"LABEL_STUDIO_URL": labelstudio.url})
    assert "LABEL_STUDIO_API_KEY is not set" in msg
    # project missing
    db_path = labelstudio.db("errors")
    make_study(db_path, n=2, prompts=("p1",))
    msg = _one_line_error(["pull", "--db", str(db_path), "--project", "no such project"], None,
                          labelstudio.token)
    assert "is not on" in msg and "annotator push --project" in msg
    # a label not in the config: a project whose config lists no values, kept as is
    open_db(db_path)["extractions"].delete_where()
    push.push(db_path, project="errors", top_values=0)  # tasks only: empty taxonomy
    make_study(db_path, n=2, prompts=("p1",))
    msg = _one_line_error(["push", "--db", str(db_path), "--project", "errors", "--keep-config"],
                          None, labelstudio.token)
    assert "'honesty' is not in the labeling config" in msg and "nothing was sent" in msg
    admin = labelstudio.admin()
    project = sync.find_project(admin, server.connection(db_path), "errors")
    assert all(not t.predictions for t in admin.tasks.list(project=project.id, fields="all"))
    # without --keep-config the same push extends the config and goes through
    fixed = push.push(db_path, project="errors")
    assert fixed.config_updated and fixed.predictions_added == 2
    # a reviewer's login without @
    msg = _one_line_error(["labelstudio", "add-user", "nobody", "--db", str(db_path)])
    assert "not an email address" in msg


def test_external_server_is_used_and_none_started(labelstudio, tmp_path):  # noqa: F811
    db_path = tmp_path / "elsewhere" / "study.db"
    make_study(db_path, n=3)
    env = {"LABEL_STUDIO_URL": labelstudio.url, "LABEL_STUDIO_API_KEY": labelstudio.token}
    start = runner.invoke(app, ["labelstudio", "start", "--db", str(db_path)], env=env)
    assert start.exit_code == 0, start.output
    assert "external server" in start.output and labelstudio.token not in start.output
    assert not server.server_dir(db_path).exists()  # nothing started, nothing written
    stop = runner.invoke(app, ["labelstudio", "stop", "--db", str(db_path)], env=env)
    assert stop.exit_code == 0 and "no local server" in " ".join(stop.output.split())
    pushed = runner.invoke(app, ["push", "--db", str(db_path), "--project", "external",
                                 "--json"], env=env)  # fmt: skip
    assert pushed.exit_code == 0, pushed.output
    report = json.loads(pushed.output)
    assert report["tasks_created"] == 3 and report["url"] == labelstudio.url
    assert not server.server_dir(db_path).exists()


def test_push_recovers_a_mapping_lost_in_a_crash(labelstudio):  # noqa: F811
    db_path = labelstudio.db("crash")
    make_study(db_path, n=4, prompts=("p1",))
    first = push.push(db_path, project="crash")
    db = open_db(db_path)
    # as if the process died after Label Studio imported a batch but before the commit
    lost = [r["conversation_id"] for r in db["tasks"].rows][:2]
    db["tasks"].delete_where("conversation_id in (?, ?)", lost)
    again = push.push(db_path, project="crash")
    assert again.tasks_recovered == 2 and again.tasks_created == 0
    assert again.predictions_added == 0 and again.predictions_skipped == 4
    admin = labelstudio.admin()
    tasks = list(admin.tasks.list(project=first.project_id, fields="all"))
    assert len(tasks) == 4 and all(len(t.predictions) == 1 for t in tasks)
    assert {r["conversation_id"]: r["task_id"] for r in db["tasks"].rows} == {
        t.data["conversation_id"]: t.id for t in tasks
    }
