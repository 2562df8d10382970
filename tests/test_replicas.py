"""Two ``serve`` processes on one PostgreSQL and one Redis (DESIGN.md §11): one stream
across replicas, one poller among them, and a replica's death taken over by the other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._load import WebhookLoad
from tests._postgres import create_database, drop_database
from tests._redis import redis_url
from tests.helpers import AUTH, payload, post_delivery, server_env
from tests.servers import ServerProcess
from tests.sockets import connected
from webhook_service.store import FRESH_EVENT, Store
from webhook_service.testing import FakeGitHub

TOKEN = "ghp_replicas"
REPO = "octo/replicas"
SYNC_INTERVAL = 1.0
SWEEP_INTERVAL = 5.0  # the outbox dispatcher's


@pytest.fixture
async def pg_url(postgres_base_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_base_url)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def message_queue(tmp_path: Path) -> Iterator[str]:
    with redis_url(tmp_path) as url:
        yield url


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as fake:
        fake.add_token(TOKEN)
        fake.add_repository(REPO)
        fake.add_pull(REPO, 1, head_ref="feature/one")
        yield fake


def _env(database_url: str, message_queue: str, gh: FakeGitHub) -> dict[str, str]:
    return server_env(
        database_url,
        SOCKETIO_MESSAGE_QUEUE=message_queue,
        # Its own channel: other runs may share the machine's Redis at the same time.
        SOCKETIO_CHANNEL=f"test-{uuid.uuid4().hex}",
        GITHUB_TOKEN=TOKEN,
        GITHUB_API_URL=gh.url,
        GITHUB_REPOSITORIES=REPO,
        SYNC_INTERVAL=str(SYNC_INTERVAL),
        LOG_LEVEL="INFO",
    )


@asynccontextmanager
async def replicas(
    env: dict[str, str], tmp_path: Path, n: int = 2
) -> AsyncIterator[list[ServerProcess]]:
    servers = [ServerProcess(env, tmp_path / f"replica-{i}.log") for i in range(n)]
    try:
        # Started from a thread: the fake GitHub they poll runs in this event loop.
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        yield servers
    finally:
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))


async def _stats(client: httpx.AsyncClient, server: ServerProcess) -> dict[str, Any]:
    response = await client.get(f"{server.url}/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def _opened(number: int) -> dict[str, Any]:
    document = payload("pull_request/opened", number=number)
    document["repository"]["full_name"] = REPO
    return document


async def _event_ids(database_url: str, numbers: range | None = None) -> list[int]:
    """The stored events' ids, in order; with ``numbers``, those about these PRs."""
    store = Store(database_url)
    await store.connect()
    try:
        events = await store.events_since(0, 100_000)
    finally:
        await store.disconnect()
    return [e.id for e in events if numbers is None or e.payload.get("pr_number") in numbers]


async def test_a_client_of_one_replica_gets_each_event_of_the_other_once_and_one_replica_polls(
    pg_url: str, message_queue: str, gh: FakeGitHub, tmp_path: Path
) -> None:
    async with (
        replicas(_env(pg_url, message_queue, gh), tmp_path) as (a, b),
        connected(a.url) as on_a,
        connected(b.url) as on_b,
        httpx.AsyncClient(timeout=10) as http,
    ):
        # Deliveries posted to B and to A at the same time: one first-sighting event
        # each, emitted by the replica that stored it, through Redis to both.
        async def post_all(url: str, numbers: range) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                for number in numbers:
                    response = await post_delivery(client, _opened(number))
                    assert response.status_code == 200, response.text

        await asyncio.gather(post_all(b.url, range(10, 40)), post_all(a.url, range(40, 70)))
        # Those PRs' only: the poller's sweeps make events of their own, at any time.
        expected = await _event_ids(pg_url, range(10, 70))
        assert len(expected) == 60
        for client in (on_a, on_b):
            await client.wait_until(lambda ids: set(expected) <= set(ids))
        # Long enough for every outbox sweep that could emit an event again.
        await asyncio.sleep(FRESH_EVENT.total_seconds() + SWEEP_INTERVAL + 0.5)
        for client in (on_a, on_b):
            got = [i for i in client.ids if i in expected]
            assert got == expected, "every event, each exactly once, in id order"
            assert len(client.ids) == len(set(client.ids)), "no event twice"

        stats = [await _stats(http, s) for s in (a, b)]
        leaders = [s for s in stats if s["leader"]]
        assert len(leaders) == 1, f"exactly one replica leads: {stats}"
        follower = next(s for s in stats if not s["leader"])
        assert follower["sync_count"] == 0 and follower["api_calls"] == 0
        assert leaders[0]["sync_count"] >= 3
        listed = [r for r in gh.requests if r.path == f"/repos/{REPO}/pulls"]
        assert len(listed) <= leaders[0]["sync_count"] + 1, "one poller's worth of requests"


