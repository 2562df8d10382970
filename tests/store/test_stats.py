"""Per-minute counters on both backends: the upsert adds (two replicas at once both
count), the series of a window, and pruning."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.store.shared import second_store
from webhook_service.store import Store, minute_of

T0 = datetime(2026, 3, 1, 10, 30, 5, 123456, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def test_counts_of_one_minute_add_up_across_replicas(store: Store, database_url: str) -> None:
    async with second_store(database_url) as other:
        await asyncio.gather(
            *(
                replica.add_minute_counts(T0 + timedelta(seconds=n % 50), {"deliveries.applied": 1})
                for n in range(40)
                for replica in (store, other)
            ),
            other.add_minute_counts(T0, {"deliveries.applied": 5, "github.rest": 3}),
        )
    series = await store.minute_counts(T0 - MINUTE)
    start = minute_of(T0)
    assert series == {"deliveries.applied": [(start, 85)], "github.rest": [(start, 3)]}


async def test_zero_counts_write_no_row(store: Store) -> None:
    await store.add_minute_counts(T0, {"deliveries.failed": 0})
    await store.add_minute_counts(T0, {})
    assert await store.minute_counts(T0 - MINUTE) == {}


async def test_series_start_at_the_given_minute_oldest_first(store: Store) -> None:
    for minutes, value in ((0, 1), (2, 4), (3, 2), (-5, 7)):
        await store.add_minute_counts(T0 + minutes * MINUTE, {"deliveries.ignored": value})
    await store.add_minute_counts(T0 + 2 * MINUTE, {"github.graphql": 9})
    start = minute_of(T0)
    # ``since`` inside a minute includes that minute.
    assert await store.minute_counts(T0 + timedelta(seconds=30)) == {
        "deliveries.ignored": [(start, 1), (start + 2 * MINUTE, 4), (start + 3 * MINUTE, 2)],
        "github.graphql": [(start + 2 * MINUTE, 9)],
    }
    assert minute_of(T0) == datetime(2026, 3, 1, 10, 30, tzinfo=UTC)


async def test_prune_deletes_the_minutes_before_the_cut(store: Store) -> None:
    for minutes in range(5):
        await store.add_minute_counts(T0 + minutes * MINUTE, {"a": 1, "b": 2})
    assert await store.prune_minutes(minute_of(T0) + 2 * MINUTE) == 4
    series = await store.minute_counts(T0 - 10 * MINUTE)
    assert [m for m, _ in series["a"]] == [minute_of(T0) + n * MINUTE for n in (2, 3, 4)]
    assert await store.prune_minutes(minute_of(T0)) == 0
