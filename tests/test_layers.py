"""The package's layering, read from its source: imports run down the layers (no cycles,
the lazy imports inside functions included), and the pure parts import no I/O library.

The layers are the "where things are" table of docs/design.md, top to bottom."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "webhook_service"

#: The packages (and top-level modules) from the entry points down to the pure core. A
#: room may import its own modules and those of any layer below it, never one above or
#: beside it.
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"app"},
    {"api", "ops"},
    {"ingest", "sync", "push", "tasks"},
    {"reconciler"},
    {"store", "github"},
    {"core", "config", "periodic"},
]
#: Modules that decide or describe and do no I/O: none of these may appear in them.
PURE_PACKAGES = {"webhook_service.core"}
PURE = {"webhook_service.api.views", "webhook_service.ingest.signature"}
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


def _room(module: str) -> str:
    """``webhook_service.store.outbox`` -> ``store``; ``webhook_service`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(room: str) -> int:
    return next(i for i, rooms in enumerate(LAYERS) if room in rooms)


def _arrows_up(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for name, deps in graph.items():
        room = _room(name)
        if room in ("", "testing"):  # the version string; the fake GitHub stands apart
            continue
        for dep in deps:
            there = _room(dep)
            if there not in ("", room) and _layer(there) <= _layer(room):
                wrong.append(f"{name} -> {dep}")
    return sorted(wrong)


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _cycles(_graph()) == []


def test_every_room_is_in_a_layer() -> None:
    rooms = {_room(name) for name in _graph()} - {"", "testing"}
    assert rooms == set().union(*LAYERS)


def test_imports_run_down_the_layers() -> None:
    assert _arrows_up(_graph()) == []


def test_the_layer_check_finds_an_arrow_up_or_sideways() -> None:
    graph = {
        "webhook_service.store.outbox": {"webhook_service.push.stream"},
        "webhook_service.sync.poller": {"webhook_service.ingest.receiver"},
        "webhook_service.push.stream": {"webhook_service.store.outbox"},
    }
    assert _arrows_up(graph) == [
        "webhook_service.store.outbox -> webhook_service.push.stream",
        "webhook_service.sync.poller -> webhook_service.ingest.receiver",
    ]


def test_the_store_knows_nothing_of_its_callers() -> None:
    callers = {"push", "ingest", "sync", "api", "ops", "tasks", "reconciler", "app", "cli"}
    for name, deps in _graph().items():
        if _room(name) == "store":
            assert {_room(dep) for dep in deps} & callers == set(), name


def test_only_the_entry_points_import_cli_and_app() -> None:
    """``python -m webhook_service`` runs the CLI; the CLI's commands build the app."""
    importers = {"cli": {"__main__"}, "app": {"cli"}}
    for name, deps in _graph().items():
        for room, allowed in importers.items():
            if _room(name) != room and any(_room(dep) == room for dep in deps):
                assert _room(name) in allowed, f"{name} imports {room}"


def test_the_core_imports_nothing_outside_itself() -> None:
    for name, deps in _graph().items():
        if _room(name) == "core":
            assert {_room(dep) for dep in deps} <= {"core"}, name


def test_the_pure_modules_import_no_io_library() -> None:
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        if name in PURE or any(name.startswith(f"{pkg}.") for pkg in PURE_PACKAGES):
            roots = {imported.split(".")[0] for imported in _imports(path)}
            assert roots & IO_LIBRARIES == set(), path
            checked += 1
    assert checked >= len(PURE) + 2
