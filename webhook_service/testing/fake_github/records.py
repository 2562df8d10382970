"""The fake's log of requests (``FakeGitHub.requests``): what arrived, what it cost, what
was answered. Tests assert on it, and ``limits.max_window_points`` measures it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from webhook_service.testing.fake_github.limits import Api


@dataclass
class RequestRecord:
    """One request the fake received, completed when it is answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int = 0
    token: str | None = None  # the token; "jwt" for an App JWT; None if not authenticated
    conditional: bool = False  # If-None-Match was sent
    rate_cost: int = 0  # taken from the primary rate limit (of ``api``): 0 or 1
    body: bytes = b""  # the request body, as sent
    received_at: float = field(default_factory=time.monotonic)  # time.monotonic() on arrival
    points: int = 0  # secondary-limit points charged (0: no known credential)
    api: Api = "rest"  # "graphql" for POST /graphql
    credential: str | None = None  # the budget: "token:<t>", "installation:<id>", "app"
