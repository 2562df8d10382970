"""The outbox: events committed but never emitted are emitted, in id order, to
connected clients too."""

from __future__ import annotations

import asyncio

from tests.helpers import make_settings
from tests.servers import uvicorn_server
from tests.sockets import connected
from webhook_service.core.model import EventDraft
from webhook_service.push.outbox import Dispatcher
from webhook_service.store import Store, StoredEvent, utcnow


async def test_events_committed_but_never_emitted_reach_connected_clients(
    database_url: str,
) -> None:
    """What a process that died between commit and emit left behind: rows in the
    outbox that no dispatcher was told about. The outbox sweep emits them."""
    async with (
        uvicorn_server(make_settings(database_url)) as (service, url),
        connected(url) as client,
    ):
        async with service.store.transaction() as uow:  # committed, never notified
            orphans = await uow.insert_events(
                [
                    EventDraft("pr_status_change", "o/r", None, {"type": "pr_status_change"})
                    for _ in range(3)
                ],
                utcnow(),
            )
        await client.wait_for(3)  # the sweep runs every 5 s
        assert client.ids == [e.id for e in orphans]
        # ...and they are marked emitted (polled: the mark is a database row).
        for _ in range(100):
            if not await service.store.unemitted_events(0, 10):
                break
            await asyncio.sleep(0.05)
        assert await service.store.unemitted_events(0, 10) == []


async def test_dispatcher_emits_events_committed_but_never_emitted(store: Store) -> None:
    """What a crash between commit and emit leaves behind is emitted on start."""
    async with store.transaction() as uow:
        drafts = [
            EventDraft("pr_status_change", "o/r", None, {"type": "pr_status_change", "n": n})
            for n in range(5)
        ]
        stored = await uow.insert_events(drafts, utcnow())
    emitted: list[StoredEvent] = []

    async def emit(event: StoredEvent) -> None:
        emitted.append(event)

    dispatcher = Dispatcher(store, emit, sweep_interval=0.05)
    dispatcher.start()
    try:
        for _ in range(200):
            if len(emitted) >= 5 and not await store.unemitted_events(0, 10):
                break
            await asyncio.sleep(0.01)
    finally:
        await dispatcher.stop()
    assert [e.id for e in emitted] == [e.id for e in stored]
    assert await store.unemitted_events(0, 10) == []
