"""The per-minute counters' recorder: what this replica counted, added to the database's
minute (``store.stats``) every :data:`FLUSH_INTERVAL` seconds and once more on stop.

Nothing is added to the request path: the parts already count what happens (the
receiver its outcomes, the GitHub client its requests), and the recorder reads their
totals, subtracts what it read last time and adds the difference to the current minute.
A total that went down belongs to a part made anew (a new sync worker), so all of it is
new, as is one that was absent (no worker until now). When the database is down the
difference is not taken as read: the next flush that reaches the database adds it (to
its own minute).

The counters (docs/design.md, "What is recorded"): ``deliveries.<outcome>`` for
``applied``, ``stale``, ``duplicate``, ``ignored``, ``rejected`` and ``failed``, and
``github.rest``, ``github.graphql``: the requests the sync worker's client sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from webhook_service.ingest.receiver import WebhookReceiver
from webhook_service.periodic import Periodic
from webhook_service.store import (
    MINUTE_COUNTERS,
    Store,
    StoreUnavailable,
    log_unavailable,
    utcnow,
)
from webhook_service.sync.poller import PRSyncWorker

logger = logging.getLogger(__name__)

#: Seconds between two flushes: a chart's last minute is at most this late.
FLUSH_INTERVAL = 15.0

#: The receiver's outcomes, by the counter they go to. "unauthorized" (a bad signature)
#: is a rejected request; "unavailable" (the database was down, GitHub was answered
#: 503) a failed one.
_DELIVERY_OUTCOMES = {
    "applied": "deliveries.applied",
    "duplicate": "deliveries.duplicate",
    "ignored": "deliveries.ignored",
    "rejected": "deliveries.rejected",
    "unauthorized": "deliveries.rejected",
    "failed": "deliveries.failed",
    "unavailable": "deliveries.failed",
}


def service_counts(receiver: WebhookReceiver, worker: PRSyncWorker | None) -> dict[str, int]:
    """The totals of every counter, as the parts keep them now; without a sync worker
    (none configured, or stopped at shutdown) the ``github.*`` ones are left out rather
    than read as zero, so that no count is taken back and none is lost."""
    totals = {name: 0 for name in MINUTE_COUNTERS if name.startswith("deliveries.")}
    for (_event, outcome), count in list(receiver.outcomes.items()):
        name = _DELIVERY_OUTCOMES.get(outcome)
        if name is not None:
            totals[name] += count
    # A stale delivery is counted "applied" by the receiver: it is moved, not added.
    totals["deliveries.applied"] -= receiver.stale
    totals["deliveries.stale"] = receiver.stale
    if worker is not None:
        api = worker.github.stats
        totals["github.graphql"] = api.graphql_calls
        totals["github.rest"] = api.calls - api.graphql_calls
    return totals


class MinuteRecorder:
    """Adds the differences of ``counts()`` to the current minute, periodically."""

    def __init__(
        self,
        store: Store,
        counts: Callable[[], Mapping[str, int]],
        *,
        interval: float = FLUSH_INTERVAL,
    ) -> None:
        self._store = store
        self._counts = counts
        self._last: dict[str, int] = {}
        self._lock = asyncio.Lock()  # one flush at a time (the periodic one, stop, tests)
        self._periodic = Periodic("stats-minutes", interval, self.flush)

    def start(self) -> None:
        self._last = dict(self._counts())  # what happened before is no minute's
        self._periodic.start()

    async def stop(self) -> None:
        """Stop flushing, then flush what was counted since the last time."""
        await self._periodic.stop()
        await self.flush()

    @property
    def running(self) -> bool:
        return self._periodic.running

    async def flush(self) -> dict[str, int]:
        """Add what was counted since the last flush to the current minute; returns it
        (empty when nothing was, or when the database is down: then the next does)."""
        async with self._lock:
            totals = dict(self._counts())
            added = {
                name: _difference(value, self._last.get(name, 0)) for name, value in totals.items()
            }
            added = {name: value for name, value in added.items() if value > 0}
            if added:
                try:
                    await self._store.add_minute_counts(utcnow(), added)
                except StoreUnavailable as exc:
                    log_unavailable(logger, exc, "per-minute counts kept for later: %s", exc)
                    return {}
            self._last = totals
            return added


def _difference(total: int, last: int) -> int:
    """What was counted since ``last``; all of ``total`` when it went down (the part
    that keeps it was made anew)."""
    return total - last if total >= last else total
