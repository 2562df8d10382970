"""Faults: PostgreSQL restarted during a webhook load (issue #7).

The service runs as a child process on a private PostgreSQL this test stops (fast
shutdown) and starts again, on the same port and data directory, while concurrent
signed deliveries keep arriving. The machine's PostgreSQL (``TEST_DATABASE_URL``) is
never touched. While the database is down every delivery is answered 503, never a
2xx; once it is back the same process answers 2xx again and ``/readyz`` turns ready,
without a restart; and every delivery that was acknowledged is stored, applied, and
its events emitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests._load import Attempt, WebhookLoad
from tests._postgres import PrivatePostgres, create_database, private_postgres
from tests.helpers import server_env, signed_headers
from tests.servers import ServerProcess
from webhook_service.store import Store

CONCURRENCY = 12
ACKED_BEFORE_OUTAGE = 120
OUTAGE_SECONDS = 2.0
ACKED_AFTER_OUTAGE = 120
RECOVERY_TIMEOUT = 30.0
REDELIVERED = 20


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


async def _readyz(url: str) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        response = await client.get("/readyz")
    body: dict[str, object] = response.json()
    return response.status_code, body


async def _wait_ready(url: str, within: float) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + within
    while True:
        status, body = await _readyz(url)
        if status == 200 or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.1)


def _summary(attempts: list[Attempt]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for attempt in attempts:
        key = str(attempt.status) if attempt.status is not None else "no answer"
        counts[key] = counts.get(key, 0) + 1
    return counts


async def test_private_postgres_restarts_on_same_port_and_keeps_data(
    postgres: PrivatePostgres,
) -> None:
    """The harness itself: stop refuses connections, start brings the same data back."""
    url = await create_database(postgres.url)
    port = postgres.port
    store = Store(url)
    await store.connect()
    try:
        await store.migrate()
        await store.track_repositories(["o/kept"], source="test", installation_id=None)
        await asyncio.to_thread(postgres.stop)
        assert not postgres.running
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        await asyncio.to_thread(postgres.start)
        assert postgres.running and postgres.port == port
        assert await store.tracked_repositories() == {"o/kept": None}
    finally:
        await store.disconnect()


@pytest.mark.parametrize("shutdown", ["fast", "immediate"])
async def test_postgres_restart_under_load(
    postgres: PrivatePostgres, shutdown: str, tmp_path: Path
) -> None:
    """``fast``: PostgreSQL ends its sessions and writes a checkpoint; ``immediate``:
    it stops as if it crashed, and the restart recovers from the WAL."""
    database_url = await create_database(postgres.url)
    env = server_env(database_url)
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    assert server.process is not None
    pid = server.process.pid
    try:
        load_began = time.monotonic()
        async with WebhookLoad(server.url, concurrency=CONCURRENCY) as load:
            assert await load.wait_for_acks(ACKED_BEFORE_OUTAGE, within=30), (
                f"no load before the outage: {_summary(load.attempts)}\n{server.log_tail()}"
            )
            loaded_at = time.monotonic()
            await asyncio.to_thread(postgres.stop, immediate=shutdown == "immediate")
            down_at = time.monotonic()
            await asyncio.sleep(OUTAGE_SECONDS / 2)
            outage_ready = await _readyz(server.url)
            await asyncio.sleep(OUTAGE_SECONDS / 2)
            up_begins = time.monotonic()
            await asyncio.to_thread(postgres.start)
            up_at = time.monotonic()
            recovered = await load.wait_for_acks(
                ACKED_AFTER_OUTAGE, since=up_at, within=RECOVERY_TIMEOUT
            )
            recovered_at = time.monotonic()
        attempts = load.attempts
        assert recovered, (
            f"no recovery within {RECOVERY_TIMEOUT:.0f} s of PostgreSQL's return: "
            f"{_summary([a for a in attempts if a.started >= up_at])}\n{server.log_tail()}"
        )
        ready = await _wait_ready(server.url, within=10)
        assert server.process.poll() is None and server.process.pid == pid, "restarted"

        # While the database was down: 503 (never a 2xx), and /readyz said so.
        outage = [a for a in attempts if a.started >= down_at and a.finished <= up_begins]
        assert len(outage) >= 20, f"too few deliveries during the outage: {len(outage)}"
        wrong = [a.describe() for a in outage if a.status != 503]
        assert not wrong, f"{len(wrong)} outage answers were not 503: {wrong[:10]}"
        assert outage_ready[0] == 503, outage_ready
        checks = outage_ready[1]["checks"]
        assert isinstance(checks, dict) and checks.get("database") is False, outage_ready
        # Around the stop and the start a delivery may go either way, but only
        # 200 (applied) or 503 (not stored): never a 500, never an unanswered request.
        odd = [a.describe() for a in attempts if a.status not in (200, 503)]
        assert not odd, f"{len(odd)} answers neither 200 nor 503: {odd[:10]}"
        assert ready[0] == 200, f"/readyz after recovery: {ready}"

        store = Store(database_url)
        await store.connect()
        try:
            await _assert_acknowledged_kept(store, attempts)
            emitted_within = await _assert_events_emitted(store)
            await _assert_redeliverable(store, server.url, outage[:REDELIVERED])
            first_ack = min(a.finished for a in load.acked(since=up_at))
            print(
                f"\n{_summary(attempts)}; outage {up_begins - down_at:.1f} s "
                f"({len(outage)} deliveries); first ack {first_ack - up_at:.2f} s and "
                f"{ACKED_AFTER_OUTAGE} acks {recovered_at - up_at:.2f} s after PostgreSQL was back "
                f"(before the outage: {ACKED_BEFORE_OUTAGE} in {loaded_at - load_began:.2f} s); "
                f"all events emitted {emitted_within:.1f} s after"
            )
        finally:
            await store.disconnect()
    finally:
        server.stop()


async def _assert_acknowledged_kept(store: Store, attempts: list[Attempt]) -> None:
    """Every acknowledged delivery is stored and applied, and the PRs reflect them."""
    acked = [a for a in attempts if a.acked]
    stored = {
        d.guid: d
        for d in await store.list_deliveries(guids=[a.guid for a in acked], limit=len(acked) + 1)
    }
    lost = [a.describe() for a in acked if a.guid not in stored]
    assert not lost, f"{len(lost)} acknowledged deliveries were lost: {lost[:10]}"
    unapplied = {g: d.outcome for g, d in stored.items() if d.outcome != "applied"}
    assert not unapplied, f"acknowledged but not applied: {unapplied}"
    latest: dict[int, datetime] = {}
    for attempt in acked:
        latest[attempt.number] = max(
            attempt.updated_at, latest.get(attempt.number, attempt.updated_at)
        )
    pulls = {p.number: p for p in await store.list_pulls(limit=1000)}
    behind = {
        n: (pulls[n].github_updated_at if n in pulls else None, at)
        for n, at in latest.items()
        if n not in pulls or pulls[n].github_updated_at < at
    }
    assert not behind, f"PRs older than an acknowledged delivery: {behind}"


async def _assert_events_emitted(store: Store) -> float:
    """Events committed before, around and after the outage are all emitted (and marked):
    the dispatcher's sweep re-emits whatever the outage kept it from marking. Returns
    how long that took."""
    assert await store.events_since(0, 1), "the deliveries changed PRs, so events exist"
    began = time.monotonic()
    for _ in range(200):
        if not await store.unemitted_events(0, 1):
            break
        await asyncio.sleep(0.1)
    left = await store.unemitted_events(0, 1000)
    assert not left, f"{len(left)} events never emitted, from id {left[0].id}"
    return time.monotonic() - began


async def _assert_redeliverable(store: Store, url: str, refused: list[Attempt]) -> None:
    """A 503 stored nothing, and GitHub's redelivery of it (same GUID) is applied."""
    assert refused
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for attempt in refused:
            assert await store.get_delivery(attempt.guid) is None, attempt.describe()
            response = await client.post(
                "/webhooks/github",
                content=attempt.body,
                headers=signed_headers(attempt.body, "pull_request", attempt.guid),
            )
            assert response.status_code == 200, (attempt.describe(), response.text)
            delivery = await store.get_delivery(attempt.guid)
            assert delivery is not None and delivery.outcome == "applied", attempt.describe()
