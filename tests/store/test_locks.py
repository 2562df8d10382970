"""The writer's locks (store/locks.py): on PostgreSQL, batches about different pull
requests write at once and batches about the same one take turns; events are numbered
in commit order; an exclusive writer waits for every batch. SQLite has one writer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests._postgres import create_database, drop_database
from tests.store.shared import connected_stores, delivery, draft
from webhook_service.store import Changes, Store, UnitOfWork, utcnow
from webhook_service.store.locks import pull_locks

PR1 = ("octo/one", 1)
PR2 = ("octo/two", 2)


@asynccontextmanager
async def stores(url: str, count: int) -> AsyncIterator[list[Store]]:
    """``count`` stores on one migrated database, as separate processes would have."""
    async with connected_stores(url, count) as opened:
        await opened[0].migrate()
        yield opened


@asynccontextmanager
async def batch(store: Store, *pulls: tuple[str, int]) -> AsyncIterator[UnitOfWork]:
    """A reconciling batch's transaction about ``pulls``."""
    async with store.connection() as conn, store.unit_of_work(conn, pulls=list(pulls)) as uow:
        yield uow


async def finishes(awaitable: asyncio.Task[object], within: float = 0.3) -> bool:
    """Whether ``awaitable`` completes within ``within`` seconds (it keeps running)."""
    done, _ = await asyncio.wait({awaitable}, timeout=within)
    return bool(done)


async def test_batches_about_different_prs_write_at_once(database_url: str) -> None:
    async with stores(database_url, 2) as (a, b):

        async def other_pr() -> None:
            async with batch(b, PR2) as uow:
                await uow.save_deliveries([])

        async with batch(a, PR1):
            other = asyncio.create_task(other_pr())
            # PostgreSQL: PR2's batch commits while PR1's is open. SQLite: one writer.
            assert await finishes(other) is a.is_postgres
        await other


async def test_batches_about_one_pr_take_turns(database_url: str) -> None:
    async with stores(database_url, 2) as (a, b):
        order: list[str] = []

        async def same_pr() -> None:
            async with batch(b, PR2, PR1):
                order.append("second")

        async with batch(a, PR1, ("octo/three", 3)):
            second = asyncio.create_task(same_pr())
            assert not await finishes(second)
            order.append("first")
        await second
        assert order == ["first", "second"]


async def test_event_ids_follow_commit_order(database_url: str) -> None:
    """The batch that inserts events first holds the events lock until it commits: a
    batch about another PR inserts its events after that, with greater ids, so a
    reader that has seen an id has seen every smaller one it will ever see."""
    async with stores(database_url, 2) as (a, b):

        async def later() -> list[int]:
            async with batch(b, PR2) as uow:
                return [e.id for e in await uow.insert_events([draft(2)], utcnow())]

        async with batch(a, PR1) as uow:
            first = [e.id for e in await uow.insert_events([draft(1)], utcnow())]
            second = asyncio.create_task(later())
            assert not await finishes(second)
        assert await second > first
        assert [e.id for e in await a.events_since(0, 10)] == [*first, *await second]


async def test_a_batch_without_events_does_not_wait_for_the_events_lock(
    database_url: str,
) -> None:
    async with stores(database_url, 2) as (a, b):

        async def no_events() -> None:
            async with batch(b, PR2) as uow:
                await uow.save_deliveries([delivery("g-2")])

        async with batch(a, PR1) as uow:
            await uow.insert_events([draft(1)], utcnow())
            other = asyncio.create_task(no_events())
            assert await finishes(other) is a.is_postgres  # SQLite: one writer
        await other


async def test_a_batch_writes_its_rows_before_it_waits_for_the_events_lock(
    postgres_base_url: str,
) -> None:
    """So the lock everybody takes covers only the events and the commit. Seen from
    outside: while B waits, inserting B's GUID waits for B's uncommitted row.
    (PostgreSQL only: SQLite's one writer makes B wait before anything.)"""
    database_url = await create_database(postgres_base_url)
    try:
        await _rows_before_the_events_lock(database_url)
    finally:
        await drop_database(database_url)


async def _rows_before_the_events_lock(database_url: str) -> None:
    async with stores(database_url, 2) as (a, b):

        async def rows_and_events() -> None:
            async with batch(b, PR2) as uow:
                await uow.write(Changes(deliveries=[delivery("g-2")], events=[draft(2)]), utcnow())

        async with batch(a, PR1) as uow:
            await uow.insert_events([draft(1)], utcnow())
            waiting = asyncio.create_task(rows_and_events())
            assert not await finishes(waiting)
            raw = await asyncpg.connect(database_url.partition("?")[0])
            try:
                await raw.execute("SET lock_timeout = '200ms'")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await raw.execute(
                        "INSERT INTO webhook_deliveries (guid, event, headers, body,"
                        " received_at, outcome) VALUES ('g-2', 'x', '{}', '', now(), 'x')"
                        " ON CONFLICT DO NOTHING"
                    )
            finally:
                await raw.close()
        await waiting


async def test_an_exclusive_writer_waits_for_every_batch(database_url: str) -> None:
    async with stores(database_url, 2) as (a, b):

        async def exclusive() -> None:
            async with b.transaction() as uow:
                await uow.save_deliveries([])

        async with batch(a, PR1):
            waiting = asyncio.create_task(exclusive())
            assert not await finishes(waiting)
        await waiting


def test_pull_locks_are_stable_sorted_and_distinct() -> None:
    keys = pull_locks([PR2, PR1, PR2])
    assert keys == sorted(keys) and len(keys) == 2
    assert pull_locks([PR1]) == pull_locks([PR1])  # the same in every process
    assert all(-(2**63) <= k < 2**63 for k in keys)
