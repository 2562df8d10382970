"""Errors, logging, percentiles, tables and the run wrapper every benchmark shares, so
that each reports alike and exits alike: 0 when every target passes, 1 otherwise, 2 on
a usage or setup error (``BenchError``)."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

Rows = Sequence[tuple[str, Sequence[str]]]
Outcome = tuple[bool, dict[str, Any]]  # every target passed; the figures for --json
_name = ["bench"]


class BenchError(Exception):
    """A setup step failed (exit status 2); the message says what to do."""


def log(message: str) -> None:
    print(f"[{_name[0]}] {message}", file=sys.stderr, flush=True)


def percentile(values: Iterable[float | None], pct: float) -> float:
    """Nearest rank (nan when empty); None, a thing that never happened, ranks last."""
    ordered = sorted(math.inf if v is None else v for v in values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(len(ordered) * pct / 100)) - 1]


def ms(values: Sequence[float], pct: float) -> str:
    return f"{percentile(values, pct):.1f}" if values else "-"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(columns: Sequence[str], rows: Rows) -> None:
    """A text table: a row per figure, a right-aligned column per run."""
    width = max([22, *(len(c) + 2 for c in columns)])
    label_width = max(len(label) for label, _ in rows) + 2
    print(" " * label_width + "".join(f"{c:>{width}}" for c in columns))
    for label, values in rows:
        print(f"{label:<{label_width}}" + "".join(f"{v:>{width}}" for v in values))


def markdown(columns: Sequence[str], rows: Rows) -> str:
    """The same as a Markdown table, as docs/benchmarks.md quotes it."""
    lines = ["| | " + " | ".join(columns) + " |", "|---" + "|---:" * len(columns) + "|"]
    return "\n".join([*lines, *("| " + " | ".join([k, *v]) + " |" for k, v in rows)])


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and databases")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")


def run(name: str, args: argparse.Namespace, body: Callable[[Path], Outcome]) -> int:
    """``body(tmp)`` in a temp dir; prints the verdict and returns the exit status."""
    _name[0] = name
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}."))
    try:
        passed, figures = body(tmp)
    except BenchError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - started
    print(f"\nOVERALL: {verdict(passed)}\ntotal time: {took:.1f}s")
    if args.json is not None:
        doc = {"bench": name, "passed": passed, "seconds": round(took, 1), **figures}
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0 if passed else 1
