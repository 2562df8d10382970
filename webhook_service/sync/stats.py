"""The sync worker's counters and the ``/stats`` document built from them.

The keys are the original design's (``sync_count``, ``api_calls``, ...), with the
same keys whether or not a worker runs (:func:`idle_stats`), so that monitoring that
reads them does not break.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webhook_service.config import Settings
from webhook_service.core.events import optional_timestamp
from webhook_service.github.transport import ApiStats


@dataclass(slots=True)
class SyncStats:
    sync_count: int = 0
    error_count: int = 0
    last_sync_at: datetime | None = None
    last_error: str | None = None
    observations: int = 0
    redeliveries: int = 0
    first_sweep_done: bool = False
    credential_error: str | None = None  # GitHub rejected a credential in the last cycle
    searches: int = 0  # search requests (pages)
    found: int = 0  # PRs discovery found changed
    swept: int = 0  # repository listings
    last_cycle: dict[str, int] = field(default_factory=dict)  # the last cycle's counts

    def counts(self, api: ApiStats) -> dict[str, int]:
        """The counters a cycle reports as its own (``last_cycle``): their difference."""
        return {
            "requests": api.calls,
            "not_modified": api.not_modified,
            "searches": self.searches,
            "found_by_search": self.found,
            "repositories_swept": self.swept,
            "secondary_refusals": api.secondary_refusals,
        }


def worker_stats(
    stats: SyncStats,
    api: ApiStats,
    settings: Settings,
    *,
    running: bool,
    leader: bool,
    tracked: int,
    budgets: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """``/stats`` of a running service: the worker's counters and its client's."""
    return {
        "running": running,
        "leader": leader,
        "last_sync_at": optional_timestamp(stats.last_sync_at),
        "sync_count": stats.sync_count,
        "error_count": stats.error_count,
        "config": stats_config(settings),
        "api_calls": api.calls,
        "not_modified": api.not_modified,
        "retries": api.retries,
        "rate_limited": api.rate_limited,
        "rate_limit_remaining": api.rate_limit_remaining,
        "rate_limit_reset": api.rate_limit_reset,
        "last_error": stats.last_error or api.last_error,
        "observations": stats.observations,
        "redeliveries_requested": stats.redeliveries,
        "first_sweep_done": stats.first_sweep_done,
        "credential_error": stats.credential_error,
        "secondary_refusals": api.secondary_refusals,
        "searches": stats.searches,
        "found_by_search": stats.found,
        "repositories_swept": stats.swept,
        "repositories_tracked": tracked,
        "last_cycle": dict(stats.last_cycle),
        "budgets": budgets,
    }


def stats_config(settings: Settings) -> dict[str, Any]:
    """The worker's settings, as ``/stats`` shows them under ``config``."""
    return {
        "sync_interval": settings.sync_interval,
        "batch_size": settings.sync_batch_size,
        "max_concurrent_syncs": settings.sync_max_concurrency,
        "sync_timeout": settings.sync_timeout,
        "retry_attempts": settings.sync_retry_attempts,
        "retry_delay": settings.sync_retry_delay,
    }


def idle_stats(settings: Settings) -> dict[str, Any]:
    """``/stats`` of a service with no sync worker (no GitHub credential): the same keys
    as :meth:`PRSyncWorker.get_stats`, not running, with nulls and zeros, so monitoring
    that reads the original design's shape does not break."""
    return {
        "running": False,
        "leader": False,
        "last_sync_at": None,
        "sync_count": 0,
        "error_count": 0,
        "config": stats_config(settings),
        "api_calls": 0,
        "not_modified": 0,
        "retries": 0,
        "rate_limited": 0,
        "rate_limit_remaining": None,
        "rate_limit_reset": None,
        "last_error": None,
        "observations": 0,
        "redeliveries_requested": 0,
        "first_sweep_done": False,
        "credential_error": None,
        "secondary_refusals": 0,
        "searches": 0,
        "found_by_search": 0,
        "repositories_swept": 0,
        "repositories_tracked": 0,
        "last_cycle": {},
        "budgets": {},
    }
