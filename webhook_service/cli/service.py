"""The service's commands: ``serve`` it, ``migrate`` its database, list its ``tasks``,
read a running one's ``stats``."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from webhook_service.cli.database import database, open_store
from webhook_service.cli.listener import listen
from webhook_service.cli.output import table
from webhook_service.cli.workers import DRAIN_SECONDS, check_workers, run_workers
from webhook_service.config import Settings

logger = logging.getLogger(__name__)


def serve(
    settings: Settings,
    *,
    host: str | None,
    port: int | None,
    workers: int | None = None,
    secrets: Sequence[str] = (),
) -> int:
    """The service on ``host:port`` until SIGTERM: in this process, or in ``workers``
    processes sharing the socket (``secrets``: what their logs must scrub)."""
    from webhook_service.app import create_app

    settings = replace(settings, workers=workers or settings.workers)
    check_workers(settings)
    # Built here with workers too (then unused): what would stop each worker's start
    # (a missing secret, say) is one line from this process instead.
    app = create_app(settings)
    host, port = host or settings.host, port if port is not None else settings.port
    listener = listen(host, port)
    try:
        # A database that cannot be used is one line here, not a traceback from the
        # lifespan (the service would not start anyway).
        asyncio.run(_check_database(settings))
    except BaseException:
        listener.close()
        raise
    url = f"http://{f'[{host}]' if ':' in host else host}:{listener.getsockname()[1]}"
    logger.info("serving on %s (dashboard %s/, webhooks %s%s)%s", url, url, url,
                settings.webhook_path,
                f" with {settings.workers} workers" if settings.workers > 1 else "")  # fmt: skip
    if settings.workers > 1:
        level = logging.getLevelName(logging.getLogger().level)
        try:
            return run_workers(settings, listener, log_level=level, secrets=secrets)
        finally:
            listener.close()
    return _serve_here(app, listener)


def _serve_here(app: object, listener: socket.socket) -> int:
    """One process (no supervisor): the service as it ran before ``--workers``."""
    import uvicorn

    # uvicorn drains on SIGTERM, then raises the signal again under the handler that
    # was in place before it ran. With the default one the process would end "killed
    # by SIGTERM" after a clean stop; with this one it exits 0.
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_config=None,  # our handlers (and secret scrubbing) apply to uvicorn too
        access_log=False,
        timeout_graceful_shutdown=DRAIN_SECONDS,
    )
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        signal.signal(signal.SIGTERM, previous)
        listener.close()
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _check_database(settings: Settings) -> None:
    store = await open_store(settings)
    await store.disconnect()


async def migrate(settings: Settings) -> int:
    store = await open_store(settings)
    try:
        applied = await store.migrate()
        version = await store.schema_version()
    finally:
        await store.disconnect()
    print(f"applied {len(applied)} migration(s); schema version {version}")
    return 0


async def tasks(
    settings: Settings, status: str | None, repository: str | None, *, as_json: bool
) -> int:
    from webhook_service.api.views import task_json

    async with database(settings) as store:
        found = await store.list_tasks(status=status, repository=repository)
    rows = [task_json(t) for t in found]
    columns = ["id", "status", "title", "repository", "branch", "updated_at"]
    print(json.dumps(rows, indent=2) if as_json else table(rows, columns))
    return 0


def stats(settings: Settings, url: str | None, *, as_json: bool) -> int:
    base = url or f"http://{settings.host}:{settings.port}"
    try:
        answer = _get_json(f"{base.rstrip('/')}/stats")
    except (OSError, ValueError) as exc:
        print(f"webhook-service: cannot read {base}/stats: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(answer, indent=2))
        return 0
    flat = [
        {"name": f"{prefix}{key}", "value": value}
        for prefix, section in (
            ("", answer),
            ("config.", answer.get("config", {})),
            ("monitor.", answer.get("monitor", {})),
        )
        for key, value in section.items()
        if not isinstance(value, dict)
    ]
    print(table(flat, ["name", "value"]))
    return 0


def _get_json(url: str) -> dict[str, Any]:
    """GET a JSON object with the standard library (the CLI needs no HTTP client)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (checked)
            body = response.read()
    except urllib.error.HTTPError as exc:  # an answer all the same, e.g. 503 with JSON
        body = exc.read()
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("the answer is not a JSON object")
    return document
