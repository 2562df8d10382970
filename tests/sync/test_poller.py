"""The sync worker (webhook_service.sync.poller) against the fake GitHub, on both backends.

Each test drives the worker the way the service does: a real GitHub client over HTTP on
loopback, the fake answering with GitHub's semantics (ETags, rate limits, pagination,
faults), and the same reconciler as the webhooks. API- and CLI-level tests, and
failed-delivery recovery under a real server, are in ``tests/sync/test_sync_api.py``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers import (
    app_private_key,
    fake_github,
    payload,
    post_delivery,
    running_app,
    until,
)
from tests.sync.helpers import (
    CYCLE_TIMEOUT,
    REPO,
    TOKEN,
    all_answered,
    cycle,
    first_cycle_done,
    gets,
    listings,
    pr_events,
    rig,
    sync_settings,
    webhook,
)
from webhook_service.github.client import GitHub, Page
from webhook_service.github.errors import GitHubError
from webhook_service.github.transport import _API
from webhook_service.testing import FakeGitHub


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with fake_github(TOKEN) as fake:
        yield fake


# -- 1. a missed webhook is corrected within a cycle ----------------------------------


async def test_a_missed_webhook_is_corrected_by_the_next_cycle(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_pull(REPO, 10)  # the repository exists before the PR is opened
    async with running_app(sync_settings(database_url, gh)) as (service, client):
        worker = service.worker
        assert worker is not None
        await first_cycle_done(worker)
        opened = gh.add_pull(REPO, 1)
        response = await post_delivery(client, webhook("pull_request/opened", opened))
        assert response.status_code == 200
        pr = await service.store.get_pull(REPO, 1)
        assert pr is not None and (pr.status, pr.last_source) == ("OPEN", "monitor")

        gh.update_pull(REPO, 1, merged=True)  # ... and GitHub's webhook never arrives
        stats = await cycle(worker)

        assert stats["error_count"] == 0
        pr = await service.store.get_pull(REPO, 1)
        assert pr is not None and (pr.status, pr.last_source) == ("MERGED", "worker")
        events = [e for e in await pr_events(service.store) if e["pr_number"] == 1]
        assert [(e["old_status"], e["new_status"], e["sync_source"]) for e in events] == [
            (None, "OPEN", "monitor"),
            ("OPEN", "MERGED", "worker"),
        ]


# -- 2. an idle cycle is answered by 304s ---------------------------------------------


async def test_an_idle_cycle_costs_one_free_conditional_request_per_repository(
    database_url: str, gh: FakeGitHub
) -> None:
    repositories = [REPO, "o/s", "p/q"]
    for repository in repositories:
        gh.add_pull(repository)
        gh.add_pull(repository, state="closed")
    async with rig(database_url, gh, GITHUB_REPOSITORIES=",".join(repositories)) as r:
        swept = await cycle(r.worker)
        assert swept["error_count"] == 0
        assert len(await r.store.list_pulls()) == 6
        events_before = await r.store.events_since(0, 10_000)
        budget_before = gh.rate_remaining(TOKEN)
        gh.reset_requests()

        idle = await cycle(r.worker)

        assert sorted(q.path for q in gh.requests) == sorted(
            f"/repos/{repository}/pulls" for repository in repositories
        )
        assert all(
            (q.method, q.conditional, q.status, q.rate_cost) == ("GET", True, 304, 0)
            for q in gh.requests
        )
        assert idle["not_modified"] == swept["not_modified"] + len(repositories)
        assert idle["api_calls"] == swept["api_calls"] + len(repositories)
        assert idle["rate_limit_remaining"] == swept["rate_limit_remaining"] == budget_before
        assert gh.rate_remaining(TOKEN) == budget_before
        assert idle["sync_count"] == 2 and idle["error_count"] == 0
        assert await r.store.events_since(0, 10_000) == events_before


# -- 3. the watermark: changed PRs cost ceil(K/100) list pages --------------------------


@pytest.mark.parametrize("changed", [3, 150])
async def test_changed_prs_cost_only_the_pages_that_hold_them(
    database_url: str, gh: FakeGitHub, changed: int
) -> None:
    for number in range(1, 251):
        gh.add_pull(REPO, number)
    gh.add_pull("o/s", 1)
    gh.add_pull("o/s", 2)
    gh.add_pull("o/t", 1)
    async with rig(database_url, gh, GITHUB_REPOSITORIES=f"{REPO},o/s,o/t") as r:
        stats = await cycle(r.worker)
        assert stats["error_count"] == 0
        sweep = listings(gh)
        assert [q.query.get("page") for q in sweep] == [None, "2", "3"]
        assert all(q.status == 200 for q in sweep)
        assert all(
            q.query | {"page": "-"}
            == {
                "state": "all",
                "sort": "updated",
                "direction": "desc",
                "per_page": "100",
                "page": "-",
            }
            for q in sweep
        )
        assert len(await r.store.list_pulls(repository=REPO, limit=1000)) == 250

        # The oldest PRs (on the last page) change; so does one PR of o/s.
        for number in range(1, changed + 1):
            gh.update_pull(REPO, number, title=f"changed {number}")
        gh.update_pull("o/s", 1, state="closed")
        gh.reset_requests()
        stats = await cycle(r.worker)

        assert stats["error_count"] == 0
        walked = listings(gh)
        assert len(walked) == math.ceil(changed / 100)
        assert all(q.status == 200 and q.conditional for q in walked)
        assert [q.status for q in listings(gh, "o/s")] == [200]
        assert [q.status for q in listings(gh, "o/t")] == [304]
        assert len(gh.requests) == len(walked) + 2
        for number in range(1, changed + 1):
            pr = await r.store.get_pull(REPO, number)
            assert pr is not None and pr.title == f"changed {number}"
        untouched = await r.store.get_pull(REPO, changed + 1)
        assert untouched is not None and untouched.title == f"Pull request {changed + 1}"
        closed = await r.store.get_pull("o/s", 1)
        assert closed is not None and closed.status == "CLOSED"


class _FailingPage2(GitHub):
    """GitHub failing once on the second page of a listing (e.g. a 502 after retries)."""

    failures = 1

    async def list_pulls_page(self, api: _API, url: str) -> Page:
        if "page=2" in url and self.failures > 0:
            self.failures -= 1
            raise GitHubError("GitHub answered 502: Bad Gateway", 502)
        return await super().list_pulls_page(api, url)


async def test_a_sweep_that_failed_midway_is_walked_again_next_cycle(
    database_url: str, gh: FakeGitHub
) -> None:
    """A 304 on page 1 only means "nothing changed" if the previous walk was complete."""
    for number in range(1, 251):
        gh.add_pull(REPO, number)
    async with rig(database_url, gh, client=_FailingPage2) as r:
        stats = await cycle(r.worker)
        assert stats["error_count"] == 1
        assert len(await r.store.list_pulls(limit=1000)) == 100  # page 1 only

        stats = await cycle(r.worker)

        assert stats["error_count"] == 1  # no new error
        # The 150 PRs of pages 2 and 3 were never seen: the second cycle must get them.
        assert len(await r.store.list_pulls(limit=1000)) == 250


# -- 4. and 5. rate limits ------------------------------------------------------------


async def test_an_exhausted_primary_limit_is_waited_out(database_url: str, gh: FakeGitHub) -> None:
    gh.add_pull(REPO, 1)
    async with rig(database_url, gh) as r:
        await cycle(r.worker)
        gh.update_pull(REPO, 1, merged=True)
        gh.exhaust_primary(reset_in=0.5)
        assert gh.rate_remaining(TOKEN) == 0
        gh.reset_requests()
        started = time.monotonic()

        stats = await cycle(r.worker)

        assert time.monotonic() - started >= 0.5  # it waited for the reset
        assert [q.status for q in listings(gh)] == [403, 200]
        assert stats["rate_limited"] >= 1
        # What the code does: a wait is not an error.
        assert stats["error_count"] == 0
        assert stats["rate_limit_remaining"] == gh.rate_remaining(TOKEN) > 0
        pr = await r.store.get_pull(REPO, 1)
        assert pr is not None and pr.status == "MERGED"


@pytest.mark.parametrize("status", [403, 429])
async def test_a_secondary_limit_is_waited_out(
    database_url: str, gh: FakeGitHub, status: int
) -> None:
    gh.add_pull(REPO, 1)
    gh.secondary_limit_next(1, status=status, retry_after=1, path_prefix=f"/repos/{REPO}/pulls")
    async with rig(database_url, gh) as r:
        started = time.monotonic()
        stats = await cycle(r.worker)

        assert time.monotonic() - started >= 1.0  # retry-after: 1
        assert [q.status for q in listings(gh)] == [status, 200]
        assert stats["rate_limited"] == 1
        assert stats["error_count"] == 0
        assert await r.store.get_pull(REPO, 1) is not None


# -- 6. retries: 5xx yes, other 4xx no; one repository failing never stops the others ------


async def test_server_errors_are_retried(database_url: str, gh: FakeGitHub) -> None:
    gh.add_pull(REPO, 1)
    gh.fail_next(2, 502, path_prefix=f"/repos/{REPO}/pulls")
    async with rig(database_url, gh) as r:
        stats = await cycle(r.worker)

        assert [q.status for q in listings(gh)] == [502, 502, 200]
        assert stats["retries"] >= 2
        assert stats["error_count"] == 0
        assert await r.store.get_pull(REPO, 1) is not None


async def test_server_errors_past_the_retry_budget_are_one_error(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_pull(REPO, 1)
    gh.add_pull("o/s", 1)
    gh.fail_next(2, 503, path_prefix=f"/repos/{REPO}/pulls")
    async with rig(
        database_url, gh, GITHUB_REPOSITORIES=f"{REPO},o/s", SYNC_RETRY_ATTEMPTS="1"
    ) as r:
        stats = await cycle(r.worker)

        assert [q.status for q in listings(gh)] == [503, 503]
        assert stats["error_count"] == 1
        assert REPO in stats["last_error"] and "503" in stats["last_error"]
        assert await r.store.get_pull(REPO, 1) is None
        assert await r.store.get_pull("o/s", 1) is not None  # the other repository


@pytest.mark.parametrize("status", [403, 404, 422])
async def test_client_errors_are_not_retried(
    database_url: str, gh: FakeGitHub, status: int
) -> None:
    gh.add_pull(REPO, 1)
    gh.add_pull("o/s", 1)
    gh.fail_next(1, status, path_prefix=f"/repos/{REPO}/pulls")
    async with rig(database_url, gh, GITHUB_REPOSITORIES=f"{REPO},o/s") as r:
        stats = await cycle(r.worker)

        assert [q.status for q in listings(gh)] == [status]
        assert stats["retries"] == 0 and stats["rate_limited"] == 0
        assert stats["error_count"] == 1
        assert REPO in stats["last_error"] and str(status) in stats["last_error"]
        assert await r.store.get_pull("o/s", 1) is not None

        stats = await cycle(r.worker)  # the next cycle tries again
        assert stats["error_count"] == 1
        assert await r.store.get_pull(REPO, 1) is not None


async def test_a_missing_repository_does_not_stop_the_others(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_pull(REPO, 1)
    async with rig(database_url, gh, GITHUB_REPOSITORIES=f"ghost/missing,{REPO}") as r:
        stats = await cycle(r.worker)

        assert [q.status for q in listings(gh, "ghost/missing")] == [404]  # not retried
        assert stats["error_count"] == 1
        assert "ghost/missing" in stats["last_error"]
        assert stats["first_sweep_done"] is False
        pr = await r.store.get_pull(REPO, 1)
        assert pr is not None and pr.last_source == "worker"


# -- 7. timeouts ----------------------------------------------------------------------


async def test_a_request_that_times_out_is_retried(database_url: str, gh: FakeGitHub) -> None:
    gh.add_pull(REPO, 1)
    gh.delay_next(1, 1.0, path_prefix=f"/repos/{REPO}/pulls")
    async with rig(database_url, gh, SYNC_TIMEOUT="0.3") as r:
        started = time.monotonic()
        stats = await cycle(r.worker)
        elapsed = time.monotonic() - started
        await all_answered(gh)  # the abandoned request too

        assert 0.3 <= elapsed < 0.9  # it gave up on the slow answer (1 s)
        assert len(listings(gh)) == 2
        assert stats["retries"] >= 1
        assert stats["error_count"] == 0
        assert await r.store.get_pull(REPO, 1) is not None


# -- 8. GitHub App: installation tokens and repositories ------------------------------


class Clock:
    """The worker's clock: real time plus a skew the test moves forward."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew


