"""A pull request's timeline: every recorded observation of it (webhook, poller, replay,
an operator's link), newest first, with the core's decision and what it changed
(docs/design.md, "Operator's console")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from webhook_service.api.context import Context, Endpoint
from webhook_service.api.errors import APIError
from webhook_service.api.requests import cursor, page_limit
from webhook_service.api.responses import Page, encode_cursor, next_url
from webhook_service.api.views import pull_json
from webhook_service.core.events import optional_timestamp, timestamp
from webhook_service.store import StoredObservation

#: The console's lists: 50 a page unless asked, at most 500.
CONSOLE_LIMITS = {"default": 50, "most": 500}


def observation_json(o: StoredObservation) -> dict[str, Any]:
    """One observation as the timeline and a delivery's ``changes`` show it."""
    return {
        "id": o.id,
        "source": o.source,
        "delivery_guid": o.delivery_guid,
        "applied_at": timestamp(o.applied_at),
        "observed": {
            "status": o.observed_status,
            "updated_at": optional_timestamp(o.observed_updated_at),
        },
        "decision": o.outcome,
        "changes": o.changes,
    }


async def _timeline(ctx: Context, request: Request) -> Any:
    """The PR (null once only its observations are left) and its observations, newest
    first; 404 when it was never observed."""
    repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
    number = int(request.path_params["number"])
    limit = page_limit(request, **CONSOLE_LIMITS)
    before = cursor(request, "timeline", _observation_key)
    never = APIError(404, f"pull request {repository}#{number} was never observed")
    if not 0 < number < 2**31:  # not a number GitHub gives, nor one the columns hold
        raise never
    pr = await ctx.store.get_pull(repository, number)
    if pr is None and not await ctx.store.was_observed(repository, number):
        raise never
    rows = await ctx.store.observations_of_pull(repository, number, limit=limit + 1, before=before)
    page = rows[:limit]
    return Page(
        {
            "pull_request": pull_json(pr) if pr is not None else None,
            "observations": [observation_json(o) for o in page],
        },
        next_url(request, cursor=encode_cursor("timeline", page[-1].id))
        if len(rows) > limit
        else None,
    )


def _observation_key(key: Sequence[Any]) -> int:
    match key:
        case [int(observation_id)] if not isinstance(observation_id, bool) and observation_id > 0:
            return observation_id
    raise ValueError(key)


ENDPOINTS = [Endpoint("GET", "/api/pulls/{owner}/{repo}/{number:int}/timeline", _timeline)]
