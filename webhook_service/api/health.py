"""Health and figures, for load balancers, orchestrators and operators: ``/healthz``
(the process answers), ``/readyz`` (ready to take webhooks), ``/health`` (the sync
worker's, as in the original design) and ``/stats``. None needs the API token."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhook_service.api.context import Context, Handler
from webhook_service.api.responses import json_response
from webhook_service.store import StoreUnavailable


def routes(ctx: Context) -> list[Route]:
    return [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz(ctx), methods=["GET"]),
        Route("/stats", _stats(ctx), methods=["GET"]),
        Route("/health", _health(ctx), methods=["GET"]),
    ]


async def _healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


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
        return json_response(body, 200 if ok else 503)

    return readyz


def _stats(ctx: Context) -> Handler:
    async def stats(request: Request) -> Response:
        body = ctx.worker_stats()
        body["monitor"] = ctx.monitor()  # the webhook side and the stream
        return json_response(body)

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
        return json_response(body, 200 if healthy else 503)

    return health
