"""The sync worker's lead on both backends: one replica leads, another takes over."""

from __future__ import annotations

import asyncio

from tests.store.shared import second_store
from webhook_service.store import (
    Leadership,
    Store,
)


async def test_one_replica_leads_and_another_takes_over_when_it_lets_go(
    store: Store, database_url: str
) -> None:
    async with second_store(database_url) as other:
        a, b = Leadership(store), Leadership(other)
        try:
            assert await a.hold() is True
            assert await b.hold() is False
            assert await a.hold() is True, "holding it again keeps it"
            await a.release()
            assert a.held is False
            assert await b.hold() is True
            assert await a.hold() is False
        finally:
            await a.release()
            await b.release()


async def test_the_lead_is_lost_with_the_database_session_and_taken_over(
    store: Store, database_url: str
) -> None:
    """The leader's connection dies (PostgreSQL restarted, the replica killed): its
    lock goes with the session, another replica takes the lead, and the old leader
    notices it no longer leads."""
    if not store.is_postgres:
        # SQLite's lead is a flock that the kernel drops when the process dies; a
        # process that is not dead keeps it. What can be shown here: released by close.
        a, b = Leadership(store), Leadership(store)
        assert await a.hold() and not await b.hold()
        await a.release()
        assert await b.hold()
        await b.release()
        return
    async with second_store(database_url) as other:
        a, b = Leadership(store), Leadership(other)
        try:
            assert await a.hold()
            async with other.connection() as conn:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                    " AND database = (SELECT oid FROM pg_database"
                    "                 WHERE datname = current_database())"
                )
            assert killed == 1
            for _ in range(50):  # the backend exits asynchronously
                if await b.hold():
                    break
                await asyncio.sleep(0.05)
            assert b.held
            assert await a.hold() is False
        finally:
            await a.release()
            await b.release()
