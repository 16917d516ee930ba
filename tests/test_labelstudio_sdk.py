"""The Label Studio SDK as annotator uses it: its version, and the one private path.

`labelstudio._post_json` posts task imports through the SDK's private `_client_wrapper` (the
SDK's base URL, auth headers and httpx client) so that orjson, not the SDK's per-value encoder,
encodes the payload. These tests fail when an SDK release changes what that relies on, before a
push does: a real `LabelStudio` client posts to a local HTTP server that records the request.
No Label Studio server is needed.
"""

from __future__ import annotations

import importlib.metadata
import json
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from annotator import labelstudio_server as server
from annotator.labelstudio import _post_json

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # a legacy token: not a JWT


class Recorder(BaseHTTPRequestHandler):
    """Records each request; answers 200 with {"ok": true}, or 400 for paths under /api/bad."""

    seen: list[dict] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append({"method": self.command, "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body})  # fmt: skip
        bad = "/api/bad" in self.path
        status, reply = (400, b'{"detail": "bad"}') if bad else (200, b'{"ok": true}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = do_PATCH = _answer

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict]]]:
    Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", Recorder.seen
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


def test_the_private_client_wrapper_has_what_post_json_uses(recorder):
    url, _ = recorder
    wrapper = LabelStudio(base_url=url, api_key=TOKEN)._client_wrapper
    assert wrapper.get_base_url() == url
    assert isinstance(wrapper.httpx_client.httpx_client, httpx.Client)
    assert wrapper.get_headers()["Authorization"] == f"Token {TOKEN}"


def test_post_json_sends_the_body_with_the_sdks_auth(recorder):
    url, seen = recorder
    ls = LabelStudio(base_url=url + "/", api_key=TOKEN)
    payload = [{"data": {"text": "é \u2028 <b>"}, "predictions": [{"result": [], "score": 0.5}]}]
    assert _post_json(ls, "projects/7/import", payload, params={"return_task_ids": "true"}) == {
        "ok": True
    }
    assert _post_json(ls, "tasks/3", {"meta": {}}, method="PATCH") == {"ok": True}
    first, second = seen
    assert first["method"] == "POST"
    assert first["path"] == "/api/projects/7/import?return_task_ids=true"
    assert first["headers"]["authorization"] == f"Token {TOKEN}"
    assert first["headers"]["content-type"] == "application/json"
    assert first["headers"]["user-agent"].startswith("label_studio_sdk/")
    assert json.loads(first["body"]) == payload
    assert (second["method"], second["path"], json.loads(second["body"])) == (
        "PATCH", "/api/tasks/3", {"meta": {}})  # fmt: skip


def test_post_json_raises_the_sdks_api_error(recorder):
    url, _ = recorder
    with pytest.raises(ApiError) as raised:
        _post_json(LabelStudio(base_url=url, api_key=TOKEN), "bad/import", [])
    assert raised.value.status_code == 400 and raised.value.body == {"detail": "bad"}