async def test_the_other_replica_takes_over_polling_within_one_interval_of_a_kill(
    pg_url: str, message_queue: str, gh: FakeGitHub, tmp_path: Path
) -> None:
    async with (
        replicas(_env(pg_url, message_queue, gh), tmp_path) as servers,
        httpx.AsyncClient(timeout=10) as http,
    ):
        stats = [await _stats(http, s) for s in servers]
        for _ in range(100):
            if any(s["leader"] for s in stats):
                break
            await asyncio.sleep(0.1)
            stats = [await _stats(http, s) for s in servers]
        leader, follower = (
            (servers[0], servers[1]) if stats[0]["leader"] else (servers[1], servers[0])
        )
        await asyncio.to_thread(leader.kill)
        killed_at = time.monotonic()
        while not (await _stats(http, follower))["leader"]:
            assert time.monotonic() - killed_at < SYNC_INTERVAL * 1.5, "no takeover"
            await asyncio.sleep(0.02)
        took_over = time.monotonic() - killed_at
        # ...and it polls: a change on GitHub reaches the database through it.
        gh.update_pull(REPO, 1, state="closed")
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=follower.url, headers=AUTH, timeout=10)
            )
            for _ in range(100):
                pull = (await client.get(f"/api/pulls/{REPO}/1")).json()
                if pull.get("status") == "CLOSED":
                    break
                await asyncio.sleep(0.05)
            assert pull.get("status") == "CLOSED", pull
    assert took_over < SYNC_INTERVAL


async def test_a_replica_killed_under_load_loses_nothing_and_the_other_finishes_its_work(
    pg_url: str, message_queue: str, gh: FakeGitHub, tmp_path: Path
) -> None:
    """SIGKILL one replica while both take deliveries: every acknowledged delivery is
    stored and applied, and the events the dead one committed but never emitted (or
    never marked) are emitted by the survivor: its client ends with every event."""
    async with (
        replicas(_env(pg_url, message_queue, gh), tmp_path) as (a, b),
        connected(b.url) as on_b,
    ):
        before = set(await _event_ids(pg_url))
        async with (
            WebhookLoad(a.url, concurrency=8) as on_a,
            WebhookLoad(b.url, concurrency=8) as to_b,
        ):
            assert await on_a.wait_for_acks(150, within=30), "replica A took no load"
            await asyncio.to_thread(a.kill)  # requests in flight on A die with it
            killed = time.monotonic()
            assert await to_b.wait_for_acks(150, since=killed, within=30)
        acked = on_a.acked() + to_b.acked()
        assert any(x.status is None for x in on_a.attempts), "the kill landed mid-load"

        store = Store(pg_url)
        await store.connect()
        try:
            for attempt in acked:
                delivery = await store.get_delivery(attempt.guid)
                assert delivery is not None, f"acknowledged {attempt.describe()} was lost"
                assert delivery.outcome == "applied", attempt.describe()
            expected = {i for i in await _event_ids(pg_url) if i not in before}
            # The survivor's sweep takes A's leftovers once they are no longer fresh.
            await on_b.wait_until(lambda ids: expected <= set(ids))
            for _ in range(50):  # ...and marks them emitted
                if not await store.unemitted_events(0, 10):
                    break
                await asyncio.sleep(0.1)
            assert await store.unemitted_events(0, 10) == []
        finally:
            await store.disconnect()
