"""Tasks: list, create, read and change them by hand, link one to a PR, and open the PR
of its branch (the PR creator, which needs the sync worker's GitHub access)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from webhook_service.api.context import Context, Endpoint
from webhook_service.api.errors import APIError
from webhook_service.api.requests import (
    REPO,
    cursor,
    is_uuid,
    json_body,
    page_limit,
    pr_target,
    query_repo,
    time_key,
)
from webhook_service.api.responses import Page, encode_cursor, next_url
from webhook_service.api.views import created_json, task_json
from webhook_service.core.model import Source, TaskStatus
from webhook_service.core.task_edits import TASK_FIELDS, InvalidTransition
from webhook_service.store import TaskRecord, utcnow
from webhook_service.tasks.creator import CreateError, create_pull_request

_PATCHABLE = ("status", *TASK_FIELDS)


async def _list_tasks(ctx: Context, request: Request) -> Any:
    status = request.query_params.get("status")
    if status is not None and status not in TaskStatus.__members__:
        raise APIError(400, f"status must be one of {', '.join(TaskStatus)}")
    limit = page_limit(request)
    after = cursor(request, "tasks", time_key)
    tasks = await ctx.store.list_tasks(
        status=status, repository=query_repo(request), limit=limit + 1, after=after
    )
    page, more = tasks[:limit], len(tasks) > limit
    last = page[-1] if more else None
    return Page(
        {"tasks": [task_json(t) for t in page]},
        next_url(request, cursor=encode_cursor("tasks", last.created_at.isoformat(), last.id))
        if last is not None
        else None,
    )


async def _create_task(ctx: Context, request: Request) -> Any:
    data = await json_body(request)
    if data.get("title") is None:
        raise APIError(400, "'title' is required and must be a non-empty string")
    fields = _task_fields(data)
    task_id = data.get("id") or str(uuid.uuid4())
    if not isinstance(task_id, str) or not is_uuid(task_id):
        raise APIError(400, "'id' must be a UUID")
    status = _task_status(data["status"]) if "status" in data else TaskStatus.TODO
    now = utcnow()
    task = TaskRecord(
        id=task_id.lower(),
        title=str(fields["title"]),
        status=status,
        repository=fields.get("repository"),
        branch=fields.get("branch"),
        worktree_path=fields.get("worktree_path"),
        created_at=now,
        updated_at=now,
    )
    if await ctx.store.get_task(task.id) is not None:
        raise APIError(409, f"task {task.id} already exists")
    await ctx.store.create_task(task)
    return task_json(task)


async def _get_task(ctx: Context, request: Request) -> Any:
    task = await ctx.store.get_task(str(request.path_params["task_id"]).lower())
    if task is None:
        raise APIError(404, f"task {request.path_params['task_id']} does not exist")
    return task_json(task)


async def _patch_task(ctx: Context, request: Request) -> Any:
    """Change a task by hand: any of ``status``, ``title``, ``repository``, ``branch``
    and ``worktree_path`` (validated as by ``POST /api/tasks``; null clears all but
    status and title), in one transaction (see ``Reconciler.edit_task``)."""
    task_id = str(request.path_params["task_id"]).lower()
    data = await json_body(request)
    for name in data:
        if name not in _PATCHABLE:
            raise APIError(400, f"'{name}' cannot be changed; give any of {', '.join(_PATCHABLE)}")
    if not data:
        raise APIError(400, f"nothing to change; give any of {', '.join(_PATCHABLE)}")
    status = _task_status(data["status"]) if "status" in data else None
    try:
        task, _ = await ctx.reconciler.edit_task(task_id, status=status, fields=_task_fields(data))
    except LookupError as exc:
        raise APIError(404, str(exc)) from None
    except InvalidTransition as exc:
        raise APIError(409, str(exc)) from None
    return task_json(task)


def _task_fields(data: Mapping[str, Any]) -> dict[str, str | None]:
    """The TASK_FIELDS present in a task's JSON (POST and PATCH), validated: a
    non-empty title (stripped), a repository as owner/name, branch and worktree_path
    non-empty; those three may be null (none)."""
    fields: dict[str, str | None] = {}
    for name in TASK_FIELDS:
        if name not in data:
            continue
        value = data[name]
        if name == "title":
            if not isinstance(value, str) or not value.strip():
                raise APIError(400, "'title' must be a non-empty string")
            fields[name] = value.strip()
            continue
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise APIError(400, f"'{name}' must be a non-empty string or null")
        if name == "repository" and value is not None and not REPO.fullmatch(value):
            raise APIError(400, "'repository' must be owner/name")
        fields[name] = value
    return fields


def _task_status(value: Any) -> TaskStatus:
    if not isinstance(value, str) or value not in TaskStatus.__members__:
        raise APIError(400, f"'status' must be one of {', '.join(TaskStatus)}")
    return TaskStatus(value)


async def _link_task(ctx: Context, request: Request) -> Any:
    """Link a tracked PR to the task: ``{"repository": "o/r", "number": 5}``."""
    task_id = str(request.path_params["task_id"]).lower()
    repository, number, _ = pr_target(await json_body(request))
    try:
        result = await ctx.reconciler.link(repository, number, task_id, Source.MANUAL)
    except LookupError as exc:
        raise APIError(404, str(exc)) from None
    return {"outcome": result.detail, "event_ids": [e.id for e in result.events]}


async def _create_pr(ctx: Context, request: Request) -> Any:
    """Open the task's PR, or link the open one of its branch; never a second one.

    Body (every field optional): ``{"title", "body", "base", "draft"}``.
    Answers ``{"created": bool, "pull_request": {...}}``.
    """
    worker = ctx.require_worker()
    data = await json_body(request) if await request.body() else {}
    texts: dict[str, str | None] = {}
    for name in ("title", "body", "base"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise APIError(400, f"'{name}' must be a string")
        texts[name] = value
    draft = data.get("draft", False)
    if not isinstance(draft, bool):
        raise APIError(400, "'draft' must be a boolean")
    try:
        created = await create_pull_request(
            store=ctx.store,
            reconciler=ctx.reconciler,
            github=worker.github,
            task_id=str(request.path_params["task_id"]).lower(),
            title=texts["title"],
            body=texts["body"],
            base=texts["base"],
            draft=draft,
        )
    except CreateError as exc:
        raise APIError(exc.status, str(exc)) from None
    return created_json(created)


ENDPOINTS = [
    Endpoint("GET", "/api/tasks", _list_tasks),
    Endpoint("POST", "/api/tasks", _create_task, 201),
    Endpoint("GET", "/api/tasks/{task_id}", _get_task),
    Endpoint("PATCH", "/api/tasks/{task_id}", _patch_task),
    Endpoint("POST", "/api/tasks/{task_id}/link", _link_task),
    Endpoint("POST", "/api/tasks/{task_id}/pull-request", _create_pr),
]
