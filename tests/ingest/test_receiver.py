"""The receiver and the API around it, end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx
import orjson
import pytest

from tests._postgres import create_database, drop_database
from tests.helpers import (
    AUTH,
    SECRET,
    fixture,
    make_settings,
    payload,
    post_delivery,
    running_app,
    signed_headers,
)
from tests.servers import TcpProxy
from webhook_service.app import Service
from webhook_service.core.payloads import INSTALLATION_EVENTS, PR_EVENTS
from webhook_service.ingest.fixtures import RecordedDelivery, fixtures_root, iter_deliveries
from webhook_service.ingest.signature import sign
from webhook_service.store import DeliveryRecord

PATH = "/webhooks/github"
REPO = "Codertocat/Hello-World"
PR_URL = f"/api/pulls/{REPO}/2"

RECORDED = list(iter_deliveries(fixtures_root()))


def _fixture_name(recorded: RecordedDelivery) -> str:
    return recorded.path.relative_to(fixtures_root()).with_suffix("").as_posix()


def _resigned(recorded: RecordedDelivery, secret: str = SECRET) -> dict[str, str]:
    """The recorded headers plus the signature GitHub would send with ``secret``."""
    return {**recorded.headers, "X-Hub-Signature-256": sign(recorded.body, secret=secret.encode())}


async def _pr(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(PR_URL, headers=AUTH)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def _events(client: httpx.AsyncClient, since: int = 0) -> list[dict[str, Any]]:
    response = await client.get(f"/api/events?since={since}", headers=AUTH)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def _head(ref: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(fixture("pull_request/opened").body)
    return {**document["pull_request"]["head"], "ref": ref}


# -- every recorded delivery -----------------------------------------------------------


def test_every_fixture_directory_is_covered() -> None:
    events = {r.event for r in RECORDED}
    assert events >= PR_EVENTS
    assert {"ping", "status", "check_suite", "installation"} <= events
    assert len(RECORDED) == 41


@pytest.mark.parametrize("recorded", RECORDED, ids=_fixture_name)
async def test_recorded_delivery_is_acknowledged_and_stored_as_received(
    database_url: str, recorded: RecordedDelivery
) -> None:
    document: dict[str, Any] = orjson.loads(recorded.body)
    is_pr = recorded.event in PR_EVENTS
    acted_on = is_pr or recorded.event in INSTALLATION_EVENTS
    async with running_app(make_settings(database_url)) as (service, client):
        before = datetime.now(UTC)
        response = await client.post(PATH, content=recorded.body, headers=_resigned(recorded))
        after = datetime.now(UTC)

        expected_code = 200 if acted_on or recorded.event == "ping" else 202
        assert response.status_code == expected_code, response.text
        assert response.json()["guid"] == recorded.guid
        assert response.json()["status"] == ("applied" if acted_on else "ignored")

        stored = await service.store.get_delivery(recorded.guid)
        assert stored is not None
        assert stored.guid == recorded.guid
        assert stored.event == recorded.event
        assert stored.action == document.get("action")
        assert stored.installation_id == (document.get("installation") or {}).get("id")
        assert stored.repository == (document.get("repository") or {}).get("full_name")
        if "hook_id" in document:
            assert stored.hook_id == document["hook_id"]
        assert stored.body == recorded.body
        stored_headers = {k.lower(): v for k, v in stored.headers.items()}
        for name, value in recorded.headers.items():
            assert stored_headers[name.lower()] == value
        assert before <= stored.received_at <= after
        assert stored.processed_at is not None
        assert stored.received_at <= stored.processed_at <= after
        assert stored.outcome == ("applied" if acted_on else "ignored")

        pulls = (await client.get("/api/pulls", headers=AUTH)).json()["pulls"]
        events = await _events(client)
        if not is_pr:
            assert stored.pr_number is None
            assert (pulls, events) == ([], [])
            if recorded.event in INSTALLATION_EVENTS:
                added = document.get("repositories") or document.get("repositories_added") or []
                tracked = await service.store.tracked_repositories()
                assert tracked == {r["full_name"]: document["installation"]["id"] for r in added}
            return
        pr = document["pull_request"]
        status = (
            "MERGED"
            if pr.get("merged") or pr.get("merged_at")
            else "CLOSED"
            if pr["state"] == "closed"
            else "OPEN"
        )
        assert stored.pr_number == pr["number"]
        assert [(p["repository"], p["number"], p["status"]) for p in pulls] == [
            (document["repository"]["full_name"], pr["number"], status)
        ]
        assert pulls[0]["last_delivery_id"] == recorded.guid
        assert [(e["type"], e["old_status"], e["new_status"]) for e in events] == [
            ("pr_status_change", None, status)
        ]


async def test_hook_id_is_recorded_from_the_x_github_hook_id_header(database_url: str) -> None:
    # Only ping bodies carry `hook_id`; every delivery carries the X-GitHub-Hook-ID
    # header, which names the hook a failed delivery must be redelivered through.
    recorded = fixture("pull_request/opened")
    async with running_app(make_settings(database_url)) as (service, client):
        response = await client.post(PATH, content=recorded.body, headers=_resigned(recorded))
        assert response.status_code == 200

        stored = await service.store.get_delivery(recorded.guid)
        assert stored is not None
        assert stored.hook_id == int(recorded.headers["X-GitHub-Hook-ID"])


# -- settings: secret rotation and the path ----------------------------------------------


async def test_rotated_secrets_are_all_accepted(database_url: str) -> None:
    settings = make_settings(database_url, WEBHOOK_SECRET="old-secret, new-secret")
    opened = orjson.dumps(payload("pull_request/opened"))
    closed = orjson.dumps(payload("pull_request/closed"))
    async with running_app(settings) as (service, client):
        by_old = await client.post(
            PATH,
            content=opened,
            headers=signed_headers(opened, "pull_request", "g-old", secret="old-secret"),
        )
        by_other = await client.post(
            PATH,
            content=closed,
            headers=signed_headers(closed, "pull_request", "g-other", secret=SECRET),
        )
        by_new = await client.post(
            PATH,
            content=closed,
            headers=signed_headers(closed, "pull_request", "g-new", secret="new-secret"),
        )

        assert (by_old.status_code, by_old.json()["outcome"]) == (200, "created")
        assert by_other.status_code == 401
        assert (by_new.status_code, by_new.json()["outcome"]) == (200, "transitioned")
        assert (await _pr(client))["status"] == "CLOSED"
        assert await service.store.count_deliveries() == {"applied": 2}
        assert await service.store.get_delivery("g-other") is None


async def test_webhook_path_setting_moves_the_receiver(database_url: str) -> None:
    settings = make_settings(database_url, WEBHOOK_PATH="/hooks/github-app")
    body = orjson.dumps(payload("pull_request/opened"))
    async with running_app(settings) as (service, client):
        old = await client.post(PATH, content=body, headers=signed_headers(body, "pull_request"))
        new = await client.post(
            "/hooks/github-app", content=body, headers=signed_headers(body, "pull_request", "g-1")
        )

        assert old.status_code in (404, 405)
        assert (new.status_code, new.json()["outcome"]) == (200, "created")
        assert await service.store.count_deliveries() == {"applied": 1}
        assert (await _pr(client))["last_delivery_id"] == "g-1"


async def test_the_webhook_route_answers_before_the_router_with_its_own_500(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """POST WEBHOOK_PATH goes straight to the receiver (app.ServiceApp); other methods
    still reach the router (405), and an error in the receiver is answered 500 and
    logged, as Starlette's error middleware did."""
    body = orjson.dumps(payload("pull_request/opened"))
    async with running_app(make_settings(database_url), raise_app_exceptions=False) as (
        service,
        client,
    ):
        calls: list[str] = []

        async def failing(job: object) -> None:
            calls.append("submit")
            raise RuntimeError("boom")

        monkeypatch.setattr(service.reconciler, "submit", failing)
        get = await client.get(PATH)
        with caplog.at_level(logging.ERROR, logger="webhook_service.ingest.receiver"):
            headers = signed_headers(body, "pull_request")
            post = await client.post(PATH, content=body, headers=headers)

    assert get.status_code == 405
    assert (post.status_code, post.json()) == (500, {"error": "internal error"})
    assert calls == ["submit"]
    assert "the webhook receiver failed" in caplog.text


