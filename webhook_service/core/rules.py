"""The reconciliation rules: what one observation of a pull request changes.

Everything here is pure: values in, a value out, no I/O and no clock. Both inputs
(webhook deliveries and the poller) build an :class:`~webhook_service.core.model.Observation`;
the shell in :mod:`webhook_service.reconciler` loads the stored rows, calls :func:`decide`
and writes the result.

The decision is level-triggered: it compares the observed snapshot with what is stored
and never looks at the webhook ``action`` name (DESIGN.md §2). The whole of it is the
:data:`RULES` table; the rest is building the rows and events it implies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from webhook_service.core.events import pr_status_change, task_status_change
from webhook_service.core.model import (
    Decision,
    EventDraft,
    FollowUp,
    Observation,
    Outcome,
    PRStatus,
    PullRequest,
    Snapshot,
    Source,
    Task,
    TaskStatus,
)


class Freshness(StrEnum):
    NEWER = "newer"
    EQUAL = "equal"
    OLDER = "older"


class Verdict(StrEnum):
    """What an observation does to a stored pull request."""

    TRANSITION = "transition"  # the status changes
    UPDATE = "update"  # same status, newer metadata
    NOOP = "noop"  # nothing new (a repeat)
    STALE = "stale"  # older than what is stored
    TERMINAL = "terminal"  # the PR is merged; nothing moves it
    REFETCH = "refetch"  # ambiguous: ask the API, change nothing now


TASK_STATUS_FOR_PR: Mapping[PRStatus, TaskStatus] = {
    PRStatus.OPEN: TaskStatus.CODE_REVIEWING,
    PRStatus.MERGED: TaskStatus.DONE,
    PRStatus.CLOSED: TaskStatus.CANCELLED,
}

_O, _C, _M = PRStatus.OPEN, PRStatus.CLOSED, PRStatus.MERGED
_N, _E, _D = Freshness.NEWER, Freshness.EQUAL, Freshness.OLDER
_T, _U, _X, _S, _Z, _R = (
    Verdict.TRANSITION,
    Verdict.UPDATE,
    Verdict.NOOP,
    Verdict.STALE,
    Verdict.TERMINAL,
    Verdict.REFETCH,
)

#: (stored status, observed status, observed updated_at vs stored) -> verdict.
#: ``None`` as the observed status is a close whose merge state the snapshot cannot tell
#: (review events carry no ``merged`` field): it never closes a PR on its own.
RULES: Mapping[tuple[PRStatus, PRStatus | None, Freshness], Verdict] = {
    # stored OPEN
    (_O, _O, _N): _U, (_O, _O, _E): _X, (_O, _O, _D): _S,
    (_O, _C, _N): _T, (_O, _C, _E): _R, (_O, _C, _D): _S,
    (_O, _M, _N): _T, (_O, _M, _E): _T, (_O, _M, _D): _T,  # a merge is proof, whatever its age
    (_O, None, _N): _R, (_O, None, _E): _R, (_O, None, _D): _S,
    # stored CLOSED
    (_C, _O, _N): _T, (_C, _O, _E): _R, (_C, _O, _D): _S,
    (_C, _C, _N): _U, (_C, _C, _E): _X, (_C, _C, _D): _S,
    (_C, _M, _N): _T, (_C, _M, _E): _T, (_C, _M, _D): _T,
    (_C, None, _N): _U, (_C, None, _E): _X, (_C, None, _D): _S,
    # stored MERGED: terminal
    (_M, _O, _N): _Z, (_M, _O, _E): _Z, (_M, _O, _D): _Z,
    (_M, _C, _N): _Z, (_M, _C, _E): _Z, (_M, _C, _D): _Z,
    (_M, _M, _N): _U, (_M, _M, _E): _X, (_M, _M, _D): _S,
    (_M, None, _N): _Z, (_M, None, _E): _Z, (_M, None, _D): _Z,
}  # fmt: skip

_OUTCOME_FOR_VERDICT: Mapping[Verdict, Outcome] = {
    Verdict.TRANSITION: Outcome.TRANSITIONED,
    Verdict.UPDATE: Outcome.UPDATED,
    Verdict.NOOP: Outcome.UNCHANGED,
    Verdict.STALE: Outcome.STALE,
    Verdict.TERMINAL: Outcome.TERMINAL,
    Verdict.REFETCH: Outcome.AMBIGUOUS,
}


def freshness(observed: datetime, stored: datetime) -> Freshness:
    if observed > stored:
        return Freshness.NEWER
    if observed == stored:
        return Freshness.EQUAL
    return Freshness.OLDER


def decide(
    stored: PullRequest | None,
    task: Task | None,
    observation: Observation,
    *,
    now: datetime,
    new_pr_id: str,
) -> Decision:
    """Decide what ``observation`` changes, given the stored PR and its task.

    ``task`` is the PR's linked task, or, for a PR not linked yet, the task its head
    branch names (the shell looks it up). ``new_pr_id`` is used only for a first
    sighting; ``now`` stamps the events.
    """
    snap = observation.snapshot
    observed = snap.status
    if stored is None:
        if observed is None:
            return Decision(Outcome.AMBIGUOUS, None, None, follow_ups=_REFETCH)
        pr = _from_snapshot(new_pr_id, observed, observation, task)
        return _with_events(Outcome.CREATED, None, pr, task, observation, now)

    verdict = RULES[(stored.status, observed, freshness(snap.updated_at, stored.github_updated_at))]
    if verdict is Verdict.REFETCH and observation.authoritative and observed is not None:
        verdict = Verdict.TRANSITION  # the API's answer to the re-fetch wins
    newly_linked = stored.task_id is None and task is not None
    linked = _link(stored, task) if newly_linked and task is not None else stored
    if verdict is Verdict.TRANSITION:
        assert observed is not None
        pr = _transition(linked, observed, observation)
        return _with_events(Outcome.TRANSITIONED, stored.status, pr, task, observation, now)
    outcome = _OUTCOME_FOR_VERDICT[verdict]
    follow_ups = _REFETCH if verdict is Verdict.REFETCH else frozenset()
    if verdict is Verdict.UPDATE:
        pr = _from_snapshot(stored.id, stored.status, observation, None, linked.task_id)
    elif newly_linked:  # a task named by the head branch: record the link anyway
        pr = linked
    else:
        return Decision(outcome, None, None, follow_ups=follow_ups)
    task_to_sync = task if newly_linked else None
    return _with_events(outcome, stored.status, pr, task_to_sync, observation, now, follow_ups)


_REFETCH = frozenset({FollowUp.REFETCH})


def _from_snapshot(
    pr_id: str,
    status: PRStatus,
    observation: Observation,
    task: Task | None,
    task_id: str | None = None,
) -> PullRequest:
    snap = observation.snapshot
    return PullRequest(
        id=pr_id,
        repository=snap.repository,
        number=snap.number,
        status=status,
        draft=snap.draft,
        title=snap.title,
        head_ref=snap.head_ref,
        head_sha=snap.head_sha,
        base_ref=snap.base_ref,
        url=snap.url,
        node_id=snap.node_id,
        github_id=snap.github_id,
        merged_at=snap.merged_at,
        closed_at=snap.closed_at,
        github_updated_at=snap.updated_at,
        task_id=task.id if task is not None else task_id,
        last_source=observation.source,
        last_delivery_id=observation.delivery_id,
    )


def _link(stored: PullRequest, task: Task) -> PullRequest:
    return dataclasses.replace(stored, task_id=task.id)


def _transition(stored: PullRequest, status: PRStatus, observation: Observation) -> PullRequest:
    snap = observation.snapshot
    if snap.updated_at >= stored.github_updated_at:
        return _from_snapshot(stored.id, status, observation, None, stored.task_id)
    # An older snapshot that proves a merge: take the status, keep the newer metadata.
    return dataclasses.replace(
        stored,
        status=status,
        merged_at=snap.merged_at,
        closed_at=snap.closed_at or stored.closed_at,
        last_source=observation.source,
        last_delivery_id=observation.delivery_id,
    )


def _with_events(
    outcome: Outcome,
    old_status: PRStatus | None,
    pr: PullRequest,
    task: Task | None,
    observation: Observation,
    now: datetime,
    follow_ups: frozenset[FollowUp] = frozenset(),
) -> Decision:
    """Attach the PR event (on a status change) and the task change it implies.

    ``task`` is given only when its status should follow the PR now: on a status
    change or when the link is new. A task otherwise keeps a status set by hand.
    """
    events: list[EventDraft] = []
    if pr.status != old_status:
        events.append(pr_status_change(pr, old_status, source=observation.source, now=now))
    new_task = _task_after(task, pr) if task is not None and pr.task_id == task.id else None
    if new_task is not None and task is not None:
        events.append(
            task_status_change(
                task.id,
                task.status,
                new_task.status,
                pr_trigger=True,
                repository=pr.repository,
                now=now,
            )
        )
        if new_task.status is TaskStatus.DONE:
            follow_ups = follow_ups | {FollowUp.CLEANUP_WORKTREE}
    return Decision(outcome, pr, new_task, tuple(events), follow_ups)


def _task_after(task: Task, pr: PullRequest) -> Task | None:
    """The task's new row when the PR's status implies another task status."""
    wanted = TASK_STATUS_FOR_PR[pr.status]
    if task.status is TaskStatus.DONE or task.status is wanted:
        return None  # DONE is terminal: a later PR for the same task cannot undo it
    return Task(task.id, wanted)


def decide_link(pr: PullRequest, task: Task, *, now: datetime, source: Source) -> Decision:
    """Link ``pr`` to ``task`` (by an operator); the task then follows the PR's status."""
    if pr.task_id == task.id:
        return Decision(Outcome.UNCHANGED, None, None)
    linked = dataclasses.replace(pr, task_id=task.id, last_source=source, last_delivery_id=None)
    observation = Observation(_snapshot_of(linked), source)
    return _with_events(Outcome.UPDATED, pr.status, linked, task, observation, now)


def _snapshot_of(pr: PullRequest) -> Snapshot:
    return Snapshot(
        repository=pr.repository,
        number=pr.number,
        state="open" if pr.status is PRStatus.OPEN else "closed",
        merged=pr.status is PRStatus.MERGED,
        merged_at=pr.merged_at,
        closed_at=pr.closed_at,
        updated_at=pr.github_updated_at,
        draft=pr.draft,
        title=pr.title,
    )
