"""Faults (issue #7): GitHub answers 500s, hangs and secondary rate limits for a while.

The whole app runs, its sync worker on its own periodic loop (a short interval), against
the fake GitHub on loopback, through one outage made of three periods, then health:

    500s ── hangs (longer than the request timeout) ── 403 secondary limit + Retry-After ── OK

The worker must never stop, back off (a bounded number of requests per period, and none
during a Retry-After), count the errors (stats and ``/metrics``), and recover: a merge
made on GitHub during the outage reaches the PR and its task within a bounded wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import fake_github, make_settings, running_app, until
from webhook_service.config import Settings
from webhook_service.core.model import TaskStatus
from webhook_service.store import Store, TaskRecord
from webhook_service.sync.poller import PRSyncWorker
from webhook_service.testing import FakeGitHub
from webhook_service.testing.fake_github import RequestRecord

TOKEN = "ghp_faults"
REPO = "o/r"

INTERVAL = 0.2  # SYNC_INTERVAL (jittered by ±10%)
TIMEOUT = 0.15  # SYNC_TIMEOUT: one request
RETRIES = 1  # SYNC_RETRY_ATTEMPTS
ERRORS = 0.8  # seconds of 500s
HANGS = 0.8  # seconds of requests held for HANG > TIMEOUT
HANG = 0.6
RETRY_AFTER = 1  # seconds (GitHub sends whole seconds)
# Seconds of secondary rate limits: long enough for a cycle to run out of retries (a
# 403, RETRIES + 1 waits of RETRY_AFTER) even if its first request comes late.
LIMITED = (RETRIES + 1) * RETRY_AFTER + 0.7
RECOVERY = 5.0  # bound on the time from the end of the outage to the merge applied
SLACK = 0.05  # timer granularity


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with fake_github(TOKEN, REPO) as fake:
        yield fake


def fault_settings(database_url: str, gh: FakeGitHub) -> Settings:
    settings = make_settings(
        database_url,
        GITHUB_TOKEN=TOKEN,
        GITHUB_API_URL=gh.url,
        GITHUB_REPOSITORIES=REPO,
        SYNC_TIMEOUT=str(TIMEOUT),
        SYNC_RETRY_ATTEMPTS=str(RETRIES),
        SYNC_RETRY_DELAY="0.05",
        CLEANUP_ON_MERGE="false",
    )
    # SYNC_INTERVAL's floor is 1 s in the environment; the test needs several cycles per
    # fault period.
    return dataclasses.replace(settings, sync_interval=INTERVAL)


async def statuses(store: Store, task_id: str) -> tuple[str | None, str | None]:
    pr, task = await store.get_pull(REPO, 1), await store.get_task(task_id)
    return (pr.status if pr else None), (str(task.status) if task else None)


async def until_stored(store: Store, task_id: str, wanted: tuple[str, str], within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            if await statuses(store, task_id) == wanted:
                return
            await asyncio.sleep(0.02)


async def watch_running(worker: PRSyncWorker, seen: list[bool]) -> None:
    """Sample ``is_running()`` until cancelled."""
    while True:
        seen.append(worker.is_running())
        await asyncio.sleep(0.01)


async def metrics(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def received(gh: FakeGitHub, start: float, end: float) -> list[RequestRecord]:
    return [r for r in gh.requests if start <= r.received_at < end]


def cycles_in(seconds: float) -> int:
    """The most cycles that can start in ``seconds``: they start >= 0.9 INTERVAL apart."""
    return math.floor(seconds / (0.9 * INTERVAL)) + 1


async def test_the_worker_rides_out_a_github_outage(
    database_url: str, gh: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhook_service")
    async with running_app(fault_settings(database_url, gh)) as (service, client):
        worker = service.worker
        assert worker is not None
        store = service.store
        now = datetime.now(UTC)
        task_id = str(uuid.uuid4())
        task = TaskRecord(task_id, "Faults", TaskStatus.TODO, REPO, None, None, now, now)
        await store.create_task(task)
        gh.add_pull(REPO, 1, head_ref=f"task/{task_id}")  # opened; the poller finds it
        await until_stored(store, task_id, ("OPEN", "CODE_REVIEWING"), within=5)
        healthy = worker.get_stats()
        assert healthy["error_count"] == 0

        seen: list[bool] = []
        sampler = asyncio.create_task(watch_running(worker, seen))
        start = time.monotonic()
        gh.fail_for(ERRORS, 500)
        gh.delay_for(HANGS, delay=HANG, after=ERRORS)
        gh.secondary_limit_for(LIMITED, retry_after=RETRY_AFTER, after=ERRORS + HANGS)
        ends = [start + ERRORS, start + ERRORS + HANGS, start + ERRORS + HANGS + LIMITED]
        gh.update_pull(REPO, 1, merged=True)  # during the outage: no webhook, no answers

        await asyncio.sleep(ends[0] - time.monotonic())
        after_errors = worker.get_stats()
        await asyncio.sleep(ends[2] - 0.1 - time.monotonic())  # (before any answer gets by)
        outage = worker.get_stats()
        assert await statuses(store, task_id) == ("OPEN", "CODE_REVIEWING")  # nothing got by

        await until_stored(store, task_id, ("MERGED", "DONE"), within=RECOVERY)
        recovered = worker.get_stats()
        await until(lambda: worker.get_stats()["sync_count"] >= recovered["sync_count"] + 2, 5)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        after = worker.get_stats()
        scraped = await metrics(client)

        # Never crashed: running at every sample, and now; no cycle failed unexpectedly.
        assert seen and all(seen)
        assert worker.is_running() and after["running"] is True
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

        # Backed off. 500s: each cycle makes at most 1 + RETRIES requests.
        errors = received(gh, start, ends[0])
        assert {r.status for r in errors} == {500}
        assert 2 <= len(errors) <= (1 + RETRIES) * cycles_in(ERRORS)
        # Hangs: one repository's requests are sequential, each given up after TIMEOUT.
        hangs = received(gh, ends[0], ends[1])
        assert 2 <= len(hangs) <= math.ceil(HANGS / TIMEOUT)
        # Secondary limit: no request at all within Retry-After of a 403, in this cycle
        # or the next ones (the retries run out in this period).
        limited = received(gh, ends[1], ends[2])
        assert len(limited) >= 2 and {r.status for r in limited} == {403}
        later = [r.received_at for r in gh.requests if r.received_at >= ends[1]]
        for refused in limited:
            assert not [t for t in later if 0 < t - refused.received_at < RETRY_AFTER - SLACK]

        # Counted: errors every period, in the stats and in /metrics.
        assert after_errors["error_count"] >= 2 and "500" in after_errors["last_error"]
        assert outage["error_count"] > after_errors["error_count"]
        assert outage["sync_count"] >= healthy["sync_count"] + 4  # the loop kept cycling
        assert after["retries"] - healthy["retries"] >= len(errors) // 2
        assert after["rate_limited"] - healthy["rate_limited"] >= 2  # waits, not errors
        logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sync: ")]
        assert len(logged) == after["error_count"]
        for kind in ("GitHub answered 500", "did not answer", "secondary rate limit"):
            assert any(kind in message for message in logged), kind
        assert not [message for message in logged if "unexpected" in message]
        assert scraped["webhook_sync_errors_total"] == after["error_count"]
        assert scraped["webhook_github_rate_limited_total"] == after["rate_limited"]
        assert scraped["webhook_sync_cycles_total"] == after["sync_count"]

        # Recovered: the merge made during the outage is applied, and errors stopped.
        assert after["error_count"] == recovered["error_count"]
        answers = received(gh, ends[2], math.inf)
        assert len(answers) >= 2 and {r.status for r in answers} <= {200, 304}
        pr = await store.get_pull(REPO, 1)
        assert pr is not None and (pr.status, pr.last_source) == ("MERGED", "worker")
