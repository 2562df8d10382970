"""The ASGI application: Starlette routes wrapped by Socket.IO, one lifespan.

``create_app`` builds everything from :class:`~webhook_service.config.Settings`; the
lifespan connects the store, applies migrations, starts the reconciler, the outbox
dispatcher and retention pruning, and stops them in reverse order (queued work first).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import socketio
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from webhook_service.api import routes as api
from webhook_service.config import Settings
from webhook_service.github.client import GitHub
from webhook_service.github.setup import SetupFlow
from webhook_service.ingest.proxy import WebhookProxy
from webhook_service.ingest.receiver import WebhookReceiver
from webhook_service.ops import dashboard
from webhook_service.ops.metrics import Metrics, Parts
from webhook_service.ops.minutes import MinuteRecorder, service_counts
from webhook_service.periodic import Periodic
from webhook_service.push.outbox import Dispatcher
from webhook_service.push.stream import Stream
from webhook_service.reconciler import Reconciler
from webhook_service.store import (
    MINUTES_KEPT,
    Leadership,
    Store,
    StoreUnavailable,
    log_unavailable,
    utcnow,
)
from webhook_service.sync.poller import PRSyncWorker
from webhook_service.sync.stats import idle_stats
from webhook_service.tasks.cleanup import CleanupRunner

logger = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0


@dataclass(slots=True)
class Service:
    """The running parts, reachable from tests as ``app.state.service``."""

    settings: Settings
    store: Store
    reconciler: Reconciler
    dispatcher: Dispatcher
    stream: Stream
    receiver: WebhookReceiver
    cleanup: CleanupRunner
    worker: PRSyncWorker | None = None  # set while running, when GitHub access is configured
    proxy: WebhookProxy | None = None  # set while running, with WEBHOOK_PROXY_URL
    minutes: MinuteRecorder | None = None  # set while running: the per-minute counters


def github_configured(settings: Settings) -> bool:
    return settings.github_token is not None or (
        settings.app_id is not None and settings.private_key is not None
    )


@contextlib.asynccontextmanager
async def sync_worker(
    settings: Settings, store: Store, reconciler: Reconciler
) -> AsyncIterator[PRSyncWorker | None]:
    """A running sync worker (and its HTTP session), or None without GitHub access."""
    if not github_configured(settings):
        logger.warning(
            "no GITHUB_TOKEN or APP_ID/PRIVATE_KEY: the sync worker is off (register a"
            " GitHub App: /setup?token=API_TOKEN, or `webhook-service setup`)"
        )
        yield None
        return
    async with aiohttp.ClientSession() as session:
        worker = PRSyncWorker(
            store,
            reconciler,
            GitHub(session, settings),
            settings,
            leadership=Leadership(store),  # one replica polls; another takes over
        )
        await worker.start()
        try:
            yield worker
        finally:
            # Bounded, so that a SIGTERM still ends the process promptly.
            await worker.stop(grace=min(settings.sync_timeout, 5.0))


def create_app(settings: Settings) -> socketio.ASGIApp:
    """The service: its parts, its routes, and a lifespan that runs them."""
    settings.check_secure()
    metrics = Metrics()
    service = _service(settings, metrics)
    metrics.watch(
        Parts(
            service.receiver,
            service.reconciler,
            service.dispatcher,
            service.stream,
            service.cleanup,
            lambda: service.worker,
        )
    )
    setup = SetupFlow(
        settings,
        env_file=Path(".env"),
        token=settings.api_token.reveal() if settings.api_token else None,
        tracked=lambda: _tracked(service.store),
    )
    app = Starlette(
        routes=[
            Route(settings.webhook_path, service.receiver.handle, methods=["POST"]),
            *setup.routes(),
            *api.routes(_api_context(service)),
            *dashboard.routes(),
            *metrics.routes(),
        ],
        lifespan=lambda app: _running(service),
    )
    app.state.service = service
    return ServiceApp(service, app, settings.webhook_path)


class ServiceApp(socketio.ASGIApp):  # type: ignore[misc]  # python-socketio is untyped
    """Socket.IO in front of the Starlette app, and ``POST WEBHOOK_PATH`` in front of
    both: the one hot route goes straight to the receiver, past Engine.IO's dispatch
    and Starlette's middleware and routing (about a tenth of a delivery's CPU; its
    Route stays, so other methods still get 405)."""

    def __init__(self, service: Service, app: Starlette, webhook_path: str) -> None:
        # No on_startup/on_shutdown here: ASGIApp would then swallow the lifespan
        # events and Starlette's lifespan would never run.
        super().__init__(service.stream.sio, other_asgi_app=app)
        self.service = service
        self._webhook_path = webhook_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == self._webhook_path
        ):
            await self.service.receiver.asgi(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _service(settings: Settings, metrics: Metrics) -> Service:
    """The parts, wired: store -> reconciler -> dispatcher -> stream; the receiver."""
    store = Store(settings.database_url.reveal())
    stream = Stream(settings, store)
    dispatcher = Dispatcher(store, stream.emit)
    reconciler = Reconciler(
        store,
        task_branch_pattern=settings.task_branch_pattern,
        on_commit=dispatcher.notify,
        batch_max=settings.ingest_batch_max,
        cleanup_on_merge=settings.cleanup_on_merge,
    )
    cleanup = CleanupRunner(
        store,
        root=settings.worktree_root,
        delete_branch=settings.cleanup_delete_branch,
        scan_interval=settings.sync_interval,
    )
    receiver = WebhookReceiver(
        reconciler,
        secrets=[s.reveal().encode() for s in settings.webhook_secrets],
        latency=metrics.ingest_latency.observe,
    )
    return Service(settings, store, reconciler, dispatcher, stream, receiver, cleanup)


def _api_context(service: Service) -> api.Context:
    settings, reconciler, dispatcher = service.settings, service.reconciler, service.dispatcher

    def ready() -> dict[str, bool]:
        checks = {"reconciler": reconciler.running, "dispatcher": dispatcher.running}
        if service.worker is not None:
            checks["sync_worker"] = service.worker.is_running()
        return checks

    return api.Context(
        store=service.store,
        reconciler=reconciler,
        api_token=settings.api_token.reveal().encode() if settings.api_token else None,
        dashboard_token=(
            settings.dashboard_token.reveal().encode() if settings.dashboard_token else None
        ),
        ready=ready,
        worker=lambda: service.worker,
        idle_stats=lambda: idle_stats(settings),
        rejected=service.receiver.rejected,
        sync_configured=github_configured(settings),
        monitor=lambda: {
            "pid": os.getpid(),  # each `serve --workers` process counts its own
            "deliveries_received": service.receiver.received,
            "batches_committed": reconciler.batches,
            "jobs_applied": reconciler.jobs,
            "events_emitted": dispatcher.emitted,
            "last_emitted_event_id": dispatcher.last_emitted_id,
            "outbox_backlog": dispatcher.backlog,
            "socketio_clients": service.stream.connected,
        },
    )


@contextlib.asynccontextmanager
async def _running(service: Service) -> AsyncIterator[None]:
    """The lifespan: each part started in order, stopped in reverse (queued work first)."""
    settings, store = service.settings, service.store
    if settings.dev_mode:
        logger.warning("DEV_MODE is on: signatures and tokens are not enforced where unset")
    logger.info("database: %s", settings.safe_database_url())
    async with contextlib.AsyncExitStack() as parts:
        await store.connect()
        parts.push_async_callback(store.disconnect)
        await store.migrate()
        # Started before the parts it reads, stopped after them (its last flush).
        minutes = MinuteRecorder(store, lambda: service_counts(service.receiver, service.worker))
        service.minutes = minutes
        minutes.start()
        parts.push_async_callback(minutes.stop)
        await service.stream.start()
        parts.push_async_callback(service.stream.close)
        service.reconciler.start()
        service.dispatcher.start()
        parts.push_async_callback(service.dispatcher.stop)  # after the reconciler's queue
        parts.push_async_callback(service.reconciler.stop)
        pruner = Periodic(
            "retention", PRUNE_INTERVAL, lambda: _prune(store, settings.retention_days)
        )
        pruner.start()
        parts.push_async_callback(pruner.stop)
        if settings.cleanup_on_merge:
            service.cleanup.start()
        parts.push_async_callback(service.cleanup.stop)
        if settings.webhook_proxy_url:
            receiver = service.receiver
            service.proxy = WebhookProxy(
                settings.webhook_proxy_url, receiver.deliver, secrets=receiver.secrets
            )
            service.proxy.start()
            parts.push_async_callback(service.proxy.stop)
        service.worker = await parts.enter_async_context(
            sync_worker(settings, store, service.reconciler)
        )
        parts.callback(setattr, service, "worker", None)
        parts.push_async_callback(minutes.flush)  # the worker's counts, while it is there
        yield


async def _tracked(store: Store) -> list[str]:
    return sorted(await store.tracked_repositories())


async def _prune(store: Store, retention_days: float) -> None:
    try:
        deliveries, events = await store.prune(utcnow() - timedelta(days=retention_days))
        await store.prune_minutes(utcnow() - MINUTES_KEPT)
    except StoreUnavailable as exc:
        log_unavailable(logger, exc, "pruning skipped: %s", exc)
        return
    if deliveries or events:
        logger.info("pruned %d deliveries and %d events", deliveries, events)
