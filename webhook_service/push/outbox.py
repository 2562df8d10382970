"""The outbox dispatcher: emits stored events after their transaction committed.

Events reach it two ways: straight from the reconciler after each commit (the fast
path), and from the events table, for rows committed but never marked emitted (a crash
between commit and emit, or an emit that failed). Either way an event is emitted
from its stored row, in id order, then marked emitted. Delivery is at-least-once:
clients drop repeats by ``event_id``.

Across replicas, each event is emitted by one dispatcher: a fresh event belongs to
the replica that committed it, and a sweep only takes events it has claimed
(``Store.claim_unemitted_events``): those whose writer never marked them, once fresh,
and those whose claim ran out because the claiming replica died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence

from webhook_service.periodic import Periodic
from webhook_service.reconciler import Clock
from webhook_service.store import Store, StoredEvent, StoreUnavailable, log_unavailable, utcnow

logger = logging.getLogger(__name__)

Emit = Callable[[StoredEvent], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        store: Store,
        emit: Emit,
        *,
        sweep_interval: float = 5.0,
        mark_interval: float = 0.1,
        clock: Clock = utcnow,
        claimer: str | None = None,
    ) -> None:
        self._store = store
        #: This dispatcher's name in the events it claims (unique per process).
        self.claimer = claimer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._emit = emit
        self._clock = clock
        self._queue: asyncio.Queue[StoredEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._sweeper = Periodic("outbox-sweep", sweep_interval, self._sweep_quietly)
        # Marks need not survive a crash: an unmarked event is emitted again.
        self._lease = store.lease(relaxed=True)
        self._in_flight: set[int] = set()  # queued or emitted, not yet marked
        self._unmarked: list[int] = []  # emitted, waiting for the next mark
        self._mark_lock = asyncio.Lock()
        self._marker = Periodic("outbox-marks", mark_interval, self._mark)
        self.emitted = 0
        self.last_emitted_id = 0

    def notify(self, events: Sequence[StoredEvent]) -> None:
        """Hand over events just committed (called by the reconciler)."""
        for event in events:
            if event.id not in self._in_flight:
                self._in_flight.add(event.id)
                self._queue.put_nowait(event)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")
            self._sweeper.start()
            self._marker.start()

    async def stop(self) -> None:
        """Emit what is queued, then stop."""
        if self._task is None:
            return
        await self._sweeper.stop()
        await self._queue.join()
        self._task.cancel()  # idle: waiting for the queue
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._marker.stop()
        await self._mark()
        await self._lease.drop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def sweep(self) -> int:
        """Claim and queue every stored event left unemitted; returns how many."""
        after = 0
        found = 0
        while True:
            # Under the mark lock: an event read as unmarked just before its mark
            # commits is still in flight when notified, so it is not emitted twice.
            async with self._mark_lock:
                events = await self._store.claim_unemitted_events(
                    self.claimer, self._clock(), limit=1000, after=after
                )
                self.notify(events)
            if not events:
                return found
            found += len(events)
            after = events[-1].id

    async def _sweep_quietly(self) -> None:
        try:
            await self.sweep()
        except StoreUnavailable as exc:
            log_unavailable(logger, exc, "outbox sweep failed: %s", exc)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._dispatch(batch)
            except Exception:
                # Left unmarked, the events are emitted again by the next sweep.
                logger.exception("emitting %d events failed", len(batch))
                self._in_flight.difference_update(e.id for e in batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _dispatch(self, batch: list[StoredEvent]) -> None:
        unique = {e.id: e for e in batch}
        for event_id in sorted(unique):
            await self._emit(unique[event_id])
            self._unmarked.append(event_id)
            self.emitted += 1
            self.last_emitted_id = max(self.last_emitted_id, event_id)

    async def _mark(self) -> None:
        """Mark what was emitted since the last mark, in one statement."""
        async with self._mark_lock:
            ids, self._unmarked = self._unmarked, []
            if not ids:
                return
            try:
                await self._store.mark_emitted(ids, self._clock(), lease=self._lease)
            except StoreUnavailable as exc:
                log_unavailable(logger, exc, "marking %d events emitted failed: %s", len(ids), exc)
            finally:
                # Marked, or left for the sweep to emit again.
                self._in_flight.difference_update(ids)
