"""docs/architecture.md's import rules, read from the source: the package is one stage per
folder and imports go one way (the study core <- ingest <- extract <- review <- measure <-
datasets <- app, cli); nothing imports the CLI or the app; no two modules import each other,
however indirectly. Imports inside functions count: a cycle hidden in a function is still one."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "annotator"
# Each stage and the stages it may import (itself included). The study core is the modules at
# the package's top level; `bundled` holds data only.
MAY_IMPORT = {
    "core": {"core"},
    "ingest": {"core", "ingest"},
    "extract": {"core", "ingest", "extract"},
    "review": {"core", "extract", "review"},
    "measure": {"core", "extract", "review", "measure"},
    "datasets": {"core", "ingest", "extract", "review", "measure", "datasets"},
    "app": {"core", "ingest", "extract", "review", "measure", "datasets", "app"},
    "cli": {"core", "ingest", "extract", "review", "measure", "datasets", "app", "cli"},
}
TOP_LEVEL_AT_MOST = 12


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the `annotator` modules a source file imports (relative ones resolved;
    `from package import module` names the module)."""
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


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "bundled" not in p.parts}


def stage_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or module == "annotator.__main__":
        return "cli" if module == "annotator.__main__" else "core"
    return "core" if (PACKAGE / f"{parts[1]}.py").exists() else parts[1]


def graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (names that are attributes dropped)."""
    known = sources()
    return {m: {n for n in imported_modules(p) if n in known and n != m and n != "annotator"}
            for m, p in known.items()}


def wrong_way(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} ({stage_of(m)}) imports {n} ({stage_of(n)})"
        for m, targets in edges.items() for n in targets
        if stage_of(n) not in MAY_IMPORT[stage_of(m)]
    )


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of two or more modules (Tarjan): each is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_every_stage_imports_only_the_stages_below_it() -> None:
    wrong = wrong_way(graph())
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    assert not find_cycles(graph())


def test_the_package_reads_as_stages() -> None:
    """One folder per stage, each with an `__init__` that says what it offers, and the study
    core at the top, at most a dozen modules."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_AT_MOST, top
    for stage in MAY_IMPORT:
        if stage == "core":
            continue
        init = PACKAGE / stage / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) >= 3, f"{init} says nothing of what it offers"


def test_no_source_file_is_over_a_thousand_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 1000}
    assert not long, long


def test_the_rules_see_relative_and_function_level_imports() -> None:
    """The checks above could pass by reading nothing: the CLI's imports of the app are seen,
    and a planted cycle and a wrong-way import are caught."""
    cli = set().union(*(imported_modules(p) for p in (PACKAGE / "cli").glob("*.py")))
    assert "annotator.app.server" in cli and "annotator.app.precompute" in cli
    assert "annotator.config" in imported_modules(PACKAGE / "app" / "server.py")
    edges = graph()
    assert "annotator.models" in edges["annotator.ingest.pipeline"]
    planted = {**edges, "annotator.ingest.pipeline": {"annotator.measure.agreement"},
               "annotator.measure.agreement": {"annotator.ingest.pipeline"}}
    assert ("annotator.ingest.pipeline (ingest) imports annotator.measure.agreement (measure)"
            in wrong_way(planted))
    assert ["annotator.ingest.pipeline", "annotator.measure.agreement"] in find_cycles(planted)


def test_the_library_imports_neither_the_cli_nor_the_app() -> None:
    library = [m for m in sources() if stage_of(m) not in ("app", "cli")]
    assert len(library) > 20
    offending = {m: sorted(n for n in imported_modules(sources()[m])
                           if n.startswith(("annotator.app", "annotator.cli")))
                 for m in library}
    assert not {k: v for k, v in offending.items() if v}


def test_the_checkouts_streamlit_app_only_starts_the_packaged_one() -> None:
    """`streamlit run streamlit_app.py` works from a checkout: the top-level script is a few
    lines that run the packaged app's `main` (served in Chromium by test_app_browser.py)."""
    tree = ast.parse((PACKAGE.parent / "streamlit_app.py").read_text())
    code = [ast.unparse(node) for node in tree.body[1:]]  # after the docstring
    assert code == ["from annotator.app.streamlit_app import main", "main()"]