def app_env(gh: FakeGitHub, **env: str) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": "",
        "GITHUB_REPOSITORIES": "",
        "APP_ID": gh.app_id,
        "PRIVATE_KEY": gh.private_key_pem,
        **env,
    }


@pytest.mark.parametrize(("token_ttl", "tokens"), [(302.0, 2), (3600.0, 1)])
async def test_installation_tokens_are_renewed_five_minutes_before_expiry(
    database_url: str, token_ttl: float, tokens: int
) -> None:
    # A 302 s token is due for renewal (300 s before expiry) after about 2 s: the worker's
    # clock moves 10 s between the cycles.
    clock = Clock()
    async with FakeGitHub(private_key_pem=app_private_key(), token_ttl=token_ttl) as gh:
        gh.add_installation(7, [REPO])
        gh.add_pull(REPO, 1)
        async with rig(database_url, gh, clock=clock, env=app_env(gh)) as r:
            stats = await cycle(r.worker)
            assert stats["error_count"] == 0
            assert gh.tokens_issued == 1  # the installation listing and the sweep share it
            # Discovered without GITHUB_REPOSITORIES:
            assert await r.store.tracked_repositories() == {REPO: 7}
            assert await r.store.get_pull(REPO, 1) is not None
            first = listings(gh)[-1]

            clock.skew = 10.0
            gh.update_pull(REPO, 1, title="renamed")
            stats = await cycle(r.worker)

            assert stats["error_count"] == 0
            assert gh.tokens_issued == tokens
            second = listings(gh)[-1]
            assert second.status == 200
            if tokens == 2:
                assert second.token != first.token
                assert not second.conditional  # a new token has no ETags yet
            else:
                assert second.token == first.token and second.conditional
            pr = await r.store.get_pull(REPO, 1)
            assert pr is not None and pr.title == "renamed"


