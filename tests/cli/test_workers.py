"""``serve --workers N``: N processes on one port, each a replica of the service; the
Socket.IO stream joined by Redis, a dead worker replaced, SIGTERM draining them all.

Which worker answered is read from ``/stats`` (``monitor.pid``, and the deliveries that
process received): every request here goes on a new connection, which the kernel hands
to whichever worker accepts it first.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests._redis import redis_url
from tests.helpers import payload, post_delivery, server_env
from tests.servers import ServerProcess
from tests.sockets import connected
from webhook_service.store import Store

SERVE = (sys.executable, "-m", "webhook_service", "serve", "--workers", "2")
REPO = "octo/workers"
FRESH = {"Connection": "close"}  # a new connection each time: any worker may take it


@pytest.fixture
def message_queue(tmp_path: Path) -> Iterator[str]:
    with redis_url(tmp_path) as url:
        yield url


@asynccontextmanager
async def two_workers(database_url: str, queue: str, log: Path) -> AsyncIterator[ServerProcess]:
    env = server_env(
        database_url, SOCKETIO_MESSAGE_QUEUE=queue, SOCKETIO_CHANNEL=f"test-{uuid.uuid4().hex}"
    )
    server = ServerProcess(env, log, command=SERVE)
    await asyncio.to_thread(server.start)
    try:
        assert len(await _answering(server.url, 2)) == 2, "both workers started"
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def _workers(server: ServerProcess) -> set[int]:
    """The worker processes (uvicorn spawns them; multiprocessing's resource tracker
    is a child too, and is not one)."""
    assert server.process is not None
    workers = set()
    for child in psutil.Process(server.process.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                workers.add(child.pid)
        except psutil.Error:  # gone, or dead and not yet reaped: not a worker now
            pass
    return workers


async def _answering(url: str, want: int, within: float = 30.0) -> dict[int, int]:
    """Each answering worker's pid and the deliveries it received, from ``/stats`` on
    new connections, until ``want`` workers have answered."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=url, headers=FRESH, timeout=10) as client:
        while len(seen) < want and time.monotonic() < deadline:
            response = await client.get("/stats")
            if response.status_code == 200:
                monitor = response.json()["monitor"]
                seen[monitor["pid"]] = monitor["deliveries_received"]
            await asyncio.sleep(0.01)
    return seen


def _opened(number: int) -> dict[str, Any]:
    document = payload("pull_request/opened", number=number)
    document["repository"]["full_name"] = REPO
    return document


async def test_two_workers_share_the_port_store_everything_and_stream_it_all(
    database_url: str, message_queue: str, tmp_path: Path
) -> None:
    async with (
        two_workers(database_url, message_queue, tmp_path / "serve.log") as server,
        connected(server.url) as client,  # to one worker; events of both reach it
        httpx.AsyncClient(base_url=server.url, headers=FRESH, timeout=10) as http,
    ):
        polling = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert polling.status_code == 400, "long polling is refused: it needs one process"
        numbers = range(1, 121)
        limit = asyncio.Semaphore(8)

        async def post(number: int) -> None:
            async with limit:
                response = await post_delivery(http, _opened(number))
                assert response.status_code == 200, response.text

        await asyncio.gather(*(post(n) for n in numbers))
        received = await _answering(server.url, 2)
        assert all(count > 0 for count in received.values()), f"one worker took all: {received}"
        assert sum(received.values()) == len(numbers), received

        store = Store(database_url)
        await store.connect()
        try:
            pulls = {p.number: p for p in await store.list_pulls(repository=REPO)}
            assert set(pulls) == set(numbers), "every delivery stored and applied"
            expected = [e.id for e in await store.events_since(0, 100_000)]
        finally:
            await store.disconnect()
        assert len(expected) >= len(numbers)
        await client.wait_until(lambda ids: set(expected) <= set(ids))
        assert client.ids == expected, "each event once, in id order, from either worker"

        workers = _workers(server)
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.process.wait, 15)
        assert code == 0, server.log_tail()
        assert time.monotonic() - started < 10
        assert not any(psutil.pid_exists(pid) for pid in workers), "a worker outlived serve"


async def test_a_killed_worker_is_replaced(message_queue: str, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'workers.db'}"
    async with two_workers(database_url, message_queue, tmp_path / "serve.log") as server:
        before = _workers(server)
        assert len(before) == 2
        victim = min(before)
        psutil.Process(victim).kill()
        deadline = time.monotonic() + 30
        while len(_workers(server) - before) < 1:
            assert time.monotonic() < deadline, f"not replaced: {server.log_tail()}"
            await asyncio.sleep(0.1)
        replacement = _workers(server) - before
        assert _workers(server) == (before - {victim}) | replacement
        answering = await _answering(server.url, 2)
        assert set(answering) == (before - {victim}) | replacement, "the new worker serves"


async def test_workers_end_with_a_killed_supervisor(message_queue: str, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'workers.db'}"
    async with two_workers(database_url, message_queue, tmp_path / "serve.log") as server:
        workers = _workers(server)
        await asyncio.to_thread(server.kill)
        _, alive = await asyncio.to_thread(
            psutil.wait_procs, [psutil.Process(pid) for pid in workers], 10
        )
        assert not alive, "a worker outlived its supervisor"
