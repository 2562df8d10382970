"""GitHub's secondary rate limits as the fake enforces them, and a way to measure them.

Docs "Rate limits for the REST API", section "About secondary rate limits"
(https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits):

- "No more than 100 concurrent requests are allowed. This limit is shared across the REST
  API and GraphQL API."
- "No more than 900 points per minute are allowed for REST API endpoints, and no more than
  2,000 points per minute are allowed for the GraphQL API endpoint."

Section "Calculating points for the secondary rate limit": a GraphQL request without a
mutation costs 1 point, with a mutation 5; most REST ``GET``, ``HEAD`` and ``OPTIONS``
requests 1, most ``POST``, ``PATCH``, ``PUT`` and ``DELETE`` requests 5. A ``304`` is a
``GET`` like any other: conditional requests are free only of the *primary* limit.
Exceeding a secondary limit is a 403 (or 429) whose message says so, with ``retry-after``.

The fake counts per credential (a token, an installation, the App), REST and GraphQL
apart, in a sliding window of real time. Not imitated: the CPU-time limit (90 s per 60 s),
the content-creation limits (80 a minute, 500 an hour) and the undisclosed costs of some
endpoints. Nothing here does I/O: callers pass ``time.monotonic()``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Api", "Refusal", "SecondaryLimits", "max_window_points", "secondary_points"]

Api = Literal["rest", "graphql"]

_CHEAP_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def secondary_points(method: str, api: Api, *, mutation: bool = False) -> int:
    """What one request costs, per "Calculating points for the secondary rate limit"."""
    if api == "graphql":
        return 5 if mutation else 1
    return 1 if method.upper() in _CHEAP_METHODS else 5


@dataclass(frozen=True)
class Refusal:
    """A request refused for a secondary limit: why, and the ``Retry-After`` seconds."""

    reason: Literal["points", "concurrency"]
    retry_after: int


class _Window:
    """Points sent in the last ``length`` seconds: times and running totals, oldest first.

    Running totals make "when will ``n`` points have left the window" one bisection, so a
    client that hammers costs the fake O(log n) per refused request, not O(n).
    """

    def __init__(self, length: float) -> None:
        self.length = length
        self._times: list[float] = []
        self._totals: list[int] = []  # points sent up to and including each request
        self._head = 0  # the first request still in the window
        self._base = 0  # points sent before it

    def _total(self) -> int:
        return self._totals[-1] if self._totals else self._base

    def expire(self, now: float) -> None:
        # A request leaves the window ``length`` seconds after it was sent.
        head = bisect_right(self._times, now - self.length, self._head)
        if head > self._head:
            self._base, self._head = self._totals[head - 1], head
        if self._head > 1024 and 2 * self._head > len(self._times):
            del self._times[: self._head], self._totals[: self._head]
            self._head = 0

    def used(self) -> int:
        return self._total() - self._base

    def add(self, now: float, points: int) -> None:
        self._totals.append(self._total() + points)
        self._times.append(now)

    def wait(self, now: float, points: int, limit: int) -> float:
        """Seconds until ``points`` more would fit under ``limit`` (0: they fit now)."""
        must_leave = self.used() + points - limit
        if must_leave <= 0:
            return 0.0
        index = bisect_left(self._totals, self._base + must_leave, self._head)
        if index >= len(self._times):  # more than the limit in one request: never fits
            return self.length
        return self._times[index] + self.length - now


class SecondaryLimits:
    """Per credential: points in a sliding window (REST and GraphQL apart), requests in
    flight (REST and GraphQL together). :meth:`admit` on arrival, :meth:`release` once
    answered."""

    def __init__(
        self, *, rest_points: int, graphql_points: int, window: float, max_concurrent: int
    ) -> None:
        if window <= 0 or min(rest_points, graphql_points, max_concurrent) < 1:
            raise ValueError("secondary limits need a window > 0 and limits >= 1")
        self.limits: dict[Api, int] = {"rest": rest_points, "graphql": graphql_points}
        self.window = window
        self.max_concurrent = max_concurrent
        self._windows: dict[tuple[str, Api], _Window] = {}
        self._in_flight: dict[str, int] = {}

    def admit(self, credential: str, api: Api, points: int, now: float) -> Refusal | None:
        """Count a request that just arrived; None if it may be served.

        Every request is counted in the window, refused ones too: GitHub counts what a
        client sends, so a client that keeps sending while refused never gets back under
        the limit. The caller must :meth:`release` the credential when it has answered.
        """
        in_flight = self._in_flight.get(credential, 0) + 1
        self._in_flight[credential] = in_flight
        window = self._windows.get((credential, api))
        if window is None:
            window = self._windows[(credential, api)] = _Window(self.window)
        window.expire(now)
        limit = self.limits[api]
        fits = window.used() + points <= limit
        window.add(now, points)
        if in_flight > self.max_concurrent:
            return Refusal("concurrency", 1)
        if fits:
            return None
        return Refusal("points", max(1, math.ceil(window.wait(now, points, limit))))

    def release(self, credential: str) -> None:
        """One request of ``credential`` has been answered."""
        left = self._in_flight.get(credential, 0) - 1
        if left > 0:
            self._in_flight[credential] = left
        else:
            self._in_flight.pop(credential, None)

    def in_flight(self, credential: str) -> int:
        return self._in_flight.get(credential, 0)

    def used(self, credential: str, api: Api, now: float) -> int:
        """Points of ``credential`` in the window ending ``now``."""
        window = self._windows.get((credential, api))
        if window is None:
            return 0
        window.expire(now)
        return window.used()


class _Charged(Protocol):
    """What :func:`max_window_points` reads of a ``RequestRecord``."""

    @property
    def received_at(self) -> float: ...
    @property
    def points(self) -> int: ...
    @property
    def api(self) -> str: ...
    @property
    def token(self) -> str | None: ...
    @property
    def credential(self) -> str | None: ...


def max_window_points(
    records: Iterable[_Charged],
    *,
    api: str = "rest",
    window: float = 60.0,
    credential: str | None = None,
) -> int:
    """The most secondary points of ``api`` sent within any ``window`` seconds.

    ``records`` are ``FakeGitHub.requests`` (``received_at`` is ``time.monotonic()``, the
    clock the limits use); windows are half-open, ``(t - window, t]``, as the fake's.
    ``credential`` keeps one credential's requests: a token as in ``RequestRecord.token``
    ("jwt" for the App) or a budget key as in ``RequestRecord.credential``
    ("installation:42", which covers all of an installation's tokens).
    """
    kept = sorted(
        (record.received_at, record.points)
        for record in records
        if record.api == api
        and record.points
        and (credential is None or credential in (record.token, record.credential))
    )
    best = total = start = 0
    for at, points in kept:
        total += points
        while kept[start][0] <= at - window:
            total -= kept[start][1]
            start += 1
        best = max(best, total)
    return best
