"""The package's layering, read from its source: imports run one way (no cycles, the
lazy imports inside functions included), and the pure parts import no I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "webhook_service"

#: Modules that decide or describe and do no I/O: none of these may appear in them.
PURE = {"webhook_service.core", "webhook_service.views", "webhook_service.signature"}
IO_LIBRARIES = {"starlette", "databases", "socketio", "engineio", "aiohttp", "asyncpg",
                "aiosqlite", "gidgethub", "uvicorn", "redis"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {_module(path): path for path in PACKAGE.rglob("*.py")}
    return {
        name: {dep for dep in _imports(path) if dep in modules and dep != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for dep in sorted(graph[name]):
            if dep in path:
                found.append([*path[path.index(dep) :], dep])
            elif dep not in done:
                visit(dep, [*path, dep])
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = _graph()
    assert "webhook_service.api" not in graph["webhook_service.creator"]
    assert _cycles(graph) == []


def test_the_pure_modules_import_no_io_library() -> None:
    for path in PACKAGE.rglob("*.py"):
        if _module(path) in PURE:
            roots = {name.split(".")[0] for name in _imports(path)}
            assert roots & IO_LIBRARIES == set(), path
