"""The JSON API for dashboards and operators (``/api``), plus health checks.

Every ``/api`` route needs ``Authorization: Bearer API_TOKEN``. Errors are JSON
``{"error": "..."}`` with a 4xx status for bad requests and 503 when the database is
unavailable.

The lists (``/api/pulls``, ``/api/tasks``, ``/api/events``) are paged by keyset, not
by offset: each page ends with ``next``, the relative URL of the following page (the
same query with ``cursor=`` or, for events, ``since=`` moved on), or null after the
last, and the same URL in a ``Link: <...>; rel="next"`` header. A cursor is the last
row's key in the list's order, so rows written while a client pages never make it see
a row twice or miss one that was there when it started:

* pulls: ``(repository, number)`` ascending; tasks: ``(created_at, id)`` descending
  (newest first); the cursor is base64url (unpadded) of the JSON
  ``["pulls", repository, number]`` or ``["tasks", created_at, id]``: opaque to
  clients, which only pass it back;
* events: ``id`` ascending; ``since=ID`` is the cursor (``last_id`` of the page).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhook_service.api.views import created_json, pull_json, task_json
from webhook_service.core.payloads import PayloadError
from webhook_service.core.rules import TASK_FIELDS, InvalidTransition, Source, TaskStatus
from webhook_service.github.client import GitHubError
from webhook_service.reconciler import Reconciler
from webhook_service.store import Store, StoreUnavailable, TaskRecord, utcnow
from webhook_service.sync.poller import PRSyncWorker
from webhook_service.tasks.creator import CreateError, create_pull_request

Handler = Callable[[Request], Awaitable[Response]]
_Key = TypeVar("_Key")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Context:
    store: Store
    reconciler: Reconciler
    api_token: bytes | None
    ready: Callable[[], dict[str, bool]]
    worker: Callable[[], PRSyncWorker | None] = lambda: None
    monitor: Callable[[], dict[str, Any]] = dict
    #: Whether a GitHub credential is configured (so a sync worker should run).
    sync_configured: bool = False
    #: ``/stats`` while no worker runs (sync.idle_stats: the same keys, zeros and nulls).
    idle_stats: Callable[[], dict[str, Any]] = lambda: {"running": False}

    def worker_stats(self) -> dict[str, Any]:
        worker = self.worker()
        return worker.get_stats() if worker is not None else self.idle_stats()

    def require_worker(self) -> PRSyncWorker:
        worker = self.worker()
        if worker is None:
            raise APIError(409, "the sync worker is off: set GITHUB_TOKEN or APP_ID/PRIVATE_KEY")
        return worker


def routes(ctx: Context) -> list[Route]:
    def guarded(
        handler: Callable[[Context, Request], Awaitable[Any]], status: int = 200
    ) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                _authorize(ctx, request)
                body = await handler(ctx, request)
            except APIError as exc:
                return _json({"error": str(exc)}, exc.status)
            except StoreUnavailable:
                return _json({"error": "database unavailable"}, 503)
            if isinstance(body, _Page):
                return body.response()
            return _json(body, status)

        return endpoint

    return [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz(ctx), methods=["GET"]),
        Route("/stats", _stats(ctx), methods=["GET"]),
        Route("/health", _health(ctx), methods=["GET"]),
        Route("/api/sync", guarded(_force_sync), methods=["POST"]),
        Route("/api/pulls/track", guarded(_track), methods=["POST"]),
        Route(
            "/api/pulls/{owner}/{repo}/{number:int}/reconcile",
            guarded(_reconcile),
            methods=["POST"],
        ),
        Route("/api/pulls", guarded(_list_pulls), methods=["GET"]),
        Route("/api/pulls/{owner}/{repo}/{number:int}", guarded(_get_pull), methods=["GET"]),
        Route("/api/tasks", guarded(_list_tasks), methods=["GET"]),
        Route("/api/tasks", guarded(_create_task, 201), methods=["POST"]),
        Route("/api/tasks/{task_id}", guarded(_get_task), methods=["GET"]),
        Route("/api/tasks/{task_id}", guarded(_patch_task), methods=["PATCH"]),
        Route("/api/tasks/{task_id}/link", guarded(_link_task), methods=["POST"]),
        Route("/api/tasks/{task_id}/pull-request", guarded(_create_pr), methods=["POST"]),
        Route("/api/events", guarded(_events), methods=["GET"]),
    ]


def _authorize(ctx: Context, request: Request) -> None:
    if ctx.api_token is None:  # DEV_MODE without a token
        return
    scheme, _, offered = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        offered.strip().encode(), ctx.api_token
    ):
        raise APIError(401, "missing or wrong API token (Authorization: Bearer ...)")


async def _healthz(request: Request) -> Response:
    return _json({"status": "ok"})


async def _checks(ctx: Context) -> tuple[dict[str, bool], str | None]:
    """The running parts and the database (pinged now); why the database is down."""
    checks = ctx.ready()
    try:
        await ctx.store.ping()
    except StoreUnavailable as exc:
        checks["database"] = False
        return checks, str(exc)
    checks["database"] = True
    return checks, None


def _readyz(ctx: Context) -> Handler:
    """Ready to take webhooks: the database answers and the workers run (503 if not).

    A credential GitHub rejects is said here (``status: "degraded"``, ``problems``) but
    keeps the answer 200: readiness routes webhook traffic, and taking webhooks needs
    no GitHub credential. Turning them away would lose deliveries GitHub never retries.
    ``/health`` (the sync worker's) is 503 for it.
    """

    async def readyz(request: Request) -> Response:
        checks, down = await _checks(ctx)
        problems = {"database": down} if down is not None else {}
        for name, ok in checks.items():
            if not ok and name != "database":
                problems.setdefault(name, "not running")
        ok = all(checks.values())
        rejected = ctx.worker_stats().get("credential_error")
        if rejected:
            checks["github_credentials"] = False
            problems["github_credentials"] = rejected
        status = "unavailable" if not ok else "degraded" if problems else "ready"
        body: dict[str, Any] = {"status": status, "checks": checks}
        if problems:
            body["problems"] = problems
        return _json(body, 200 if ok else 503)

    return readyz


def _stats(ctx: Context) -> Handler:
    async def stats(request: Request) -> Response:
        body = ctx.worker_stats()
        body["monitor"] = ctx.monitor()  # the webhook side and the stream
        return _json(body)

    return stats


def _health(ctx: Context) -> Handler:
    """The original design's health check, ``{"service": "pr_sync_worker", "status",
    "stats"}``: with a sync worker configured, healthy while it runs and GitHub accepted
    its credential in the last cycle. A webhook-only setup has nothing wrong for lacking
    one: it reports the webhook path (``"sync_worker": "not configured"``). Either way
    the database must answer and the reconciler and dispatcher run (``checks``)."""

    async def health(request: Request) -> Response:
        stats = ctx.worker_stats()
        checks, _ = await _checks(ctx)
        if ctx.sync_configured:
            worker = "running" if stats["running"] else "stopped"
            healthy = all(checks.values()) and worker == "running"
            healthy = healthy and not stats.get("credential_error")
        else:
            worker, healthy = "not configured", all(checks.values())
        body = {
            "service": "pr_sync_worker",
            "status": "healthy" if healthy else "unhealthy",
            "sync_worker": worker,
            "checks": checks,
            "stats": stats,
        }
        return _json(body, 200 if healthy else 503)

    return health


_PATCHABLE = ("status", *TASK_FIELDS)


async def _patch_task(ctx: Context, request: Request) -> Any:
    """Change a task by hand: any of ``status``, ``title``, ``repository``, ``branch``
    and ``worktree_path`` (validated as by ``POST /api/tasks``; null clears all but
    status and title), in one transaction (see ``Reconciler.edit_task``)."""
    task_id = str(request.path_params["task_id"]).lower()
    data = await _body(request)
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
        if name == "repository" and value is not None and not _REPO.fullmatch(value):
            raise APIError(400, "'repository' must be owner/name")
        fields[name] = value
    return fields


def _task_status(value: Any) -> TaskStatus:
    if not isinstance(value, str) or value not in TaskStatus.__members__:
        raise APIError(400, f"'status' must be one of {', '.join(TaskStatus)}")
    return TaskStatus(value)


async def _force_sync(ctx: Context, request: Request) -> Any:
    return await ctx.require_worker().force_sync()


async def _track(ctx: Context, request: Request) -> Any:
    """MonitorPR: watch one PR (``{"repository", "number", "task_id"?}``) and fetch it now."""
    worker = ctx.require_worker()
    data = await _body(request)
    repository, number, task_id = _pr_target(data)
    if task_id is not None and await ctx.store.get_task(task_id) is None:
        raise APIError(404, f"task {task_id} does not exist")
    await _fetch(worker, repository, number)  # first: a PR GitHub does not know is not kept
    await ctx.store.monitor_pull((repository, number))
    if task_id is not None:
        await ctx.reconciler.link(repository, number, task_id, Source.MANUAL)
    return await _stored_pull(ctx, repository, number)


async def _reconcile(ctx: Context, request: Request) -> Any:
    """Re-fetch one PR from GitHub now; its answer wins."""
    worker = ctx.require_worker()
    repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
    number = int(request.path_params["number"])
    await _fetch(worker, repository, number)
    return await _stored_pull(ctx, repository, number)


async def _fetch(worker: PRSyncWorker, repository: str, number: int) -> None:
    try:
        await worker.sync_pull((repository, number), authoritative=True)
    except GitHubError as exc:
        status = 404 if exc.status == 404 else 502
        raise APIError(status, f"GitHub: {exc}") from None
    except PayloadError as exc:
        raise APIError(502, f"GitHub answered with an unexpected PR: {exc}") from None


async def _stored_pull(ctx: Context, repository: str, number: int) -> Any:
    pr = await ctx.store.get_pull(repository, number)
    if pr is None:
        raise APIError(404, f"pull request {repository}#{number} is not tracked")
    return pull_json(pr)


def _pr_target(data: dict[str, Any]) -> tuple[str, int, str | None]:
    repository, number, task_id = data.get("repository"), data.get("number"), data.get("task_id")
    if not isinstance(repository, str) or not _REPO.fullmatch(repository):
        raise APIError(400, "'repository' must be owner/name")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 2**31:
        raise APIError(400, "'number' must be a positive integer")
    if task_id is not None and (not isinstance(task_id, str) or not _is_uuid(task_id)):
        raise APIError(400, "'task_id' must be a task's UUID")
    return repository, number, task_id.lower() if task_id else None


async def _list_pulls(ctx: Context, request: Request) -> Any:
    repository = _query_repo(request)
    status = request.query_params.get("status")
    if status is not None and status not in ("OPEN", "CLOSED", "MERGED"):
        raise APIError(400, "status must be OPEN, CLOSED or MERGED")
    limit = _limit(request)
    after = _cursor(request, "pulls", _pull_key)
    pulls = await ctx.store.list_pulls(
        repository=repository, status=status, limit=limit + 1, after=after
    )
    page, more = pulls[:limit], len(pulls) > limit
    last = page[-1] if more else None
    return _Page(
        {"pulls": [pull_json(p) for p in page]},
        _next_url(request, cursor=_encode_cursor("pulls", last.repository, last.number))
        if last is not None
        else None,
    )


async def _get_pull(ctx: Context, request: Request) -> Any:
    repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
    pr = await ctx.store.get_pull(repository, request.path_params["number"])
    if pr is None:
        raise APIError(
            404, f"pull request {repository}#{request.path_params['number']} is not tracked"
        )
    return pull_json(pr)


async def _list_tasks(ctx: Context, request: Request) -> Any:
    status = request.query_params.get("status")
    if status is not None and status not in TaskStatus.__members__:
        raise APIError(400, f"status must be one of {', '.join(TaskStatus)}")
    limit = _limit(request)
    after = _cursor(request, "tasks", _task_key)
    tasks = await ctx.store.list_tasks(
        status=status, repository=_query_repo(request), limit=limit + 1, after=after
    )
    page, more = tasks[:limit], len(tasks) > limit
    last = page[-1] if more else None
    return _Page(
        {"tasks": [task_json(t) for t in page]},
        _next_url(request, cursor=_encode_cursor("tasks", last.created_at.isoformat(), last.id))
        if last is not None
        else None,
    )


async def _create_task(ctx: Context, request: Request) -> Any:
    data = await _body(request)
    if data.get("title") is None:
        raise APIError(400, "'title' is required and must be a non-empty string")
    fields = _task_fields(data)
    task_id = data.get("id") or str(uuid.uuid4())
    if not isinstance(task_id, str) or not _is_uuid(task_id):
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


async def _link_task(ctx: Context, request: Request) -> Any:
    """Link a tracked PR to the task: ``{"repository": "o/r", "number": 5}``."""
    task_id = str(request.path_params["task_id"]).lower()
    repository, number, _ = _pr_target(await _body(request))
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
    data = await _body(request) if await request.body() else {}
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


async def _events(ctx: Context, request: Request) -> Any:
    """The stored events after ``since`` in id order; ``last_id`` is where to resume
    (``since`` itself when there is nothing newer), ``next`` the following page while
    more are stored now."""
    since = _int_param(request, "since", 0)
    limit = _limit(request)
    events = await ctx.store.events_since(since, limit + 1)
    page = events[:limit]
    last_id = page[-1].id if page else since
    return _Page(
        {"events": [e.message() for e in page], "last_id": last_id},
        _next_url(request, since=str(last_id)) if len(events) > limit else None,
    )


@dataclass(frozen=True, slots=True)
class _Page:
    """One page of a list: its body gets ``next``, its response a ``Link`` header."""

    body: Mapping[str, Any]
    next: str | None

    def response(self) -> Response:
        response = _json({**self.body, "next": self.next})
        if self.next is not None:
            response.headers["Link"] = f'<{self.next}>; rel="next"'
        return response


def _next_url(request: Request, **moved: str) -> str:
    """This request's path and query with the ``moved`` parameters replaced."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in moved]
    return f"{request.url.path}?{urlencode([*query, *moved.items()])}"