async def test_app_mode_works_with_one_concurrent_call(database_url: str) -> None:
    """SYNC_MAX_CONCURRENCY=1 is a valid setting; listing installations needs a token."""
    async with FakeGitHub(private_key_pem=app_private_key()) as gh:
        gh.add_installation(7, [REPO])
        gh.add_pull(REPO, 1)
        async with rig(database_url, gh, env=app_env(gh, SYNC_MAX_CONCURRENCY="1")) as r:
            stats = await cycle(r.worker, within=2)

            assert stats["error_count"] == 0
            assert await r.store.get_pull(REPO, 1) is not None


# -- 10. a webhook and a poll of the same PR racing ----------------------------------------


async def test_a_webhook_racing_a_cycle_makes_one_transition(
    database_url: str, gh: FakeGitHub
) -> None:
    numbers = range(1, 6)
    for number in numbers:
        gh.add_pull(REPO, number)
    async with running_app(sync_settings(database_url, gh)) as (service, client):
        worker = service.worker
        assert worker is not None
        await first_cycle_done(worker)
        merged = [gh.update_pull(REPO, number, merged=True) for number in numbers]

        async with asyncio.timeout(CYCLE_TIMEOUT):
            responses, stats = await asyncio.gather(
                asyncio.gather(
                    *(post_delivery(client, webhook("pull_request/closed", p)) for p in merged)
                ),
                worker.force_sync(),
            )

        assert all(response.status_code == 200 for response in responses)
        assert stats["error_count"] == 0
        events = await pr_events(service.store)
        for number in numbers:
            assert [
                (e["old_status"], e["new_status"]) for e in events if e["pr_number"] == number
            ] == [(None, "OPEN"), ("OPEN", "MERGED")]
            pr = await service.store.get_pull(REPO, number)
            assert pr is not None and pr.status == "MERGED"


