"""Socket.IO: the live, resumable stream of stored events (DESIGN.md §3).

- A connection must present ``auth={"token": API_TOKEN}``; anything else is refused.
- Rooms: a client gets every event by default; ``subscribe`` with
  ``{"repository": "owner/name"}`` or ``{"task_id": ...}`` narrows its stream to what
  it subscribed to, ``unsubscribe`` widens it again (to everything once nothing is left).
- Resume: ``auth={"token": ..., "since": N}`` first sends every stored event with id > N,
  in order, then the live stream, with no gap and no duplicate at the seam. Past the
  retention bound the client gets ``resync_required`` instead (reload, then live).

How the seam is made exact: while a client catches up from the database, every event
delivered locally is also appended to its buffer (under the same lock as the
delivery). When the database has nothing newer, the buffer's events above the last
one sent are sent, and the client joins its rooms, all under that lock. Events it
already got from the database and that the dispatcher has yet to emit are skipped
for it (its "floor"). The hook sits at local delivery, so it holds with the Redis
manager too, where other replicas' events arrive through the message queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import engineio.packet
import socketio
import socketio.packet

from webhook_service.config import Settings
from webhook_service.store import Store, StoredEvent, StoreUnavailable

logger = logging.getLogger(__name__)

ALL = "all"
NAMESPACE = "/"
_PAGE = 500


def rooms_for(event: StoredEvent) -> list[str]:
    """The rooms an event is emitted to: everyone's, its repository's, its task's."""
    rooms = [ALL]
    if event.repository:
        rooms.append(f"repository:{event.repository}")
    if event.task_id:
        rooms.append(f"task:{event.task_id}")
    return rooms


@dataclass(slots=True)
class _Client:
    subscriptions: set[str] = field(default_factory=set)  # rooms; empty = everything
    buffer: list[tuple[str, dict[str, Any]]] | None = None  # set while catching up
    floor: int = 0  # skip live events up to this id (already sent from the database)

    @property
    def rooms(self) -> set[str]:
        return self.subscriptions or {ALL}


