"""What an operator may change on a task by hand (``PATCH /api/tasks/{id}``, the CLI):
its status, within :data:`MANUAL_TASK_TRANSITIONS`, and its :data:`TASK_FIELDS`.

PR-driven task changes are not here: they follow the PR's status
(:data:`webhook_service.core.rules.TASK_STATUS_FOR_PR`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from webhook_service.core.events import task_status_change
from webhook_service.core.model import Decision, FollowUp, Outcome, Task, TaskStatus

#: Task status changes an operator may make by hand. PR-driven changes follow
#: TASK_STATUS_FOR_PR instead; DONE is terminal either way.
MANUAL_TASK_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.TODO: frozenset(
        {TaskStatus.IMPLEMENTING, TaskStatus.CODE_REVIEWING, TaskStatus.CANCELLED}
    ),
    TaskStatus.IMPLEMENTING: frozenset(
        {TaskStatus.TODO, TaskStatus.CODE_REVIEWING, TaskStatus.CANCELLED}
    ),
    TaskStatus.CODE_REVIEWING: frozenset(
        {TaskStatus.IMPLEMENTING, TaskStatus.DONE, TaskStatus.CANCELLED}
    ),
    TaskStatus.CANCELLED: frozenset({TaskStatus.TODO, TaskStatus.IMPLEMENTING}),
    TaskStatus.DONE: frozenset(),
}

#: A task's fields an operator may change besides its status (``PATCH /api/tasks/{id}``).
TASK_FIELDS: tuple[str, ...] = ("title", "repository", "branch", "worktree_path")


class InvalidTransition(ValueError):
    """A task status change that MANUAL_TASK_TRANSITIONS does not allow."""


def decide_task_status(task: Task, wanted: TaskStatus, *, now: datetime) -> Decision:
    """An operator sets ``task``'s status; a ``task_status_change`` with pr_trigger false."""
    if wanted is task.status:
        return Decision(Outcome.UNCHANGED, None, None)
    if wanted not in MANUAL_TASK_TRANSITIONS[task.status]:
        allowed = ", ".join(sorted(MANUAL_TASK_TRANSITIONS[task.status])) or "none (terminal)"
        raise InvalidTransition(f"a {task.status} task cannot become {wanted}; allowed: {allowed}")
    changed = Task(task.id, wanted)
    event = task_status_change(
        task.id, task.status, wanted, pr_trigger=False, repository=None, now=now
    )
    follow_ups = (
        frozenset({FollowUp.CLEANUP_WORKTREE}) if wanted is TaskStatus.DONE else frozenset()
    )
    return Decision(Outcome.UPDATED, None, changed, (event,), follow_ups)
