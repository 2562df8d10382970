"""The events the core emits, as the outbox stores them and clients receive them.

One builder per event type, so that the payload of each is written once: its fields
are the documented contract of the realtime stream and the ``/api/events`` endpoint
(docs/design.md, "Events"). The store assigns ``event_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from webhook_service.core.model import EventDraft, PRStatus, PullRequest, Source, TaskStatus


def timestamp(value: datetime) -> str:
    """The UTC timestamp format of events and the API: ``2026-11-26T10:30:00Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def optional_timestamp(value: datetime | None) -> str | None:
    """:func:`timestamp`, or None for no time."""
    return None if value is None else timestamp(value)


def pr_status_change(
    pr: PullRequest, old_status: PRStatus | None, *, source: Source, now: datetime
) -> EventDraft:
    """``pr`` moved from ``old_status`` (None: first seen) to its status now."""
    return EventDraft(
        type="pr_status_change",
        repository=pr.repository,
        task_id=pr.task_id,
        payload={
            "type": "pr_status_change",
            "pr_id": pr.id,
            "pr_number": pr.number,
            "repository": pr.repository,
            "task_id": pr.task_id,
            "old_status": old_status,
            "new_status": pr.status,
            "sync_source": source,
            "timestamp": timestamp(now),
        },
    )


def task_status_change(
    task_id: str,
    old_status: TaskStatus,
    new_status: TaskStatus,
    *,
    pr_trigger: bool,
    repository: str | None,
    now: datetime,
) -> EventDraft:
    """A task's status changed: following its PR (``pr_trigger``) or by hand."""
    return EventDraft(
        type="task_status_change",
        repository=repository,
        task_id=task_id,
        payload={
            "type": "task_status_change",
            "task_id": task_id,
            "old_status": old_status,
            "new_status": new_status,
            "pr_trigger": pr_trigger,
            "timestamp": timestamp(now),
        },
    )


def task_updated_event(
    task_id: str,
    changes: Mapping[str, tuple[str | None, str | None]],
    *,
    repository: str | None,
    now: datetime,
) -> EventDraft:
    """An operator changed some of a task's TASK_FIELDS: ``changes`` maps each changed
    field to (old, new). Its status has its own event (``task_status_change``)."""
    return EventDraft(
        type="task_updated",
        repository=repository,
        task_id=task_id,
        payload={
            "type": "task_updated",
            "task_id": task_id,
            "changes": {name: {"old": old, "new": new} for name, (old, new) in changes.items()},
            "timestamp": timestamp(now),
        },
    )
