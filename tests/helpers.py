"""Helpers shared by tests: settings, an in-process app, signed requests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from starlette.applications import Starlette

from webhook_service.app import Service, create_app
from webhook_service.config import Settings, load_settings
from webhook_service.github.client import GitHub
from webhook_service.ingest.fixtures import RecordedDelivery, fixtures_root, load_delivery
from webhook_service.ingest.signature import sign
from webhook_service.reconciler import Reconciler
from webhook_service.store import Store
from webhook_service.sync.poller import PRSyncWorker
from webhook_service.testing import FakeGitHub

SECRET = "It's a Secret to Everybody"
API_TOKEN = "test-api-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def make_settings(database_url: str, **env: str) -> Settings:
    values = {
        "WEBHOOK_SECRET": SECRET,
        "API_TOKEN": API_TOKEN,
        "DATABASE_URL": database_url,
        **env,
    }
    return load_settings(values, env_file=None)


def polling_settings(
    database_url: str, fake: FakeGitHub, token: str, *repositories: str, **env: str
) -> Settings:
    """Settings whose sync worker polls ``fake`` with ``token`` for ``repositories``, and
    waits an hour between cycles: a test runs the cycles it wants (``POST /api/sync``)."""
    return make_settings(
        database_url,
        GITHUB_TOKEN=token,
        GITHUB_API_URL=fake.url,
        GITHUB_REPOSITORIES=",".join(repositories),
        SYNC_INTERVAL="3600",
        **env,
    )


def server_env(database_url: str, **env: str) -> dict[str, str]:
    """The environment of a ``serve`` child process (``tests.servers.ServerProcess``)."""
    return {
        "DATABASE_URL": database_url,
        "WEBHOOK_SECRET": SECRET,
        "API_TOKEN": API_TOKEN,
        "LOG_LEVEL": "WARNING",
        **env,
    }


@cache
def app_private_key() -> str:
    """One GitHub App key for the whole run: generating RSA keys is slow."""
    return FakeGitHub().private_key_pem


@asynccontextmanager
async def fake_github(
    token: str, *repositories: str, **options: Any
) -> AsyncIterator[FakeGitHub]:
    """A running fake GitHub that accepts ``token`` and knows ``repositories``."""
    async with FakeGitHub(private_key_pem=app_private_key(), **options) as fake:
        fake.add_token(token)
        for repository in repositories:
            fake.add_repository(repository)
        yield fake


@asynccontextmanager
async def reconciling(
    database_url: str, settings: Settings | None = None
) -> AsyncIterator[tuple[Store, Reconciler]]:
    """A migrated store and a running reconciler on it, without the app; the
    reconciler is stopped (bounded) and the store disconnected on exit."""
    pattern = (settings or make_settings(database_url)).task_branch_pattern
    store = Store(database_url)
    await store.connect()
    try:
        await store.migrate()
        reconciler = Reconciler(store, task_branch_pattern=pattern)
        reconciler.start()
        try:
            yield store, reconciler
        finally:
            async with asyncio.timeout(10):
                await reconciler.stop()
    finally:
        await store.disconnect()


@dataclass
class SyncRig:
    """What the sync worker and the PR creator run on, without the app."""

    store: Store
    reconciler: Reconciler
    github: GitHub
    worker: PRSyncWorker


@asynccontextmanager
async def sync_rig(
    database_url: str,
    settings: Settings,
    *,
    client: type[GitHub] = GitHub,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[SyncRig]:
    """A store, a running reconciler, a GitHub ``client`` (a subclass injects faults)
    and a sync worker (not started) with ``settings``; the worker is stopped on exit."""
    async with (
        reconciling(database_url, settings) as (store, reconciler),
        aiohttp.ClientSession() as session,
    ):
        github = client(session, settings, clock=clock)
        worker = PRSyncWorker(store, reconciler, github, settings)
        try:
            yield SyncRig(store, reconciler, github, worker)
        finally:
            async with asyncio.timeout(10):
                await worker.stop()


@asynccontextmanager
async def running_app(
    settings: Settings, *, raise_app_exceptions: bool = True
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """The whole app in process, lifespan included, with an HTTP client on it.

    With ``raise_app_exceptions=False`` an exception escaping the app is answered 500,
    as under a real server, instead of being raised into the test.
    """
    asgi = create_app(settings)
    app = asgi.other_asgi_app
    assert isinstance(app, Starlette)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app.state.service, client


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll ``predicate`` (state of a fake, a worker, a process), bounded."""
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


def fixture(name: str) -> RecordedDelivery:
    """A recorded delivery by ``event/name``, e.g. ``pull_request/opened``."""
    return load_delivery(fixtures_root() / f"{name}.json")


def fixture_path(name: str) -> Path:
    return fixtures_root() / f"{name}.json"


def signed_headers(
    body: bytes, event: str, guid: str | None = None, secret: str = SECRET
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret=secret.encode()),
    }


def payload(name: str, **pull_request: Any) -> dict[str, Any]:
    """A fixture's JSON with fields of its ``pull_request`` replaced."""
    document: dict[str, Any] = orjson.loads(fixture(name).body)
    document["pull_request"].update(pull_request)
    return document


async def post_delivery(
    client: httpx.AsyncClient,
    document: Mapping[str, Any] | bytes,
    event: str = "pull_request",
    guid: str | None = None,
    path: str = "/webhooks/github",
) -> httpx.Response:
    body = document if isinstance(document, bytes) else orjson.dumps(document)
    return await client.post(path, content=body, headers=signed_headers(body, event, guid))
