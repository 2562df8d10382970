"""What several store tests build: an event draft, and another replica's store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from webhook_service.core.model import EventDraft
from webhook_service.store import Store


def draft(n: int) -> EventDraft:
    return EventDraft("pr_status_change", "o/r", None, {"type": "pr_status_change", "n": n})


@asynccontextmanager
async def second_store(database_url: str) -> AsyncIterator[Store]:
    """Another replica's store on the same database."""
    other = Store(database_url)
    await other.connect()
    try:
        yield other
    finally:
        await other.disconnect()