# -- 11. equal timestamps: a targeted re-fetch, and the API's answer wins ------------------


@pytest.mark.parametrize("review_time", ["stored", "newer"])
async def test_an_ambiguous_review_event_is_settled_by_a_refetch(
    database_url: str, gh: FakeGitHub, review_time: str
) -> None:
    other = "x/y"  # neither tracked nor monitored: only the re-fetch reads it
    opened = gh.add_pull(other, 1)
    gh.add_pull(REPO, 1)
    async with running_app(sync_settings(database_url, gh)) as (service, client):
        worker = service.worker
        assert worker is not None
        await first_cycle_done(worker)
        response = await post_delivery(client, webhook("pull_request/opened", opened, other))
        assert response.status_code == 200

        closed = gh.update_pull(other, 1, state="closed")  # no pull_request webhook
        updated_at = opened["updated_at"] if review_time == "stored" else closed["updated_at"]
        review = payload(
            "pull_request_review/submitted",
            number=1,
            state="closed",
            merged_at=None,
            closed_at=closed["closed_at"],
            updated_at=updated_at,
        )
        review["repository"]["full_name"] = other
        response = await post_delivery(client, review, event="pull_request_review")
        assert response.status_code == 200
        assert response.json()["outcome"] == "ambiguous"
        pr = await service.store.get_pull(other, 1)
        assert pr is not None and pr.status == "OPEN"  # nothing changed yet
        assert await service.store.pending_refetches(100) == [(other, 1)]
        gh.reset_requests()

        stats = await cycle(worker)

        assert stats["error_count"] == 0
        assert [(q.conditional, q.status) for q in gets(gh, other, 1)] == [(False, 200)]
        pr = await service.store.get_pull(other, 1)
        assert pr is not None and (pr.status, pr.last_source) == ("CLOSED", "worker")
        assert await service.store.pending_refetches(100) == []
        events = await pr_events(service.store, other)
        assert [(e["old_status"], e["new_status"], e["sync_source"]) for e in events] == [
            (None, "OPEN", "monitor"),
            ("OPEN", "CLOSED", "worker"),
        ]


