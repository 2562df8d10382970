"""Crash safety: SIGKILL the server in the middle of a load; every delivery that was
acknowledged is stored and applied after the restart, and its events are emitted."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import orjson

from tests.helpers import payload, server_env, signed_headers
from tests.servers import ServerProcess
from webhook_service.store import Store

DELIVERIES = 600
CONCURRENCY = 16


async def _load(url: str, acked: list[str], server: ServerProcess) -> None:
    bodies = []
    for i in range(DELIVERIES):
        status = "open" if i % 3 else "closed"
        doc = payload(
            "pull_request/opened",
            number=1 + i % 150,
            state=status,
            merged=False,
            updated_at=f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        )
        bodies.append(orjson.dumps(doc))
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            guid = str(uuid.uuid4())
            try:
                response = await client.post(
                    "/webhooks/github",
                    content=body,
                    headers=signed_headers(body, "pull_request", guid),
                )
            except httpx.HTTPError:
                continue  # the server died under this request: not acknowledged
            if 200 <= response.status_code < 300:
                acked.append(guid)
            if len(acked) == DELIVERIES // 3:
                server.kill()  # mid-load, with requests in flight

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))


async def test_sigkill_under_load_loses_nothing_acknowledged(
    database_url: str, tmp_path: Path
) -> None:
    env = server_env(database_url)
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    acked: list[str] = []
    try:
        await _load(server.url, acked, server)
    finally:
        server.kill()
    assert DELIVERIES // 3 <= len(acked) < DELIVERIES, "the kill must land mid-load"

    restarted = ServerProcess(env, tmp_path / "server.log")
    restarted.start()
    try:
        store = Store(database_url)
        await store.connect()
        try:
            for guid in acked:
                delivery = await store.get_delivery(guid)
                assert delivery is not None, f"acknowledged delivery {guid} was lost"
                assert delivery.outcome == "applied"
            pulls = await store.list_pulls(limit=1000)
            assert {p.number for p in pulls} >= {n for n in (await _numbers(store, acked))}
            events = await store.events_since(0, 10_000)
            assert events, "applied deliveries created PRs, so events exist"
            # The restarted dispatcher emits whatever was committed but not emitted.
            for _ in range(100):
                if not await store.unemitted_events(0, 1):
                    break
                await asyncio.sleep(0.1)
            assert not await store.unemitted_events(0, 1)
        finally:
            await store.disconnect()
    finally:
        restarted.stop()


async def _numbers(store: Store, guids: list[str]) -> set[int]:
    numbers = set()
    for guid in guids:
        delivery = await store.get_delivery(guid)
        assert delivery is not None and delivery.pr_number is not None
        numbers.add(delivery.pr_number)
    return numbers
