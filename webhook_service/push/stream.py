"""Socket.IO: the live, resumable stream of stored events (docs/design.md, "Socket.IO
events"). :class:`Stream` is the server and its handlers; each part of what it does
has its own module:

- ``auth.py``: the handshake. A connection must present ``auth={"token": API_TOKEN}``
  (or DASHBOARD_TOKEN); ``"since"`` asks to resume, ``"batch": true`` for ``events`` lists.
- ``rooms.py``: a client gets every event by default; ``subscribe`` with
  ``{"repository": "owner/name"}`` or ``{"task_id": ...}`` narrows its stream to what
  it subscribed to, ``unsubscribe`` widens it again (to everything once nothing is left).
- ``resume.py``: with ``since``, every stored event after it, then the live stream,
  with no gap and no duplicate at the seam.
- ``fanout.py``: delivery to this process's clients: in id order, batches within a
  frame budget, and the slow-client cut-off.
- ``managers.py``: one process alone, or replicas joined by Redis.
- ``socketio_hooks.py``: the python-socketio and python-engineio internals all of this
  relies on, and the versions they were checked against.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import socketio

from webhook_service.config import Settings
from webhook_service.push import sio_json
from webhook_service.push.auth import Refused, read_auth
from webhook_service.push.fanout import BATCH, BATCH_INTERVAL, Client
from webhook_service.push.managers import RedisManager, make_manager
from webhook_service.push.resume import Resume
from webhook_service.push.rooms import room_of, rooms_for
from webhook_service.store import Store, StoredEvent, StoreUnavailable

logger = logging.getLogger(__name__)

# What a client of the stream needs besides the docs: the event name of a batch, and
# the shortest interval between two (the benchmarks' clients import them from here).
__all__ = ["BATCH", "BATCH_INTERVAL", "Stream"]


class Stream:
    """The Socket.IO server and everything it does with stored events."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._store = store
        self._token = settings.api_token.reveal().encode() if settings.api_token else None
        reader = settings.dashboard_token
        self._read_only_token = reader.reveal().encode() if reader else None
        self._manager = make_manager(settings)
        self._manager.newest_event_id = self._newest_event_id
        if isinstance(self._manager, RedisManager):
            self._manager.on_restored = self._resync_everyone
        self._resume = Resume(store, self._manager, self._join)
        # async_mode="asgi" always: with aiohttp installed the default would pick
        # aiohttp mode, and every Socket.IO request would fail with a 500.
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=[],
            client_manager=self._manager,
            json=sio_json,  # orjson: every packet, and each batch, is encoded once
            # Workers share one socket, so a long-polling session's next request may
            # reach another worker, which does not know it: refused (400), not broken.
            transports=["websocket"] if settings.workers > 1 else None,
            logger=False,
            engineio_logger=False,
        )
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("subscribe", self._subscribe)
        self.sio.on("unsubscribe", self._unsubscribe)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> int:
        return len(self._manager.clients)

    async def emit(self, event: StoredEvent) -> None:
        """Emit a stored event to the rooms it belongs to (the outbox calls this)."""
        await self.sio.emit(event.type, event.message(), to=rooms_for(event))

    async def start(self) -> None:
        """Before the first emit: events are delivered in order from the next one on."""
        await self._manager.seed()

    async def close(self) -> None:
        await self._manager.stop_batches()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):  # cancelled, or already logged
                await task
        if isinstance(self._manager, RedisManager):
            await self._manager.close()

    async def _newest_event_id(self) -> int | None:
        """The newest stored event's id, or None while the database is unavailable."""
        try:
            return (await self._store.event_bounds())[1]
        except StoreUnavailable as exc:
            logger.warning("cannot read the newest event id: %s", exc)
            return None

    async def _resync_everyone(self) -> None:
        """After a message-queue outage: tell every client here to reload. Events of
        other replicas from the outage never reached them, and resuming from the last
        id they saw would skip those with smaller ids."""
        newest = await self._newest_event_id()
        for sid in list(self._manager.clients):
            await self._manager.send_to(
                sid,
                "resync_required",
                {
                    "reason": "the message queue between replicas was unavailable",
                    "last_event_id": newest,
                },
            )

    # -- handlers ----------------------------------------------------------------

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        try:
            handshake = read_auth(auth, token=self._token, read_only_token=self._read_only_token)
        except Refused as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        client = Client(batch=handshake.batch)
        self._manager.clients[sid] = client
        if handshake.since is None:
            await self._join(sid, client, client.rooms)
            return
        # From here on every local delivery is buffered for this client; it is
        # connected once this handler returns, so catching up runs as a task.
        client.buffer = []
        task = asyncio.create_task(
            self._resume.catch_up(sid, client, handshake.since), name=f"catch-up-{sid}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self, sid: str, *args: Any) -> None:
        self._manager.clients.pop(sid, None)

    async def _subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        return await self._change_subscription(sid, data, add=True)

    async def _unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        return await self._change_subscription(sid, data, add=False)

    async def _change_subscription(self, sid: str, data: Any, *, add: bool) -> dict[str, Any]:
        room = room_of(data)
        client = self._manager.clients.get(sid)
        if room is None or client is None:
            return {
                "ok": False,
                "error": "expected {'repository': 'owner/name'} or {'task_id': ...}",
            }
        async with self._manager.stream_lock:
            before = client.rooms
            if add:
                client.subscriptions.add(room)
            else:
                client.subscriptions.discard(room)
            if client.buffer is None and not client.batch:  # live: move rooms now
                for old in before - client.rooms:
                    await self.sio.leave_room(sid, old)
                await self._join(sid, client, client.rooms - before)
        return {"ok": True, "subscriptions": sorted(client.subscriptions)}

    async def _join(self, sid: str, client: Client, rooms: Sequence[str] | set[str]) -> None:
        if client.batch:  # batches are flushed to clients, not emitted to rooms
            return
        for room in rooms:
            await self.sio.enter_room(sid, room)
