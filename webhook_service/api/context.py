"""What every ``/api`` handler is given (:class:`Context`: the store, the reconciler,
the sync worker when one runs) and how a resource module declares its handlers
(:class:`Endpoint`), so that a new resource is a new module listed in :mod:`.routes`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from webhook_service.api.errors import APIError
from webhook_service.ingest.receiver import RejectedRequest
from webhook_service.reconciler import Reconciler
from webhook_service.store import Store
from webhook_service.sync.poller import PRSyncWorker

#: A Starlette endpoint.
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Context:
    store: Store
    reconciler: Reconciler
    api_token: bytes | None
    ready: Callable[[], dict[str, bool]]
    #: DASHBOARD_TOKEN: GET only (the guard answers 403 to any other method).
    dashboard_token: bytes | None = None
    worker: Callable[[], PRSyncWorker | None] = lambda: None
    monitor: Callable[[], dict[str, Any]] = dict
    #: Whether a GitHub credential is configured (so a sync worker should run).
    sync_configured: bool = False
    #: ``/stats`` while no worker runs (sync.idle_stats: the same keys, zeros and nulls).
    idle_stats: Callable[[], dict[str, Any]] = lambda: {"running": False}
    #: The receiver's refused requests kept in memory, newest first.
    rejected: Callable[[], Sequence[RejectedRequest]] = lambda: ()

    def worker_stats(self) -> dict[str, Any]:
        worker = self.worker()
        return worker.get_stats() if worker is not None else self.idle_stats()

    def require_worker(self) -> PRSyncWorker:
        worker = self.worker()
        if worker is None:
            raise APIError(409, "the sync worker is off: set GITHUB_TOKEN or APP_ID/PRIVATE_KEY")
        return worker


#: An ``/api`` handler: it returns the JSON body (or a :class:`~.responses.Page`) and
#: raises :class:`APIError` for what is wrong; the guard authorizes and answers.
Operation = Callable[[Context, Request], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ``/api`` route: ``method`` on ``path`` runs ``operation``, answering
    ``status`` when it succeeds."""

    method: str
    path: str
    operation: Operation
    status: int = 200
