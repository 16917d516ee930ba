"""Build hook: ship the checkout's user-facing folders inside the wheel.

`prompts/` and `gold/` stay at the top of the checkout, where users read and edit them; a
wheel has no checkout, so the build copies them into `annotator/bundled/`
(`config.shipped_path` looks there first). An editable install skips the
copy: it runs from the checkout, which has the originals.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# top-level source -> place under annotator/bundled/ (keep in step with annotator/config.py)
BUNDLED = {
    "prompts": "prompts",
    "gold": "gold",
}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "annotator" / "bundled"
        for source, place in BUNDLED.items():
            src, dst = ROOT / source, target / place
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=SKIP, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildWithBundle})
