"""The Label Studio SDK as annotator uses it: its version, and the public calls push relies on.

These fail when an SDK release changes what push relies on, before a push does: a real
`LabelStudio` client talks to a local HTTP server that records each request and answers as
Label Studio 1.23 does. No Label Studio server is needed (the push tests use a real one).
"""

from __future__ import annotations

import importlib.metadata
import json
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from annotator.review import server
from annotator.review.sync import NEUTRAL_ORDERING, WRITE_ONCE

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # a legacy token: not a JWT


class Recorder(BaseHTTPRequestHandler):
    """Records each request; answers with the next of `replies` (status, JSON), else 200 {}."""

    seen: list[dict] = []
    replies: list[tuple[int, object]] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append({"method": self.command, "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": json.loads(body) if body else None})  # fmt: skip
        status, data = self.replies.pop(0) if self.replies else (200, {})
        reply = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = do_PATCH = _answer

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[LabelStudio, type[Recorder]]]:
    Recorder.seen, Recorder.replies = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        yield LabelStudio(base_url=url, api_key=TOKEN), Recorder
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


def test_the_sdk_is_the_release_the_pinned_server_ships_with():
    assert importlib.metadata.version("label-studio-sdk") == server.LABEL_STUDIO_SDK_VERSION
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"label-studio-sdk=={server.LABEL_STUDIO_SDK_VERSION}" in pinned
    # and the server's own venv, when installed, carries that SDK release too
    venv = server.default_venv()
    if server.installed_version(venv) == server.LABEL_STUDIO_VERSION:
        found = sorted(venv.glob("lib/python*/site-packages/label_studio_sdk-*.dist-info"))
        versions = [p.name.removesuffix(".dist-info").split("-")[1] for p in found]
        assert versions == [server.LABEL_STUDIO_SDK_VERSION]


def test_an_import_returns_the_new_task_ids_and_sends_the_tasks_as_given(recorder):
    ls, rec = recorder
    rec.replies.append((201, {"task_count": 2, "task_ids": [11, 12], "annotation_count": 0}))
    tasks = [{"data": {"text": "é \u2028 <b>"}, "predictions": [{"result": [], "score": 0.5}]},
             {"data": {"text": "two"}, "predictions": []}]
    response = ls.projects.import_tasks(id=7, request=tasks, return_task_ids=True,
                                        request_options=WRITE_ONCE)
    assert response.model_dump()["task_ids"] == [11, 12]  # an undeclared field, kept
    (sent,) = rec.seen
    assert (sent["method"], sent["path"]) == ("POST", "/api/projects/7/import?return_task_ids=true")
    assert sent["headers"]["authorization"] == f"Token {TOKEN}"
    assert sent["body"] == tasks


@pytest.mark.parametrize("status", [500, 503])
def test_an_import_is_sent_once_even_when_the_server_fails(recorder, status):
    """The SDK retries a 5xx by default; an import retried could create its tasks twice."""
    ls, rec = recorder
    rec.replies.extend([(status, {"detail": "busy"})] * 3)
    with pytest.raises(ApiError) as raised:
        ls.projects.import_tasks(id=7, request=[{"data": {}}], return_task_ids=True,
                                 request_options=WRITE_ONCE)
    assert raised.value.status_code == status
    assert len(rec.seen) == 1
    with pytest.raises(ApiError):
        ls.projects.import_predictions(id=7, request=[{"task": 1, "result": []}],
                                       request_options=WRITE_ONCE)
    assert len(rec.seen) == 2


def test_predictions_are_sent_as_given(recorder):
    ls, rec = recorder
    rec.replies.append((201, {"created": 1}))
    predictions = [{"task": 11, "result": [{"type": "choices"}], "model_version": "p1"}]
    ls.projects.import_predictions(id=7, request=predictions, request_options=WRITE_ONCE)
    (sent,) = rec.seen
    assert (sent["method"], sent["path"]) == ("POST", "/api/projects/7/import/predictions")
    assert sent["body"] == predictions


def test_a_view_update_keeps_every_key_of_its_data(recorder):
    """`_neutral_views` sends a tab's own data back with filters and ordering reset: keys the
    SDK's model does not declare (title, hidden columns) must reach the server unchanged."""
    ls, rec = recorder
    data = {"title": "Mine", "hiddenColumns": {"explore": ["tasks:inner_id"]},
            "filters": {"conjunction": "and", "items": []}, "ordering": NEUTRAL_ORDERING}
    rec.replies.append((200, {"id": 5, "project": 3, "data": data}))
    ls.views.update("5", data=data, project=3)  # type: ignore[arg-type]
    (sent,) = rec.seen
    assert (sent["method"], sent["path"]) == ("PATCH", "/api/dm/views/5/")
    assert sent["body"] == {"data": data, "project": 3}
