"""What every benchmark shares, so that each reports and exits alike: 0 when every
target passes, 1 otherwise, 2 on a usage or setup error (``BenchError``)."""

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
#: An option: "-n/--deliveries", its default (False: a flag; a tuple: the choices, the
#: first the default; None: a string), help, and optional (low, high) bounds.
Option = tuple[str, Any, str] | tuple[str, Any, str, tuple[float, float]]
_name = ["bench"]


class BenchError(Exception):
    """A setup step failed (exit status 2); the message says what to do."""


def log(message: str) -> None:
    print(f"[{_name[0]}] {message}", file=sys.stderr, flush=True)


def percentile(values: Iterable[float | None], pct: float) -> float:
    """Nearest rank (nan when empty); None, a thing that never happened, ranks last."""
    ordered = sorted(math.inf if v is None else v for v in values)
    return ordered[max(1, math.ceil(len(ordered) * pct / 100)) - 1] if ordered else math.nan


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


def parse(doc: str, options: Sequence[Option], argv: Sequence[str] | None,
          problems: Callable[[argparse.Namespace], Iterable[tuple[Any, str]]] = lambda a: (),
          ) -> argparse.Namespace:  # fmt: skip
    """The options (and --keep, --json FILE), bounds checked, then ``problems(args)``:
    (failed, message) pairs; a failure is a usage error (exit status 2)."""
    parser = argparse.ArgumentParser(prog=Path(sys.argv[0]).name, description=doc.split("\n")[0])
    bounded: list[tuple[str, str, tuple[float, float]]] = []
    for flags, default, text, *bounds in options:
        names = flags.split("/")
        if default is False:
            parser.add_argument(*names, action="store_true", help=text)
            continue
        kind: dict[str, Any] = {"type": type("" if default is None else default)}
        if isinstance(default, tuple):
            kind, default = {"choices": default}, default[0]
        text += "" if default is None else f" ({default})"
        parser.add_argument(*names, default=default, help=text, **kind)
        bounded += [(names[-1], names[0], bounds[0])] if bounds else []
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and databases")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    for name, flag, (low, high) in bounded:
        if not low <= getattr(args, name.lstrip("-").replace("-", "_")) <= high:
            parser.error(f"{flag} must be between {low:,g} and {high:,g}")
    for failed, message in problems(args):
        if failed:
            parser.error(message)
    return args


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
