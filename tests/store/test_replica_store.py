"""What replicas share through the store, on both backends: outbox claims, clean-up
job claims, and the lead of the sync worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from webhook_service.core.rules import EventDraft, TaskStatus
from webhook_service.store import (
    CLAIM_LEASE,
    FRESH_EVENT,
    Leadership,
    Store,
    StoredEvent,
    TaskRecord,
    utcnow,
)


def _draft(n: int) -> EventDraft:
    return EventDraft("pr_status_change", "o/r", None, {"type": "pr_status_change", "n": n})


async def _events(store: Store, count: int) -> list[StoredEvent]:
    async with store.transaction() as uow:
        return await uow.insert_events([_draft(n) for n in range(count)], utcnow())


@asynccontextmanager
async def _second(database_url: str) -> AsyncIterator[Store]:
    """Another replica's store on the same database."""
    other = Store(database_url)
    await other.connect()
    try:
        yield other
    finally:
        await other.disconnect()


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
    async with _second(database_url) as other:
        batches = await asyncio.gather(
            *((store if i % 2 else other).claim_unemitted_events(f"r{i}", t, 25) for i in range(16))
        )
    ids = [e.id for batch in batches for e in batch]
    assert len(ids) == len(set(ids)), "an event was claimed twice"
    assert sorted(ids) == [e.id for e in stored]


async def _done_task(store: Store, task_id: str) -> None:
    now = utcnow()
    await store.create_task(
        TaskRecord(
            id=task_id,
            title=task_id,
            status=TaskStatus.DONE,
            repository="o/r",
            branch=f"task/{task_id}",
            worktree_path=f"/worktrees/{task_id}",
            created_at=now,
            updated_at=now,
        )
    )


async def test_cleanup_jobs_are_claimed_by_one_replica_and_taken_over_after_the_lease(
    store: Store, database_url: str
) -> None:
    ids = [f"t{n}" for n in range(6)]
    for task_id in ids:
        await _done_task(store, task_id)
    await store.enqueue_cleanups(ids)
    now = utcnow()
    async with _second(database_url) as other:
        first, second = await asyncio.gather(
            store.claim_cleanups(now, 4), other.claim_cleanups(now, 4)
        )
        claimed = [j.task_id for j in first + second]
        assert sorted(claimed) == ids, "every due job is claimed once"
        assert await other.claim_cleanups(now + timedelta(seconds=1), 10) == []
        # The claiming replica died without finishing: after the lease, another runs them.
        late = now + CLAIM_LEASE + timedelta(seconds=1)
        assert sorted(j.task_id for j in await other.claim_cleanups(late, 10)) == ids


async def test_queueing_a_job_again_leaves_a_pending_one_alone(store: Store) -> None:
    """The leak scan queues jobs again: a job being carried out keeps its claim (no
    other replica takes it meanwhile); a finished one is queued again."""
    await _done_task(store, "busy")
    await _done_task(store, "finished")
    await store.enqueue_cleanups(["busy", "finished"])
    now = utcnow()
    assert len(await store.claim_cleanups(now, 10)) == 2
    await store.finish_cleanup(
        "finished", status="done", attempts=1, error=None, next_attempt_at=now
    )
    await store.enqueue_cleanups(["busy", "finished"])
    later = now + timedelta(seconds=1)
    assert [j.task_id for j in await store.claim_cleanups(later, 10)] == ["finished"]
    jobs = {j.task_id: j for j in await store.cleanup_jobs()}
    assert jobs["busy"].status == jobs["finished"].status == "pending"
    assert jobs["finished"].attempts == 0


async def test_one_replica_leads_and_another_takes_over_when_it_lets_go(
    store: Store, database_url: str
) -> None:
    async with _second(database_url) as other:
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
    async with _second(database_url) as other:
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
