"""The poller at organization scale: discovery by search, the spread sweep, the budget.

Against the fake GitHub over HTTP on loopback (which enforces GitHub's secondary limits
and answers the GraphQL search with an index lag), on both backends. The sweep's own
mechanics (ETags, pages, watermarks, retries) are in tests/sync/test_poller.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tests.helpers import app_private_key, make_settings, reconciling, running_app, until
from webhook_service.github.budget import Limits
from webhook_service.github.client import GitHub
from webhook_service.store import Store
from webhook_service.sync.poller import PRSyncWorker
from webhook_service.testing import FakeGitHub
from webhook_service.testing.fake_github import RequestRecord, max_window_points

TOKEN = "ghp_discovery"
NOW = time.time()
YESTERDAY = int(NOW - 86_400)
LAST_WEEK = int(NOW - 7 * 86_400)


class Clock:
    """The worker's monotonic clock, moved by the test (the sweep's schedule)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    store: Store
    worker: PRSyncWorker
    clock: Clock


@asynccontextmanager
async def rig(
    database_url: str,
    gh: FakeGitHub,
    repositories: list[str],
    *,
    limits: Limits | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Rig]:
    values = {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": gh.url,
        "GITHUB_REPOSITORIES": ",".join(repositories),
        "SYNC_RETRY_DELAY": "0.05",
        "SYNC_TIMEOUT": "10",
        **(env or {}),
    }
    settings = make_settings(database_url, **values)
    clock = Clock()
    async with (
        reconciling(database_url, settings) as (store, reconciler),
        aiohttp.ClientSession() as session,
    ):
        github = GitHub(session, settings, limits=limits)
        worker = PRSyncWorker(store, reconciler, github, settings, monotonic=clock)
        try:
            yield Rig(store, worker, clock)
        finally:
            await worker.stop()


