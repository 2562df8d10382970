"""``GET /metrics``: Prometheus text format, via ``prometheus-client``.

The ingest latency is a real histogram, observed per request. Everything else is read
from the running parts when Prometheus scrapes (a custom collector), so the hot paths
only bump plain counters they keep anyway. Each app has its own registry: two apps in
one process (tests) never share or clash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from webhook_service.ingest.receiver import WebhookReceiver
    from webhook_service.push.outbox import Dispatcher
    from webhook_service.push.stream import Stream
    from webhook_service.reconciler import Reconciler
    from webhook_service.sync.poller import PRSyncWorker
    from webhook_service.tasks.cleanup import CleanupRunner

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingest_latency = Histogram(
            "webhook_ingest_latency_seconds",
            "Time from receiving a webhook request to answering it.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch(self, parts: Parts) -> None:
        self.registry.register(_Collector(parts))

    def routes(self) -> list[Route]:
        async def metrics(request: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return [Route("/metrics", metrics, methods=["GET"])]


@dataclass(frozen=True, slots=True)
class Parts:
    receiver: WebhookReceiver
    reconciler: Reconciler
    dispatcher: Dispatcher
    stream: Stream
    cleanup: CleanupRunner
    worker: Callable[[], PRSyncWorker | None]


class _Collector(Collector):
    """Reads the parts' counters at each scrape, one group of families per part, in
    the order the flow runs: ingest, reconcile, push, clean-up, then the sync worker's
    (only while one runs: a webhook-only service has none to report)."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Any]:
        yield from self._ingest()
        yield from self._push()
        yield from self._cleanup()
        worker = self._parts.worker()
        if worker is not None:
            stats = worker.get_stats()
            yield from _sync(stats)
            yield from _budgets(stats)

    def _ingest(self) -> Iterator[Any]:
        """What the receiver answered and what the reconciler made of it."""
        p = self._parts
        deliveries = CounterMetricFamily(
            "webhook_deliveries",
            "Webhook requests by event and outcome (event '-' when not verified).",
            labels=["event", "outcome"],
        )
        for (event, outcome), count in sorted(p.receiver.outcomes.items()):
            deliveries.add_metric([event, outcome], count)
        yield deliveries

        reconciled = CounterMetricFamily(
            "webhook_reconcile_results",
            "Observations applied by the core, by outcome (transitioned, stale, ...).",
            labels=["outcome"],
        )
        for outcome, count in sorted(p.reconciler.outcomes.items()):
            reconciled.add_metric([outcome], count)
        yield reconciled
        yield CounterMetricFamily(
            "webhook_commit_batches",
            "Transactions committed by the reconciler.",
            value=p.reconciler.batches,
        )

    def _push(self) -> Iterator[Any]:
        """The outbox and the Socket.IO clients it emits to."""
        p = self._parts
        yield CounterMetricFamily(
            "webhook_events_emitted", "Events emitted to Socket.IO.", value=p.dispatcher.emitted
        )
        yield GaugeMetricFamily(
            "webhook_outbox_backlog",
            "Events committed and waiting to be emitted.",
            value=p.dispatcher.backlog,
        )
        yield GaugeMetricFamily(
            "webhook_socketio_clients", "Connected Socket.IO clients.", value=p.stream.connected
        )

    def _cleanup(self) -> Iterator[Any]:
        cleanups = CounterMetricFamily(
            "webhook_cleanup_jobs", "Worktree clean-up attempts by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(self._parts.cleanup.outcomes.items()):
            cleanups.add_metric([outcome], count)
        yield cleanups


#: The sync worker's counters (``get_stats()`` keys) exported as they are.
_SYNC_COUNTERS = (
    ("webhook_sync_cycles", "sync_count", "Sync worker cycles."),
    ("webhook_sync_errors", "error_count", "Sync worker errors."),
    ("webhook_github_api_calls", "api_calls", "GitHub API answers received."),
    ("webhook_github_not_modified", "not_modified", "GitHub API answers that were 304."),
    ("webhook_github_rate_limited", "rate_limited", "Waits for a GitHub rate limit."),
    (
        "webhook_github_secondary_refusals",
        "secondary_refusals",
        "GitHub answers refusing a request for a secondary rate limit.",
    ),
    ("webhook_sync_searches", "searches", "GraphQL searches for changed PRs."),
    ("webhook_sync_repositories_swept", "repositories_swept", "Repository listings."),
)


def _sync(stats: dict[str, Any]) -> Iterator[Any]:
    """The sync worker's counters, whether it leads, and whether GitHub refused it."""
    for name, key, help_text in _SYNC_COUNTERS:
        yield CounterMetricFamily(name, help_text, value=stats[key])
    yield GaugeMetricFamily(
        "webhook_sync_leader",
        "1 while this replica is the one that polls GitHub.",
        value=int(stats["leader"]),
    )
    yield GaugeMetricFamily(
        "webhook_github_credential_rejected",
        "1 while GitHub rejected a credential (401) in the last sync cycle.",
        value=int(bool(stats["credential_error"])),
    )


def _budgets(stats: dict[str, Any]) -> Iterator[Any]:
    """Each credential's GitHub budgets (secondary-limit points, primary hourly limit)
    and the latest rate limit GitHub reported."""
    points = GaugeMetricFamily(
        "webhook_github_budget_points",
        "Secondary-limit points a credential plans (planned) and used in the last"
        " minute, REST and GraphQL apart.",
        labels=["credential", "api", "kind"],
    )
    primary = GaugeMetricFamily(
        "webhook_github_budget_primary",
        "A credential's primary hourly limit: GitHub's limit, what is left, the plan.",
        labels=["credential", "resource", "kind"],
    )
    for credential, budget in sorted(stats["budgets"].items()):
        for api in ("rest", "graphql"):
            for kind in ("planned", "used"):
                points.add_metric([credential, api, kind], budget[api][kind])
        for resource, state in budget["primary"].items():
            for kind in ("limit", "remaining", "planned"):
                primary.add_metric([credential, resource, kind], state[kind])
    yield points
    yield primary
    if stats["rate_limit_remaining"] is not None:
        yield GaugeMetricFamily(
            "webhook_github_rate_limit_remaining",
            "GitHub API requests left in the current window (latest credential used).",
            value=stats["rate_limit_remaining"],
        )
