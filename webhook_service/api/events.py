"""The stored events (what the Socket.IO stream emits), for a client catching up:
``GET /api/events?since=ID``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from webhook_service.api.context import Context, Endpoint
from webhook_service.api.requests import int_param, page_limit
from webhook_service.api.responses import Page, next_url


async def _events(ctx: Context, request: Request) -> Any:
    """The stored events after ``since`` in id order; ``last_id`` is where to resume
    (``since`` itself when there is nothing newer), ``next`` the following page while
    more are stored now."""
    since = int_param(request, "since", 0)
    limit = page_limit(request)
    events = await ctx.store.events_since(since, limit + 1)
    page = events[:limit]
    last_id = page[-1].id if page else since
    return Page(
        {"events": [e.message() for e in page], "last_id": last_id},
        next_url(request, since=str(last_id)) if len(events) > limit else None,
    )


ENDPOINTS = [Endpoint("GET", "/api/events", _events)]
