"""Worktree clean-up jobs, for the operator: how one is shown, and ``POST
/api/cleanups/{task_id}/retry``, which makes a failing job due now (docs/design.md,
"Operator's console"): after the operator fixed what made it fail (a lock file left
by a crashed git, a WORKTREE_ROOT that was not set), it need not wait out its backoff
(up to an hour) or stay failed for good. The clean-up runner takes it on its next tick.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from webhook_service.api.context import Context, Endpoint
from webhook_service.api.errors import APIError
from webhook_service.api.requests import is_uuid
from webhook_service.core.events import timestamp
from webhook_service.store import ScheduledCleanup, utcnow


def cleanup_json(scheduled: ScheduledCleanup) -> dict[str, Any]:
    """A job as the console shows it; ``status`` is pending (waiting for its next
    attempt), failed (for good, after its attempts), refused or done."""
    job = scheduled.job
    return {
        "task_id": job.task_id,
        "worktree_path": job.worktree_path,
        "status": job.status,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "next_attempt_at": timestamp(scheduled.next_attempt_at),
    }


async def _retry(ctx: Context, request: Request) -> Any:
    task_id = str(request.path_params["task_id"])
    if not is_uuid(task_id):
        raise APIError(400, "the task id must be a task's UUID")
    retried = await ctx.store.retry_cleanup(task_id.lower(), utcnow())
    if retried is not None:
        return cleanup_json(retried)
    if await ctx.store.cleanup_job(task_id.lower()) is not None:
        raise APIError(409, f"the clean-up of task {task_id} is done: nothing to retry")
    raise APIError(404, f"task {task_id} has no clean-up job")


ENDPOINTS = [Endpoint("POST", "/api/cleanups/{task_id}/retry", _retry)]
