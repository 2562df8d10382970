"""Fan-out: delivering each stored event to this process's clients, in id order, as
single messages or batches, within a frame budget, and never piling up for a slow one.

- Order: events reach clients in id order. Replicas publish their events as their
  dispatchers run, so one with a larger id can arrive (through the message queue) before
  a smaller one; it is held until the smaller one arrives, at most ``REORDER_WAIT``
  (a missing id may be a gap: a rolled-back transaction's, or one already delivered).
  The id expected next starts after the newest stored event (:meth:`Fanout.seed`, when
  the stream starts and each time the listener subscribes), not at the first event to
  arrive: that may be another replica's, ahead of a smaller one still on its way.
- The resume seam (``resume.py``): while a client catches up from the database, every
  event delivered here is also appended to its buffer (under the same lock as the
  delivery); afterwards events up to its ``floor`` (already sent from the database) are
  skipped for it. The hook sits at local delivery, so it holds with the Redis manager
  too, where other replicas' events arrive through the message queue.
- Batches: a batch client gets ``events`` lists, each of the pending events of its
  rooms, in id order, at most every ``BATCH_INTERVAL`` (the first after a quiet spell at
  once). A frame costs the server far more than its bytes (Engine.IO's writer task, the
  ASGI and websocket layers, the system call), so with many batch clients the interval
  grows to keep all of them together within ``frame_budget`` frames a second (at most
  ``MAX_BATCH_INTERVAL`` apart): with the default of 500, up to 25 clients get one every
  0.05 s, 200 get one every 0.4 s.
- Slow clients: messages wait in the client's Engine.IO queue. Once it holds
  ``MAX_BACKLOG`` of them (``MAX_BATCH_BACKLOG`` batches), the client gets nothing more
  until it has read them all; then it gets ``resync_required`` (with the id of the
  last event before the live ones that follow) and the live stream. A stuck client so
  costs a bounded amount of memory and, once behind, no work per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from webhook_service.push.rooms import ALL
from webhook_service.push.socketio_hooks import Packets, StreamHooks

logger = logging.getLogger(__name__)

BATCH = "events"  # the event name of a batch
BATCH_INTERVAL = 0.05  # seconds between two batches to one client, at most 20/s
MAX_BATCH_INTERVAL = 1.0  # ... unless the interval would have to grow beyond this
REORDER_WAIT = 0.25  # how long an event waits for a smaller id still on its way
MAX_BACKLOG = 2000  # messages queued for one client before it is cut off
MAX_BATCH_BACKLOG = 100  # batches queued for one client before it is cut off

#: An event held for a smaller id: (event name, payload, rooms, sids to skip).
_Held = tuple[str, dict[str, Any], set[str], set[Any]]


@dataclass(slots=True)
class Client:
    """What the stream keeps of one connected client."""

    subscriptions: set[str] = field(default_factory=set)  # rooms; empty = everything
    buffer: list[tuple[str, dict[str, Any]]] | None = None  # set while catching up
    floor: int = 0  # skip live events up to this id (already sent from the database)
    batch: bool = False  # gets ``events`` lists, and is in no Socket.IO room
    lagging: bool = False  # cut off for falling behind: sent nothing until it has read

    @property
    def rooms(self) -> set[str]:
        return self.subscriptions or {ALL}


class Fanout(StreamHooks):
    """The client manager's local delivery, as described in the module docs."""

    def setup_stream(self, frame_budget: int) -> None:
        self.frame_budget = frame_budget  # batch frames a second, all clients together
        self.stream_lock = asyncio.Lock()
        self.clients: dict[str, Client] = {}
        # Events for batch clients, waiting for the next flush: (payload, rooms).
        self._pending: list[tuple[dict[str, Any], set[str]]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._batch_interval = BATCH_INTERVAL  # grows with the frames of the last flush
        self._flushes: set[asyncio.Task[None]] = set()
        # In-order delivery: the id expected next, and events that came before it.
        self._next_id: int | None = None
        self._held: dict[int, _Held] = {}
        self._hold_timer: asyncio.TimerHandle | None = None
        #: The newest stored event's id, or None when it cannot be read (set by the Stream).
        self.newest_event_id: Callable[[], Awaitable[int | None]] | None = None

    async def seed(self) -> None:
        """Expect next the event after the newest stored one: every event from here on
        arrives in order, the first one too. (Without a seed the first event to arrive
        sets the order, and a smaller id behind it would come late.)"""
        newest = None if self.newest_event_id is None else await self.newest_event_id()
        if newest is None:
            return
        async with self.stream_lock:
            self._next_id = max(self._next_id or 0, newest + 1)
            await self._release(all_held=False)

    async def deliver(
        self, event: str, data: dict[str, Any], rooms: set[str], skip: set[Any]
    ) -> None:
        event_id = data["event_id"]
        async with self.stream_lock:
            expected = self._next_id
            if expected is not None and event_id > expected:
                # An event with a smaller id may still be on its way (from another
                # replica, through the message queue): hold this one a moment.
                self._held[event_id] = (event, data, rooms, skip)
                if self._hold_timer is None:
                    loop = asyncio.get_running_loop()
                    self._hold_timer = loop.call_later(REORDER_WAIT, self._start_release)
                return
            await self._deliver_local(event, data, rooms, skip)
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
            expected = self._next_id or 0
            if not all_held and first > expected:
                break
            await self._deliver_local(*self._held.pop(first))
            self._next_id = max(expected, first + 1)
        if not self._held and self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    async def _deliver_local(
        self, event: str, data: dict[str, Any], rooms: set[str], skip: set[Any]
    ) -> None:
        """Local delivery of one event, with the seam bookkeeping. Lock held."""
        event_id = data["event_id"]
        skip = set(skip)
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

    # -- batches -------------------------------------------------------------------

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
                packets = self.encode(BATCH, batch)
                first = batch[0]["event_id"]
                for sid in sids:
                    eio_sid = self.eio_sid_of(sid)
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

    # -- sending -------------------------------------------------------------------

    async def _fan_out(self, event: str, data: Any, rooms: list[str], skip: set[Any]) -> None:
        """Encode once, then queue the packet on each recipient's socket in turn.

        AsyncManager.emit makes a task per recipient and waits for them all; queueing
        directly (Engine.IO's queue is unbounded, so nothing here waits) is several
        times cheaper with hundreds of clients, and a batch of events emitted back to
        back wakes each client's writer once instead of once per event. A client that
        stops reading grows its own queue, up to ``MAX_BACKLOG`` (see :meth:`_push`).
        """
        packets = self.encode(event, data)
        event_id = data["event_id"]
        for sid, eio_sid in self.recipients(rooms):
            if sid not in skip:
                await self._push(sid, eio_sid, packets, event_id, MAX_BACKLOG)

    async def _push(
        self, sid: str, eio_sid: str, packets: Packets, first_id: int, limit: int
    ) -> bool:
        """Queue ``packets`` (events from ``first_id`` on) for one client, unless it is
        too far behind (see the module docs). Whether they were queued."""
        socket = self.engine_socket(eio_sid)
        client = self.clients.get(sid)
        if socket is None or client is None:
            return False
        backlog = self.backlog(socket)
        if client.lagging:
            if backlog:
                return False
            client.lagging = False
            logger.info("Socket.IO client %s caught up: resync_required", sid)
            reason = "this client fell too far behind; events were dropped for it"
            resync = {"reason": reason, "last_event_id": first_id - 1}
            await self.queue(socket, self.encode("resync_required", resync))
        elif backlog >= limit:
            client.lagging = True
            logger.info("Socket.IO client %s is %d messages behind: cut off", sid, backlog)
            return False
        await self.queue(socket, packets)
        return True
