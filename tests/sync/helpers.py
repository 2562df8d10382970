"""Set-up shared by the sync worker's tests (test_poller, test_sync_api): token auth
on one repository against the fake GitHub, a worker rig, and what to count in the
fake's request log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from tests.helpers import SyncRig, make_settings, payload, sync_rig, until
from webhook_service.config import Settings
from webhook_service.github.client import GitHub
from webhook_service.store import Store
from webhook_service.sync.poller import PRSyncWorker
from webhook_service.testing import FakeGitHub
from webhook_service.testing.fake_github import RequestRecord

TOKEN = "ghp_sync_worker"
REPO = "o/r"
CYCLE_TIMEOUT = 20.0


def sync_settings(database_url: str, gh: FakeGitHub, **env: str) -> Settings:
    """Token auth on ``REPO``, small retry delays; ``NAME=""`` unsets a setting.

    Discovery is off: every cycle lists every repository, the sweep these tests are
    about (discovery and the spread sweep: tests/sync/test_poller_discovery.py)."""
    values = {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": gh.url,
        "GITHUB_REPOSITORIES": REPO,
        "SYNC_RETRY_DELAY": "0.05",
        "SYNC_TIMEOUT": "5",
        "SYNC_DISCOVERY": "off",
        **env,
    }
    return make_settings(database_url, **values)


@asynccontextmanager
async def rig(
    database_url: str,
    gh: FakeGitHub,
    *,
    clock: Callable[[], float] = time.time,
    client: type[GitHub] = GitHub,
    env: Mapping[str, str] | None = None,
    **more: str,
) -> AsyncIterator[SyncRig]:
    """A store, a reconciler and a worker (not started) on the fake."""
    settings = sync_settings(database_url, gh, **(env or {}), **more)
    async with sync_rig(database_url, settings, client=client, clock=clock) as r:
        yield r


async def cycle(worker: PRSyncWorker, within: float = CYCLE_TIMEOUT) -> dict[str, Any]:
    """One forced cycle, bounded."""
    async with asyncio.timeout(within):
        return await worker.force_sync()


async def first_cycle_done(worker: PRSyncWorker) -> None:
    """The app's worker starts with a full sweep; wait for it to end."""
    await until(lambda: worker.get_stats()["sync_count"] >= 1)


async def all_answered(gh: FakeGitHub) -> None:
    """Wait until the fake has answered every request (some are held by delays)."""
    await until(lambda: all(r.status for r in gh.requests))


def listings(gh: FakeGitHub, repository: str = REPO) -> list[RequestRecord]:
    return [r for r in gh.requests if r.method == "GET" and r.path == f"/repos/{repository}/pulls"]


def gets(gh: FakeGitHub, repository: str, number: int) -> list[RequestRecord]:
    path = f"/repos/{repository}/pulls/{number}"
    return [r for r in gh.requests if r.method == "GET" and r.path == path]


async def pr_events(store: Store, repository: str = REPO) -> list[dict[str, Any]]:
    return [
        e.message()
        for e in await store.events_since(0, 10_000)
        if e.type == "pr_status_change" and e.repository == repository
    ]


def webhook(name: str, pull: dict[str, Any], repository: str = REPO) -> dict[str, Any]:
    """A recorded delivery's JSON carrying ``pull`` (the fake's REST JSON) for ``repository``."""
    document = payload(name, **pull)
    document["repository"]["full_name"] = repository
    return document
