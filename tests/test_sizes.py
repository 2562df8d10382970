"""Rooms a reader can take in: no module of the package, its dashboard or the benchmarks
over 400 lines, and no Python function over 60 (issue 15). When one grows past that, it
holds two concepts: split it by noun rather than raising the limit. The benchmarks
together stay within half of what they were before their shared harness."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_LINES = 400
FUNCTION_LINES = 60
#: All benchmark code (scripts/bench_*.py, scripts/bench/): about half of the 5,300 lines
#: the benchmarks took before they shared one harness (2,650 then; 50 more since for the
#: ingest floor, a fifth baseline).
BENCHMARK_LINES = 2700


def _sources() -> list[Path]:
    found = [
        *(ROOT / "webhook_service").rglob("*.py"),
        *(ROOT / "webhook_service" / "ops" / "static").glob("*.js"),
        *(ROOT / "webhook_service" / "ops" / "static" / "js").glob("*.js"),
        *(ROOT / "scripts").rglob("*.py"),
        *(ROOT / "scripts").rglob("*.lua"),
    ]
    return sorted(found)


def _too_long(limit: int, sizes: dict[str, int]) -> dict[str, int]:
    return {name: size for name, size in sizes.items() if size > limit}


def test_the_size_check_reads_what_it_should() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in _sources()}
    assert "webhook_service/store/outbox.py" in names
    assert "webhook_service/ops/static/js/api.js" in names
    assert "scripts/bench_ingest.py" in names
    assert _too_long(2, {"a": 3, "b": 2}) == {"a": 3}


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for path in _sources()
    }
    assert _too_long(MODULE_LINES, sizes) == {}


def test_no_function_is_over_60_lines() -> None:
    sizes: dict[str, int] = {}
    for path in _sources():
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{path.relative_to(ROOT).as_posix()}:{node.name}"
                sizes[name] = node.end_lineno - node.lineno + 1 if node.end_lineno else 0
    assert _too_long(FUNCTION_LINES, sizes) == {}


def test_the_benchmarks_stay_within_their_budget() -> None:
    scripts = ROOT / "scripts"
    files = [*scripts.glob("bench_*.py"), *(scripts / "bench").rglob("*")]
    code = [p for p in files if p.suffix in {".py", ".lua", ".mjs", ".js"}]
    assert len(code) >= 10
    assert sum(len(p.read_text().splitlines()) for p in code) <= BENCHMARK_LINES
