"""The :class:`Reconciler`: the queue of jobs and the workers that apply them in batches
(group commit), and the operator's entry points beside them.

Whatever is waiting when a transaction starts goes into that transaction: a batch costs
one durable commit however many deliveries it carries. One bad job never fails the
others (the batch is retried job by job), and every job's future is settled, whatever
happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from webhook_service.core.model import Decision, Observation, Outcome, Source, TaskStatus
from webhook_service.reconciler.applying import TaskBranches, apply_batch, delivery_record
from webhook_service.reconciler.edits import (
    check_fields,
    decide_link_in,
    write_decision,
    write_task_edit,
)
from webhook_service.reconciler.handoff import log_change, settle
from webhook_service.reconciler.jobs import Clock, DeliveryStatus, Job, Result
from webhook_service.store import (
    Changes,
    Connection,
    ConnectionLease,
    Store,
    StoredEvent,
    StoreUnavailable,
    TaskRecord,
    utcnow,
)

#: The room's logger, as before it was a package: log lines keep their logger name.
logger = logging.getLogger("webhook_service.reconciler")


class Reconciler:
    """Applies jobs in batches; one per store connection at a time.

    Group commit: a worker that has a job takes every other job waiting (up to
    ``batch_max``) into one transaction: all that arrived while it was writing the
    previous batch. On PostgreSQL that transaction locks the PRs it concerns (and
    their tasks), so the workers (``workers``, 2 by default there), and those of other
    processes, write batches about different PRs at once and take turns on the same
    PR; SQLite has one writer (``BEGIN IMMEDIATE``), so one worker.
    """

    def __init__(
        self,
        store: Store,
        *,
        task_branch_pattern: re.Pattern[str],
        on_commit: Callable[[Sequence[StoredEvent]], None] = lambda events: None,
        batch_max: int = 64,
        workers: int | None = None,
        clock: Clock = utcnow,
        cleanup_on_merge: bool = False,
    ) -> None:
        self._store = store
        self._branches = TaskBranches(task_branch_pattern)
        self._on_commit = on_commit
        self._batch_max = batch_max
        self._workers = workers if workers is not None else (2 if store.is_postgres else 1)
        self._clock = clock
        self._cleanup_on_merge = cleanup_on_merge
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.jobs = 0
        #: Committed results by the core's outcome ("transitioned", "stale", ...), or
        #: the delivery's status where the core was not asked ("ignored", "duplicate").
        self.outcomes: Counter[str] = Counter()

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"reconciler-{i}")
                for i in range(self._workers)
            ]

    async def stop(self) -> None:
        """Finish the jobs already queued, then stop."""
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    # -- entry points ---------------------------------------------------------

    async def submit(self, job: Job) -> Result:
        """Queue ``job`` and wait until it is committed (or failed)."""
        if not self.running:
            raise StoreUnavailable("the service is not accepting work (starting or stopping)")
        self._queue.put_nowait(job)
        return await asyncio.shield(job.future)

    async def observe(self, observation: Observation) -> Result:
        """Apply one observation that did not come as a webhook (poller, operator)."""
        return await self.submit(Job(observation))

    async def link(self, repository: str, number: int, task_id: str, source: Source) -> Result:
        """Link a stored PR to a task (an operator's request); the task follows the PR."""
        now = self._clock()
        async with self._store.transaction() as uow:
            decision = await decide_link_in(uow, repository, number, task_id, source, now)
            events = await write_decision(
                uow, decision, now, cleanup_on_merge=self._cleanup_on_merge
            )
        return self._committed(decision, events)

    async def set_task_status(self, task_id: str, status: TaskStatus) -> Result:
        """An operator changes a task's status (``InvalidTransition`` if not allowed)."""
        return (await self.edit_task(task_id, status=status))[1]

    async def edit_task(
        self,
        task_id: str,
        *,
        status: TaskStatus | None = None,
        fields: Mapping[str, str | None] | None = None,
    ) -> tuple[TaskRecord, Result]:
        """An operator changes a task: its status and/or some of its TASK_FIELDS, in
        one transaction. Returns the task as committed.

        * ``status``: as :func:`decide_task_status` (``InvalidTransition`` if the move
          is not allowed; nothing is written then): ``task_status_change`` with
          ``pr_trigger: false``.
        * ``fields`` (title, repository, branch, worktree_path; None clears all but the
          title): those that differ are written, with one ``task_updated`` event
          listing them (old and new values).
        * A new branch that names this task by TASK_BRANCH_PATTERN links the stored PRs
          of that head that no task has yet, as the PRs' next observation would (the
          reconciler links by the head branch): each as :func:`decide_link`, so the
          task follows the PR's status (``task_status_change``, ``pr_trigger: true``),
          after the status asked for here. Links are never undone: a PR keeps the task
          it has, here as in :func:`decide`.
        """
        fields = fields or {}
        check_fields(fields)
        now = self._clock()
        async with self._store.transaction() as uow:
            before, after, stored = await write_task_edit(
                uow,
                task_id,
                status=status,
                fields=fields,
                now=now,
                task_for_branch=self.task_for_branch,
                cleanup_on_merge=self._cleanup_on_merge,
            )
        if stored:
            self._on_commit(stored)
        outcome = Outcome.UPDATED if stored or after != before else Outcome.UNCHANGED
        return after, Result(DeliveryStatus.APPLIED, outcome, str(outcome), tuple(stored))

    def task_for_branch(self, branch: str | None) -> str | None:
        """The task ``branch`` names by TASK_BRANCH_PATTERN, if any."""
        return self._branches.task_for_branch(branch)

    def _committed(self, decision: Decision, events: list[StoredEvent]) -> Result:
        if events:
            self._on_commit(events)
        return Result(
            DeliveryStatus.APPLIED, decision.outcome, str(decision.outcome), tuple(events)
        )

    # -- the batch loop -------------------------------------------------------

    async def _run(self) -> None:
        lease = self._store.lease(keyed=True)  # its statements find rows by key
        try:
            while True:
                batch = [await self._queue.get()]  # the jobs waiting join it
                try:
                    await self._apply_safely(lease, batch, gather=True)
                finally:
                    for _ in batch:
                        self._queue.task_done()
        finally:
            await lease.drop()

    async def _apply_safely(
        self, lease: ConnectionLease, batch: list[Job], *, gather: bool = False
    ) -> None:
        """Apply ``batch`` (with ``gather``: first extended by the jobs waiting) and
        settle its jobs, whatever happens."""
        try:
            results, events = await self._apply(await lease.get(), batch, gather=gather)
        except StoreUnavailable as exc:
            await lease.drop()
            for job in batch:
                settle(job, exc)
            return
        except Exception:
            if len(batch) > 1:
                # One bad job must not fail the others: apply them one by one.
                for job in batch:
                    await self._apply_safely(lease, [job])
                return
            await self._record_failure(batch[0])
            return
        self.batches += 1
        self.jobs += len(batch)
        self.outcomes.update(str(r.outcome or r.status) for r in results)
        if events:
            self._on_commit(events)
        for job, result in zip(batch, results, strict=True):
            log_change(job, result)
            settle(job, result)

    async def _record_failure(self, job: Job) -> None:
        logger.exception(
            "applying failed",
            extra={"guid": job.delivery.guid if job.delivery else None, "pr": job.key},
        )
        result = Result(DeliveryStatus.FAILED, detail="internal error while applying")
        if job.delivery is not None:
            # Keep the delivery, marked failed, so a redelivery is processed again.
            try:
                async with self._store.transaction() as uow:
                    now = self._clock()
                    failed = delivery_record(job, DeliveryStatus.FAILED, result.detail, now)
                    await uow.write(Changes(deliveries=[failed]), now)
            except Exception as exc:  # the failure is reported to the caller either way
                settle(job, exc)
                return
        settle(job, result)

    async def _apply(
        self, conn: Connection, batch: list[Job], *, gather: bool = False
    ) -> tuple[list[Result], list[StoredEvent]]:
        pulls = None  # SQLite: one writer, no lock per PR
        if conn.is_pg:
            if gather:
                self._gather(batch)  # first: the transaction locks the PRs of its jobs
            pulls = {k for job in batch if (k := job.key) is not None}
        async with self._store.unit_of_work(conn, pulls=pulls) as uow:
            if gather and not conn.is_pg:
                self._gather(batch)  # the jobs that came while it waited for the lock
            return await apply_batch(
                uow,
                batch,
                now=self._clock(),
                branches=self._branches,
                cleanup_on_merge=self._cleanup_on_merge,
            )

    def _gather(self, batch: list[Job]) -> None:
        """Add the jobs waiting to ``batch``, up to ``batch_max`` in all."""
        while len(batch) < self._batch_max and not self._queue.empty():
            batch.append(self._queue.get_nowait())
