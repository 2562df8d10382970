"""How stored pull requests and tasks are shown: the JSON of the API, the CLI's tables
and the PR Creator's answer. No I/O; imports nothing of the HTTP layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webhook_service.core.events import optional_timestamp
from webhook_service.core.model import PullRequest

if TYPE_CHECKING:
    from webhook_service.store import TaskRecord
    from webhook_service.tasks.creator import Created


def pull_json(pr: PullRequest) -> dict[str, Any]:
    return {
        "id": pr.id,
        "repository": pr.repository,
        "number": pr.number,
        "status": pr.status,
        "draft": pr.draft,
        "title": pr.title,
        "head_ref": pr.head_ref,
        "head_sha": pr.head_sha,
        "base_ref": pr.base_ref,
        "url": pr.url,
        "merged_at": optional_timestamp(pr.merged_at),
        "closed_at": optional_timestamp(pr.closed_at),
        "github_updated_at": optional_timestamp(pr.github_updated_at),
        "task_id": pr.task_id,
        "last_source": pr.last_source,
        "last_delivery_id": pr.last_delivery_id,
    }


def created_json(created: Created) -> dict[str, Any]:
    """The PR Creator's answer: ``{"created": bool, "pull_request": <pull_json>}``."""
    return {"created": created.created, "pull_request": pull_json(created.pull_request)}


def task_json(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "status": task.status,
        "repository": task.repository,
        "branch": task.branch,
        "worktree_path": task.worktree_path,
        "created_at": optional_timestamp(task.created_at),
        "updated_at": optional_timestamp(task.updated_at),
    }
