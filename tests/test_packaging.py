"""The wheel a user installs: `pip install` (not editable) into a fresh virtual environment, then
`annotator demo`, `extract` and `app` from another folder, with nothing of the checkout on the
path. Select with `pytest -m packaging` (about 15 s: one build, one install).

The fresh environment takes the wheel's dependencies from the environment running the tests
(a path line, not a site dir: its editable install of the checkout is not activated), so the
test needs no registry; `.ci/run` installs the wheel with its dependencies from the registry.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
# What the build reads: a copy of only these shows the wheel needs nothing else of the checkout
# (and no stale build/ folder of the checkout leaks into it).
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "annotator", "prompts",
           "gold"]  # fmt: skip


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env() -> dict[str, str]:
    """The user's shell: no checkout on PYTHONPATH, no study or prompt folder preset."""
    return {k: v for k, v in os.environ.items()
            if k != "PYTHONPATH" and not k.startswith(("ANNOTATOR_", "ANTHROPIC_"))}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `annotator` script of a fresh venv holding the wheel built from this checkout."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    source.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "bundled")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=skip)
        else:
            shutil.copy2(path, source / name)
    env = clean_env()
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "--no-deps", "--quiet", str(source), "-w", str(base / "dist")], base, env)
    (wheel,) = (base / "dist").glob("annotator-*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    python = venv / "bin" / "python"
    run([*pip, "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)], base, env)
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
               base, env).strip()  # fmt: skip
    (Path(site) / "annotator-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin" / "annotator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {seconds} s")


def test_the_installed_wheel_runs_demo_extract_and_app_from_another_folder(installed, tmp_path):
    env = clean_env()
    python = installed.parent / "python"
    where = run([str(python), "-c", "import annotator; print(annotator.__file__)"], tmp_path, env)
    assert str(installed.parents[1]) in where  # the installed copy, not the checkout

    out = run([str(installed), "demo", "--db", "x.db"], tmp_path, env)
    assert "imported 49 gold conversations" in " ".join(out.split())
    assert (tmp_path / "validated.jsonl").exists()
    out = run([str(installed), "extract", "--extractor", "baseline", "--db", "x.db"],
              tmp_path, env)  # fmt: skip
    assert "Extraction run" in out
    listing = run([str(installed), "prompts", "--db", "x.db", "--json"], tmp_path, env)
    assert '"values"' in listing and '"file"' in listing  # the shipped prompts/values/v1.md

    port = free_port()
    proc = subprocess.Popen(
        [str(installed), "app", "--db", "x.db", "--port", str(port), "--no-browser"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/_stcore/health", proc) == 200
        assert wait_for_http(f"http://127.0.0.1:{port}/", proc) == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # nothing was written beside the code: the study's files are in the working folder
    assert not list(installed.parents[1].rglob("*.db"))