class _StreamMixin(socketio.AsyncManager):  # type: ignore[misc]
    """Local delivery with the seam bookkeeping described in the module docs."""

    def setup_stream(self) -> None:
        self.stream_lock = asyncio.Lock()
        self.clients: dict[str, _Client] = {}

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        event_id = data.get("event_id") if isinstance(data, dict) else None
        if event_id is None or namespace != NAMESPACE:
            await super().emit(event, data, namespace, room, skip_sid, callback, to, **kwargs)
            return
        target = to or room
        rooms = {target} if isinstance(target, str) else set(target or [])
        async with self.stream_lock:
            skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
            for sid, client in self.clients.items():
                if client.buffer is not None:
                    if client.rooms & rooms:
                        client.buffer.append((event, data))
                elif client.floor:
                    if event_id <= client.floor:
                        skip.add(sid)
                    else:
                        client.floor = 0
            await self._fan_out(event, data, list(rooms), skip)

    async def _fan_out(self, event: str, data: Any, rooms: list[str], skip: set[Any]) -> None:
        """Encode once, then queue the packet on each recipient's socket in turn.

        AsyncManager.emit makes a task per recipient and waits for them all; queueing
        directly (Engine.IO's queue is unbounded, so nothing here waits) is several
        times cheaper with hundreds of clients, and a batch of events emitted back to
        back wakes each client's writer once instead of once per event. A client that
        stops reading only grows its own queue.
        """
        encoded = self.server.packet_class(
            socketio.packet.EVENT, namespace=NAMESPACE, data=[event, data]
        ).encode()
        packets = [
            engineio.packet.Packet(engineio.packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]
        for sid, eio_sid in self.get_participants(NAMESPACE, rooms):
            if sid not in skip:
                for pkt in packets:
                    await self.server._send_eio_packet(eio_sid, pkt)

    async def send_to(self, sid: str, event: str, data: Any) -> None:
        """Deliver to one local client, bypassing the message queue."""
        await socketio.AsyncManager.emit(self, event, data, NAMESPACE, to=sid)


class _LocalManager(_StreamMixin):
    pass


class _RedisManager(socketio.AsyncRedisManager, _StreamMixin):  # type: ignore[misc]
    """AsyncRedisManager whose local deliveries (its own and other replicas') go
    through the stream bookkeeping (the mixin sits below the pub/sub layer)."""


class Stream:
    """The Socket.IO server and everything it does with stored events."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._store = store
        self._token = settings.api_token.reveal().encode() if settings.api_token else None
        queue = settings.socketio_message_queue
        manager: _StreamMixin = _RedisManager(queue.reveal()) if queue else _LocalManager()
        manager.setup_stream()
        self._manager = manager
        # async_mode="asgi" always: with aiohttp installed the default would pick
        # aiohttp mode, and every Socket.IO request would fail with a 500.
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=[],
            client_manager=manager,
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

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):  # cancelled, or already logged
                await task

    # -- handlers ----------------------------------------------------------------

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        auth = auth if isinstance(auth, dict) else {}
        offered = auth.get("token")
        if self._token is not None and not (
            isinstance(offered, str) and hmac.compare_digest(offered.encode(), self._token)
        ):
            logger.info("refused a Socket.IO connection with a missing or wrong token")
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        since = auth.get("since")
        if since is not None and (
            not isinstance(since, int) or isinstance(since, bool) or since < 0
        ):
            raise socketio.exceptions.ConnectionRefusedError(
                "'since' must be a non-negative event id"
            )
        client = _Client()
        self._manager.clients[sid] = client
        if since is None:
            await self._join(sid, client.rooms)
            return
        # From here on every local delivery is buffered for this client; it is
        # connected once this handler returns, so catching up runs as a task.
        client.buffer = []
        task = asyncio.create_task(self._catch_up(sid, client, since), name=f"catch-up-{sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self, sid: str, *args: Any) -> None:
        self._manager.clients.pop(sid, None)

    async def _subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        return await self._change_subscription(sid, data, add=True)

    async def _unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        return await self._change_subscription(sid, data, add=False)

    async def _change_subscription(self, sid: str, data: Any, *, add: bool) -> dict[str, Any]:
        room = _room_of(data)
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
            if client.buffer is None:  # live: move between the rooms now
                for old in before - client.rooms:
                    await self.sio.leave_room(sid, old)
                await self._join(sid, client.rooms - before)
        return {"ok": True, "subscriptions": sorted(client.subscriptions)}

    # -- catching up -------------------------------------------------------------

    async def _catch_up(self, sid: str, client: _Client, since: int) -> None:
        try:
            last = await self._replay(sid, client, since)
        except StoreUnavailable as exc:
            logger.warning("catching up %s failed: %s", sid, exc)
            await self._manager.send_to(
                sid, "resync_required", {"reason": "the event store is unavailable"}
            )
            last = None
        async with self._manager.stream_lock:
            buffered = client.buffer or []
            client.buffer = None
            for event, data in sorted(buffered, key=lambda item: int(item[1]["event_id"])):
                if last is None or data["event_id"] > last:
                    await self._manager.send_to(sid, event, data)
                    last = data["event_id"]
            client.floor = last or 0
            await self._join(sid, client.rooms)

    async def _replay(self, sid: str, client: _Client, since: int) -> int | None:
        """Send stored events after ``since``; the id of the last one considered."""
        oldest, newest = await self._store.event_bounds()
        if (
            since > newest
            or (oldest is not None and since < oldest - 1)
            or (oldest is None and 0 < since < newest)
        ):
            await self._manager.send_to(
                sid,
                "resync_required",
                {
                    "reason": "events after the given id are no longer stored",
                    "oldest_event_id": oldest,
                    "last_event_id": newest,
                },
            )
            return newest
        last = since
        while True:
            events = await self._store.events_since(last, _PAGE)
            for event in events:
                if client.rooms & set(rooms_for(event)):
                    await self._manager.send_to(sid, event.type, event.message())
            if events:
                last = events[-1].id
            if len(events) < _PAGE:
                return last

    async def _join(self, sid: str, rooms: Sequence[str] | set[str]) -> None:
        for room in rooms:
            await self.sio.enter_room(sid, room)


def _room_of(data: Any) -> str | None:
    if not isinstance(data, dict) or len(data) != 1:
        return None
    repository, task_id = data.get("repository"), data.get("task_id")
    if isinstance(repository, str) and repository.count("/") == 1:
        return f"repository:{repository}"
    if isinstance(task_id, str) and task_id:
        return f"task:{task_id.lower()}"
    return None
