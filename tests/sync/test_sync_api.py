"""The sync worker seen from outside: /stats and the /api endpoints that drive it,
failed-delivery recovery under a real server, and ``webhook-service sync --once``.

Shared helpers live in ``tests/sync/helpers.py``; every test runs on both backends.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from tests.helpers import (
    AUTH,
    SECRET,
    fake_github,
    make_settings,
    post_delivery,
    running_app,
)
from tests.servers import uvicorn_server
from tests.sync.helpers import (
    REPO,
    TOKEN,
    cycle,
    first_cycle_done,
    gets,
    listings,
    rig,
    sync_settings,
    webhook,
)
from webhook_service.store import Store
from webhook_service.sync.stats import idle_stats
from webhook_service.testing import FakeGitHub

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with fake_github(TOKEN) as fake:
        yield fake


# -- /stats and POST /api/sync ------------------------------------------------------


async def test_stats_report_the_worker_and_api_sync_runs_a_cycle(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_pull(REPO, 1)
    settings = sync_settings(
        database_url,
        gh,
        SYNC_INTERVAL="120",
        SYNC_BATCH_SIZE="7",
        SYNC_MAX_CONCURRENCY="3",
        SYNC_TIMEOUT="4",
        SYNC_RETRY_ATTEMPTS="2",
        SYNC_RETRY_DELAY="0.05",
    )
    async with running_app(settings) as (service, client):
        assert service.worker is not None
        await first_cycle_done(service.worker)
        stats = (await client.get("/stats")).json()

        assert stats["running"] is True
        # Without a worker /stats has the same keys (test below).
        assert set(stats) == set(idle_stats(settings)) | {"monitor"}
        assert (stats["sync_count"], stats["error_count"], stats["last_error"]) == (1, 0, None)
        assert ISO.fullmatch(stats["last_sync_at"])
        assert stats["config"] == {
            "sync_interval": 120.0,
            "batch_size": 7,
            "max_concurrent_syncs": 3,
            "sync_timeout": 4.0,
            "retry_attempts": 2,
            "retry_delay": 0.05,
        }
        assert stats["api_calls"] == 1 and stats["not_modified"] == 0
        assert stats["rate_limit_remaining"] == gh.rate_remaining(TOKEN)
        assert isinstance(stats["rate_limit_reset"], float)

        assert (await client.post("/api/sync")).status_code == 401  # API_TOKEN needed
        response = await client.post("/api/sync", headers=AUTH)

        assert response.status_code == 200
        assert response.json()["sync_count"] == 2
        after = (await client.get("/stats")).json()
        assert after["sync_count"] == 2 and after["error_count"] == 0
        assert after["api_calls"] == 2 and after["not_modified"] == 1  # idle: a 304
        assert after["rate_limit_remaining"] == stats["rate_limit_remaining"]


async def test_without_a_github_credential_the_worker_endpoints_answer_409(
    database_url: str,
) -> None:
    settings = make_settings(database_url)
    async with running_app(settings) as (service, client):
        assert service.worker is None
        stats = (await client.get("/stats")).json()
        # The original design's shape all the same, so monitoring that reads it works.
        original = {
            "running": False,
            "last_sync_at": None,
            "sync_count": 0,
            "error_count": 0,
            "config": {
                "sync_interval": settings.sync_interval,
                "batch_size": settings.sync_batch_size,
                "max_concurrent_syncs": settings.sync_max_concurrency,
                "sync_timeout": settings.sync_timeout,
                "retry_attempts": settings.sync_retry_attempts,
                "retry_delay": settings.sync_retry_delay,
            },
        }
        assert {key: stats[key] for key in original} == original
        assert stats["api_calls"] == 0 and stats["rate_limit_remaining"] is None
        assert "deliveries_received" in stats["monitor"]
        for path, body in (
            ("/api/sync", None),
            ("/api/pulls/track", {"repository": REPO, "number": 1}),
            (f"/api/pulls/{REPO}/1/reconcile", None),
        ):
            response = await client.post(path, json=body, headers=AUTH)
            assert response.status_code == 409, path
            assert "GITHUB_TOKEN" in response.json()["error"]


# -- POST /api/pulls/track and /reconcile -----------------------------------------------


async def test_a_tracked_pr_is_linked_and_polled_with_conditional_gets(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_pull(REPO, 1)
    gh.add_pull("x/y", 5)  # x/y is not in GITHUB_REPOSITORIES
    async with running_app(sync_settings(database_url, gh)) as (service, client):
        assert service.worker is not None
        await first_cycle_done(service.worker)
        created = await client.post("/api/tasks", json={"title": "ship it"}, headers=AUTH)
        task_id = created.json()["id"]

        response = await client.post(
            "/api/pulls/track",
            json={"repository": "x/y", "number": 5, "task_id": task_id},
            headers=AUTH,
        )

        assert response.status_code == 200, response.text
        pull = response.json()
        assert (pull["repository"], pull["number"], pull["status"]) == ("x/y", 5, "OPEN")
        assert pull["task_id"] == task_id
        task = (await client.get(f"/api/tasks/{task_id}", headers=AUTH)).json()
        assert task["status"] == "CODE_REVIEWING"
        assert ("x/y", 5) in await service.store.monitored_pulls()

        gh.reset_requests()
        assert (await client.post("/api/sync", headers=AUTH)).status_code == 200
        assert [(q.conditional, q.status, q.rate_cost) for q in gets(gh, "x/y", 5)] == [
            (True, 304, 0)
        ]
        assert listings(gh, "x/y") == []  # one PR, not the whole repository

        gh.update_pull("x/y", 5, merged=True)
        gh.reset_requests()
        stats = (await client.post("/api/sync", headers=AUTH)).json()

        assert stats["error_count"] == 0
        assert [(q.conditional, q.status) for q in gets(gh, "x/y", 5)] == [(True, 200)]
        pr = await service.store.get_pull("x/y", 5)
        assert pr is not None and (pr.status, pr.last_source) == ("MERGED", "worker")
        task = (await client.get(f"/api/tasks/{task_id}", headers=AUTH)).json()
        assert task["status"] == "DONE"


async def test_tracking_a_pr_that_github_does_not_have_is_404(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_pull(REPO, 1)
    gh.add_pull("x/y", 5)
    async with running_app(sync_settings(database_url, gh)) as (service, client):
        assert service.worker is not None
        await first_cycle_done(service.worker)
        for repository, number in (("x/y", 99), ("nobody/nothing", 1)):
            response = await client.post(
                "/api/pulls/track", json={"repository": repository, "number": number}, headers=AUTH
            )
            assert response.status_code == 404, response.text
            assert await service.store.get_pull(repository, number) is None


async def test_a_pr_that_failed_to_track_is_not_polled_forever(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_pull(REPO, 1)
    async with running_app(sync_settings(database_url, gh)) as (service, client):
        assert service.worker is not None
        await first_cycle_done(service.worker)
        response = await client.post(
            "/api/pulls/track", json={"repository": REPO, "number": 99}, headers=AUTH
        )
        assert response.status_code == 404

        stats = (await client.post("/api/sync", headers=AUTH)).json()

        # The caller was told 404; the PR must not stay monitored, failing every cycle.
        assert (REPO, 99) not in await service.store.monitored_pulls()
        assert stats["error_count"] == 0, stats["last_error"]


async def test_reconcile_refetches_a_pr_and_the_api_answer_wins(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_pull(REPO, 1)
    async with running_app(sync_settings(database_url, gh)) as (service, client):
        assert service.worker is not None
        await first_cycle_done(service.worker)
        gh.update_pull(REPO, 1, state="closed", title="renamed")  # no webhook
        gh.add_pull(REPO, 2)  # not seen yet
        gh.reset_requests()

        response = await client.post(f"/api/pulls/{REPO}/1/reconcile", headers=AUTH)

        assert response.status_code == 200, response.text
        pull = response.json()
        assert (pull["status"], pull["title"], pull["last_source"]) == (
            "CLOSED",
            "renamed",
            "worker",
        )
        assert [(q.conditional, q.status) for q in gets(gh, REPO, 1)] == [(False, 200)]
        response = await client.post(f"/api/pulls/{REPO}/2/reconcile", headers=AUTH)
        assert response.status_code == 200 and response.json()["status"] == "OPEN"
        response = await client.post(f"/api/pulls/{REPO}/99/reconcile", headers=AUTH)
        assert response.status_code == 404
        assert await service.store.get_pull(REPO, 99) is None


# -- failed-delivery recovery (a real server: the fake POSTs redeliveries to it) -----------

HookKind = Literal["app", "repo"]


def hook_env(gh: FakeGitHub, kind: HookKind) -> dict[str, str]:
    if kind == "app":  # the App's webhook; repositories come from the installation
        return {
            "GITHUB_TOKEN": "",
            "GITHUB_REPOSITORIES": "",
            "APP_ID": gh.app_id,
            "PRIVATE_KEY": gh.private_key_pem,
        }
    return {"HOOK_ID": f"{REPO}:1"}  # a repository webhook, read with the token


def hook_path(kind: HookKind) -> str:
    return "/app/hook" if kind == "app" else f"/repos/{REPO}/hooks/1"


def configure_hook(gh: FakeGitHub, kind: HookKind, url: str) -> None:
    target = f"{url}/webhooks/github"
    if kind == "app":
        gh.configure_hook(url=target, secret=SECRET, app=True)
    else:
        gh.configure_hook(url=target, secret=SECRET, hook_id=1, repository=REPO)


def record(gh: FakeGitHub, kind: HookKind, document: dict[str, Any], **kwargs: Any) -> str:
    """A past delivery of a pull_request event to the hook (failed unless told)."""
    where: dict[str, Any] = {"hook": "app"}
    if kind == "repo":
        where = {"hook": "repo", "repository": REPO, "hook_id": 1}
    action = document["action"]
    return gh.record_delivery(
        event="pull_request", action=action, payload=document, **where, **kwargs
    )


def merged_later(pull: dict[str, Any]) -> dict[str, Any]:
    """``pull`` merged a minute after its last update (GitHub has not caught up yet)."""
    later = datetime.fromisoformat(pull["updated_at"]) + timedelta(minutes=1)
    stamp = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    return pull | {
        "state": "closed",
        "merged": True,
        "merged_at": stamp,
        "closed_at": stamp,
        "updated_at": stamp,
    }


def attempts(gh: FakeGitHub) -> list[tuple[str, int]]:
    return [(q.path, q.status) for q in gh.requests if q.method == "POST"]


@pytest.mark.parametrize("kind", ["app", "repo"])
async def test_a_failed_delivery_is_redelivered_once(
    database_url: str, gh: FakeGitHub, kind: HookKind
) -> None:
    gh.add_installation(7, [REPO])
    gh.add_pull(REPO, 1)
    gh.add_pull(REPO, 2)
    settings = sync_settings(database_url, gh, **hook_env(gh, kind))
    async with (
        uvicorn_server(settings) as (service, url),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        worker = service.worker
        assert worker is not None
        await first_cycle_done(worker)
        configure_hook(gh, kind, url)
        opened = webhook("pull_request/opened", gh.pull(REPO, 2))
        # Applied here, though GitHub saw a failure (say, we answered too late):
        applied = str(uuid.uuid4())
        assert (await post_delivery(client, opened, guid=applied)).status_code == 200
        record(gh, kind, opened, guid=applied, status_code=504)
        # Failed once, then delivered OK by a later attempt:
        answered = record(gh, kind, opened, status_code=502)
        record(gh, kind, opened, guid=answered, status_code=200)
        # Never arrived: the merge of PR 1.
        lost = record(gh, kind, webhook("pull_request/closed", merged_later(gh.pull(REPO, 1))))
        lost_id = next(d.id for d in gh.deliveries if d.guid == lost)
        gh.reset_requests()

        stats = await cycle(worker)

        assert stats["error_count"] == 0, stats["last_error"]
        assert attempts(gh) == [(f"{hook_path(kind)}/deliveries/{lost_id}/attempts", 202)]
        assert [d.status for d in gh.deliveries if d.guid == lost and d.redelivery] == ["OK"]
        assert not [d for d in gh.deliveries if d.guid in (applied, answered) and d.redelivery]
        assert stats["redeliveries_requested"] == 1
        delivery = await service.store.get_delivery(lost)
        assert delivery is not None and delivery.outcome == "applied"
        pr = await service.store.get_pull(REPO, 1)
        assert pr is not None
        assert (pr.status, pr.last_source, pr.last_delivery_id) == ("MERGED", "monitor", lost)

        gh.reset_requests()
        stats = await cycle(worker)

        assert stats["error_count"] == 0, stats["last_error"]
        assert attempts(gh) == []  # once per GUID
        assert stats["redeliveries_requested"] == 1
        assert len([d for d in gh.deliveries if d.guid == lost]) == 2


async def test_a_redelivery_github_refused_is_asked_again(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_installation(7, [REPO])
    gh.add_pull(REPO, 1)
    settings = sync_settings(database_url, gh, SYNC_RETRY_ATTEMPTS="1", **hook_env(gh, "app"))
    async with uvicorn_server(settings) as (service, url):
        worker = service.worker
        assert worker is not None
        await first_cycle_done(worker)
        configure_hook(gh, "app", url)
        lost = record(gh, "app", webhook("pull_request/closed", merged_later(gh.pull(REPO, 1))))
        gh.fail_next(2, 502, path_prefix="/app/hook/deliveries/")  # the POST, and its retry

        stats = await cycle(worker)
        assert stats["error_count"] == 1  # GitHub did not redeliver it
        assert not [d for d in gh.deliveries if d.guid == lost and d.redelivery]

        stats = await cycle(worker)

        assert [d.status for d in gh.deliveries if d.guid == lost and d.redelivery] == ["OK"]
        pr = await service.store.get_pull(REPO, 1)
        assert pr is not None and pr.status == "MERGED"


async def test_idle_cycles_with_a_repository_hook_do_not_fail(
    database_url: str, gh: FakeGitHub
) -> None:
    """The hook's delivery list is read with the token, whose cache keeps ETags: the
    second read of an unchanged list is a 304."""
    gh.add_pull(REPO, 1)
    gh.configure_hook(url="http://127.0.0.1:9/unused", secret=SECRET, repository=REPO)
    async with rig(database_url, gh, HOOK_ID=f"{REPO}:1") as r:
        assert (await cycle(r.worker))["error_count"] == 0
        gh.reset_requests()

        stats = await cycle(r.worker)

        assert stats["error_count"] == 0
        assert stats["sync_count"] == 2


# -- webhook-service sync --once ----------------------------------------------------------

_SETTINGS_PREFIXES = ("GITHUB_", "APP_ID", "PRIVATE_KEY", "HOOK_ID", "SYNC_", "DATABASE_URL")


async def test_the_sync_once_command_runs_one_cycle(
    database_url: str, gh: FakeGitHub, tmp_path: Path
) -> None:
    gh.add_pull(REPO, 1)
    gh.add_pull(REPO, 2, state="closed")
    gh.add_pull(REPO, 3, merged=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    env |= {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": gh.url,
        "GITHUB_REPOSITORIES": REPO,
        "DATABASE_URL": database_url,
        "SYNC_RETRY_DELAY": "0.05",
    }
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webhook_service", "migrate", cwd=tmp_path, env=env
    )  # as a user does: only migrate and serve create the schema
    async with asyncio.timeout(60):
        assert await migrate.wait() == 0
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webhook_service",
        "sync",
        "--once",
        cwd=tmp_path,  # no .env file there
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            async with asyncio.timeout(10):
                await process.wait()

    assert process.returncode == 0, err.decode(errors="replace")
    stats = json.loads(out)
    assert (stats["sync_count"], stats["error_count"], stats["running"]) == (1, 0, False)
    assert [q.status for q in listings(gh)] == [200]
    store = Store(database_url)
    await store.connect()
    try:
        pulls = await store.list_pulls(repository=REPO)
    finally:
        await store.disconnect()
    assert {(p.number, p.status, p.last_source) for p in pulls} == {
        (1, "OPEN", "worker"),
        (2, "CLOSED", "worker"),
        (3, "MERGED", "worker"),
    }
