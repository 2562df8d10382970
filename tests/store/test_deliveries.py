"""Stored deliveries on both backends: retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.store.shared import draft
from webhook_service.store import DeliveryRecord, Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _delivery(guid: str, received_at: datetime) -> DeliveryRecord:
    return DeliveryRecord(
        guid=guid,
        event="ping",
        action=None,
        hook_id=1,
        installation_id=None,
        repository=None,
        pr_number=None,
        headers={"x-github-event": "ping"},
        body=b"{}",
        received_at=received_at,
        processed_at=received_at,
        outcome="ignored",
        detail="ping",
    )


async def test_prune_deletes_old_deliveries_and_emitted_events_only(store: Store) -> None:
    old, recent = NOW - timedelta(days=8), NOW - timedelta(days=1)
    async with store.transaction() as uow:
        await uow.save_deliveries([_delivery("old", old), _delivery("recent", recent)])
        emitted_old = await uow.insert_events([draft(1)], old)
        await uow.insert_events([draft(2)], old)  # never emitted: kept
        await uow.insert_events([draft(3)], recent)
    await store.mark_emitted([emitted_old[0].id], old)

    assert await store.prune(NOW - timedelta(days=7)) == (1, 1)

    assert await store.get_delivery("old") is None
    assert await store.get_delivery("recent") is not None
    assert [e.payload["n"] for e in await store.events_since(0, 10)] == [2, 3]
