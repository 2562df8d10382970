"""The path every API request takes through the fake, in GitHub's order: recorded and
counted against the secondary limits on arrival, then injected faults, routing,
authentication, the primary limit, the endpoint, and conditional GETs (``ETag`` -> 304,
free of the primary limit). Each answer carries GitHub's ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

import asyncio
import hashlib
from http import HTTPStatus

from aiohttp import web

import webhook_service.testing.fake_github.graphql as graphql
from webhook_service.testing.fake_github.budgets import Budget, Resource
from webhook_service.testing.fake_github.context import Context
from webhook_service.testing.fake_github.credentials import Credential
from webhook_service.testing.fake_github.faults import Fault
from webhook_service.testing.fake_github.limits import Refusal, secondary_points
from webhook_service.testing.fake_github.records import RequestRecord
from webhook_service.testing.fake_github.responses import RATE_DOCS, ApiError, error, json_response
from webhook_service.testing.fake_github.routes import ROUTES

_SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


async def answer(fake: Context, request: web.Request) -> web.StreamResponse:
    """Every API request: secondary limits, faults, routing, authentication, primary
    limits, conditional GETs."""
    body = await request.read() if request.can_read_body else b""  # kept for the handler
    record = RequestRecord(request.method, request.path, dict(request.query), body=body)
    record.conditional = "If-None-Match" in request.headers
    record.api = "graphql" if request.path == "/graphql" else "rest"
    fake.requests.append(record)
    # Secondary limits count every request of a known credential as it arrives (refused
    # ones too: GitHub counts what is sent), before faults and routing, and its time in
    # flight until it is answered.
    key = fake._credentials.budget_of(request.headers.get("Authorization", ""))
    refusal = None
    if key is not None:
        mutation = record.api == "graphql" and graphql.is_mutation(body)
        record.credential = key
        record.points = secondary_points(request.method, record.api, mutation=mutation)
        refusal = fake.limits.admit(key, record.api, record.points, record.received_at)
    try:
        response = await _dispatch(fake, request, record, refusal)
    finally:
        if key is not None:
            fake.limits.release(key)
    record.status = response.status
    return response


async def _dispatch(
    fake: Context, request: web.Request, record: RequestRecord, refusal: Refusal | None
) -> web.Response:
    if delay := fake._take("delay", request.path, request.method):
        await asyncio.sleep(delay.seconds)
    fail = fake._take("fail", request.path, request.method)
    if fail is not None and not fail.handled:
        return error(fail.status, HTTPStatus(fail.status).phrase)
    response = await _handle(fake, request, record, refusal)
    if fail is not None:  # handled: it took effect (and cost), but the answer is lost
        return error(fail.status, HTTPStatus(fail.status).phrase)
    return response


async def _handle(
    fake: Context, request: web.Request, record: RequestRecord, refusal: Refusal | None
) -> web.Response:
    route = request.match_info.route
    if request.match_info.http_exception is not None or route.resource is None:
        return error(404, "Not Found")
    auth, handler = ROUTES[(route.method, route.resource.canonical)]
    credential = fake._credentials.authenticate(request.headers.get("Authorization", ""), auth)
    if isinstance(credential, str):
        if record.api == "graphql":
            return json_response(graphql.unauthenticated(credential), 401)
        return error(401, credential)
    record.token = credential.label
    resource: Resource = "graphql" if record.api == "graphql" else "core"
    budget = fake._primary.budget(credential.budget_key, resource)
    if budget.remaining == 0 and resource == "graphql":
        response = json_response(graphql.rate_limited(credential.who))  # a 200, see there
    elif budget.remaining == 0:
        # Docs "Rate limits for the REST API": remaining 0 → 403, x-ratelimit-remaining 0.
        who = credential.who
        response = error(403, f"API rate limit exceeded for {who}.", docs=RATE_DOCS)
    elif (fault := fake._take("secondary", request.path, request.method)) or refusal:
        response = _secondary_refused(fake, fault, refusal)
        record.rate_cost = 1  # a refused request costs 1 from the primary limit
        budget.used += 1
    else:
        record.rate_cost = 1
        budget.used += 1  # before the handler: GraphQL's rateLimit includes this query
        try:
            response = await handler(fake, request, credential)
        except ApiError as exc:
            response = error(exc.status, exc.message, **exc.extra)
        if request.method == "GET" and response.status == 200:
            response = _conditional(request, response, credential, record)
        budget.used -= 1 - record.rate_cost  # a 304 is free of the primary limit
    _rate_headers(response, budget, resource)
    return response


def _rate_headers(response: web.Response, budget: Budget, resource: Resource) -> None:
    response.headers["X-RateLimit-Limit"] = str(budget.limit)
    response.headers["X-RateLimit-Remaining"] = str(budget.remaining)
    response.headers["X-RateLimit-Used"] = str(budget.used)
    response.headers["X-RateLimit-Reset"] = str(budget.reset)
    response.headers["X-RateLimit-Resource"] = resource
    response.headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"


def _secondary_refused(
    fake: Context, fault: Fault | None, refusal: Refusal | None
) -> web.Response:
    """Docs "Exceeding the rate limit": a secondary limit is a 403 or 429 whose message
    says so, with ``retry-after`` seconds when GitHub sends it. An injected fault wins
    over a limit the fake computed."""
    fake.secondary_refusals += 1
    response = error(fault.status if fault else 403, _SECONDARY, docs=RATE_DOCS)
    retry_after = fault.retry_after if fault else refusal.retry_after if refusal else None
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _conditional(
    request: web.Request, response: web.Response, credential: Credential, record: RequestRecord
) -> web.Response:
    """A strong ETag of credential + Link + body (GitHub's vary per token); 304 if sent.

    Docs "Best practices" / conditional requests: a 304 to an authorized conditional
    request does not count against the primary rate limit.
    """
    assert isinstance(response.body, bytes)
    digest = hashlib.blake2b(digest_size=16)
    for part in (credential.raw, response.headers.get("Link", "")):
        digest.update(part.encode() + b"\0")
    digest.update(response.body)
    etag = f'"{digest.hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=60, s-maxage=60"}
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        record.rate_cost = 0
        return web.Response(status=304, headers=headers)
    response.headers.update(headers)
    return response


def _etag_matches(header: str, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/"x" matches "x".
    return any(tag.strip().removeprefix("W/") in ("*", etag) for tag in header.split(","))