# -- 12. stop() is graceful -------------------------------------------------------------


def worker_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "pr-sync-worker"]


async def test_stop_lets_the_cycle_in_flight_finish(database_url: str, gh: FakeGitHub) -> None:
    gh.add_pull(REPO, 1)
    gh.delay_next(1, 0.3, path_prefix=f"/repos/{REPO}/pulls")
    async with rig(database_url, gh, SYNC_TIMEOUT="2.5") as r:
        await r.worker.start()
        assert r.worker.is_running()
        assert len(worker_tasks()) == 1
        await until(lambda: bool(gh.requests))  # the cycle's listing is in flight
        assert gh.requests[0].status == 0

        started = time.monotonic()
        async with asyncio.timeout(10):
            await r.worker.stop()  # grace: SYNC_TIMEOUT, 2.5 s

        assert not r.worker.is_running()
        assert worker_tasks() == []
        # It returns when the cycle ends (about 0.3 s), not when the grace period does.
        assert time.monotonic() - started < 1.5
        stats = r.worker.get_stats()
        assert stats["running"] is False
        assert (stats["sync_count"], stats["error_count"]) == (1, 0)
        assert gh.requests[0].status == 200
        assert await r.store.get_pull(REPO, 1) is not None


async def test_stop_interrupts_a_long_rate_limit_wait(database_url: str, gh: FakeGitHub) -> None:
    gh.add_pull(REPO, 1)
    gh.exhaust_primary(reset_in=120)
    async with rig(database_url, gh) as r:
        await r.worker.start()
        await until(lambda: r.worker.get_stats()["rate_limited"] >= 1)  # waiting ~2 minutes
        started = time.monotonic()

        async with asyncio.timeout(10):
            await r.worker.stop(grace=0.2)

        assert time.monotonic() - started < 5
        assert not r.worker.is_running()
        assert worker_tasks() == []
