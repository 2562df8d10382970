"""``serve --workers N``: N server processes on the one listening socket.

The parent opens the socket (``listener.py``), checks the database, then hands both to
uvicorn's ``Multiprocess`` supervisor: it spawns N workers (fresh interpreters, each
given the socket's descriptor), restarts one that dies, and on SIGTERM or SIGINT sends
every worker SIGTERM and waits for each to drain (uvicorn's graceful shutdown, as one
``serve`` does) before it returns. A worker that fails before serving (its lifespan
raised) stops them all: every other would fail the same way.

Each worker is a whole replica of the service (docs/operations.md, "Scaling"): its own
pool, reconciler, outbox dispatcher and Socket.IO server; one of them polls (the
leadership lock); the writes take turns under the one writer lock. What replicas need,
workers need too, minus the load balancer: the kernel hands each new connection to one
worker, so the Socket.IO stream needs a message queue between them and the WebSocket
transport (a long-polling session is several requests, which may reach different
workers). :func:`check_workers` refuses what cannot work.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from webhook_service.config import ConfigError, Settings
from webhook_service.ops import logs

if TYPE_CHECKING:
    import socketio

logger = logging.getLogger(__name__)

#: uvicorn's graceful shutdown of each server process, one or many: within the 10 s
#: a SIGTERM may take (deploy/kubernetes/deployment.yaml's grace period counts on it).
DRAIN_SECONDS = 8


def check_workers(settings: Settings) -> None:
    """Refuse the settings that several workers cannot serve, naming the setting."""
    n = settings.workers
    if n == 1:
        return
    if settings.socketio_message_queue is None:
        raise ConfigError(
            f"WORKERS: {n} workers need SOCKETIO_MESSAGE_QUEUE (redis://...) so that a"
            " Socket.IO client, connected to one worker, gets the events every worker"
            " commits; set it, or serve with --workers 1"
        )
    if settings.webhook_proxy_url:
        raise ConfigError(
            f"WORKERS: {n} workers would each take every delivery from WEBHOOK_PROXY_URL's"
            " channel; serve it with --workers 1 (the channel is a development aid)"
        )


def run_workers(
    settings: Settings, listener: socket.socket, *, log_level: str, secrets: Sequence[str]
) -> int:
    """Serve with ``settings.workers`` processes until SIGTERM or SIGINT; 0 after a
    clean stop, 1 if a worker failed to start."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        # Called in each worker (spawned: the arguments are pickled, not the app).
        functools.partial(worker_app, settings, log_level, tuple(secrets)),
        factory=True,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=DRAIN_SECONDS,
    )
    supervisor = Multiprocess(config, sockets=[listener])
    supervisor.run()
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        logger.error("worker %s failed to start (its log says why); stopped", failed[0])
        return 1
    return 0


def worker_app(settings: Settings, log_level: str, secrets: tuple[str, ...]) -> socketio.ASGIApp:
    """One worker's application, with the parent's logging (a spawned interpreter
    starts without it: no handler, and no scrubbing of secrets)."""
    from webhook_service.app import create_app

    _end_with_parent()
    logs.configure(log_level, settings.log_format, secrets)
    return create_app(settings)


def _end_with_parent() -> None:
    """Linux: SIGTERM (drain and stop) this worker when the supervisor dies, SIGKILLed
    say, so that no worker outlives it holding the port and the poller's lead."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
