"""``GET /api/console/health?hours=1``: the health of the parts, in one document for the
operator's console (docs/design.md, "Operator's console").

* ``sync``: the sync worker's ``state``: ``running`` (this replica polls), ``standby``
  (it runs, another replica leads), ``stopped``, or ``not configured`` (no GitHub
  credential); ``leader``; ``last_cycle`` (``finished_at`` and the cycle's ``counts``
  as ``/stats`` has them under ``last_cycle``, ``credential_error``; null before the
  first); ``last_error``; ``next_cycle_at`` (when the worker wakes next: a cycle, or a
  standby's bid for the lead); ``budgets``: each credential's, as ``/stats`` has them,
  as a list with the credential's name under ``credential``.
* ``outbox_backlog`` (events stored, not yet emitted) and ``clients`` (Socket.IO
  connections to this replica).
* ``cleanup_failing``: the clean-up jobs whose last attempt failed and that are not
  done, most recently failed first (``POST /api/cleanups/{task_id}/retry`` retries one).
* ``minutes``: the per-minute counters of the last ``hours`` (1..24) hours, the whole
  deployment's: ``from`` and ``to`` (the current minute, still counting) and ``series``,
  each counter's ``[minute, count]`` pairs oldest first; a minute with nothing counted
  is left out. Counts reach the database every ~15 s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request

from webhook_service.api.cleanups import cleanup_json
from webhook_service.api.context import Context, Endpoint
from webhook_service.api.errors import APIError
from webhook_service.core.events import optional_timestamp, timestamp
from webhook_service.store import MINUTE_COUNTERS, minute_of, utcnow

#: The longest window the counters are kept for (store.MINUTES_KEPT).
_MAX_HOURS = 24


async def _health(ctx: Context, request: Request) -> Any:
    hours = _hours(request)
    monitor = ctx.monitor()
    failing = await ctx.store.failing_cleanups()
    return {
        "sync": _sync(ctx),
        "outbox_backlog": monitor.get("outbox_backlog", 0),
        "clients": monitor.get("socketio_clients", 0),
        "cleanup_failing": [cleanup_json(job) for job in failing],
        "minutes": await _minutes(ctx, hours),
    }


def _hours(request: Request) -> int:
    raw = request.query_params.get("hours", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_HOURS:
        raise APIError(400, f"'hours' must be a whole number from 1 to {_MAX_HOURS}")
    return int(raw)


def _sync(ctx: Context) -> dict[str, Any]:
    """The sync worker's part: its state, its last and next cycle, its budgets."""
    worker = ctx.worker()
    stats = ctx.worker_stats()
    if not ctx.sync_configured:
        state = "not configured"
    elif worker is None or not worker.is_running():
        state = "stopped"
    else:
        state = "running" if worker.is_leader() else "standby"
    last = stats.get("last_sync_at")
    next_at = worker.next_cycle_at if worker is not None and state != "stopped" else None
    return {
        "state": state,
        "leader": worker is not None and worker.is_leader(),
        "last_cycle": (
            None
            if last is None
            else {
                "finished_at": last,
                "counts": stats.get("last_cycle", {}),
                "credential_error": stats.get("credential_error"),
            }
        ),
        "last_error": stats.get("last_error"),
        "next_cycle_at": optional_timestamp(next_at),
        "budgets": [
            {"credential": label, **budget}
            for label, budget in sorted(stats.get("budgets", {}).items())
        ],
    }


async def _minutes(ctx: Context, hours: int) -> dict[str, Any]:
    """The window's counters: ``hours * 60`` minutes, the current one the last."""
    to = minute_of(utcnow())
    start = to - timedelta(minutes=hours * 60 - 1)
    found = await ctx.store.minute_counts(start)
    series = {name: found.pop(name, []) for name in MINUTE_COUNTERS}
    series.update(found)  # a counter this release does not know (a newer replica's)
    return {
        "from": timestamp(start),
        "to": timestamp(to),
        "series": {
            name: [[timestamp(minute), value] for minute, value in points]
            for name, points in series.items()
        },
    }


async def _access(ctx: Context, request: Request) -> Any:
    """What the token may do, so the console offers only what it can: ``write`` is
    false for DASHBOARD_TOKEN."""
    return {"write": bool(request.state.may_write)}


ENDPOINTS = [
    Endpoint("GET", "/api/console/health", _health),
    Endpoint("GET", "/api/console/access", _access),
]
