"""The JSON API for dashboards and operators (``/api``), plus health checks: the routes
of every resource module, each ``/api`` one behind the guard (token, errors as JSON).

Every ``/api`` route needs ``Authorization: Bearer API_TOKEN``; ``DASHBOARD_TOKEN``
(optional) is read-only: every ``GET``, and 403 for any other method. Errors are JSON
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

The resources live one to a module (:mod:`.pulls`, :mod:`.tasks`, :mod:`.events`,
:mod:`.health`); each ``/api`` one declares its :class:`~.context.Endpoint` list, and a
new resource is a new module added to ``_RESOURCES``.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhook_service.api import (
    cleanups,
    console,
    deliveries,
    events,
    health,
    pulls,
    tasks,
    timeline,
)
from webhook_service.api.context import Context, Endpoint, Handler, Operation
from webhook_service.api.errors import APIError
from webhook_service.api.responses import Page, json_response
from webhook_service.store import StoreUnavailable

__all__ = ["Context", "routes"]

#: The ``/api`` endpoints, in routing order.
_RESOURCES: tuple[list[Endpoint], ...] = (
    pulls.ENDPOINTS,
    tasks.ENDPOINTS,
    events.ENDPOINTS,
    deliveries.ENDPOINTS,
    timeline.ENDPOINTS,
    console.ENDPOINTS,
    cleanups.ENDPOINTS,
)


def routes(ctx: Context) -> list[Route]:
    return [
        *health.routes(ctx),
        *(
            Route(e.path, _guarded(ctx, e.operation, e.status), methods=[e.method])
            for endpoints in _RESOURCES
            for e in endpoints
        ),
    ]


def _guarded(ctx: Context, operation: Operation, status: int) -> Handler:
    """The operation behind the API token, its answer (or its error) as JSON."""

    async def endpoint(request: Request) -> Response:
        try:
            request.state.may_write = _authorize(ctx, request)
            body = await operation(ctx, request)
        except APIError as exc:
            return json_response({"error": str(exc)}, exc.status)
        except StoreUnavailable:
            return json_response({"error": "database unavailable"}, 503)
        if isinstance(body, Page):
            return body.response()
        return json_response(body, status)

    return endpoint


def _authorize(ctx: Context, request: Request) -> bool:
    """API_TOKEN may do anything; DASHBOARD_TOKEN may read (GET, and HEAD with it) and is
    told so, 403, when it tries anything else; any other token is 401. Returns whether
    the token may write."""
    if ctx.api_token is None:  # DEV_MODE without a token
        return True
    scheme, _, offered = request.headers.get("authorization", "").partition(" ")
    given = offered.strip().encode() if scheme.lower() == "bearer" else None
    if given is not None and hmac.compare_digest(given, ctx.api_token):
        return True
    reader = ctx.dashboard_token
    if given is not None and reader is not None and hmac.compare_digest(given, reader):
        if request.method not in _READ_METHODS:
            message = f"DASHBOARD_TOKEN is read-only: {request.method} needs API_TOKEN"
            raise APIError(403, message)
        return False
    raise APIError(401, "missing or wrong API token (Authorization: Bearer ...)")


#: What DASHBOARD_TOKEN may send (Starlette answers HEAD on every GET route).
_READ_METHODS = frozenset({"GET", "HEAD"})
