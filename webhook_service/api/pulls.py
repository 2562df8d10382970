"""Pull requests: list and read the tracked ones, track one (MonitorPR), re-fetch one
from GitHub now, and force a sync cycle. The last three need the sync worker (409
without one): they ask GitHub."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from webhook_service.api.context import Context, Endpoint
from webhook_service.api.errors import APIError
from webhook_service.api.requests import cursor, json_body, page_limit, pr_target, query_repo
from webhook_service.api.responses import Page, encode_cursor, next_url
from webhook_service.api.views import pull_json
from webhook_service.core.model import Source
from webhook_service.core.payloads import PayloadError
from webhook_service.github.errors import GitHubError
from webhook_service.sync.poller import PRSyncWorker


async def _force_sync(ctx: Context, request: Request) -> Any:
    return await ctx.require_worker().force_sync()


async def _track(ctx: Context, request: Request) -> Any:
    """MonitorPR: watch one PR (``{"repository", "number", "task_id"?}``) and fetch it now."""
    worker = ctx.require_worker()
    data = await json_body(request)
    repository, number, task_id = pr_target(data)
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


async def _list_pulls(ctx: Context, request: Request) -> Any:
    repository = query_repo(request)
    status = request.query_params.get("status")
    if status is not None and status not in ("OPEN", "CLOSED", "MERGED"):
        raise APIError(400, "status must be OPEN, CLOSED or MERGED")
    limit = page_limit(request)
    after = cursor(request, "pulls", _pull_key)
    pulls = await ctx.store.list_pulls(
        repository=repository, status=status, limit=limit + 1, after=after
    )
    page, more = pulls[:limit], len(pulls) > limit
    last = page[-1] if more else None
    return Page(
        {"pulls": [pull_json(p) for p in page]},
        next_url(request, cursor=encode_cursor("pulls", last.repository, last.number))
        if last is not None
        else None,
    )


def _pull_key(key: Sequence[Any]) -> tuple[str, int]:
    match key:
        case [str(repository), int(number)] if not isinstance(number, bool) and 0 < number < 2**31:
            return repository, number
    raise ValueError(key)


async def _get_pull(ctx: Context, request: Request) -> Any:
    repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
    pr = await ctx.store.get_pull(repository, request.path_params["number"])
    if pr is None:
        raise APIError(
            404, f"pull request {repository}#{request.path_params['number']} is not tracked"
        )
    return pull_json(pr)


ENDPOINTS = [
    Endpoint("POST", "/api/sync", _force_sync),
    Endpoint("POST", "/api/pulls/track", _track),
    Endpoint("POST", "/api/pulls/{owner}/{repo}/{number:int}/reconcile", _reconcile),
    Endpoint("GET", "/api/pulls", _list_pulls),
    Endpoint("GET", "/api/pulls/{owner}/{repo}/{number:int}", _get_pull),
]
