"""What the poller asks each cycle (webhook_service.sync.discovery): scopes and the sweep."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from webhook_service.sync.discovery import (
    HOT_FACTOR,
    MAX_QUERY_LENGTH,
    OWNER_SCOPE_FROM,
    Scope,
    due,
    next_sweep,
    phase,
    query,
    scopes,
)

SINCE = datetime(2026, 12, 6, 1, 2, 3, tzinfo=UTC)


def test_query_is_oldest_first_from_a_moment() -> None:
    assert query("org:acme", SINCE) == (
        "is:pr updated:>=2026-12-06T01:02:03Z sort:updated-asc org:acme"
    )


def test_an_installation_is_searched_by_its_account_however_many_repositories() -> None:
    repositories = {f"acme/r{i}": 7 for i in range(5000)} | {"me/one": 8}
    found = scopes(repositories, {7: ("acme", True), 8: ("me", False)})
    assert found == [Scope(7, "org:acme"), Scope(8, "user:me")]


def test_token_repositories_are_grouped_by_owner_or_batched() -> None:
    repositories: dict[str, int | None] = {f"big/r{i}": None for i in range(OWNER_SCOPE_FROM)}
    repositories |= {f"o{i}/repo-with-a-longish-name-{i}": None for i in range(40)}
    found = scopes(repositories, {})
    assert Scope(None, "user:big") in found
    batches = [s for s in found if s.qualifiers.startswith("repo:")]
    covered = [q.removeprefix("repo:") for s in batches for q in s.qualifiers.split()]
    assert sorted(covered) == sorted(r for r in repositories if not r.startswith("big/"))
    assert all(len(query(s.qualifiers, SINCE)) <= MAX_QUERY_LENGTH for s in batches)
    assert len(batches) < 40 / 3  # several repositories a search


def test_an_installation_not_listed_yet_is_searched_with_its_token_by_repository() -> None:
    found = scopes({"acme/one": 9, "acme/two": 9}, {})
    assert found == [Scope(9, "repo:acme/one repo:acme/two")]


def test_phase_is_stable_and_spread() -> None:
    phases = [phase(f"o/r{i}") for i in range(1000)]
    assert phases == [phase(f"o/r{i}") for i in range(1000)]
    assert all(0 <= p < 1 for p in phases)
    deciles = [sum(1 for p in phases if k / 10 <= p < (k + 1) / 10) for k in range(10)]
    assert min(deciles) > 60  # about 100 each


@pytest.mark.parametrize("last", [0.0, 17.5, 3599.9, 3600.0, 10_000.0])
def test_next_sweep_is_the_repositorys_phase_point_within_a_period(last: float) -> None:
    at = next_sweep("o/r", last, 3600.0)
    assert last < at <= last + 3600.0
    assert (at / 3600.0 - phase("o/r")) % 1 == pytest.approx(0.0, abs=1e-9)


def simulate(repositories: list[str], hot: set[str], hours: float) -> dict[str, list[float]]:
    """Cycles every 60 s for ``hours``: when each repository is swept."""
    swept: dict[str, float] = {}
    when: dict[str, list[float]] = {r: [] for r in repositories}
    for cycle in range(int(hours * 60)):
        now = cycle * 60.0
        for name in due(swept, repositories, hot, now=now, horizon=60.0, period=3600.0):
            swept[name] = now
            when[name].append(now)
    return when


def test_the_sweep_covers_every_repository_once_a_period_evenly() -> None:
    repositories = [f"acme/r{i}" for i in range(600)]
    when = simulate(repositories, set(), hours=3.0)
    assert all(times[0] == 0.0 for times in when.values())  # the first sweep: all
    for times in when.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps and max(gaps) <= 3600.0
    # After the first cycle, about 600 / 60 = 10 a cycle, never a burst.
    per_cycle = [sum(1 for t in when.values() for x in t if x == c * 60.0) for c in range(1, 180)]
    assert max(per_cycle) <= 25
    assert sum(per_cycle) / len(per_cycle) == pytest.approx(10, rel=0.15)


def test_active_repositories_are_swept_more_often() -> None:
    repositories = [f"acme/r{i}" for i in range(60)]
    when = simulate(repositories, {"acme/r1"}, hours=3.0)
    hot_gaps = [b - a for a, b in itertools.pairwise(when["acme/r1"])]
    assert max(hot_gaps) <= 3600.0 / HOT_FACTOR
    assert len(when["acme/r1"]) >= 3 * len(when["acme/r2"])
