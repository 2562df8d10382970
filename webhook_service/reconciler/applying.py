"""One batch, inside its transaction: load what is stored, decide each observation
against it (:func:`webhook_service.core.rules.decide`), write every change at once.

A batch costs one round trip per statement kind, however many jobs it carries. Jobs of
the same pull request see each other's decisions: each is decided against the rows the
previous one left. Each applied observation is recorded with what it changed (a row of
``observations``, in the same write), and each delivery received again is counted
(``attempts``).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from webhook_service.core.model import (
    Decision,
    FollowUp,
    Observation,
    PullRequest,
    Source,
    Task,
)
from webhook_service.core.payloads import RepositoryChange
from webhook_service.core.rules import decide
from webhook_service.reconciler.jobs import DeliveryStatus, Job, Result
from webhook_service.store import (
    Changes,
    DeliveryRecord,
    ObservationDraft,
    PRKey,
    StoredEvent,
    UnitOfWork,
)


class TaskBranches:
    """Which task a pull request concerns: the stored PR's, else the one its head
    branch names (TASK_BRANCH_PATTERN, with a ``task_id`` group)."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self._pattern = pattern

    def task_for_branch(self, branch: str | None) -> str | None:
        match = self._pattern.match(branch) if branch else None
        return match.group("task_id").lower() if match else None

    def task_id(self, observation: Observation, pulls: Mapping[PRKey, PullRequest]) -> str | None:
        snap = observation.snapshot
        stored = pulls.get((snap.repository, snap.number))
        if stored is not None and stored.task_id is not None:
            return stored.task_id
        return self.task_for_branch(snap.head_ref)

    def task_ids(self, jobs: Mapping[int, Job], pulls: Mapping[PRKey, PullRequest]) -> list[str]:
        ids = {
            task_id
            for job in jobs.values()
            if job.observation is not None
            and (task_id := self.task_id(job.observation, pulls)) is not None
        }
        return sorted(ids)


async def apply_batch(
    uow: UnitOfWork,
    batch: Sequence[Job],
    *,
    now: datetime,
    branches: TaskBranches,
    cleanup_on_merge: bool,
) -> tuple[list[Result], list[StoredEvent]]:
    """Apply ``batch`` in ``uow``: each job's result (in order) and the stored events."""
    known, pulls = await uow.load(
        [j.delivery.guid for j in batch if j.delivery is not None],
        sorted({k for j in batch if (k := j.key) is not None}),
    )
    pending, results = _split_duplicates(batch, known)
    tasks = await uow.load_tasks(branches.task_ids(pending, pulls))

    decisions: dict[int, Decision] = {}
    befores: dict[int, Before] = {}
    for i, job in pending.items():
        if job.observation is None:
            continue
        befores[i] = _before(job.observation, pulls, tasks, branches)
        decision = _decide(job.observation, pulls, tasks, now, branches)
        decisions[i] = decision
        if decision.pr is not None:
            pulls[(decision.pr.repository, decision.pr.number)] = decision.pr
        if decision.task is not None:
            tasks[decision.task.id] = decision.task

    changes = dataclasses.replace(
        _changes(pending, decisions, pulls, tasks, now, cleanup_on_merge),
        observations=observation_drafts(
            (pending[i].observation, befores[i], d) for i, d in decisions.items()
        ),
        # So far ``results`` holds only the duplicates.
        duplicates=[g for i in results if (g := _guid(batch[i])) is not None],
    )
    stored = iter(await uow.write(changes, now))
    for i, job in pending.items():
        results[i] = _result(job, decisions.get(i), stored)
    return [results[i] for i in range(len(batch))], _all_events(results.values())


def _decide(
    observation: Observation,
    pulls: Mapping[PRKey, PullRequest],
    tasks: Mapping[str, Task],
    now: datetime,
    branches: TaskBranches,
) -> Decision:
    snap = observation.snapshot
    stored = pulls.get((snap.repository, snap.number))
    task_id = branches.task_id(observation, pulls)
    task = tasks.get(task_id) if task_id is not None else None
    return decide(stored, task, observation, now=now, new_pr_id=str(uuid.uuid4()))


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
            delivery_record(job, *_delivery_outcome(job, decisions.get(i)), now)
            for i, job in jobs.items()
            if job.delivery is not None
        ],
        pulls=[pulls[k] for k in sorted(changed_prs)],
        tasks=[tasks[t] for t in sorted(changed_tasks)],
        events=[e for d in decisions.values() for e in d.events],
        refetch=sorted(refetch),
        repositories=repositories,
        cleanups=cleanups(decisions.values()) if cleanup_on_merge else [],
    )


