"""A real Label Studio for the tests: installed once (cached venv), started from a template.

The first run installs label-studio into the default venv (reused afterwards) and migrates an
empty data directory once into `<venv>/../labelstudio-template-<version>/`; every session then
copies that template into its tmp study folder and starts in seconds. Nothing is skipped: if
Label Studio cannot be installed or started, the tests fail and say why.

Import the fixtures into a test module with
`from labelstudio_fixtures import labelstudio  # noqa: F401`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from label_studio_sdk import LabelStudio

from annotator.db import conversation_to_row, extraction_to_row, open_db
from annotator.models import Conversation, Extraction, Turn, ValueRef
from annotator.review import instances, server
from annotator.taxonomy import load_taxonomy

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@dataclass
class LabelStudioServer:
    """The session's server: a study folder holding `.labelstudio/`, and its admin login."""

    study: Path
    url: str
    username: str
    password: str
    token: str
    venv: Path

    def db(self, name: str) -> Path:
        """A study database in the server's folder, so `connection()` finds this server."""
        return self.study / f"{name}.db"

    def admin(self) -> LabelStudio:
        return LabelStudio(base_url=self.url, api_key=self.token)


_running: list[LabelStudioServer] = []


@pytest.fixture(scope="session")
def labelstudio(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> LabelStudioServer:
    """One server per test session, however many modules import this fixture."""
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    # The tests run the study's own server, whatever the developer's shell points at.
    mp.delenv("LABEL_STUDIO_URL", raising=False)
    mp.delenv("LABEL_STUDIO_API_KEY", raising=False)
    if _running:
        return _running[0]
    try:
        venv = server.install(server.default_venv())
    except server.LabelStudioError as exc:
        pytest.fail(f"Label Studio could not be installed for the tests: {exc}", False)
    study = tmp_path_factory.mktemp("labelstudio-study")
    db = study / "server.db"
    request.addfinalizer(lambda: server.stop(db))
    # and any reviewer instance a test started in this study folder (isolated review)
    request.addfinalizer(lambda: instances.stop_all(db))
    try:
        server.start_from_template(db, venv)
    except server.LabelStudioError as exc:
        pytest.fail(f"Label Studio did not start for the tests: {exc}", False)
    info = server.login_info(db)
    _running.append(
        LabelStudioServer(
            study=study, url=info["url"], username=info["username"],
            password=info["password"], token=info["api_key"], venv=venv,
        )  # fmt: skip
    )
    return _running[0]


# --- helpers for the tests ----------------------------------------------------------------------


def reviewer_client(url: str, email: str, password: str) -> LabelStudio:
    """Log in through the web form as a reviewer would, then use their own API token."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as web:
        web.get("/user/login/")
        # each instance names its cookies its own way (`server.cookie_prefix`): ...csrftoken
        csrf = next(v for k, v in web.cookies.items() if k.endswith("csrftoken"))
        answer = web.post(
            "/user/login/",
            data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
            headers={"Referer": f"{url}/user/login/"},
        )
        assert answer.status_code == 302, f"{email} could not log in ({answer.status_code})"
        token = web.get("/api/current-user/token").json()["token"]
    return LabelStudio(base_url=url, api_key=token)


def make_study(path: Path, n: int = 6, prompts: tuple[str, ...] = ("p1",)) -> list[str]:
    """A study with n conversations and one ok extraction per prompt; returns conversation ids."""
    taxonomy = load_taxonomy()
    db = open_db(path)
    conversations = [
        Conversation.from_turns(
            [
                Turn(role="user", text=f"My friend lied to me ({i}). Should I forgive him?"),
                Turn(role="assistant", text=f"Honesty matters, but so does forgiveness ({i})."),
            ],
            source="test",
        )
        for i in range(n)
    ]
    db["conversations"].upsert_all([conversation_to_row(c) for c in conversations], pk="id")
    rows = []
    for k, prompt in enumerate(prompts):
        for c in conversations:
            e = Extraction(
                conversation_id=c.id, prompt_id=prompt, model="test-model", extractor="test",
                subjective=True,
                response_type="reframing" if k == 0 else "mild support",
                ai_values=[
                    taxonomy.value_ref("honesty", evidence="Honesty matters", score=0.9),
                    taxonomy.value_ref("loyalty to one's country", score=0.5),
                    ValueRef(name="zany whimsy"),
                ],
                human_values=[taxonomy.value_ref("forgiveness", evidence="forgive him")],
            )  # fmt: skip
            rows.append(extraction_to_row(e))
    db["extractions"].upsert_all(rows, pk=("conversation_id", "prompt_id", "model"))
    return [c.id for c in conversations]


# Rows of the open value picker wholly inside both the dropdown and the window (the form test
# and bench/labelstudio.py count what a reviewer sees without scrolling).
PICKER_ROWS = """(d) => {
  const box = d.getBoundingClientRect();
  const bottom = Math.min(box.bottom, window.innerHeight);
  const rows = [...d.querySelectorAll('.item')].filter((i) => {
    const r = i.getBoundingClientRect();
    return r.height > 0 && r.top >= box.top && r.bottom <= bottom;
  });
  return {rows: rows.length, width: Math.round(box.width)};
}"""


def browser_login(page, url: str, email: str, password: str) -> bool:
    """Log in through the web form as a reviewer does; whether the server let them in."""
    page.goto(f"{url}/user/login/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return "/user/login" not in page.url


def open_stream(page, url: str, project_id: int) -> None:
    """Open "Label All Tasks" as a reviewer does and close the instructions it opens with."""
    page.goto(f"{url}/projects/{project_id}/data?labeling=1")
    modal = page.locator(".lsf-modal-ls_visible")
    modal.wait_for(timeout=90_000)  # the project shows its guidelines first (show_instruction)
    modal.locator('button[aria-label="Close modal"]').click()
    modal.wait_for(state="hidden", timeout=30_000)
    page.locator(".lsf-choices").first.wait_for(timeout=90_000)
