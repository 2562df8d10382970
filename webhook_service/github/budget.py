"""Rate-limit budgets: how much of GitHub's limits one credential may use, planned.

GitHub limits each credential twice (docs "Rate limits for the REST API",
https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api):

- *primary*: requests (REST) or query points (GraphQL) an hour, told in the
  ``x-ratelimit-*`` headers of every answer; a 304 to a conditional request is free;
- *secondary*: at most 900 points a minute to REST endpoints and 2,000 to GraphQL
  (a GET, a 304 included, or a GraphQL query is 1 point; a REST POST/PATCH/PUT/DELETE
  or a GraphQL mutation is 5), and at most 100 concurrent requests. Repeatedly going
  over them gets an integration blocked.

A :class:`Budget` plans within a share of both (``SYNC_BUDGET_SHARE``, default 80%)
instead of only reacting to 403s: each request reserves its points from a
generic-cell-rate schedule (GCRA) whose rate is the share of the per-minute limit, so
requests are spread evenly over the minute and no window of 60 s ever holds more than
the share (:meth:`Budget.admit` holds it to that on the times requests really go, too);
past the share of the primary limit it waits for the reset. It does no I/O: both return
how long to wait, the caller sleeps.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["rest", "graphql"]

#: GitHub's secondary limits, points per minute (docs above).
REST_POINTS_PER_MINUTE = 900
GRAPHQL_POINTS_PER_MINUTE = 2000
#: GitHub's cap on concurrent requests, shared by REST and GraphQL.
MAX_CONCURRENT_REQUESTS = 100
#: Points a request may take ahead of the even schedule (a small burst).
_BURST_POINTS = 10


def points(api: Api, method: str, *, mutation: bool = False) -> int:
    """Secondary-limit points of one request (docs: "Calculating points for the
    secondary rate limit")."""
    if api == "graphql":
        return 5 if mutation else 1
    return 1 if method.upper() in ("GET", "HEAD", "OPTIONS") else 5


@dataclass(frozen=True, slots=True)
class Limits:
    """What a budget plans within: ``share`` of each limit, per ``window`` seconds."""

    share: float = 0.8
    rest_points: int = REST_POINTS_PER_MINUTE
    graphql_points: int = GRAPHQL_POINTS_PER_MINUTE
    window: float = 60.0

    def planned(self, api: Api) -> int:
        """Points per window this budget lets through."""
        limit = self.rest_points if api == "rest" else self.graphql_points
        return max(1, math.floor(limit * self.share))


@dataclass(slots=True)
class _Schedule:
    """GCRA: a point every ``interval`` seconds, ``burst`` points ahead at most, so
    any window of ``window`` seconds holds at most ``planned`` points."""

    interval: float
    tolerance: float
    theoretical: float = 0.0  # when the schedule is next free of debt

    @classmethod
    def for_limit(cls, planned: int, window: float) -> _Schedule:
        # In any span t at most (t + tolerance) / interval + 1 points pass: with t the
        # window, that is ``planned``.
        burst = min(_BURST_POINTS, planned // 10)
        interval = window / max(planned - burst - 1, 1)
        return cls(interval=interval, tolerance=burst * interval)

    def reserve(self, cost: int, now: float) -> float:
        start = max(now, self.theoretical - self.tolerance)
        self.theoretical = max(self.theoretical, start) + cost * self.interval
        return start - now


@dataclass(slots=True)
class Primary:
    """The latest ``x-ratelimit-*`` of one resource (``core``, ``graphql``, ...)."""

    limit: int
    remaining: int
    reset: float  # epoch seconds

    @property
    def used(self) -> int:
        return self.limit - self.remaining


@dataclass(slots=True)
class Budget:
    """One credential's budgets (REST and GraphQL apart) and what it has used."""

    limits: Limits = field(default_factory=Limits)
    primary: dict[str, Primary] = field(default_factory=dict)
    hold_until: float = 0.0  # epoch: nothing before (GitHub's retry-after)
    secondary_refusals: int = 0  # 403/429 answers for a secondary limit
    waits: int = 0  # requests that waited for the plan
    waited: float = 0.0  # seconds they waited
    _schedules: dict[str, _Schedule] = field(default_factory=dict)
    _sent: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    def reserve(self, api: Api, cost: int, *, now: float, clock: float) -> float:
        """Reserve ``cost`` points of ``api`` for a request: the seconds to wait before
        sending it. ``now`` is monotonic time (the schedule's), ``clock`` epoch time
        (GitHub's resets and retry-after)."""
        wait = max(self.hold_until - clock, 0.0)
        resource = "graphql" if api == "graphql" else "core"
        state = self.primary.get(resource)
        # Past the share of the primary limit: nothing more until the reset.
        if (
            state is not None
            and state.reset > clock
            and state.used + cost > state.limit * self.limits.share
        ):
            wait = max(wait, state.reset - clock + 1.0)
        schedule = self._schedules.get(api)
        if schedule is None:
            schedule = _Schedule.for_limit(self.limits.planned(api), self.limits.window)
            self._schedules[api] = schedule
        wait += schedule.reserve(cost, now + wait)
        if wait > 0:
            self.waits += 1
            self.waited += wait
        return wait

    def admit(self, api: Api, cost: int, now: float) -> float:
        """The hard bound, on what was really sent: 0 when ``cost`` more points now keep
        the last window within the plan (they are then counted as sent), else how long
        to wait first. A request the schedule let through late (a busy event loop) and
        one on time could otherwise come closer together than planned."""
        sent = self._sent.setdefault(api, deque())
        self._forget(sent, now)
        excess = sum(points for _, points in sent) + cost - self.limits.planned(api)
        if excess <= 0:
            sent.append((now, cost))
            return 0.0
        for at, points in sent:  # the oldest sends leave the window first
            excess -= points
            if excess <= 0:
                return at + self.limits.window - now + 1e-6
        return self.limits.window

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read an answer's ``x-ratelimit-*`` (errors included)."""
        try:
            resource = headers.get("x-ratelimit-resource", "core")
            state = Primary(
                int(headers["x-ratelimit-limit"]),
                int(headers["x-ratelimit-remaining"]),
                float(headers["x-ratelimit-reset"]),
            )
        except (KeyError, ValueError):
            return
        self.primary[resource] = state

    def refused(self, retry_at: float | None) -> None:
        """GitHub refused a request for a secondary limit; no request before
        ``retry_at`` (epoch), when it said."""
        self.secondary_refusals += 1
        if retry_at is not None:
            self.hold_until = max(self.hold_until, retry_at)

    def used(self, api: Api, now: float) -> int:
        """Points sent in the last window."""
        sent = self._sent.get(api)
        if not sent:
            return 0
        self._forget(sent, now)
        return sum(cost for _, cost in sent)

    def _forget(self, sent: deque[tuple[float, int]], now: float) -> None:
        while sent and sent[0][0] <= now - self.limits.window:
            sent.popleft()

    def snapshot(self, now: float) -> dict[str, Any]:
        """For ``/stats``: plan, use and GitHub's own numbers."""
        return {
            "rest": {"planned": self.limits.planned("rest"), "used": self.used("rest", now)},
            "graphql": {
                "planned": self.limits.planned("graphql"),
                "used": self.used("graphql", now),
            },
            "window_seconds": self.limits.window,
            "primary": {
                name: {
                    "limit": p.limit,
                    "remaining": p.remaining,
                    "planned": math.floor(p.limit * self.limits.share),
                    "reset": p.reset,
                }
                for name, p in sorted(self.primary.items())
            },
            "secondary_refusals": self.secondary_refusals,
            "waits": self.waits,
            "waited_seconds": round(self.waited, 3),
        }
