"""More of docs/architecture.md's rules, read from the source: the library (`annotator/` but the
CLI and `annotator/app/`) prints nothing and imports no console or UI toolkit (Typer, rich,
Streamlit), and each vendor SDK has one importer. (`test_import_rules.py`: nor the CLI or app.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "annotator"
LIBRARY = sorted(
    p for p in PACKAGE.rglob("*.py")
    if p.name != "__main__.py"
    and p.relative_to(PACKAGE).parts[0] not in ("app", "cli", "bundled")
)
# what only the command line or the app may import
FORBIDDEN = {"typer", "rich", "streamlit", "annotator.cli", "annotator.app"}
ONE_IMPORTER = {"anthropic": "extract/claude.py", "label_studio_sdk": "review/sync.py"}


def imported(path: Path, package: str | None = None) -> set[str]:
    """Absolute names of every module `path` imports, relative imports resolved against
    `package` (default: the package `path` lies in)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if package is None:
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def _under(name: str, top: str) -> bool:
    return name == top or name.startswith(top + ".")


def forbidden(path: Path, package: str | None = None) -> list[str]:
    return sorted(n for n in imported(path, package) for top in FORBIDDEN if _under(n, top))


def print_lines(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "print"]  # fmt: skip


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_library_imports_no_console_or_ui_toolkit(path: Path) -> None:
    bad = forbidden(path)
    assert not bad, f"{path.name} imports {bad}: draw and print in the CLI, take a callback here"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_library_prints_nothing(path: Path) -> None:
    assert not print_lines(path), f"{path.name} calls print() on lines {print_lines(path)}"


def test_each_vendor_sdk_has_one_importer() -> None:
    for sdk, owner in ONE_IMPORTER.items():
        importers = sorted(
            str(p.relative_to(PACKAGE)) for p in LIBRARY if any(_under(n, sdk) for n in imported(p))
        )
        assert importers == [owner], f"{sdk} is imported by {importers}, not only by {owner}"


def test_the_checks_find_a_relative_import_of_the_command_line_and_a_print(tmp_path: Path):
    """The checks above could pass by reading nothing: a module of `annotator.extract` with
    `from ..cli import app` and a print is caught."""
    planted = tmp_path / "planted.py"
    planted.write_text("from ..cli import app\nfrom . import claude\nprint(app)\n")
    assert "annotator.extract.claude" in imported(planted, "annotator.extract")
    assert forbidden(planted, "annotator.extract") == ["annotator.cli", "annotator.cli.app"]
    assert print_lines(planted) == [3]
