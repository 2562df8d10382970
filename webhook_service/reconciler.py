"""The shell around :func:`webhook_service.core.rules.decide`: load, decide, write, hand on.

Work arrives as :class:`Job` values (a verified webhook delivery, or a bare observation
from the poller or an operator) and is applied in batches: whatever is waiting when a
transaction starts goes into that transaction (group commit). A batch costs one round
trip per statement kind, however many deliveries it carries, and one durable commit.

After the commit, stored events go to the ``on_commit`` callback (the outbox
dispatcher), and each job's future is resolved with its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from webhook_service.core.payloads import Delivery, RepositoryChange
from webhook_service.core.task_edits import TASK_FIELDS, decide_task_status
from webhook_service.core.model import Decision, FollowUp, Observation, Outcome, PullRequest, Source, Task, TaskStatus
from webhook_service.core.rules import decide, decide_link
from webhook_service.core.events import task_updated_event
from webhook_service.store import (
    Changes,
    Connection,
    ConnectionLease,
    DeliveryRecord,
    PRKey,
    Store,
    StoredEvent,
    StoreUnavailable,
    TaskRecord,
    UnitOfWork,
    utcnow,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class DeliveryStatus:
    APPLIED = "applied"
    IGNORED = "ignored"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one job."""

    status: str  # applied | ignored | duplicate | failed
    outcome: Outcome | None = None  # the core's outcome for PR observations
    detail: str | None = None
    events: tuple[StoredEvent, ...] = ()
    follow_ups: frozenset[FollowUp] = frozenset()


@dataclass(slots=True)
class Job:
    """One unit of work: a delivery to record (and maybe apply), or an observation."""

    observation: Observation | None
    delivery: Delivery | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    received_at: datetime = field(default_factory=utcnow)
    ignored_reason: str | None = None
    future: asyncio.Future[Result] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @classmethod
    def for_delivery(
        cls, delivery: Delivery, *, source: Source, headers: Mapping[str, str], body: bytes
    ) -> Job:
        """The job for a verified, parsed delivery (the receiver's, or a replayed one)."""
        snapshot = delivery.snapshot
        return cls(
            observation=Observation(snapshot, source, delivery.guid) if snapshot else None,
            delivery=delivery,
            headers=dict(headers.items()),
            body=body,
            ignored_reason=(
                "ping" if delivery.event == "ping" else f"event {delivery.event!r} is not acted on"
            ),
        )

    @property
    def key(self) -> PRKey | None:
        if self.observation is None:
            return None
        snap = self.observation.snapshot
        return (snap.repository, snap.number)


