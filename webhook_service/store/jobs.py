"""Worktree clean-up jobs: queued, claimed by one replica at a time, finished."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from webhook_service.store.connections import _Connections
from webhook_service.store.outbox import CLAIM_LEASE
from webhook_service.store.records import _CLEANUP_COLUMNS, CleanupJob, _cleanup_job, utcnow
from webhook_service.store.unit_of_work import _ENQUEUE_CLEANUP


class _Jobs(_Connections):
    # -- worktree clean-up jobs -------------------------------------------------

    async def enqueue_cleanups(self, task_ids: Sequence[str]) -> None:
        """Queue a clean-up job for each task (one with a worktree path), or queue its
        finished job again; a pending job (claimed, or waiting for its next attempt)
        keeps its claim, its backoff and its leftover."""
        async with self.connection() as conn:
            await conn.executemany(_ENQUEUE_CLEANUP, [(t, utcnow()) for t in task_ids])

    async def claim_cleanups(
        self, now: datetime, limit: int, *, lease: timedelta = CLAIM_LEASE
    ) -> list[CleanupJob]:
        """Take up to ``limit`` due clean-up jobs for ``lease``: another replica skips
        them until then (the job's next attempt is moved past the lease), and takes
        them over if this one dies before finishing them."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "UPDATE cleanup_jobs SET next_attempt_at = $3 WHERE task_id IN ("
                " SELECT task_id FROM cleanup_jobs"
                " WHERE status = 'pending' AND next_attempt_at <= $1"
                f" ORDER BY next_attempt_at LIMIT $2{self.dialect.skip_locked})"
                f" RETURNING {_CLEANUP_COLUMNS}",
                now,
                limit,
                now + lease,
            )
        return sorted((_cleanup_job(r) for r in rows), key=lambda job: job.task_id)

    async def cleanup_jobs(self) -> list[CleanupJob]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_CLEANUP_COLUMNS} FROM cleanup_jobs ORDER BY created_at"
            )
        return [_cleanup_job(r) for r in rows]

    async def finish_cleanup(
        self,
        task_id: str,
        *,
        status: str,
        attempts: int,
        error: str | None,
        next_attempt_at: datetime,
        leftover: tuple[str, str | None] | None = None,
    ) -> None:
        """Record an attempt's end. ``leftover`` (repository, branch): the worktree is
        gone, what a retry must finish (kept once set, until the job is queued anew)."""
        repository, branch = leftover if leftover is not None else (None, None)
        async with self.connection() as conn:
            await conn.execute(
                "UPDATE cleanup_jobs SET status = $2, attempts = $3, last_error = $4,"
                " next_attempt_at = $5, updated_at = $6,"
                " repository = COALESCE($7, repository),"
                " branch = CASE WHEN $7::text IS NULL THEN branch ELSE $8 END"
                " WHERE task_id = $1",
                task_id,
                status,
                attempts,
                error,
                next_attempt_at,
                utcnow(),
                repository,
                branch,
            )

    async def done_tasks_with_worktrees(self) -> list[tuple[str, str]]:
        """DONE tasks with a worktree path, except those with a job pending or refused."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT t.id, t.worktree_path FROM tasks t"
                " LEFT JOIN cleanup_jobs j ON j.task_id = t.id"
                " WHERE t.status = 'DONE' AND t.worktree_path IS NOT NULL"
                " AND (j.status IS NULL OR j.status NOT IN ('pending', 'refused'))"
            )
        return [(str(r["id"]), str(r["worktree_path"])) for r in rows]
