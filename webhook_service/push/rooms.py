"""Rooms: which clients an event goes to.

Every event goes to :data:`ALL`, its repository's room and its task's room. A client is
in :data:`ALL` until it subscribes to a repository or a task; it is then in the rooms of
what it subscribed to only (``Client.rooms`` in ``fanout.py``).
"""

from __future__ import annotations

from typing import Any

from webhook_service.store import StoredEvent

ALL = "all"


def rooms_for(event: StoredEvent) -> list[str]:
    """The rooms an event is emitted to: everyone's, its repository's, its task's."""
    rooms = [ALL]
    if event.repository:
        rooms.append(f"repository:{event.repository}")
    if event.task_id:
        rooms.append(f"task:{event.task_id}")
    return rooms


def room_of(data: Any) -> str | None:
    """The room a ``subscribe`` or ``unsubscribe`` names: ``{"repository": "owner/name"}``
    or ``{"task_id": ...}``; None for anything else."""
    if not isinstance(data, dict) or len(data) != 1:
        return None
    repository, task_id = data.get("repository"), data.get("task_id")
    if isinstance(repository, str) and repository.count("/") == 1:
        return f"repository:{repository}"
    if isinstance(task_id, str) and task_id:
        return f"task:{task_id.lower()}"
    return None