class Reconciler:
    """Applies jobs in batches; one per store connection at a time.

    Group commit: a worker that has a job opens a transaction, which waits for the one
    writer lock (PostgreSQL's ``_WRITER_LOCK``, SQLite's ``BEGIN IMMEDIATE``), and only
    then takes every other job waiting (up to ``batch_max``) into it: all that arrived
    while another batch was being written. With ``workers`` = 2 (PostgreSQL) the next
    batch is ready to go the moment the current one commits.
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
        self._pattern = task_branch_pattern
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
            pr = (await uow.load_pulls([(repository, number)])).get((repository, number))
            if pr is None:
                raise LookupError(f"pull request {repository}#{number} is not tracked")
            task = (await uow.load_tasks([task_id])).get(task_id)
            if task is None:
                raise LookupError(f"task {task_id} does not exist")
            decision = decide_link(pr, task, now=now, source=source)
            events = await self._write_one(uow, decision, now)
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
        if not set(fields) <= set(TASK_FIELDS) or fields.get("title", "") is None:
            raise ValueError(f"not task fields to set: {dict(fields)}")
        now = self._clock()
        async with self._store.transaction() as uow:
            before = await uow.load_task_record(task_id)
            if before is None:
                raise LookupError(f"task {task_id} does not exist")
            task = Task(before.id, before.status)
            decisions: list[Decision] = []
            if status is not None:
                decisions.append(decide_task_status(task, status, now=now))
            changes = {
                name: (old, new)
                for name, new in fields.items()
                if (old := getattr(before, name)) != new
            }
            events = [e for d in decisions for e in d.events]
            if changes:
                await uow.update_task_fields(task_id, {n: c[1] for n, c in changes.items()}, now)
                repository = changes.get("repository", (None, before.repository))[1]
                events.append(task_updated_event(task_id, changes, repository=repository, now=now))
            branch = changes["branch"][1] if "branch" in changes else None
            if branch is not None and self.task_for_branch(branch) == task_id:
                for pr in await uow.unlinked_pulls_of_branch(branch):
                    current = next((d.task for d in reversed(decisions) if d.task), task)
                    decision = decide_link(pr, current, now=now, source=Source.MANUAL)
                    decisions.append(decision)
                    events.extend(decision.events)
            final = next((d.task for d in reversed(decisions) if d.task), task)
            stored = await uow.write(
                Changes(
                    pulls=[d.pr for d in decisions if d.pr],
                    tasks=[final] if final != task else [],
                    events=events,
                    cleanups=_cleanups(decisions) if self._cleanup_on_merge else [],
                ),
                now,
            )
            after = await uow.load_task_record(task_id)
            assert after is not None
        if stored:
            self._on_commit(stored)
        outcome = Outcome.UPDATED if stored or after != before else Outcome.UNCHANGED
        return after, Result(DeliveryStatus.APPLIED, outcome, str(outcome), tuple(stored))

    async def _write_one(
        self, uow: UnitOfWork, decision: Decision, now: datetime
    ) -> list[StoredEvent]:
        """Write one operator decision (outside the batch loop: its own transaction)."""
        return await uow.write(
            Changes(
                pulls=[decision.pr] if decision.pr else [],
                tasks=[decision.task] if decision.task else [],
                events=decision.events,
                cleanups=_cleanups([decision]) if self._cleanup_on_merge else [],
            ),
            now,
        )

    def _committed(self, decision: Decision, events: list[StoredEvent]) -> Result:
        if events:
            self._on_commit(events)
        return Result(
            DeliveryStatus.APPLIED, decision.outcome, str(decision.outcome), tuple(events)
        )

    # -- the batch loop -------------------------------------------------------

    async def _run(self) -> None:
        lease = self._store.lease()
        try:
            while True:
                batch = [await self._queue.get()]  # more join it once the lock is held
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
        """Apply ``batch`` (with ``gather``: first extended by the jobs waiting once the
        writer lock is held) and settle its jobs, whatever happens."""
        try:
            results, events = await self._apply(await lease.get(), batch, gather=gather)
        except StoreUnavailable as exc:
            await lease.drop()
            for job in batch:
                _settle(job, exc)
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
            _log_change(job, result)
            _settle(job, result)

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
                    failed = _record(job, DeliveryStatus.FAILED, result.detail, now)
                    await uow.write(Changes(deliveries=[failed]), now)
            except Exception as exc:  # the failure is reported to the caller either way
                _settle(job, exc)
                return
        _settle(job, result)

    async def _apply(
        self, conn: Connection, batch: list[Job], *, gather: bool = False
    ) -> tuple[list[Result], list[StoredEvent]]:
        async with self._store.unit_of_work(conn) as uow:
            while gather and len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            now = self._clock()
            known, pulls = await uow.load(
                [j.delivery.guid for j in batch if j.delivery is not None],
                sorted({k for j in batch if (k := j.key) is not None}),
            )
            pending, results = _split_duplicates(batch, known)
            tasks = await uow.load_tasks(self._task_ids(pending, pulls))

            decisions: dict[int, Decision] = {}
            for i, job in pending.items():
                if job.observation is None:
                    continue
                decision = self._decide(job.observation, pulls, tasks, now)
                decisions[i] = decision
                if decision.pr is not None:
                    pulls[(decision.pr.repository, decision.pr.number)] = decision.pr
                if decision.task is not None:
                    tasks[decision.task.id] = decision.task

            changes = _changes(pending, decisions, pulls, tasks, now, self._cleanup_on_merge)
            stored = iter(await uow.write(changes, now))
            for i, job in pending.items():
                results[i] = _result(job, decisions.get(i), stored)
        return [results[i] for i in range(len(batch))], _all_events(results.values())

    def _decide(
        self,
        observation: Observation,
        pulls: dict[PRKey, PullRequest],
        tasks: dict[str, Task],
        now: datetime,
    ) -> Decision:
        snap = observation.snapshot
        stored = pulls.get((snap.repository, snap.number))
        task_id = self._task_id(observation, pulls)
        task = tasks.get(task_id) if task_id is not None else None
        return decide(stored, task, observation, now=now, new_pr_id=str(uuid.uuid4()))

    def task_for_branch(self, branch: str | None) -> str | None:
        match = self._pattern.match(branch) if branch else None
        return match.group("task_id").lower() if match else None

    def _task_ids(self, jobs: Mapping[int, Job], pulls: Mapping[PRKey, PullRequest]) -> list[str]:
        ids = {
            task_id
            for job in jobs.values()
            if job.observation is not None
            and (task_id := self._task_id(job.observation, pulls)) is not None
        }
        return sorted(ids)

    def _task_id(self, observation: Observation, pulls: Mapping[PRKey, PullRequest]) -> str | None:
        """The task an observation concerns: the stored PR's, else the one its head
        branch names (TASK_BRANCH_PATTERN)."""
        snap = observation.snapshot
        stored = pulls.get((snap.repository, snap.number))
        if stored is not None and stored.task_id is not None:
            return stored.task_id
        return self.task_for_branch(snap.head_ref)


def _changes(
    jobs: Mapping[int, Job],
    decisions: Mapping[int, Decision],
    pulls: Mapping[PRKey, PullRequest],
    tasks: Mapping[str, Task],
    now: datetime,
    cleanup_on_merge: bool,
) -> Changes:
    changed_prs = {(d.pr.repository, d.pr.number) for d in decisions.values() if d.pr}
    changed_tasks = {d.task.id for d in decisions.values() if d.task}
    refetch = {
        k for i, d in decisions.items() if FollowUp.REFETCH in d.follow_ups and (k := jobs[i].key)
    }
    repositories = [c for j in jobs.values() if (c := _repository_change(j)) is not None]
    return Changes(
        deliveries=[
            _record(job, *_delivery_outcome(job, decisions.get(i)), now)
            for i, job in jobs.items()
            if job.delivery is not None
        ],
        pulls=[pulls[k] for k in sorted(changed_prs)],
        tasks=[tasks[t] for t in sorted(changed_tasks)],
        events=[e for d in decisions.values() for e in d.events],
        refetch=sorted(refetch),
        repositories=repositories,
        cleanups=_cleanups(decisions.values()) if cleanup_on_merge else [],
    )


def _cleanups(decisions: Iterable[Decision]) -> list[str]:
    """Tasks that became DONE: their worktrees are to be removed (a job each)."""
    return sorted(
        {d.task.id for d in decisions if d.task and FollowUp.CLEANUP_WORKTREE in d.follow_ups}
    )


def _repository_change(job: Job) -> RepositoryChange | None:
    return job.delivery.repositories if job.delivery is not None else None


def _log_change(job: Job, result: Result) -> None:
    """One line per PR status change, carrying the GUID, repository and PR number."""
    if not result.events or job.observation is None:
        return
    snap = job.observation.snapshot
    for event in result.events:
        payload = event.payload
        logger.info(
            "%s: %s -> %s",
            event.type,
            payload.get("old_status"),
            payload.get("new_status"),
            extra={
                "guid": job.observation.delivery_id,
                "repository": snap.repository,
                "pr": snap.number,
                "source": str(job.observation.source),
                "event_id": event.id,
            },
        )


def _split_duplicates(
    batch: Sequence[Job], known: Mapping[str, str]
) -> tuple[dict[int, Job], dict[int, Result]]:
    """Jobs to apply, and results for deliveries already applied (or seen twice here)."""
    pending: dict[int, Job] = {}
    results: dict[int, Result] = {}
    seen: set[str] = set()
    for i, job in enumerate(batch):
        guid = job.delivery.guid if job.delivery is not None else None
        if guid is not None and (guid in seen or known.get(guid) in ("applied", "ignored")):
            results[i] = Result("duplicate", detail="delivery already processed")
            continue
        if guid is not None:
            seen.add(guid)
        pending[i] = job
    return pending, results


def _delivery_outcome(job: Job, decision: Decision | None) -> tuple[str, str | None]:
    if decision is not None:
        return DeliveryStatus.APPLIED, str(decision.outcome)
    change = _repository_change(job)
    if change is not None:
        return DeliveryStatus.APPLIED, _describe_change(change)
    return DeliveryStatus.IGNORED, job.ignored_reason


def _describe_change(change: RepositoryChange) -> str:
    return f"tracked repositories +{len(change.added)} -{len(change.removed)}"


def _record(job: Job, outcome: str, detail: str | None, now: datetime) -> DeliveryRecord:
    delivery = job.delivery
    assert delivery is not None
    snap = delivery.snapshot
    return DeliveryRecord(
        guid=delivery.guid,
        event=delivery.event,
        action=delivery.action,
        hook_id=delivery.hook_id,
        installation_id=delivery.installation_id,
        repository=delivery.repository,
        pr_number=snap.number if snap is not None else None,
        headers=job.headers,
        body=job.body,
        received_at=job.received_at,
        processed_at=now,
        outcome=outcome,
        detail=detail,
    )


def _result(job: Job, decision: Decision | None, stored: Iterator[StoredEvent]) -> Result:
    if decision is None:
        status, detail = _delivery_outcome(job, None)
        return Result(status, detail=detail)
    events = tuple(next(stored) for _ in decision.events)
    return Result(
        DeliveryStatus.APPLIED,
        outcome=decision.outcome,
        detail=str(decision.outcome),
        events=events,
        follow_ups=decision.follow_ups,
    )


def _all_events(results: Iterable[Result]) -> list[StoredEvent]:
    events = [e for r in results for e in r.events]
    return sorted(events, key=lambda e: e.id)


def _settle(job: Job, outcome: Result | BaseException) -> None:
    if job.future.done():
        return
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)