async def cycle(worker: PRSyncWorker, within: float = 60.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        return await worker.force_sync()


def searches(gh: FakeGitHub) -> list[RequestRecord]:
    return [r for r in gh.requests if r.path == "/graphql"]


def listings(gh: FakeGitHub) -> list[RequestRecord]:
    return [r for r in gh.requests if r.method == "GET" and r.path.endswith("/pulls")]


def search_terms(record: RequestRecord) -> str:
    document = orjson.loads(record.body)
    return str(document["variables"]["q"])


async def test_an_idle_cycle_is_one_search_for_every_repository(database_url: str) -> None:
    repositories = ["o/a", "o/b", "p/c"]
    async with FakeGitHub() as gh:
        gh.add_token(TOKEN)
        for repository in repositories:
            gh.add_pull(repository, 1)
        async with rig(database_url, gh, repositories) as r:
            first = await cycle(r.worker)
            assert first["error_count"] == 0 and first["first_sweep_done"]
            assert len(listings(gh)) == 3 and searches(gh) == []  # the first sweep
            gh.reset_requests()

            idle = await cycle(r.worker)

            assert idle["error_count"] == 0
            assert [(q.method, q.path, q.status) for q in gh.requests] == [
                ("POST", "/graphql", 200)
            ]
            terms = search_terms(gh.requests[0])
            assert terms.startswith("is:pr updated:>=") and "sort:updated-asc" in terms
            assert sorted(t for t in terms.split() if t.startswith("repo:")) == [
                f"repo:{name}" for name in repositories
            ]
            assert idle["last_cycle"] == {
                "requests": 1,
                "not_modified": 0,
                "searches": 1,
                "found_by_search": 0,
                "repositories_swept": 0,
                "secondary_refusals": 0,
            }


async def test_a_missed_change_is_found_by_search_and_applied_once(database_url: str) -> None:
    async with FakeGitHub() as gh:
        gh.add_token(TOKEN)
        gh.add_pull("o/a", 1)
        gh.add_pull("o/b", 1)
        async with rig(database_url, gh, ["o/a", "o/b"]) as r:
            await cycle(r.worker)
            gh.update_pull("o/b", 1, merged=True)  # no webhook reaches us
            gh.reset_requests()

            found = await cycle(r.worker)

            assert [q.path for q in gh.requests] == ["/graphql"]  # no listing needed
            assert found["last_cycle"]["found_by_search"] == 1
            pr = await r.store.get_pull("o/b", 1)
            assert pr is not None and (pr.status, pr.last_source) == ("MERGED", "worker")

            # The next search reaches back over the same change (the overlap): it is
            # not applied again, and no event repeats.
            events = await r.store.events_since(0, 1000)
            again = await cycle(r.worker)
            assert again["last_cycle"]["found_by_search"] == 0
            assert await r.store.events_since(0, 1000) == events


async def test_a_scope_that_changed_is_searched_from_the_last_search(database_url: str) -> None:
    """A repository tracked later changes the batch's search (its scope): the batch's
    other repositories are still searched from where the last search left off."""
    async with FakeGitHub() as gh:
        gh.add_token(TOKEN)
        gh.add_pull("o/a", 1)
        gh.add_pull("o/b", 1)
        gh.add_pull("p/c", 1)
        async with rig(database_url, gh, ["o/a", "o/b"]) as r:
            await cycle(r.worker)
            await cycle(r.worker)  # searched: repo:o/a repo:o/b
            await r.store.track_repositories(["p/c"], source="manual", installation_id=None)
            gh.update_pull("o/b", 1, merged=True)  # no webhook
            gh.reset_requests()

            found = await cycle(r.worker)

            (search,) = searches(gh)
            assert "repo:p/c" in search_terms(search)  # a new scope...
            pr = await r.store.get_pull("o/b", 1)  # ...that still finds o/b's change
            assert pr is not None and pr.status == "MERGED"
            # o/b's change, and p/c's PR (opened since the last search, never seen)
            assert found["last_cycle"]["found_by_search"] == 2
            assert [q.path for q in listings(gh)] == ["/repos/p/c/pulls"]  # never swept


async def test_the_overlap_covers_the_search_index_lag(database_url: str) -> None:
    async with FakeGitHub(search_lag=1.0) as gh:
        gh.add_token(TOKEN)
        gh.add_pull("o/a", 1)
        async with rig(database_url, gh, ["o/a"]) as r:
            await cycle(r.worker)
            gh.update_pull("o/a", 1, state="closed")

            await cycle(r.worker)  # the index has not caught up: nothing found
            pr = await r.store.get_pull("o/a", 1)
            assert pr is not None and pr.status == "OPEN"

            await asyncio.sleep(1.1)
            found = await cycle(r.worker)  # from before the last search, less the overlap

            assert found["last_cycle"]["found_by_search"] == 1
            pr = await r.store.get_pull("o/a", 1)
            assert pr is not None and pr.status == "CLOSED"


async def test_more_changes_than_one_search_returns_are_all_found(database_url: str) -> None:
    # GitHub pages through 1,000 results of a search at most.
    async with FakeGitHub() as gh:
        gh.add_token(TOKEN)
        for number in range(1, 1201):
            gh.add_pull("o/a", number)
        async with rig(database_url, gh, ["o/a"]) as r:
            await cycle(r.worker)
            for number in range(1, 1201):
                gh.update_pull("o/a", number, title=f"changed {number}")
            gh.reset_requests()

            found = await cycle(r.worker)

            assert found["error_count"] == 0
            assert found["last_cycle"]["found_by_search"] == 1200
            assert len(searches(gh)) <= 14  # 10 pages, then on from the last one seen
            assert listings(gh) == []
            stored = await r.store.list_pulls(repository="o/a", limit=2000)
            assert {p.title for p in stored} == {f"changed {n}" for n in range(1, 1201)}


async def test_an_installation_is_one_search_of_its_account(database_url: str) -> None:
    repositories = [f"acme/r{i}" for i in range(50)]
    async with FakeGitHub(private_key_pem=app_private_key()) as gh:
        for repository in repositories:
            gh.add_pull(repository, 1)
        gh.add_installation(7, repositories, account="acme")
        env = {"GITHUB_TOKEN": "", "APP_ID": gh.app_id, "PRIVATE_KEY": gh.private_key_pem}
        async with rig(database_url, gh, [], env=env) as r:
            first = await cycle(r.worker)
            assert first["error_count"] == 0 and first["repositories_tracked"] == 50
            gh.update_pull("acme/r7", 1, title="found")
            gh.reset_requests()

            idle = await cycle(r.worker)

            assert idle["error_count"] == 0
            (search,) = searches(gh)
            assert search.credential == "installation:7"
            assert search_terms(search).endswith(" user:acme")  # the fake's account: a User
            # (and the App hook's deliveries: a forced cycle looks for failed ones)
            assert [q.path for q in gh.requests if not q.path.startswith("/app/hook")] == [
                "/graphql"
            ]
            pr = await r.store.get_pull("acme/r7", 1)
            assert pr is not None and pr.title == "found"


async def test_the_sweep_lists_every_repository_once_a_period_evenly(database_url: str) -> None:
    repositories = [f"o/r{i}" for i in range(60)]
    async with FakeGitHub() as gh:
        gh.add_token(TOKEN)
        for repository in repositories:  # no activity for a day: none is swept more often
            gh.add_pull(repository, 1, created_at=LAST_WEEK, updated_at=YESTERDAY)
        env = {"SYNC_INTERVAL": "60", "SYNC_FULL_SWEEP_INTERVAL": "3600"}
        async with rig(database_url, gh, repositories, env=env) as r:
            await cycle(r.worker)
            assert len(listings(gh)) == 60
            gh.reset_requests()
            per_cycle = []
            for _ in range(60):  # an hour of cycles, a minute apart
                r.clock.now += 60.0
                stats = await cycle(r.worker)
                per_cycle.append(stats["last_cycle"]["repositories_swept"])

            swept = [q.path.split("/")[3] for q in listings(gh)]
            # Each at least once in the period (a few twice: the schedule runs one
            # interval short of it, so that no gap is longer than the period).
            assert set(swept) == {name.split("/")[1] for name in repositories}
            assert len(swept) <= 63
            assert max(per_cycle) <= 5  # spread: about one a minute, never the lot
            assert all(q.status == 304 for q in listings(gh))  # unchanged: free

            # A repository with a change is swept within a quarter of the period.
            gh.update_pull("o/r7", 1, title="changed")
            await cycle(r.worker)  # found by search: o/r7 is active now
            gh.reset_requests()
            for _ in range(30):
                r.clock.now += 60.0
                await cycle(r.worker)
            again = [q.path for q in listings(gh) if q.path == "/repos/o/r7/pulls"]
            assert len(again) >= 2


async def test_a_thousand_repositories_stay_within_the_planned_share(database_url: str) -> None:
    """GitHub's secondary limit, time-scaled so that a minute is a second: 900 REST
    points in any 1 s window. A sweep of 1,000 repositories sent as fast as the fake
    answers trips it (tests/testing/fake_github/test_limits.py); this worker plans 80% of it."""
    repositories = [f"acme/r{i:04}" for i in range(1000)]
    async with FakeGitHub(secondary_window=1.0) as gh:
        gh.add_token(TOKEN)
        for repository in repositories:
            gh.add_repository(repository)
        gh.add_pull("acme/r0001", 1)
        scaled = Limits(window=1.0)
        async with rig(
            database_url, gh, repositories, limits=scaled, env={"SYNC_MAX_CONCURRENCY": "20"}
        ) as r:
            first = await cycle(r.worker, within=120)
            idle = await cycle(r.worker)

            assert first["error_count"] == idle["error_count"] == 0
            assert len(listings(gh)) == 1000
            assert gh.secondary_refusals == 0
            # The plan holds the times requests leave to 720 a window; they reach the
            # fake a millisecond or so later, unevenly, which in a window scaled to 1 s
            # (not GitHub's 60) can put one or two more in a window: within 1%.
            assert max_window_points(gh.requests, api="rest", window=1.0) <= 727
            assert idle["last_cycle"]["requests"] == 1  # one search: user:acme
            budget = idle["budgets"]["GITHUB_TOKEN"]
            assert budget["rest"]["planned"] == 720 and budget["secondary_refusals"] == 0


async def test_stats_and_metrics_show_each_credentials_budget(database_url: str) -> None:
    async with FakeGitHub() as gh:
        gh.add_token(TOKEN)
        gh.add_pull("o/a", 1)
        settings = make_settings(
            database_url,
            GITHUB_TOKEN=TOKEN,
            GITHUB_API_URL=gh.url,
            GITHUB_REPOSITORIES="o/a",
            SYNC_BUDGET_SHARE="0.5",
        )
        async with running_app(settings) as (service, client):
            worker = service.worker
            assert worker is not None
            await until(lambda: worker.get_stats()["sync_count"] >= 1)
            stats = (await client.get("/stats")).json()
            budget = stats["budgets"]["GITHUB_TOKEN"]
            assert budget["rest"]["planned"] == 450
            assert budget["rest"]["used"] >= 1
            assert budget["primary"]["core"]["planned"] == 2500  # half of the fake's 5,000
            metrics = (await client.get("/metrics")).text
            assert (
                'webhook_github_budget_points{api="rest",credential="GITHUB_TOKEN",'
                'kind="planned"} 450.0'
            ) in metrics
            assert "webhook_github_secondary_refusals_total 0.0" in metrics
