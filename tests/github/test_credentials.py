"""Credentials GitHub rejects (401): loud, counted, tried once a cycle, on both backends.

A revoked token, another App's key or a wrong ``APP_ID`` used to look healthy: each
cycle logged a traceback per call while ``/health`` said healthy and the error counter
stayed 0. Here each is one ERROR line per cycle, one error in ``error_count`` (and so in
``webhook_sync_errors_total``), ``/health`` 503, ``/readyz`` saying why, and exactly one
request with the rejected credential per cycle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from tests.helpers import AUTH, app_private_key, make_settings, reconciling, running_app, until
from webhook_service.config import Settings
from webhook_service.github.client import GitHub
from webhook_service.store import Store
from webhook_service.sync.poller import PRSyncWorker
from webhook_service.testing import FakeGitHub

REPOS = ("o/one", "o/two", "o/three")
TOKEN = "ghp_known"


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(private_key_pem=app_private_key()) as fake:
        fake.add_token(TOKEN)
        for repo in REPOS:
            fake.add_pull(repo, 1)
        fake.add_installation(7, list(REPOS))
        yield fake


def token_env(gh: FakeGitHub, token: str) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": token,
        "GITHUB_API_URL": gh.url,
        "GITHUB_REPOSITORIES": ",".join(REPOS),
        "SYNC_RETRY_DELAY": "0.01",
    }


def app_env(gh: FakeGitHub, *, app_id: str, key: str) -> dict[str, str]:
    return {"APP_ID": app_id, "PRIVATE_KEY": key, "GITHUB_API_URL": gh.url}


@pytest.fixture(scope="module")
def other_key() -> str:
    """A valid RSA key that is not the App's (a key of another App)."""
    return FakeGitHub().private_key_pem


@asynccontextmanager
async def polling(
    database_url: str, settings: Settings
) -> AsyncIterator[tuple[Store, PRSyncWorker]]:
    """A store and a sync worker (not started) with ``settings``."""
    async with (
        reconciling(database_url, settings) as (store, reconciler),
        aiohttp.ClientSession() as session,
    ):
        yield store, PRSyncWorker(store, reconciler, GitHub(session, settings), settings)


def sync_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "webhook_service.sync.poller" and r.levelno >= logging.WARNING
    ]


async def test_a_revoked_token_is_one_error_and_one_request_a_cycle(
    database_url: str, gh: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, **token_env(gh, "ghp_revoked"))
    async with polling(database_url, settings) as (store, worker):
        for cycle in (1, 2):
            caplog.clear()
            async with asyncio.timeout(10):
                stats = await worker.force_sync()
            assert stats["error_count"] == cycle  # one a cycle, not one per repository
            assert len(gh.requests) == cycle  # the first 401 stops the others
            assert gh.requests[-1].status == 401
            errors = sync_errors(caplog)
            assert [r.levelno for r in errors] == [logging.ERROR]
            message = errors[0].getMessage()
            assert message == stats["last_error"].join(("sync: ", ""))
            assert message == (
                "sync: GitHub rejected GITHUB_TOKEN: GitHub answered 401: Bad credentials;"
                " check that the token is right, unexpired and not revoked"
            )
            assert stats["credential_error"] == stats["last_error"]
            assert "ghp_revoked" not in message
            assert not stats["first_sweep_done"]

        gh.add_token("ghp_revoked")  # the operator fixes it: the next cycle works
        async with asyncio.timeout(10):
            stats = await worker.force_sync()
        assert stats["error_count"] == 2
        assert stats["credential_error"] is None
        assert stats["first_sweep_done"]
        for repo in REPOS:
            assert await store.get_pull(repo, 1) is not None


@pytest.mark.parametrize(
    ("case", "github_says"),
    [
        ("another-apps-key", "A JSON web token could not be decoded"),
        ("wrong-app-id", "'Issuer' claim ('iss') must be the ID of the App"),
    ],
)
async def test_an_app_credential_github_rejects_is_one_error_a_cycle(
    database_url: str,
    gh: FakeGitHub,
    other_key: str,
    caplog: pytest.LogCaptureFixture,
    case: str,
    github_says: str,
) -> None:
    app_id, key = (
        (gh.app_id, other_key) if case == "another-apps-key" else ("999", gh.private_key_pem)
    )
    settings = make_settings(database_url, **app_env(gh, app_id=app_id, key=key))
    async with polling(database_url, settings) as (store, worker):
        for cycle in (1, 2):
            caplog.clear()
            async with asyncio.timeout(10):
                stats = await worker.force_sync()
            assert stats["error_count"] == cycle
            # Listing installations is refused; nothing else is asked (no token, no
            # delivery recovery with the same JWT).
            assert [(r.path, r.status) for r in gh.requests[cycle - 1 :]] == [
                ("/app/installations", 401)
            ]
            assert [r.getMessage() for r in sync_errors(caplog)] == [
                f"sync: GitHub rejected APP_ID {app_id} with its PRIVATE_KEY: GitHub answered"
                f" 401: {github_says}; check that APP_ID is the App's id and PRIVATE_KEY a key"
                " of that App"
            ]
        assert gh.tokens_issued == 0
        assert await store.tracked_repositories() == {}


async def test_health_readyz_and_metrics_say_a_credential_is_rejected(
    database_url: str, gh: FakeGitHub
) -> None:
    settings = make_settings(database_url, **token_env(gh, "ghp_revoked"), SYNC_INTERVAL="60")
    async with running_app(settings) as (service, client):
        assert service.worker is not None
        worker = service.worker
        await until(lambda: worker.get_stats()["sync_count"] >= 1)  # the first sweep

        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert "GitHub rejected GITHUB_TOKEN" in health.json()["stats"]["credential_error"]

        # Still ready for webhooks (they need no GitHub credential), and says why not well.
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["github_credentials"] is False
        assert "401: Bad credentials" in ready.json()["problems"]["github_credentials"]

        metrics = (await client.get("/metrics")).text
        assert "webhook_sync_errors_total 1.0" in metrics
        assert "webhook_github_credential_rejected 1.0" in metrics

        gh.add_token("ghp_revoked")
        forced = await client.post("/api/sync", headers=AUTH)
        assert forced.status_code == 200
        assert forced.json()["credential_error"] is None
        assert (await client.get("/health")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.json() == {
            "status": "ready",
            "checks": {
                "reconciler": True,
                "dispatcher": True,
                "sync_worker": True,
                "database": True,
            },
        }
        assert "webhook_github_credential_rejected 0.0" in (await client.get("/metrics")).text