def cleanups(decisions: Iterable[Decision]) -> list[str]:
    """Tasks that became DONE: their worktrees are to be removed (a job each)."""
    return sorted(
        {d.task.id for d in decisions if d.task and FollowUp.CLEANUP_WORKTREE in d.follow_ups}
    )


@dataclass(frozen=True, slots=True)
class Before:
    """What was stored before a decision: the PR's status and its task's (if any)."""

    pr_status: str | None
    task: Task | None


def _before(
    observation: Observation,
    pulls: Mapping[PRKey, PullRequest],
    tasks: Mapping[str, Task],
    branches: TaskBranches,
) -> Before:
    snap = observation.snapshot
    stored = pulls.get((snap.repository, snap.number))
    task_id = branches.task_id(observation, pulls)
    return Before(
        str(stored.status) if stored is not None else None,
        tasks.get(task_id) if task_id is not None else None,
    )


#: The source an observation is recorded under (docs/design.md, "What is recorded").
_RECORDED_SOURCE = {Source.MONITOR: "webhook"}


def observation_drafts(
    decided: Iterable[tuple[Observation | None, Before, Decision]], *, start: int = 0
) -> list[ObservationDraft]:
    """One row per decision, in order; each decision's events follow the previous one's
    in :attr:`Changes.events` (as :func:`_changes` lists them), from index ``start``.
    An operator's decision has no observation: it is recorded as ``manual``, with
    nothing observed (and not at all when it concerns no PR)."""
    drafts: list[ObservationDraft] = []
    first = start
    for observation, before, decision in decided:
        events = range(first, first + len(decision.events))
        first = events.stop
        pr = decision.pr
        if observation is None:
            if pr is None:
                continue
            repository, number, source, guid = pr.repository, pr.number, "manual", None
        else:
            snap = observation.snapshot
            repository, number = snap.repository, snap.number
            source = _RECORDED_SOURCE.get(observation.source, str(observation.source))
            guid = observation.delivery_id
        drafts.append(
            ObservationDraft(
                repository=repository,
                number=number,
                source=source,
                delivery_guid=guid,
                observed_status=_observed_status(observation),
                observed_updated_at=observation.snapshot.updated_at if observation else None,
                outcome=str(decision.outcome),
                changes=_what_changed(before, decision),
                events=events,
            )
        )
    return drafts


def _observed_status(observation: Observation | None) -> str | None:
    if observation is None:
        return None
    status = observation.snapshot.status
    return "closed?" if status is None else status.lower()


def _what_changed(before: Before, decision: Decision) -> dict[str, Any]:
    """``changes`` without ``event_ids`` (the write adds them): the PR's and the task's
    status moves, and the follow-ups asked for."""
    pr, task, old = decision.pr, decision.task, before.task
    pr_moved = pr is not None and str(pr.status) != before.pr_status
    old_task = (
        str(old.status) if old is not None and task is not None and old.id == task.id else None
    )
    task_moved = task is not None and str(task.status) != old_task
    return {
        "pr": {"from": before.pr_status, "to": str(pr.status)} if pr and pr_moved else None,
        "task": {"id": task.id, "from": old_task, "to": str(task.status)}
        if task and task_moved
        else None,
        "follow_ups": sorted(str(f) for f in decision.follow_ups),
    }


def _guid(job: Job) -> str | None:
    return job.delivery.guid if job.delivery is not None else None


def _repository_change(job: Job) -> RepositoryChange | None:
    return job.delivery.repositories if job.delivery is not None else None


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


def delivery_record(job: Job, outcome: str, detail: str | None, now: datetime) -> DeliveryRecord:
    """The row that records ``job``'s delivery (it must have one) and its outcome."""
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
