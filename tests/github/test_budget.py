"""The rate-limit plan (webhook_service.github.budget): pure, with the clock given."""

from __future__ import annotations

import bisect
import itertools

import pytest

from webhook_service.github.budget import Budget, Limits, points


def send_times(budget: Budget, count: int, api: str = "rest", cost: int = 1) -> list[float]:
    """When ``count`` requests asked for at once at t=0 may go, by the plan (each then
    admitted at that time, as GitHub.pace does)."""
    assert api in ("rest", "graphql")
    times = []
    for _ in range(count):
        at = budget.reserve(api, cost, now=0.0, clock=1e9)  # type: ignore[arg-type]
        while (late := budget.admit(api, cost, at)) > 0:  # type: ignore[arg-type]
            at += late
        times.append(at)
    return times


def busiest(times: list[float], costs: int = 1, window: float = 60.0) -> int:
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i) * costs for i, t in enumerate(ordered))


@pytest.mark.parametrize(("share", "planned"), [(0.8, 720), (0.5, 450), (1.0, 900)])
def test_no_window_holds_more_than_the_share_of_rest_points(share: float, planned: int) -> None:
    budget = Budget(Limits(share=share))
    times = send_times(budget, 3 * planned)
    assert busiest(times) <= planned
    assert busiest(times) >= planned - 12  # and the plan uses what it may
    assert Limits(share=share).planned("rest") == planned


def test_requests_are_spread_not_burst() -> None:
    times = send_times(Budget(), 100)
    assert sum(1 for t in times if t == 0.0) <= 11  # a small burst, then evenly
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(times[10:])}
    assert gaps == {round(60 / (720 - 10 - 1), 6)}


def test_graphql_is_planned_apart_from_rest() -> None:
    budget = Budget()
    rest = send_times(budget, 720)
    graphql = send_times(budget, 1600, api="graphql")
    assert busiest(rest) <= 720
    assert busiest(graphql) <= 1600
    assert graphql[10] < 1.0  # REST's use does not delay GraphQL


def test_a_post_costs_five_points() -> None:
    assert points("rest", "POST") == 5
    assert points("rest", "GET") == 1
    assert points("graphql", "POST") == 1
    assert points("graphql", "POST", mutation=True) == 5
    budget = Budget()
    times = send_times(budget, 400, cost=5)
    assert busiest(times, costs=5) <= 720


def test_past_the_share_of_the_primary_limit_it_waits_for_the_reset() -> None:
    budget = Budget()
    budget.observe(
        {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "1001", "x-ratelimit-reset": "2000"}
    )
    assert budget.reserve("rest", 1, now=0.0, clock=1000.0) == 0.0  # 3,999 used: under 4,000
    budget.observe(
        {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "1000", "x-ratelimit-reset": "2000"}
    )
    assert budget.reserve("rest", 1, now=0.0, clock=1000.0) == pytest.approx(1001.0)
    # GraphQL has its own primary budget.
    assert budget.reserve("graphql", 1, now=0.0, clock=1000.0) == 0.0


def test_a_secondary_refusal_holds_every_request_until_retry_after() -> None:
    budget = Budget()
    budget.refused(retry_at=1030.0)
    assert budget.secondary_refusals == 1
    assert budget.reserve("rest", 1, now=0.0, clock=1000.0) == pytest.approx(30.0)
    assert budget.reserve("graphql", 1, now=0.0, clock=1000.0) == pytest.approx(30.0)


def test_admit_holds_the_plan_on_the_times_requests_really_go() -> None:
    # The schedule let 30 through at t=0..3 s; a busy loop sent them all only at t=3.
    budget = Budget(Limits(rest_points=30, share=1.0, window=10.0))
    for _ in range(30):
        assert budget.admit("rest", 1, now=3.0) == 0.0
    assert budget.admit("rest", 1, now=3.5) == pytest.approx(9.5)  # until t=13
    assert budget.admit("rest", 1, now=13.0 + 1e-5) == 0.0
    assert budget.used("rest", now=13.5) == 1


def test_snapshot_reports_plan_and_use() -> None:
    budget = Budget()
    send_times(budget, 5)
    budget.observe(
        {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4990",
            "x-ratelimit-reset": "2000",
            "x-ratelimit-resource": "core",
        }
    )
    snapshot = budget.snapshot(now=1.0)
    assert snapshot["rest"] == {"planned": 720, "used": 5}
    assert snapshot["graphql"] == {"planned": 1600, "used": 0}
    assert snapshot["primary"]["core"] == {
        "limit": 5000,
        "remaining": 4990,
        "planned": 4000,
        "reset": 2000.0,
    }
    assert budget.snapshot(now=61.0)["rest"]["used"] == 0  # out of the window
