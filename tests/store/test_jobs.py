"""Clean-up jobs on both backends: one replica claims a job, and a lease that runs
out hands it to another."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.store.shared import second_store
from webhook_service.core.model import TaskStatus
from webhook_service.store import (
    CLAIM_LEASE,
    Store,
    TaskRecord,
    utcnow,
)


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
    async with second_store(database_url) as other:
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