def _encode_cursor(kind: str, *key: Any) -> str:
    raw = orjson.dumps([kind, *key])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _cursor(request: Request, kind: str, parse: Callable[[Sequence[Any]], _Key]) -> _Key | None:
    """The key in ``?cursor=``, given out by this list (kind) earlier; 400 otherwise."""
    raw = request.query_params.get("cursor")
    if raw is None:
        return None
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(decoded, list) or not decoded or decoded[0] != kind:
            raise ValueError(kind)
        return parse(decoded[1:])
    except (binascii.Error, ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
        raise APIError(
            400, f"'cursor' is not a cursor of /api/{kind}: pass back the one a page gave"
        ) from None


def _pull_key(key: Sequence[Any]) -> tuple[str, int]:
    match key:
        case [str(repository), int(number)] if not isinstance(number, bool) and 0 < number < 2**31:
            return repository, number
    raise ValueError(key)


def _task_key(key: Sequence[Any]) -> tuple[datetime, str]:
    match key:
        case [str(created_at), str(task_id)]:
            created = datetime.fromisoformat(created_at)
            if created.tzinfo is None:
                raise ValueError(created_at)
            return created.astimezone(UTC), task_id
    raise ValueError(key)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _query_repo(request: Request) -> str | None:
    repository = request.query_params.get("repository")
    if repository is not None and not _REPO.fullmatch(repository):
        raise APIError(400, "repository must be owner/name")
    return repository


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise APIError(400, f"'{name}' must be a non-negative integer")
    return int(raw)


def _limit(request: Request) -> int:
    limit = _int_param(request, "limit", 500)
    if not 1 <= limit <= 5000:
        raise APIError(400, "'limit' must be between 1 and 5000")
    return limit


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise APIError(400, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise APIError(400, "the body must be a JSON object")
    return data


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
