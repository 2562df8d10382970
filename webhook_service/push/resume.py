"""Resume: catching a client up from the database, then joining it to the live stream
with no gap and no duplicate at the seam.

A client that connects with ``since`` first gets every stored event with id > since,
in order (in pages of ``_PAGE``), then the live stream. Past the retention bound it
gets ``resync_required`` instead (reload from the HTTP API, then live).

How the seam is made exact: while the client catches up, :class:`~.fanout.Fanout`
appends every event delivered locally to its buffer (under the same lock as the
delivery). When the database has nothing newer, the buffer's events above the last
one sent are sent, and the client joins its rooms, all under that lock. Events it
already got from the database and that the dispatcher has yet to emit are skipped
for it (its ``floor``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from webhook_service.push.fanout import BATCH, Client, Fanout
from webhook_service.push.rooms import rooms_for
from webhook_service.store import Store, StoreUnavailable, log_unavailable

logger = logging.getLogger(__name__)

_PAGE = 500

#: Puts a client in its rooms: it then gets live events (the stream's ``_join``).
Join = Callable[[str, Client, set[str]], Awaitable[None]]


class Resume:
    """Catches clients up from the store (see the module docs)."""

    def __init__(self, store: Store, manager: Fanout, join: Join) -> None:
        self._store = store
        self._manager = manager
        self._join = join

    async def catch_up(self, sid: str, client: Client, since: int) -> None:
        """Send the client what it missed after ``since``, then make it live. Its
        ``buffer`` was set when it connected: deliveries from then on are in it."""
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

    async def _replay(self, sid: str, client: Client, since: int) -> int | None:
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
        self, sid: str, client: Client, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Send events to one client: as one batch, or one message each."""
        if client.batch:
            if events:
                await self._manager.send_to(sid, BATCH, [data for _, data in events])
            return
        for event, data in events:
            await self._manager.send_to(sid, event, data)
