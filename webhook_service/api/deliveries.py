"""Deliveries for the operator's console: the list (filters, newest first), one
delivery with what it changed, and running a stored one through the core again
(docs/design.md, "Operator's console").

Requests the receiver refused are not in the database (a flood of them must not fill
it): ``outcome=rejected`` lists this process's last ones, from memory, as one page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request

from webhook_service.api.context import Context, Endpoint
from webhook_service.api.errors import APIError
from webhook_service.api.requests import cursor, int_param, page_limit, query_repo, time_key
from webhook_service.api.responses import Page, encode_cursor, next_url
from webhook_service.api.timeline import CONSOLE_LIMITS, observation_json
from webhook_service.core.events import optional_timestamp, timestamp
from webhook_service.core.model import Outcome
from webhook_service.ingest.receiver import RejectedRequest, redacted
from webhook_service.ingest.replay import redeliver
from webhook_service.store import DeliverySummary
from webhook_service.store.deliveries import OUTCOME_FILTERS

OUTCOMES = (*OUTCOME_FILTERS, "rejected")
_DECISIONS = frozenset(Outcome)


def summary_json(d: DeliverySummary) -> dict[str, Any]:
    return {
        "guid": d.guid,
        "event": d.event,
        "action": d.action,
        "repository": d.repository,
        "number": d.pr_number,
        "received_at": timestamp(d.received_at),
        "processed_at": optional_timestamp(d.processed_at),
        "outcome": d.shown_outcome,
        "decision": d.detail if d.outcome == "applied" and d.detail in _DECISIONS else None,
        "attempts": d.attempts,
        "detail": d.detail,
    }


def _rejected_json(r: RejectedRequest) -> dict[str, Any]:
    return {
        "guid": r.guid,
        "event": r.event,
        "action": None,
        "repository": None,
        "number": None,
        "received_at": timestamp(r.received_at),
        "processed_at": None,
        "outcome": "rejected",
        "decision": None,
        "attempts": 1,
        "detail": r.reason,
        "status": r.status,
        "headers": r.headers,
    }


async def _list(ctx: Context, request: Request) -> Any:
    filters = _filters(request)
    limit = page_limit(request, **CONSOLE_LIMITS)
    if filters["outcome"] == "rejected":
        return Page({"deliveries": _rejected(ctx, filters)[:limit]}, None)
    after = cursor(request, "deliveries", time_key)
    rows = await ctx.store.delivery_summaries(**filters, limit=limit + 1, after=after)
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return Page(
        {"deliveries": [summary_json(d) for d in page]},
        next_url(
            request,
            cursor=encode_cursor("deliveries", last.received_at.isoformat(), last.guid),
        )
        if last is not None
        else None,
    )


def _filters(request: Request) -> dict[str, Any]:
    """The list's filters, each checked (400 naming the parameter)."""
    params = request.query_params
    event = params.get("event")
    if event is not None and not (0 < len(event) <= 200):
        raise APIError(400, "'event' must be an event name such as pull_request")
    outcome = params.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise APIError(400, f"'outcome' must be one of {', '.join(OUTCOMES)}")
    number: int | None = int_param(request, "number", 0) if "number" in params else None
    if number is not None and not 0 < number < 2**31:
        raise APIError(400, "'number' must be a positive integer")
    return {
        "event": event,
        "outcome": outcome,
        "repository": query_repo(request),
        "number": number,
        "since": _since(params.get("since")),
    }


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        since = datetime.fromisoformat(raw)
    except ValueError:
        raise APIError(400, "'since' must be an ISO 8601 time, e.g. 2026-11-26T10:30:00Z") from None
    return since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)


def _rejected(ctx: Context, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """The refused requests in memory that match: none names a repository or PR."""
    if filters["repository"] is not None or filters["number"] is not None:
        return []
    event, since = filters["event"], filters["since"]
    return [
        _rejected_json(r)
        for r in ctx.rejected()
        if (event is None or r.event == event) and (since is None or r.received_at > since)
    ]


async def _detail(ctx: Context, request: Request) -> Any:
    """The summary, the headers as recorded (redacted), the body and what it changed."""
    guid = str(request.path_params["guid"])
    summary = await ctx.store.delivery_summary(guid)
    record = await ctx.store.get_delivery(guid)
    if summary is None or record is None:
        raise APIError(404, f"delivery {guid} is not stored")
    try:
        body, text = orjson.loads(record.body), None
    except orjson.JSONDecodeError:  # form-encoded, or not what it claimed to be
        body, text = None, record.body.decode("utf-8", "replace")
    return {
        **summary_json(summary),
        "headers": redacted(record.headers),
        "body": body,
        "body_text": text,
        "changes": [observation_json(o) for o in await ctx.store.observations_of_delivery(guid)],
    }


async def _redeliver(ctx: Context, request: Request) -> Any:
    """Run the stored delivery through the core again (``webhook-service redeliver``);
    ``changes``: the observations this run recorded."""
    guid = str(request.path_params["guid"])
    if await ctx.store.delivery_summary(guid) is None:
        raise APIError(404, f"delivery {guid} is not stored")
    seen = {o.id for o in await ctx.store.observations_of_delivery(guid)}
    [report] = await redeliver(ctx.store, ctx.reconciler, [guid])
    recorded = [o for o in await ctx.store.observations_of_delivery(guid) if o.id not in seen]
    decision = report.outcome if report.outcome in _DECISIONS else None
    if decision is not None:
        outcome = "applied"
    else:
        outcome = "failed" if report.outcome == "failed" else "ignored"
    return {
        "guid": guid,
        "outcome": outcome,
        "decision": decision,
        "detail": None if decision is not None else report.outcome,
        "changes": [observation_json(o) for o in recorded],
    }


ENDPOINTS = [
    Endpoint("GET", "/api/deliveries", _list),
    Endpoint("GET", "/api/deliveries/{guid}", _detail),
    Endpoint("POST", "/api/deliveries/{guid}/redeliver", _redeliver),
]
