"""What several store tests build: an event draft, a stored delivery, and other
replicas' stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from webhook_service.core.model import EventDraft
from webhook_service.store import DeliveryRecord, Store, utcnow


def draft(n: int) -> EventDraft:
    return EventDraft("pr_status_change", "o/r", None, {"type": "pr_status_change", "n": n})


def delivery(guid: str) -> DeliveryRecord:
    """An applied ``opened`` delivery about octo/two#2."""
    now = utcnow()
    return DeliveryRecord(
        guid, "pull_request", "opened", None, None, "octo/two", 2, {}, b"{}", now, now,
        "applied", "created",
    )  # fmt: skip


@asynccontextmanager
async def second_store(database_url: str) -> AsyncIterator[Store]:
    """Another replica's store on the same database."""
    other = Store(database_url)
    await other.connect()
    try:
        yield other
    finally:
        await other.disconnect()


@asynccontextmanager
async def connected_stores(database_url: str, count: int) -> AsyncIterator[list[Store]]:
    """``count`` stores on one database, as separate processes would have, all
    disconnected when the block ends, however it ends."""
    async with AsyncExitStack() as stack:
        stores = []
        for _ in range(count):
            store = Store(database_url)
            await store.connect()
            stack.push_async_callback(store.disconnect)
            stores.append(store)
        yield stores
