"""GitHub's primary rate limits as the fake keeps them: a budget per credential and window.

Docs "Rate limits for the REST API": each credential (a token, an installation, the App)
has requests per hour; ``x-ratelimit-*`` headers show the budget, and at 0 GitHub answers
403. Docs "Rate limits for the GraphQL API": GraphQL has its own primary limit (5,000
points an hour), apart from REST's; ``x-ratelimit-resource`` says which. Windows use the
real ``time.time()``, so a client can wait for the reset. Secondary limits are ``limits``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Resource = Literal["core", "graphql"]  # x-ratelimit-resource of a primary budget


@dataclass
class Budget:
    limit: int
    used: int
    reset: int  # epoch seconds, as in x-ratelimit-reset

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


class PrimaryLimits:
    """Budgets by resource and credential. ``limit(resource)`` is the budget of a new
    window, ``window()`` its length in seconds: read when a window starts, so a test
    may change them between windows."""

    def __init__(self, *, limit: Callable[[Resource], int], window: Callable[[], float]) -> None:
        self._limit = limit
        self._window = window
        self._budgets: dict[tuple[Resource, str], Budget] = {}
        self._exhausted_until: dict[Resource, int] = {"core": 0, "graphql": 0}

    def budget(self, key: str, resource: Resource = "core") -> Budget:
        """The budget of credential ``key`` (a ``Credential.budget_key``) now."""
        now = time.time()
        budget = self._budgets.get((resource, key))
        if budget is None or now >= budget.reset:  # a new window
            budget = Budget(self._limit(resource), 0, math.ceil(now + self._window()))
            if now < self._exhausted_until[resource]:
                budget.used, budget.reset = budget.limit, self._exhausted_until[resource]
            self._budgets[(resource, key)] = budget
        return budget

    def exhaust(self, key: str | None, reset_in: float, resource: Resource) -> None:
        """Use up the budget of ``key`` (None: of everyone) until ``reset_in`` s from now."""
        reset = math.ceil(time.time() + reset_in)
        if key is None:
            self._exhausted_until[resource] = reset
        keys = [k for kind, k in self._budgets if kind == resource] if key is None else [key]
        for each in keys:
            budget = self.budget(each, resource)
            budget.used, budget.reset = budget.limit, reset
