"""A recording Socket.IO client for tests: what it receives, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import socketio

from tests.helpers import API_TOKEN

EVENTS = ("pr_status_change", "task_status_change", "resync_required")


class Client:
    """A socketio.AsyncClient that records what it receives, in order."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()
        self.batches: list[list[int]] = []  # the ids of each ``events`` batch received
        for name in EVENTS:
            self.sio.on(name, self._recorder(name))
        self.sio.on("events", self._record_batch)

    async def _record_batch(self, batch: list[dict[str, Any]]) -> None:
        self.batches.append([data["event_id"] for data in batch])
        self.received += [(data["type"], data) for data in batch]
        self.arrived.set()

    def _recorder(self, name: str) -> Any:
        async def record(data: dict[str, Any]) -> None:
            self.received.append((name, data))
            self.arrived.set()

        return record

    @property
    def ids(self) -> list[int]:
        return [d["event_id"] for n, d in self.received if n != "resync_required"]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(15):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def wait_until(self, done: Callable[[list[int]], bool]) -> None:
        """Until ``done(ids)`` holds for the event ids received so far."""
        async with asyncio.timeout(15):
            while not done(self.ids):
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def connected(url: str, **auth: Any) -> AsyncIterator[Client]:
    client = Client()
    await client.sio.connect(url, auth={"token": API_TOKEN, **auth}, transports=["websocket"])
    try:
        yield client
    finally:
        await client.sio.disconnect()
