"""Worktree clean-up jobs: when a task becomes DONE, remove its git worktree.

The reconciler records a job in the same transaction that moves the task to DONE;
this runner carries the jobs out, retrying failures with exponential backoff. It is
also level-triggered: :meth:`CleanupRunner.enqueue_leaked` (at start, then every
``SYNC_INTERVAL``, like a sync cycle) finds DONE tasks whose worktree still exists, so
a lost merge event cannot leak a worktree. The git work itself is in
:mod:`webhook_service.tasks.worktrees`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from webhook_service.periodic import Periodic
from webhook_service.store import CleanupJob, Store, StoreUnavailable, log_unavailable, utcnow
from webhook_service.tasks.worktrees import (
    CleanupError,
    Leftover,
    cleanup_worktree,
    finish_removal,
    worktree_exists,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
_BASE_DELAY = 30.0  # seconds; doubled on every failed attempt, capped at an hour


class CleanupRunner:
    def __init__(
        self,
        store: Store,
        *,
        root: Path | None,
        delete_branch: bool,
        scan_interval: float,
        interval: float = 5.0,
    ) -> None:
        self._store = store
        self._root = root
        self._delete_branch = delete_branch
        self._scan_interval = scan_interval
        self._last_scan: float | None = None
        self._periodic = Periodic("worktree-cleanup", interval, self._tick)
        self._lock = asyncio.Lock()  # one job at a time, whoever asks (tick, API, tests)
        self.outcomes: dict[str, int] = {"done": 0, "retry": 0, "failed": 0, "refused": 0}

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    @property
    def running(self) -> bool:
        return self._periodic.running

    async def _tick(self) -> None:
        now = utcnow().timestamp()
        if self._last_scan is None or now - self._last_scan >= self._scan_interval:
            try:
                await self.enqueue_leaked()
                self._last_scan = now
            except StoreUnavailable as exc:
                log_unavailable(logger, exc, "scanning for leaked worktrees failed: %s", exc)
        await self.run_due()

    async def run_due(self) -> int:
        """Carry out every job that is due; returns how many were attempted."""
        async with self._lock:
            try:
                jobs = await self._store.claim_cleanups(utcnow(), limit=20)
            except StoreUnavailable as exc:
                log_unavailable(logger, exc, "clean-up jobs unavailable: %s", exc)
                return 0
            for job in jobs:
                await self._run(job)
            return len(jobs)

    async def enqueue_leaked(self) -> int:
        """Queue a job for every DONE task whose worktree still exists.

        Under the same lock as the jobs: a scan that saw a worktree just before a job
        removed it would otherwise queue that job again once it is done."""
        if self._root is None:
            return 0
        async with self._lock:
            leaked = [
                task_id
                for task_id, path in await self._store.done_tasks_with_worktrees()
                if await worktree_exists(path, root=self._root)
            ]
            if leaked:
                logger.info("queueing clean-up of %d leaked worktrees", len(leaked))
                await self._store.enqueue_cleanups(leaked)
        return len(leaked)

    async def _run(self, job: CleanupJob) -> None:
        attempts = job.attempts + 1
        log = {"task_id": job.task_id, "worktree": job.worktree_path}
        if self._root is None:
            await self._finish(job, "refused", attempts, "WORKTREE_ROOT is not set")
            return
        try:
            if job.repository is not None:  # removed by an earlier attempt: finish it
                await finish_removal(Leftover(Path(job.repository), job.branch))
                logger.info("finished the clean-up of a removed worktree", extra=log)
            else:
                result = await cleanup_worktree(
                    job.worktree_path, root=self._root, delete_branch=self._delete_branch
                )
                state = "removed" if result.removed else "already gone"
                logger.info("worktree %s", state, extra=log)
        except CleanupError as exc:
            leftover = (
                (str(exc.leftover.repository), exc.leftover.branch) if exc.leftover else None
            )
            if not exc.retryable:
                logger.warning("worktree clean-up refused: %s", exc, extra=log)
                await self._finish(job, "refused", attempts, str(exc))
            elif attempts >= MAX_ATTEMPTS:
                logger.error("worktree clean-up failed for good: %s", exc, extra=log)
                await self._finish(job, "failed", attempts, str(exc), leftover=leftover)
            else:
                delay = min(_BASE_DELAY * 2 ** (attempts - 1), 3600.0)
                logger.warning("worktree clean-up failed, retrying in %.0f s: %s", delay, exc)
                await self._finish(
                    job, "pending", attempts, str(exc), delay, outcome="retry", leftover=leftover
                )
            return
        await self._finish(job, "done", attempts, None)

    async def _finish(
        self,
        job: CleanupJob,
        status: str,
        attempts: int,
        error: str | None,
        delay: float = 0.0,
        *,
        outcome: str | None = None,
        leftover: tuple[str, str | None] | None = None,
    ) -> None:
        self.outcomes[outcome or status] += 1
        await self._store.finish_cleanup(
            job.task_id,
            status=status,
            attempts=attempts,
            error=error,
            next_attempt_at=utcnow() + timedelta(seconds=delay),
            leftover=leftover,
        )
