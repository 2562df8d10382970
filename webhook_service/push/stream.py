"""Socket.IO: the live, resumable stream of stored events (DESIGN.md §3).

- A connection must present ``auth={"token": API_TOKEN}``; anything else is refused.
- Rooms: a client gets every event by default; ``subscribe`` with
  ``{"repository": "owner/name"}`` or ``{"task_id": ...}`` narrows its stream to what
  it subscribed to, ``unsubscribe`` widens it again (to everything once nothing is left).
- Resume: ``auth={"token": ..., "since": N}`` first sends every stored event with id > N,
  in order, then the live stream, with no gap and no duplicate at the seam. Past the
  retention bound the client gets ``resync_required`` instead (reload, then live).
- Batches: ``auth={..., "batch": true}`` asks for ``events`` messages instead of one
  message per event: each is a list of the same payloads, in id order, sent at most
  every ``BATCH_INTERVAL`` (the first after a quiet spell at once). Under load a
  client then costs the server one frame per interval instead of one per event. A
  frame costs the server far more than its bytes (Engine.IO's writer task, the ASGI
  and websocket layers, the system call), so with many batch clients the
  interval grows to keep all of them together within ``SOCKETIO_FRAME_BUDGET`` frames
  a second (at most ``MAX_BATCH_INTERVAL`` apart): with the default of 500, up to 25
  clients get one every 0.05 s, 200 get one every 0.4 s.
- Order: events reach clients in id order. Replicas publish their events as their
  dispatchers run, so one with a larger id can arrive (through the message queue) before
  a smaller one; it is held until the smaller one arrives, at most ``REORDER_WAIT``
  (a missing id may be a gap: a rolled-back transaction's, or one already delivered).
- Slow clients: messages wait in the client's Engine.IO queue. Once it holds
  ``MAX_BACKLOG`` of them (``MAX_BATCH_BACKLOG`` batches), the client gets nothing more
  until it has read them all; then it gets ``resync_required`` (with the id of the
  last event before the live ones that follow) and the live stream. A stuck client so
  costs a bounded amount of memory and, once behind, no work per event.

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
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import engineio.packet
import socketio
import socketio.packet

from webhook_service.config import Settings
from webhook_service.push import sio_json
from webhook_service.store import Store, StoredEvent, StoreUnavailable, log_unavailable

logger = logging.getLogger(__name__)

ALL = "all"
NAMESPACE = "/"
BATCH = "events"  # the event name of a batch
BATCH_INTERVAL = 0.05  # seconds between two batches to one client, at most 20/s
MAX_BATCH_INTERVAL = 1.0  # ... unless the interval would have to grow beyond this
REORDER_WAIT = 0.25  # how long an event waits for a smaller id still on its way
MAX_BACKLOG = 2000  # messages queued for one client before it is cut off
MAX_BATCH_BACKLOG = 100  # batches queued for one client before it is cut off
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
    batch: bool = False  # gets ``events`` lists, and is in no Socket.IO room
    lagging: bool = False  # cut off for falling behind: sent nothing until it has read

    @property
    def rooms(self) -> set[str]:
        return self.subscriptions or {ALL}


class _StreamMixin(socketio.AsyncManager):  # type: ignore[misc]
    """Local delivery with the seam bookkeeping described in the module docs."""

    def setup_stream(self, frame_budget: int) -> None:
        self.frame_budget = frame_budget  # batch frames a second, all clients together
        self.stream_lock = asyncio.Lock()
        self.clients: dict[str, _Client] = {}
        # Events for batch clients, waiting for the next flush: (payload, rooms).
        self._pending: list[tuple[dict[str, Any], set[str]]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._batch_interval = BATCH_INTERVAL  # grows with the frames of the last flush
        self._flushes: set[asyncio.Task[None]] = set()
        # In-order delivery: the id expected next, and events that came before it.
        self._next_id: int | None = None
        self._held: dict[int, tuple[str, dict[str, Any], set[str], Any]] = {}
        self._hold_timer: asyncio.TimerHandle | None = None

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
            expected = self._next_id
            if expected is not None and event_id > expected:
                # An event with a smaller id may still be on its way (from another
                # replica, through the message queue): hold this one a moment.
                self._held[event_id] = (event, data, rooms, skip_sid)
                if self._hold_timer is None:
                    loop = asyncio.get_running_loop()
                    self._hold_timer = loop.call_later(REORDER_WAIT, self._start_release)
                return
            await self._deliver_local(event, data, rooms, skip_sid)
            if expected is None or event_id == expected:
                self._next_id = event_id + 1
                await self._release(all_held=False)

    def _start_release(self) -> None:
        task = asyncio.create_task(self._release_held(), name="socketio-reorder")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _release_held(self) -> None:
        async with self.stream_lock:
            self._hold_timer = None
            await self._release(all_held=True)

    async def _release(self, *, all_held: bool) -> None:
        """Deliver held events: those now next in line, or (the wait is over: the
        missing ids are gaps, or late) all of them, in id order. Lock held."""
        while self._held:
            first = min(self._held)
            if not all_held and first != self._next_id:
                break
            await self._deliver_local(*self._held.pop(first))
            self._next_id = first + 1
        if not self._held and self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    async def _deliver_local(
        self, event: str, data: dict[str, Any], rooms: set[str], skip_sid: Any
    ) -> None:
        """Local delivery of one event, with the seam bookkeeping. Lock held."""
        event_id = data["event_id"]
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        batched = False
        for sid, client in self.clients.items():
            if client.buffer is not None:
                if client.rooms & rooms:
                    client.buffer.append((event, data))
            elif client.batch:
                batched = True
            elif client.floor:
                if event_id <= client.floor:
                    skip.add(sid)
                else:
                    client.floor = 0
        if batched:
            self._pending.append((data, rooms))
            self._schedule_flush()
        await self._fan_out(event, data, list(rooms), skip)

    def _schedule_flush(self) -> None:
        if self._flush_timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_flush + self._batch_interval - loop.time())
        self._flush_timer = loop.call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.create_task(self._flush(), name="socketio-batch")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        """Send each live batch client the pending events of its rooms, as one list.

        Clients with the same rooms (and no floor) get the same list: it is encoded
        once per such group, however many clients share it. The frames sent set the
        interval until the next flush (``frame_budget``)."""
        async with self.stream_lock:
            self._flush_timer = None
            self._last_flush = asyncio.get_running_loop().time()
            pending, self._pending = self._pending, []
            frames = 0
            groups: dict[tuple[frozenset[str], int], list[str]] = {}
            for sid, client in self.clients.items():
                if client.batch and client.buffer is None:
                    groups.setdefault((frozenset(client.rooms), client.floor), []).append(sid)
            for (rooms, floor), sids in groups.items():
                batch = [d for d, r in pending if r & rooms and d["event_id"] > floor]
                if not batch:
                    continue
                if floor:
                    for sid in sids:
                        if (floored := self.clients.get(sid)) is not None:
                            floored.floor = 0
                packets = self._encode(BATCH, batch)
                first = batch[0]["event_id"]
                for sid in sids:
                    eio_sid = self.eio_sid_from_sid(sid, NAMESPACE)
                    if eio_sid is not None:
                        frames += await self._push(sid, eio_sid, packets, first, MAX_BATCH_BACKLOG)
            self._batch_interval = min(
                MAX_BATCH_INTERVAL, max(BATCH_INTERVAL, frames / self.frame_budget)
            )

    async def stop_batches(self) -> None:
        """Send nothing more to batch clients (shutting down)."""
        for timer in (self._flush_timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        self._flush_timer = self._hold_timer = None
        for task in list(self._flushes):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _encode(self, event: str, data: Any) -> list[engineio.packet.Packet]:
        encoded = self.server.packet_class(
            socketio.packet.EVENT, namespace=NAMESPACE, data=[event, data]
        ).encode()
        return [
            engineio.packet.Packet(engineio.packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]

    async def _fan_out(self, event: str, data: Any, rooms: list[str], skip: set[Any]) -> None:
        """Encode once, then queue the packet on each recipient's socket in turn.

        AsyncManager.emit makes a task per recipient and waits for them all; queueing
        directly (Engine.IO's queue is unbounded, so nothing here waits) is several
        times cheaper with hundreds of clients, and a batch of events emitted back to
        back wakes each client's writer once instead of once per event. A client that
        stops reading grows its own queue, up to ``MAX_BACKLOG`` (see :meth:`_push`).
        """
        packets = self._encode(event, data)
        event_id = data["event_id"]
        for sid, eio_sid in self.get_participants(NAMESPACE, rooms):
            if sid not in skip:
                await self._push(sid, eio_sid, packets, event_id, MAX_BACKLOG)

    async def _push(
        self,
        sid: str,
        eio_sid: str,
        packets: list[engineio.packet.Packet],
        first_id: int,
        limit: int,
    ) -> bool:
        """Queue ``packets`` (events from ``first_id`` on) for one client, unless it is
        too far behind (see the module docs). Whether they were queued."""
        socket = self.server.eio.sockets.get(eio_sid)
        client = self.clients.get(sid)
        if socket is None or socket.closed or client is None:
            return False
        backlog = socket.queue.qsize()
        if client.lagging:
            if backlog:
                return False
            client.lagging = False
            logger.info("Socket.IO client %s caught up: resync_required", sid)
            reason = "this client fell too far behind; events were dropped for it"
            resync = {"reason": reason, "last_event_id": first_id - 1}
            for pkt in self._encode("resync_required", resync):
                await socket.send(pkt)
        elif backlog >= limit:
            client.lagging = True
            logger.info("Socket.IO client %s is %d messages behind: cut off", sid, backlog)
            return False
        for pkt in packets:
            await socket.send(pkt)
        return True

    async def send_to(self, sid: str, event: str, data: Any) -> None:
        """Deliver to one local client, bypassing the message queue."""
        await socketio.AsyncManager.emit(self, event, data, NAMESPACE, to=sid)


class _LocalManager(_StreamMixin):
    pass


class _RedisManager(socketio.AsyncRedisManager, _StreamMixin):  # type: ignore[misc]
    """AsyncRedisManager whose local deliveries (its own and other replicas') go
    through the stream bookkeeping (the mixin sits below the pub/sub layer).

    With Redis down or hung a replica loses only the fan-out to other replicas: its
    events are stored first and still reach its own clients, and other replicas'
    clients get them by reconnecting with ``since``. So publishing and listening
    replace the library's, which shared one client (each one's reconnect replaced the
    other's, left unclosed), logged two errors per event while Redis was down, let a
    hung Redis hold up every emit (the outbox dispatcher, hence live delivery here and
    shutdown) for seconds, and waited up to 60 s between attempts to listen again.
    Here each has its own client; a publish is bounded by ``PUBLISH_TIMEOUT``, and
    after one timed out none is tried for ``PUBLISH_PAUSE`` (a refused connection
    costs nothing, so then the next publish tries again); the listener tries again
    every ``LISTEN_RETRY_MAX`` s at most; an outage is logged when it starts and when
    it ends; :meth:`close` stops the listener and closes both clients.
    """

    PUBLISH_TIMEOUT = 1.0
    PUBLISH_PAUSE = 5.0
    LISTEN_RETRY_MAX = 2.0

    def __init__(self, url: str, channel: str = "socketio") -> None:
        super().__init__(url, channel=channel, json=sio_json)
        self._publisher: Any = None  # redis.asyncio.Redis, made by the first publish
        self._listener: Any = None  # the listener's, while it has one
        self._publish_failing = False
        self._publish_paused_until = 0.0
        self._unpublished = 0  # messages lost since publishing last worked
        self._closed = False
        #: Called when listening works again after an outage (set by the Stream).
        self.on_restored: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._restore_tasks: set[asyncio.Task[None]] = set()

    def _new_client(self) -> Any:
        """A Redis client made as the library makes one (URL schemes, Sentinel)."""
        self._redis_connect()  # sets self.redis (and an unused, unconnected self.pubsub)
        return self.redis

    async def _publish(self, data: Any) -> None:
        if self._closed or time.monotonic() < self._publish_paused_until:
            self._unpublished += 1
            return
        try:
            async with asyncio.timeout(self.PUBLISH_TIMEOUT):
                if self._publisher is None:
                    self._publisher = self._new_client()
                await self._publisher.publish(self.channel, self.json.dumps(data))
        except Exception as exc:  # a timed-out command's connection is dropped by redis-py
            self._unpublished += 1
            if isinstance(exc, TimeoutError):
                self._publish_paused_until = time.monotonic() + self.PUBLISH_PAUSE
            if not self._publish_failing:
                self._publish_failing = True
                logger.warning(
                    "cannot publish to Redis (%s): until it is back, events reach only "
                    "this replica's clients (others get them by reconnecting with 'since')",
                    self._describe(exc),
                )
            return
        if self._publish_failing:
            logger.info(
                "publishing to Redis again (%d messages were not published)", self._unpublished
            )
        self._publish_failing = False
        self._unpublished = 0

    async def _listen(self) -> AsyncIterator[bytes]:
        channel = self.channel.encode()
        retry = 0.25
        failing = False
        while True:
            try:
                client = self._listener = self._new_client()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(self.channel)
                    if failing:
                        logger.info("listening on Redis again")
                        self._restored()
                    failing, retry = False, 0.25
                    async for message in pubsub.listen():
                        if message["channel"] == channel and message["type"] == "message":
                            yield message["data"]
                finally:
                    self._listener = None
                    for closing in (pubsub, client):
                        with contextlib.suppress(Exception):
                            await closing.aclose()
            except Exception as exc:
                if not failing:
                    failing = True
                    logger.warning(
                        "cannot listen on Redis (%s): until it is back, other replicas' "
                        "events do not reach this replica's clients (they get them by "
                        "reconnecting with 'since'); trying again every %.0f s",
                        self._describe(exc),
                        self.LISTEN_RETRY_MAX,
                    )
            await asyncio.sleep(retry)
            retry = min(retry * 2, self.LISTEN_RETRY_MAX)

    def _restored(self) -> None:
        """Listening again after an outage: clients here may have missed other
        replicas' events meanwhile (their ids may be below ones they got)."""
        if self.on_restored is not None:
            task = asyncio.create_task(self.on_restored(), name="redis-restored")
            self._restore_tasks.add(task)
            task.add_done_callback(self._restore_tasks.discard)

    async def close(self) -> None:
        """Stop listening and close both clients (the server is shutting down)."""
        self._closed = True
        for task in list(self._restore_tasks):
            task.cancel()
        thread = getattr(self, "thread", None)  # started by the first connection
        if thread is not None and not thread.done():
            thread.cancel()
            await asyncio.wait([thread])
        for client in (self._listener, self._publisher):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._listener = self._publisher = None

    @staticmethod
    def _describe(exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Stream:
    """The Socket.IO server and everything it does with stored events."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._store = store
        self._token = settings.api_token.reveal().encode() if settings.api_token else None
        queue = settings.socketio_message_queue
        manager: _StreamMixin = (
            _RedisManager(queue.reveal(), settings.socketio_channel) if queue else _LocalManager()
        )
        manager.setup_stream(settings.socketio_frame_budget)
        if isinstance(manager, _RedisManager):
            manager.on_restored = self._resync_everyone
        self._manager = manager
        # async_mode="asgi" always: with aiohttp installed the default would pick
        # aiohttp mode, and every Socket.IO request would fail with a 500.
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=[],
            client_manager=manager,
            json=sio_json,  # orjson: every packet, and each batch, is encoded once
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
        await self._manager.stop_batches()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):  # cancelled, or already logged
                await task
        if isinstance(self._manager, _RedisManager):
            await self._manager.close()

    async def _resync_everyone(self) -> None:
        """After a message-queue outage: tell every client here to reload. Events of
        other replicas from the outage never reached them, and resuming from the last
        id they saw would skip those with smaller ids."""
        try:
            _, newest = await self._store.event_bounds()
        except StoreUnavailable:
            newest = None
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
        batch = auth.get("batch", False)
        if not isinstance(batch, bool):
            raise socketio.exceptions.ConnectionRefusedError("'batch' must be true or false")
        client = _Client(batch=batch)
        self._manager.clients[sid] = client
        if since is None:
            await self._join(sid, client, client.rooms)
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
            if client.buffer is None and not client.batch:  # live: move rooms now
                for old in before - client.rooms:
                    await self.sio.leave_room(sid, old)
                await self._join(sid, client, client.rooms - before)
        return {"ok": True, "subscriptions": sorted(client.subscriptions)}

    # -- catching up -------------------------------------------------------------

    async def _catch_up(self, sid: str, client: _Client, since: int) -> None:
        try:
            last = await self._replay(sid, client, since)
        except StoreUnavailable as exc:
            log_unavailable(logger, exc, "catching up %s failed: %s", sid, exc)
            await self._manager.send_to(
                sid, "resync_required", {"reason": "the event store is unavailable"}
            )
            last = None
        async with self._manager.stream_lock:
            buffered = client.buffer or []
            client.buffer = None
            missed = []
            for event, data in sorted(buffered, key=lambda item: int(item[1]["event_id"])):
                if last is None or data["event_id"] > last:
                    missed.append((event, data))
                    last = data["event_id"]
            await self._deliver(sid, client, missed)
            client.floor = last or 0
            await self._join(sid, client, client.rooms)

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
            await self._deliver(
                sid,
                client,
                [(e.type, e.message()) for e in events if client.rooms & set(rooms_for(e))],
            )
            if events:
                last = events[-1].id
            if len(events) < _PAGE:
                return last

    async def _deliver(
        self, sid: str, client: _Client, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Send events to one client: as one batch, or one message each."""
        if client.batch:
            if events:
                await self._manager.send_to(sid, BATCH, [data for _, data in events])
            return
        for event, data in events:
            await self._manager.send_to(sid, event, data)

    async def _join(self, sid: str, client: _Client, rooms: Sequence[str] | set[str]) -> None:
        if client.batch:  # batches are flushed to clients, not emitted to rooms
            return
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
