"""What the commands print: plain text tables for people (``--json`` prints the rows as
they are) and a progress bar for long runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """A plain text table; an empty list says so."""
    if not rows:
        return "(none)"
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


class Progress:
    """A one-line progress bar on stderr for long runs (only on a terminal)."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._shown = sys.stderr.isatty() and total >= 20

    def __call__(self, done: int) -> None:
        if self._shown:
            width = 30
            filled = width * done // max(self._total, 1)
            bar = "#" * filled + "." * (width - filled)
            print(f"\r[{bar}] {done}/{self._total}", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self._shown:
            print(file=sys.stderr)
