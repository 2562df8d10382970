"""Worktree clean-up jobs: queued, claimed by one replica at a time, finished; the
failing ones listed for the operator, and made due again when the operator says so."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from webhook_service.store.connections import _Connections
from webhook_service.store.outbox import CLAIM_LEASE
from webhook_service.store.records import (
    _CLEANUP_COLUMNS,
    CleanupJob,
    _cleanup_job,
    _time,
    utcnow,
)
from webhook_service.store.unit_of_work import _ENQUEUE_CLEANUP


@dataclass(frozen=True, slots=True)
class ScheduledCleanup:
    """A clean-up job and when it is next tried (for a pending job; a failed or refused
    one keeps the time of its last attempt), as the operator's console shows it."""

    job: CleanupJob
    next_attempt_at: datetime


_SCHEDULED_COLUMNS = f"{_CLEANUP_COLUMNS}, next_attempt_at"


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

    # -- the operator's view ------------------------------------------------------

    async def failing_cleanups(self) -> list[ScheduledCleanup]:
        """Jobs not done whose last attempt failed: waiting for a retry (pending),
        failed for good, or refused; most recently failed first."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_SCHEDULED_COLUMNS} FROM cleanup_jobs"
                " WHERE attempts > 0 AND last_error IS NOT NULL AND status <> 'done'"
                " ORDER BY updated_at DESC, task_id"
            )
        return [_scheduled(r) for r in rows]

    async def cleanup_job(self, task_id: str) -> ScheduledCleanup | None:
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_SCHEDULED_COLUMNS} FROM cleanup_jobs WHERE task_id = $1", task_id
            )
        return _scheduled(rows[0]) if rows else None

    async def retry_cleanup(self, task_id: str, now: datetime) -> ScheduledCleanup | None:
        """Make a job that is not done due at ``now``: pending again if it had failed for
        good or been refused (the operator fixed the cause), its attempts and last error
        kept (one more failure of a job past its attempts fails it for good again).
        None when the task has no such job. A job a runner holds right now (claimed) is
        made due too: a second run of a clean-up finds the worktree gone, which is done."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "UPDATE cleanup_jobs SET status = 'pending', next_attempt_at = $2,"
                " updated_at = $2 WHERE task_id = $1 AND status <> 'done'"
                f" RETURNING {_SCHEDULED_COLUMNS}",
                task_id,
                now,
            )
        return _scheduled(rows[0]) if rows else None


def _scheduled(r: Mapping[str, Any]) -> ScheduledCleanup:
    return ScheduledCleanup(_cleanup_job(r), _time(r["next_attempt_at"]))
