"""The outbox on both backends: event ids, emitting what a crash left, and the claims
that split events between replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.store.shared import draft, second_store
from webhook_service.store import (
    CLAIM_LEASE,
    FRESH_EVENT,
    Store,
    StoredEvent,
    utcnow,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def test_event_ids_keep_increasing_after_every_event_is_pruned(store: Store) -> None:
    async with store.transaction() as uow:
        first = await uow.insert_events([draft(1), draft(2)], NOW - timedelta(days=30))
    await store.mark_emitted([e.id for e in first], NOW)
    await store.prune(NOW)
    assert await store.events_since(0, 10) == []
    async with store.transaction() as uow:
        later = await uow.insert_events([draft(3)], NOW)
    assert later[0].id > first[-1].id


async def _events(store: Store, count: int) -> list[StoredEvent]:
    async with store.transaction() as uow:
        return await uow.insert_events([draft(n) for n in range(count)], utcnow())


async def test_fresh_events_are_left_to_the_replica_that_committed_them(store: Store) -> None:
    stored = await _events(store, 3)
    now = utcnow()
    assert await store.claim_unemitted_events("b", now, 10) == []
    later = now + FRESH_EVENT + timedelta(seconds=1)
    claimed = await store.claim_unemitted_events("b", later, 10)
    assert [e.id for e in claimed] == [e.id for e in stored]


async def test_a_claim_keeps_other_replicas_off_until_it_runs_out(store: Store) -> None:
    stored = await _events(store, 4)
    t = utcnow() + FRESH_EVENT + timedelta(seconds=1)
    assert len(await store.claim_unemitted_events("a", t, 10)) == 4
    # Another claimer gets nothing while the claim runs; the claimer itself can
    # claim again (an emit of its own that failed is retried by its next sweep).
    assert await store.claim_unemitted_events("b", t + timedelta(seconds=1), 10) == []
    again = await store.claim_unemitted_events("a", t + timedelta(seconds=1), 10)
    assert [e.id for e in again] == [e.id for e in stored]
    # Marked emitted: nobody claims it, ever.
    await store.mark_emitted([stored[0].id], t)
    expired = t + CLAIM_LEASE + timedelta(seconds=5)
    taken_over = await store.claim_unemitted_events("b", expired, 10)
    assert [e.id for e in taken_over] == [e.id for e in stored[1:]]
    assert await store.claim_unemitted_events("a", expired, 10) == []


async def test_concurrent_claims_split_the_events_between_replicas(
    store: Store, database_url: str
) -> None:
    stored = await _events(store, 400)
    t = utcnow() + FRESH_EVENT + timedelta(seconds=1)
    async with second_store(database_url) as other:
        batches = await asyncio.gather(
            *((store if i % 2 else other).claim_unemitted_events(f"r{i}", t, 25) for i in range(16))
        )
    ids = [e.id for batch in batches for e in batch]
    assert len(ids) == len(set(ids)), "an event was claimed twice"
    assert sorted(ids) == [e.id for e in stored]