# -- redelivery of a failed delivery -----------------------------------------------------


async def _attempts(service: Service, guid: str) -> int:
    async with service.store.connection() as conn:
        value = await conn.fetchval("SELECT attempts FROM webhook_deliveries WHERE guid = $1", guid)
    return int(value)


async def test_guid_stored_as_failed_is_processed_again(database_url: str) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    failed = DeliveryRecord(
        guid="g-failed",
        event="pull_request",
        action="opened",
        hook_id=None,
        installation_id=1,
        repository=REPO,
        pr_number=2,
        headers={"x-github-event": "pull_request", "x-github-delivery": "g-failed"},
        body=b'{"earlier": "attempt"}',
        received_at=earlier,
        processed_at=earlier,
        outcome="failed",
        detail="internal error while applying",
    )
    body = orjson.dumps(payload("pull_request/opened"))
    async with running_app(make_settings(database_url)) as (service, client):
        async with service.store.transaction() as uow:
            await uow.save_deliveries([failed])
        assert await service.store.count_deliveries() == {"failed": 1}

        response = await post_delivery(client, body, guid="g-failed")

        assert response.status_code == 200, response.text
        assert response.json() == {"guid": "g-failed", "status": "applied", "outcome": "created"}
        stored = await service.store.get_delivery("g-failed")
        assert stored is not None
        assert (stored.outcome, stored.detail) == ("applied", "created")
        assert stored.body == body
        assert stored.received_at > earlier
        assert await _attempts(service, "g-failed") == 2
        assert (await _pr(client))["status"] == "OPEN"
        assert len(await _events(client)) == 1

        # Once applied, the same GUID is a duplicate: counted, not applied again.
        again = await post_delivery(client, body, guid="g-failed")
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
        assert await _attempts(service, "g-failed") == 3
        assert len(await _events(client)) == 1


