"""Faults a test injects: errors, delays and secondary rate limits, for the next ``count``
requests under a path prefix (``*_next``) or for every such request during a period
(``*_for``). :class:`FaultInjection` is the public half (``FakeGitHub`` inherits it); the
request pipeline asks :meth:`FaultInjection._take` whether a request meets one.

Periods use ``time.monotonic()``. Delays and failures apply before authentication, as a
proxy or an outage would; secondary limits apply to authenticated requests only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["delay", "fail", "secondary"]


@dataclass
class Fault:
    remaining: int | None  # None: every matching request from ``starts`` until ``ends``
    path_prefix: str
    status: int = 500
    seconds: float = 0.0
    retry_after: int | None = None
    method: str | None = None  # None: any method
    handled: bool = False  # "fail": the request takes effect, then its answer is lost
    starts: float = -math.inf  # time.monotonic() bounds of a fault period
    ends: float = math.inf


def _period(seconds: float, after: float) -> tuple[float, float]:
    """The time.monotonic() bounds of a fault period of ``seconds`` starting in ``after``."""
    if seconds <= 0 or after < 0:
        raise ValueError("a fault period needs seconds > 0 and after >= 0")
    starts = time.monotonic() + after
    return starts, starts + seconds


def _secondary_status(status: int) -> None:
    if status not in (403, 429):
        raise ValueError("GitHub answers a secondary rate limit with 403 or 429")


class FaultInjection:
    """Faults waiting for requests, by kind, in the order they were injected."""

    def __init__(self) -> None:
        self._faults: dict[FaultKind, list[Fault]] = {"delay": [], "fail": [], "secondary": []}

    def fail_next(
        self,
        count: int,
        status: int = 500,
        path_prefix: str = "",
        *,
        method: str | None = None,
        handled: bool = False,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (before authentication).

        ``method`` limits the rule to one HTTP method. ``handled=True`` lets each request
        take effect first and then replaces its answer with ``status``: a response lost
        on GitHub's side (e.g. a 502 for a pull request that was created).
        """
        fault = Fault(count, path_prefix, status=status, method=method, handled=handled)
        self._faults["fail"].append(fault)

    def delay_next(self, count: int, seconds: float, path_prefix: str = "") -> None:
        """Hold the next ``count`` requests for ``seconds`` before handling them."""
        self._faults["delay"].append(Fault(count, path_prefix, seconds=seconds))

    def secondary_limit_next(
        self, count: int, status: int = 403, retry_after: int | None = 1, path_prefix: str = ""
    ) -> None:
        """Refuse the next ``count`` authenticated requests with a secondary rate limit.

        Docs: a secondary limit is a 403 or 429 whose message says so; clients wait
        ``retry-after`` seconds when it is sent. Such a request costs 1 from the primary.
        """
        _secondary_status(status)
        fault = Fault(count, path_prefix, status=status, retry_after=retry_after)
        self._faults["secondary"].append(fault)

    def fail_for(
        self,
        seconds: float,
        status: int = 500,
        path_prefix: str = "",
        *,
        after: float = 0.0,
        method: str | None = None,
    ) -> None:
        """An outage: answer every request under ``path_prefix`` with ``status`` (before
        authentication) for ``seconds``, starting ``after`` seconds from now."""
        starts, ends = _period(seconds, after)
        fault = Fault(None, path_prefix, status=status, method=method, starts=starts, ends=ends)
        self._faults["fail"].append(fault)

    def delay_for(
        self, seconds: float, path_prefix: str = "", *, delay: float, after: float = 0.0
    ) -> None:
        """Hold every request under ``path_prefix`` that arrives during ``seconds`` (starting
        ``after`` seconds from now) for ``delay`` seconds before handling it: with a delay
        longer than the client's timeout, GitHub hangs for that period."""
        starts, ends = _period(seconds, after)
        fault = Fault(None, path_prefix, seconds=delay, starts=starts, ends=ends)
        self._faults["delay"].append(fault)

    def secondary_limit_for(
        self,
        seconds: float,
        status: int = 403,
        retry_after: int | None = 1,
        path_prefix: str = "",
        *,
        after: float = 0.0,
    ) -> None:
        """Refuse every authenticated request under ``path_prefix`` with a secondary rate
        limit (see :meth:`secondary_limit_next`) for ``seconds``, starting ``after``
        seconds from now."""
        _secondary_status(status)
        starts, ends = _period(seconds, after)
        fault = Fault(
            None, path_prefix, status=status, retry_after=retry_after, starts=starts, ends=ends
        )
        self._faults["secondary"].append(fault)

    def _take(self, kind: FaultKind, path: str, method: str | None = None) -> Fault | None:
        """The first fault of ``kind`` that applies to this request, counted as used."""
        now = time.monotonic()
        faults = self._faults[kind]
        faults[:] = [fault for fault in faults if fault.ends > now]  # periods that are over
        for fault in faults:
            if fault.starts > now:
                continue  # a period that has not begun
            if fault.method is not None and fault.method.upper() != method:
                continue
            if path.startswith(fault.path_prefix):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        faults.remove(fault)
                return fault
        return None
