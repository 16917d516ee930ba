"""The library imports neither the CLI nor the app: the app's code (`annotator/app/`) and the
CLI are layers over the library, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "annotator"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the `annotator` modules a source file imports (relative ones resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "annotator" or n.startswith("annotator.")}


def test_library_modules_import_neither_the_cli_nor_the_app() -> None:
    library = [p for p in PACKAGE.rglob("*.py")
               if p.relative_to(PACKAGE).parts[0] not in ("app", "cli")
               and p.name != "__main__.py"]
    assert len(library) > 20
    offending = {
        str(p.relative_to(PACKAGE)): sorted(m for m in imported_modules(p)
                                            if m.startswith(("annotator.app", "annotator.cli")))
        for p in library
    }
    assert not {k: v for k, v in offending.items() if v}


def test_the_rule_sees_relative_imports() -> None:
    """The check itself: a relative import of the app from the library would be caught."""
    cli = imported_modules(PACKAGE / "cli" / "main.py")
    assert "annotator.app.server" in cli and "annotator.app.precompute" in cli
    server = imported_modules(PACKAGE / "app" / "server.py")
    assert "annotator.config" in server
