"""The commands that talk to GitHub: ``sync`` (the poller alone), ``track`` a PR,
``create-pr`` for a task, and ``setup`` (register the GitHub App)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from webhook_service.cli.database import database, reconciling
from webhook_service.cli.listener import listen
from webhook_service.cli.output import table
from webhook_service.config import ConfigError, Settings, is_http_url
from webhook_service.store import Store

if TYPE_CHECKING:
    from webhook_service.github.client import GitHub
    from webhook_service.reconciler import Reconciler


@asynccontextmanager
async def _github_work(
    settings: Settings, command: str
) -> AsyncIterator[tuple[Store, Reconciler, GitHub]]:
    """What a command that talks to GitHub and changes state needs. Its events are
    stored; a running ``serve`` emits them (its outbox sweep picks up events committed
    by any process), and runs the clean-up jobs it records."""
    import aiohttp

    from webhook_service.app import github_configured
    from webhook_service.github.client import GitHub

    if not github_configured(settings):
        raise ConfigError(f"{command} needs GITHUB_TOKEN, or APP_ID and PRIVATE_KEY")
    async with (
        database(settings) as store,
        reconciling(settings, store) as reconciler,
        aiohttp.ClientSession() as session,
    ):
        yield store, reconciler, GitHub(session, settings)


async def sync(settings: Settings, *, once: bool) -> int:
    """The poller alone."""
    from webhook_service.store import Leadership
    from webhook_service.sync.poller import PRSyncWorker

    async with _github_work(settings, "the sync worker") as (store, reconciler, github):
        # A forced cycle runs here and now; a running poller polls only while it
        # leads, as a `serve` replica's would.
        leadership = None if once else Leadership(store)
        worker = PRSyncWorker(store, reconciler, github, settings, leadership=leadership)
        if once:
            stats = await worker.force_sync()
            print(json.dumps(stats, indent=2))
            return 0 if stats["error_count"] == 0 else 1
        await worker.start()
        try:
            await _until_signalled()
        finally:
            await worker.stop()
    return 0


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def track(settings: Settings, target: str, task_id: str | None, *, as_json: bool) -> int:
    """MonitorPR from the command line: fetch the PR now, link it, keep polling it."""
    from webhook_service.api.views import pull_json
    from webhook_service.core.model import Source
    from webhook_service.sync.poller import PRSyncWorker

    repository, sep, number = target.partition("#")
    if not sep or not number.isdigit() or repository.count("/") != 1:
        raise ConfigError(f"expected OWNER/REPO#NUMBER, got {target!r}")
    key = (repository, int(number))
    async with _github_work(settings, "track") as (store, reconciler, github):
        if task_id is not None and await store.get_task(task_id.lower()) is None:
            raise ConfigError(f"task {task_id} does not exist")
        await PRSyncWorker(store, reconciler, github, settings).sync_pull(key, authoritative=True)
        await store.monitor_pull(key)
        if task_id is not None:
            await reconciler.link(repository, key[1], task_id.lower(), Source.MANUAL)
        pr = await store.get_pull(*key)
    assert pr is not None
    row = pull_json(pr)
    columns = ["repository", "number", "status", "draft", "title", "task_id"]
    print(json.dumps(row, indent=2) if as_json else table([row], columns))
    return 0


async def create_pr(settings: Settings, args: argparse.Namespace) -> int:
    """The PR creator from the command line."""
    from webhook_service.api.views import created_json
    from webhook_service.tasks.creator import CreateError, create_pull_request

    try:
        async with _github_work(settings, "create-pr") as (store, reconciler, github):
            created = await create_pull_request(
                store=store,
                reconciler=reconciler,
                github=github,
                task_id=args.task_id.lower(),
                title=args.title,
                body=args.body,
                base=args.base,
                draft=args.draft,
            )
    except CreateError as exc:
        print(f"webhook-service: create-pr: {exc} (HTTP {exc.status})", file=sys.stderr)
        return 1
    result = created_json(created)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        row = {"created": result["created"], **result["pull_request"]}
        print(table([row], ["created", "repository", "number", "status", "url", "task_id"]))
    return 0


async def setup(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the setup page on loopback until GitHub sends the browser back."""
    import uvicorn
    from starlette.applications import Starlette

    from webhook_service.github.setup import SetupFlow, configured

    if configured(settings) and not args.replace:
        raise ConfigError(
            f"a GitHub App is configured already (APP_ID={settings.app_id}); pass --replace"
            " to register another"
        )
    if args.github_url:
        web = args.github_url.rstrip("/")
        if not is_http_url(web):
            raise ConfigError(f"--github-url must be an http(s) URL, got {web!r}")
        api = settings.github_api_url if web == "https://github.com" else f"{web}/api/v3"
        settings = dataclasses.replace(settings, github_url=web, github_api_url=api)
    port = args.port if args.port is not None else settings.port
    public_url = args.public_url or f"http://127.0.0.1:{port}"
    flow = SetupFlow(
        settings, env_file=Path(".env"), org=args.org, public_url=public_url, replace=args.replace
    )
    listener = listen("127.0.0.1", port)
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=flow.routes()), log_config=None, access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    print(f"Open http://127.0.0.1:{port}/setup in a browser to register the GitHub App.")
    if not settings.webhook_proxy_url and urlsplit(public_url).hostname in (
        "127.0.0.1",
        "localhost",
    ):
        print(
            "(GitHub cannot deliver webhooks to this machine: set WEBHOOK_PROXY_URL to a"
            " smee.io channel first, or pass --public-url.)"
        )
    try:
        await flow.finished.wait()
        await asyncio.sleep(0.5)  # the page that says so reaches the browser
    finally:
        server.should_exit = True
        await serving
        listener.close()
    registered = flow.registered
    assert registered is not None
    print(f"Registered GitHub App {registered.slug} (APP_ID {registered.app_id}); .env written.")
    print(f"Install it: {registered.install_url}")
    print("Then start the service: scripts/serve (or webhook-service serve).")
    return 0
