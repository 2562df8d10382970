"""A recording Socket.IO client for tests: what it receives, in order."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

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
        self.batch_times: list[float] = []  # and when each arrived (loop time)
        for name in EVENTS:
            self.sio.on(name, self._recorder(name))
        self.sio.on("events", self._record_batch)

    async def _record_batch(self, batch: list[dict[str, Any]]) -> None:
        self.batches.append([data["event_id"] for data in batch])
        self.batch_times.append(asyncio.get_running_loop().time())
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


class RawClient:
    """A Socket.IO client on a bare websocket that reads only when told to: until then
    the server's frames pile up in the kernel and then in the server's queue for it
    (a stuck client)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, url: str, auth: dict[str, Any], rcvbuf: int = 4096) -> RawClient:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connecting
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        # A small limit: the stream stops reading from the socket once it holds 2x that.
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        client = cls(reader, writer)
        assert (await client._frame()).startswith("0{")  # Engine.IO open
        client._send("40" + json.dumps(auth))
        answer = await client._frame()
        assert answer.startswith("40"), answer
        return client

    async def messages(self, quiet: float) -> list[tuple[str, Any]]:
        """Read Socket.IO events until none arrives for ``quiet`` seconds."""
        out: list[tuple[str, Any]] = []
        while True:
            try:
                text = await asyncio.wait_for(self._frame(), quiet)
            except TimeoutError:
                return out
            if text == "2":  # Engine.IO ping
                self._send("3")
            elif text.startswith("42"):
                name, data = json.loads(text[2:])
                out.append((name, data))

    def close(self) -> None:
        self._writer.transport.abort()

    async def _frame(self) -> str:
        head = await self._reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self._reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self._reader.readexactly(8))[0]
        return (await self._reader.readexactly(length)).decode()

    def _send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        if len(payload) < 126:
            head = struct.pack("!BB", 0x81, 0x80 | len(payload))
        else:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._writer.write(head + mask + masked)
