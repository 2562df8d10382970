"""An operator's changes, each in its own transaction outside the batches: a link
between a pull request and a task, and a task's status and fields.

The decisions are the core's (:func:`~webhook_service.core.rules.decide_link`,
:func:`~webhook_service.core.task_edits.decide_task_status`); this module loads the rows
they need and writes what they decide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from webhook_service.core.events import task_updated_event
from webhook_service.core.model import Decision, EventDraft, Source, Task, TaskStatus
from webhook_service.core.rules import decide_link
from webhook_service.core.task_edits import TASK_FIELDS, decide_task_status
from webhook_service.reconciler.applying import Before, cleanups, observation_drafts
from webhook_service.store import Changes, ObservationDraft, StoredEvent, TaskRecord, UnitOfWork

#: (old, new) of each task field that changes.
FieldChanges = dict[str, tuple[str | None, str | None]]


def check_fields(fields: Mapping[str, str | None]) -> None:
    """``fields`` are TASK_FIELDS, and the title is not cleared (else ValueError)."""
    if not set(fields) <= set(TASK_FIELDS) or fields.get("title", "") is None:
        raise ValueError(f"not task fields to set: {dict(fields)}")


async def write_decision(
    uow: UnitOfWork, decision: Decision, now: datetime, *, cleanup_on_merge: bool
) -> list[StoredEvent]:
    """Write one operator decision (outside the batch loop: its own transaction),
    recorded on the PR's timeline as a ``manual`` observation."""
    task = decision.task
    stored = (await uow.load_tasks([task.id])).get(task.id) if task is not None else None
    before = Before(str(decision.pr.status) if decision.pr else None, stored)
    return await uow.write(
        Changes(
            pulls=[decision.pr] if decision.pr else [],
            tasks=[decision.task] if decision.task else [],
            events=decision.events,
            cleanups=cleanups([decision]) if cleanup_on_merge else [],
            observations=observation_drafts([(None, before, decision)]),
        ),
        now,
    )


async def decide_link_in(
    uow: UnitOfWork, repository: str, number: int, task_id: str, source: Source, now: datetime
) -> Decision:
    """The decision to link a stored PR to a task (LookupError if either is missing)."""
    pr = (await uow.load_pulls([(repository, number)])).get((repository, number))
    if pr is None:
        raise LookupError(f"pull request {repository}#{number} is not tracked")
    task = (await uow.load_tasks([task_id])).get(task_id)
    if task is None:
        raise LookupError(f"task {task_id} does not exist")
    return decide_link(pr, task, now=now, source=source)


async def write_task_edit(
    uow: UnitOfWork,
    task_id: str,
    *,
    status: TaskStatus | None,
    fields: Mapping[str, str | None],
    now: datetime,
    task_for_branch: Callable[[str | None], str | None],
    cleanup_on_merge: bool,
) -> tuple[TaskRecord, TaskRecord, list[StoredEvent]]:
    """Change a task in ``uow`` (see :meth:`Reconciler.edit_task`): the task before and
    after, and the events stored."""
    before = await uow.load_task_record(task_id)
    if before is None:
        raise LookupError(f"task {task_id} does not exist")
    task = Task(before.id, before.status)
    decisions = [decide_task_status(task, status, now=now)] if status is not None else []
    events: list[EventDraft] = [e for d in decisions for e in d.events]
    changes = _field_changes(before, fields)
    if changes:
        await uow.update_task_fields(task_id, {n: c[1] for n, c in changes.items()}, now)
        repository = changes.get("repository", (None, before.repository))[1]
        events.append(task_updated_event(task_id, changes, repository=repository, now=now))
    branch = changes["branch"][1] if "branch" in changes else None
    links = len(decisions)  # where the links' decisions (and their events) start
    linked_from = len(events)
    if branch is not None and task_for_branch(branch) == task_id:
        events += await _link_branch(uow, branch, task, decisions, now)
    linked = _recorded_links(decisions[links:], task, decisions[:links], start=linked_from)
    final = _latest(decisions, task)
    stored = await uow.write(
        Changes(
            pulls=[d.pr for d in decisions if d.pr],
            tasks=[final] if final != task else [],
            events=events,
            cleanups=cleanups(decisions) if cleanup_on_merge else [],
            observations=linked,
        ),
        now,
    )
    after = await uow.load_task_record(task_id)
    assert after is not None
    return before, after, stored


def _field_changes(before: TaskRecord, fields: Mapping[str, str | None]) -> FieldChanges:
    """The fields asked for that differ from the stored task's."""
    return {
        name: (old, new) for name, new in fields.items() if (old := getattr(before, name)) != new
    }


async def _link_branch(
    uow: UnitOfWork, branch: str, task: Task, decisions: list[Decision], now: datetime
) -> list[EventDraft]:
    """Link the stored PRs of ``branch`` that no task has yet, as their next observation
    would; each decision is appended to ``decisions``, its events returned. Links are
    never undone: a PR keeps the task it has, here as in :func:`decide`."""
    events: list[EventDraft] = []
    for pr in await uow.unlinked_pulls_of_branch(branch):
        decision = decide_link(pr, _latest(decisions, task), now=now, source=Source.MANUAL)
        decisions.append(decision)
        events.extend(decision.events)
    return events


def _recorded_links(
    links: list[Decision], task: Task, earlier: list[Decision], *, start: int
) -> list[ObservationDraft]:
    """The PRs ``links`` linked, as ``manual`` observations on their timelines; each
    against the task as the decisions before it left it. Their events start at
    index ``start`` of the write's events."""
    decided = []
    for link in links:
        before = Before(str(link.pr.status) if link.pr else None, _latest(earlier, task))
        decided.append((None, before, link))
        earlier = [*earlier, link]
    return observation_drafts(decided, start=start)


def _latest(decisions: list[Decision], task: Task) -> Task:
    """The task as the last decision that changed it left it (``task`` if none did)."""
    return next((d.task for d in reversed(decisions) if d.task), task)
