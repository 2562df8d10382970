"""The command line: a thin layer over the functions the app and the tests call."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from webhook_service import logs
from webhook_service.config import ConfigError, Settings, load_settings
from webhook_service.store import Store, StoreUnavailable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="webhook-service",
        description="Keep pull requests and tasks in sync with GitHub.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP + Socket.IO server")
    serve.add_argument("--host", help="interface to bind (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: PORT or 3000)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    sync = commands.add_parser("sync", help="run the sync worker alone (no HTTP server)")
    sync.add_argument("--once", action="store_true", help="one full cycle, then exit")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"webhook-service: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format, _secret_values(settings))
    try:
        if args.command == "serve":
            return _serve(settings, host=args.host, port=args.port)
        if args.command == "sync":
            return asyncio.run(_sync(settings, once=args.once))
        return asyncio.run(_migrate(settings))
    except ConfigError as exc:
        print(f"webhook-service: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"webhook-service: database unavailable: {exc}", file=sys.stderr)
        return 1


def _serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    import uvicorn

    from webhook_service.app import create_app

    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_config=None,  # our handlers (and secret scrubbing) apply to uvicorn too
        access_log=False,
        timeout_graceful_shutdown=8,
    )
    return 0


async def _migrate(settings: Settings) -> int:
    store = Store(settings.database_url.reveal())
    await store.connect()
    try:
        applied = await store.migrate()
        version = await store.schema_version()
    finally:
        await store.disconnect()
    print(f"applied {len(applied)} migration(s); schema version {version}")
    return 0


async def _sync(settings: Settings, *, once: bool) -> int:
    """The poller alone. Its events are stored; a running ``serve`` emits them (its
    outbox sweep picks up events committed by any process)."""
    import aiohttp

    from webhook_service.app import github_configured
    from webhook_service.github import GitHub
    from webhook_service.reconciler import Reconciler
    from webhook_service.sync import PRSyncWorker

    if not github_configured(settings):
        raise ConfigError("the sync worker needs GITHUB_TOKEN, or APP_ID and PRIVATE_KEY")
    store = Store(settings.database_url.reveal())
    await store.connect()
    reconciler = Reconciler(store, task_branch_pattern=settings.task_branch_pattern)
    try:
        await store.migrate()
        reconciler.start()
        async with aiohttp.ClientSession() as session:
            worker = PRSyncWorker(store, reconciler, GitHub(session, settings), settings)
            if once:
                stats = await worker.force_sync()
                print(json.dumps(stats, indent=2))
                return 0 if stats["error_count"] == 0 else 1
            await worker.start()
            try:
                await _until_signalled()
            finally:
                await worker.stop()
    finally:
        await reconciler.stop()
        await store.disconnect()
    return 0


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _secret_values(settings: Settings) -> list[str]:
    secrets = [s.reveal() for s in settings.webhook_secrets]
    for secret in (settings.api_token, settings.github_token, settings.private_key):
        if secret is not None:
            secrets.append(secret.reveal())
    for url in (settings.database_url, settings.socketio_message_queue):
        password = urlsplit(url.reveal()).password if url is not None else None
        if password:
            secrets.append(password)
    return secrets