# -- review events cannot close or reopen ------------------------------------------------


def _review(**pr_fields: Any) -> dict[str, Any]:
    return payload("pull_request_review/submitted", **pr_fields)


async def test_review_events_do_not_change_a_merged_pr(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        merged = await post_delivery(client, payload("pull_request/closed.merged"), guid="m")
        assert (merged.status_code, merged.json()["outcome"]) == (200, "created")
        before = await _pr(client)
        assert before["status"] == "MERGED"

        reviews = [
            ("pull_request_review", _review()),  # older, says open
            ("pull_request_review", _review(updated_at="2019-05-16T00:00:00Z")),  # newer, open
            (
                "pull_request_review",
                _review(state="closed", merged_at=None, updated_at="2019-05-16T00:00:01Z"),
            ),
            (
                "pull_request_review_comment",
                orjson.loads(fixture("pull_request_review_comment/created").body),
            ),
            (
                "pull_request_review_thread",
                orjson.loads(fixture("pull_request_review_thread/resolved").body),
            ),
        ]
        for i, (event, document) in enumerate(reviews):
            response = await post_delivery(client, document, event=event, guid=f"r-{i}")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "applied"
            assert response.json()["outcome"] == "terminal"

        assert await _pr(client) == before
        assert len(await _events(client)) == 1
        assert await service.store.count_deliveries() == {"applied": 1 + len(reviews)}


async def _refetch_requests(service: Service) -> list[tuple[str, int]]:
    async with service.store.connection() as conn:
        rows = await conn.fetch("SELECT repository, number FROM refetch_requests")
    return [(str(r["repository"]), int(r["number"])) for r in rows]


async def test_review_event_saying_closed_without_merge_info_does_not_close_an_open_pr(
    database_url: str,
) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        opened = await post_delivery(client, payload("pull_request/opened"), guid="o")
        assert (opened.status_code, opened.json()["outcome"]) == (200, "created")

        # A review event has no `merged` field: "closed" with merged_at null may be a
        # merge whose merged_at the payload omits, or a close. The PR stays OPEN and is
        # re-fetched from the API instead.
        review = _review(
            state="closed",
            merged_at=None,
            closed_at="2019-05-15T15:21:18Z",
            updated_at="2019-05-15T15:21:18Z",
        )
        response = await post_delivery(client, review, event="pull_request_review", guid="r")

        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "ambiguous"
        pr = await _pr(client)
        assert pr["status"] == "OPEN"
        assert pr["last_delivery_id"] == "o"
        assert await _refetch_requests(service) == [(REPO, 2)]
        stored = await service.store.get_delivery("r")
        assert stored is not None
        assert (stored.outcome, stored.detail) == ("applied", "ambiguous")
        assert len(await _events(client)) == 1

        # The pull_request event says merged: false, so its close is authoritative.
        closed = await post_delivery(client, payload("pull_request/closed"), guid="c")

        assert (closed.status_code, closed.json()["outcome"]) == (200, "transitioned")
        assert (await _pr(client))["status"] == "CLOSED"
        events = await _events(client)
        assert [(e["old_status"], e["new_status"]) for e in events] == [
            (None, "OPEN"),
            ("OPEN", "CLOSED"),
        ]


# -- the database goes away and comes back -----------------------------------------------


async def _connect_elsewhere(url: str) -> Any:
    """A connection to another database of the same server (for ALTER DATABASE)."""
    parts = urlsplit(url)
    error: Exception | None = None
    for other in ("postgres", "template1"):
        try:
            return await asyncpg.connect(urlunsplit(parts._replace(path=f"/{other}", query="")))
        except asyncpg.PostgresError as exc:
            error = exc
    raise AssertionError(f"no maintenance database on {parts.hostname}") from error


@asynccontextmanager
async def _postgres_unreachable(url: str) -> AsyncIterator[None]:
    """Refuse new sessions to the database and end the ones it has, until exit."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await _connect_elsewhere(url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            for _ in range(200):
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
                left = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
                )
                if left == 0:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"sessions to {name} did not end")
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()


@asynccontextmanager
async def _sqlite_unreachable(directory: Path) -> AsyncIterator[None]:
    """Make the SQLite database unusable until exit (chmod does not stop root).

    The database runs in WAL mode, so a connection already open keeps writing to a
    file whose directory was moved. So: another connection takes the write lock
    (the service's held connection waits out its busy timeout, then fails with
    "database is locked"), and the directory is moved away (every connection
    opened after that fails with "unable to open database file").
    """
    blocker = sqlite3.connect(directory / "service.db", isolation_level=None, timeout=30)
    away = directory.with_name(directory.name + "-away")
    try:
        blocker.execute("BEGIN IMMEDIATE")
        os.rename(directory, away)
        try:
            yield
        finally:
            os.rename(away, directory)
            blocker.execute("ROLLBACK")
    finally:
        blocker.close()


Outage = Callable[[], AbstractAsyncContextManager[None]]


def _warnings(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.WARNING and r.name.startswith("webhook_service")
    ]


async def _assert_outage_is_503_and_recovered(
    url: str, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    closed = payload("pull_request/closed")
    caplog.set_level(logging.INFO)
    async with running_app(make_settings(url), raise_app_exceptions=False) as (service, client):
        opened = await post_delivery(client, payload("pull_request/opened"), guid="before")
        assert (opened.status_code, opened.json()["outcome"]) == (200, "created")

        caplog.clear()
        async with outage():
            # Several attempts: the first finds its held connection dead, later ones
            # cannot open a new one.
            answers = [
                await post_delivery(client, closed, guid="during"),
                await post_delivery(client, closed, guid="during"),
                await post_delivery(client, closed, guid="during-2"),
            ]
            ready = await client.get("/readyz")
            pulls = await client.get("/api/pulls", headers=AUTH)
        # The outage is logged once, whatever failed how often meanwhile.
        warned = _warnings(caplog.records)
        assert len(warned) == 1, warned
        assert "webhook_service.store: database unavailable" in warned[0]
        assert not [r for r in caplog.records if r.name == "asyncpg.pool" and r.exc_info]

        assert [a.status_code for a in answers] == [503, 503, 503], [a.text for a in answers]
        assert all("error" in a.json() for a in answers)
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["database"] is False
        assert pulls.status_code == 503, pulls.text

        # Back again, without a restart: nothing of the refused deliveries was kept.
        assert await service.store.get_delivery("during") is None
        assert await service.store.get_delivery("during-2") is None
        assert await service.store.count_deliveries() == {"applied": 1}
        assert (await _pr(client))["status"] == "OPEN"
        assert len(await _events(client)) == 1
        assert (await client.get("/readyz")).status_code == 200
        messages = [r.getMessage() for r in caplog.records]
        answered = [m for m in messages if m.startswith("database answers again, after")]
        assert len(answered) == 1, messages
        assert _warnings(caplog.records) == warned

        # GitHub's redelivery of the refused GUID is applied in full.
        again = await post_delivery(client, closed, guid="during")
        assert (again.status_code, again.json()["outcome"]) == (200, "transitioned")
        assert (await _pr(client))["status"] == "CLOSED"
        stored = await service.store.get_delivery("during")
        assert stored is not None
        assert stored.outcome == "applied"
        assert await _attempts(service, "during") == 1
        assert [(e["old_status"], e["new_status"]) for e in await _events(client)] == [
            (None, "OPEN"),
            ("OPEN", "CLOSED"),
        ]


async def test_database_unavailable_is_503_and_nothing_is_half_written(
    backend: str, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite: the database is locked and its directory moved away. PostgreSQL: the
    database refuses new sessions (ALLOW_CONNECTIONS false) and its sessions end."""
    if backend == "sqlite":
        directory = tmp_path / "db"
        directory.mkdir()
        url = f"sqlite:///{directory / 'service.db'}"
        await _assert_outage_is_503_and_recovered(
            url, lambda: _sqlite_unreachable(directory), caplog
        )
    else:
        await _assert_outage_is_503_and_recovered(
            database_url, lambda: _postgres_unreachable(database_url), caplog
        )


async def test_postgres_server_unreachable_is_503_and_recovers(
    postgres_base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The PostgreSQL server (or the network to it) goes away and comes back."""
    url = await create_database(postgres_base_url)
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    proxy = TcpProxy(parts.hostname, parts.port)
    await proxy.start()
    user = f"{parts.username}@" if parts.username else ""
    via_proxy = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))

    @asynccontextmanager
    async def network_down() -> AsyncIterator[None]:
        await proxy.cut()
        try:
            yield
        finally:
            await proxy.start()

    try:
        await _assert_outage_is_503_and_recovered(via_proxy, network_down, caplog)
    finally:
        await proxy.close()
        await drop_database(url)


# -- health and the events API -----------------------------------------------------------


async def test_health_checks_need_no_token(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        health = await client.get("/healthz")
        ready = await client.get("/readyz")

        assert (health.status_code, health.json()["status"]) == (200, "ok")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"] == {"reconciler": True, "dispatcher": True, "database": True}


@pytest.mark.parametrize("path", ["/api/pulls", "/api/tasks", "/api/events", PR_URL])
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dGVzdC1hcGktdG9rZW4=", "test-api-token", "Bearer "],
    ids=["none", "wrong-token", "basic-scheme", "no-scheme", "empty-bearer"],
)
async def test_api_needs_the_token(database_url: str, path: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with running_app(make_settings(database_url)) as (_, client):
        await post_delivery(client, payload("pull_request/opened"))

        refused = await client.get(path, headers=headers)
        allowed = await client.get(path, headers=AUTH)

        assert refused.status_code == 401
        assert "error" in refused.json()
        assert allowed.status_code == 200


async def test_events_since_returns_only_later_events(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        await post_delivery(client, payload("pull_request/opened"), guid="e-1")
        await post_delivery(client, payload("pull_request/closed"), guid="e-2")
        await post_delivery(
            client, payload("pull_request/reopened", updated_at="2019-05-15T15:30:00Z"), guid="e-3"
        )

        every = await _events(client)
        ids = [e["event_id"] for e in every]
        assert len(ids) == 3
        assert ids == sorted(ids)
        assert len(set(ids)) == 3
        assert [(e["old_status"], e["new_status"]) for e in every] == [
            (None, "OPEN"),
            ("OPEN", "CLOSED"),
            ("CLOSED", "OPEN"),
        ]
        assert await _events(client, since=ids[0]) == every[1:]
        assert await _events(client, since=ids[1]) == every[2:]
        latest = (await client.get(f"/api/events?since={ids[2]}", headers=AUTH)).json()
        assert latest == {"events": [], "last_id": ids[2], "next": None}
        first = (await client.get("/api/events?since=0&limit=1", headers=AUTH)).json()
        next_page = f"/api/events?limit=1&since={ids[0]}"
        assert first == {"events": every[:1], "last_id": ids[0], "next": next_page}
        without_since = (await client.get("/api/events", headers=AUTH)).json()
        assert without_since["events"] == every


@pytest.mark.parametrize(
    "query", ["since=abc", "since=-1", "since=1.5", "since=", "since=0&limit=0", "limit=x"]
)
async def test_events_rejects_bad_parameters(database_url: str, query: str) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        await post_delivery(client, payload("pull_request/opened"))

        response = await client.get(f"/api/events?{query}", headers=AUTH)

        assert response.status_code == 400
        assert "error" in response.json()
        assert len(await _events(client)) == 1


# -- tasks ------------------------------------------------------------------------------


async def _create_task(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/tasks", json={"title": "A task", **fields}, headers=AUTH)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def _task(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/tasks/{task_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def test_task_is_created_and_read_back(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        created = await _create_task(
            client,
            title="  Write the tests  ",
            repository=REPO,
            branch="task/x",
            worktree_path="/srv/worktrees/x",
        )
        assigned = str(uuid.uuid4()).upper()
        chosen = await _create_task(client, id=assigned)

        assert uuid.UUID(created["id"])
        assert created["title"] == "Write the tests"
        assert created["status"] == "TODO"
        assert (created["repository"], created["branch"], created["worktree_path"]) == (
            REPO,
            "task/x",
            "/srv/worktrees/x",
        )
        assert chosen["id"] == assigned.lower()
        assert await _task(client, created["id"]) == created
        assert await _task(client, assigned) == chosen
        listed = (await client.get("/api/tasks", headers=AUTH)).json()["tasks"]
        assert sorted(t["id"] for t in listed) == sorted([created["id"], chosen["id"]])


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"title": ""}',
        b'{"title": "   "}',
        b'{"title": 5}',
        b'{"title": null}',
        b'{"title": "t", "id": "not-a-uuid"}',
        b'{"title": "t", "id": 5}',
        b'{"title": "t", "repository": "no-slash"}',
        b'{"title": "t", "repository": "a/b/c"}',
        b'{"title": "t", "repository": ""}',
        b'{"title": "t", "repository": 7}',
        b'{"title": "t", "branch": ""}',
        b'{"title": "t", "status": "BOGUS"}',
        b"not json",
        b'["title"]',
        b"",
    ],
    ids=[
        "missing-title",
        "empty-title",
        "blank-title",
        "title-number",
        "title-null",
        "bad-id",
        "id-number",
        "repository-without-owner",
        "repository-with-two-slashes",
        "repository-empty",
        "repository-number",
        "branch-empty",
        "status-unknown",
        "body-not-json",
        "body-array",
        "body-empty",
    ],
)
async def test_invalid_task_is_refused(database_url: str, body: bytes) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        response = await client.post(
            "/api/tasks",
            content=body,
            headers={**AUTH, "Content-Type": "application/json"},
        )

        assert response.status_code == 400, response.text
        assert "error" in response.json()
        assert (await client.get("/api/tasks", headers=AUTH)).json()["tasks"] == []


async def test_duplicate_task_id_is_a_conflict(database_url: str) -> None:
    task_id = str(uuid.uuid4())
    async with running_app(make_settings(database_url)) as (_, client):
        first = await _create_task(client, id=task_id, title="first")
        same = await client.post(
            "/api/tasks", json={"id": task_id, "title": "second"}, headers=AUTH
        )
        upper = await client.post(
            "/api/tasks", json={"id": task_id.upper(), "title": "third"}, headers=AUTH
        )

        assert same.status_code == 409
        assert upper.status_code == 409
        assert await _task(client, task_id) == first


async def test_unknown_task_is_404(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        response = await client.get(f"/api/tasks/{uuid.uuid4()}", headers=AUTH)

        assert response.status_code == 404
        assert "error" in response.json()


async def test_pr_on_a_task_branch_drives_the_task(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        task = await _create_task(client)
        tid = task["id"]
        head = _head(f"task/{tid}")

        opened = await post_delivery(client, payload("pull_request/opened", head=head))
        assert (opened.status_code, opened.json()["outcome"]) == (200, "created")
        assert (await _pr(client))["task_id"] == tid
        assert (await _task(client, tid))["status"] == "CODE_REVIEWING"
        events = await _events(client)
        assert [e["type"] for e in events] == ["pr_status_change", "task_status_change"]
        assert events[0]["task_id"] == tid
        change = events[1]
        assert (change["task_id"], change["old_status"], change["new_status"]) == (
            tid,
            "TODO",
            "CODE_REVIEWING",
        )
        assert change["pr_trigger"] is True

        merged = await post_delivery(client, payload("pull_request/closed.merged", head=head))
        assert (merged.status_code, merged.json()["outcome"]) == (200, "transitioned")
        assert (await _task(client, tid))["status"] == "DONE"
        later = await _events(client, since=events[-1]["event_id"])
        assert [(e["type"], e["old_status"], e["new_status"]) for e in later] == [
            ("pr_status_change", "OPEN", "MERGED"),
            ("task_status_change", "CODE_REVIEWING", "DONE"),
        ]
        assert later[1]["pr_trigger"] is True


async def test_pr_on_a_branch_naming_no_known_task_is_not_linked(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        head = _head(f"task/{uuid.uuid4()}")
        opened = await post_delivery(client, payload("pull_request/opened", head=head))

        assert (opened.status_code, opened.json()["outcome"]) == (200, "created")
        assert (await _pr(client))["task_id"] is None
        assert [e["type"] for e in await _events(client)] == ["pr_status_change"]


@pytest.mark.parametrize(
    ("fixture_name", "pr_status", "task_status"),
    [
        ("pull_request/opened", "OPEN", "CODE_REVIEWING"),
        ("pull_request/closed", "CLOSED", "CANCELLED"),
        ("pull_request/closed.merged", "MERGED", "DONE"),
    ],
)
async def test_link_api_links_a_stored_pr_and_syncs_the_task(
    database_url: str, fixture_name: str, pr_status: str, task_status: str
) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        await post_delivery(client, payload(fixture_name))
        assert (await _pr(client))["status"] == pr_status
        tid = (await _create_task(client))["id"]
        link = {"repository": REPO, "number": 2}

        response = await client.post(f"/api/tasks/{tid}/link", json=link, headers=AUTH)

        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "updated"
        pr = await _pr(client)
        assert (pr["task_id"], pr["status"], pr["last_source"]) == (tid, pr_status, "manual")
        assert (await _task(client, tid))["status"] == task_status
        events = await _events(client)
        change = events[-1]
        assert change["event_id"] in response.json()["event_ids"]
        assert (change["type"], change["task_id"], change["old_status"], change["new_status"]) == (
            "task_status_change",
            tid,
            "TODO",
            task_status,
        )

        # Linking again changes nothing.
        again = await client.post(f"/api/tasks/{tid}/link", json=link, headers=AUTH)
        assert again.json() == {"outcome": "unchanged", "event_ids": []}
        assert await _events(client) == events


async def test_link_api_refuses_unknown_and_invalid_targets(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_, client):
        await post_delivery(client, payload("pull_request/opened"))
        tid = (await _create_task(client))["id"]

        unknown_pr = await client.post(
            f"/api/tasks/{tid}/link", json={"repository": REPO, "number": 3}, headers=AUTH
        )
        unknown_task = await client.post(
            f"/api/tasks/{uuid.uuid4()}/link", json={"repository": REPO, "number": 2}, headers=AUTH
        )
        bad = [
            await client.post(f"/api/tasks/{tid}/link", json=body, headers=AUTH)
            for body in (
                {"repository": "nope", "number": 2},
                {"repository": REPO, "number": "2"},
                {"repository": REPO, "number": 0},
                {"repository": REPO, "number": True},
                {"repository": REPO},
            )
        ]

        assert unknown_pr.status_code == 404
        assert unknown_task.status_code == 404
        assert [r.status_code for r in bad] == [400] * 5
        assert (await _pr(client))["task_id"] is None
        assert (await _task(client, tid))["status"] == "TODO"
        assert len(await _events(client)) == 1


# -- stopping -----------------------------------------------------------------------------


def test_stopping_right_after_start_leaves_no_sqlite_worker_thread_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown must not cancel a background task half-way through opening an SQLite
    connection: aiosqlite then finishes the open on its worker thread after the event
    loop has closed, and the thread dies with "Event loop is closed" (which pytest
    reports against whichever test runs next)."""
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    settings = make_settings(f"sqlite:///{tmp_path / 'service.db'}")

    async def start_and_stop() -> None:
        async with running_app(settings) as (_, client):
            assert (await client.get("/healthz")).status_code == 200

    before = set(threading.enumerate())
    for _ in range(20):
        asyncio.run(start_and_stop())
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)

    assert failures == []
    assert [t.name for t in set(threading.enumerate()) - before] == []
