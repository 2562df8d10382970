"""The per-minute counters' recorder in a running app: what the receiver counted shows
up in the database's minutes after a flush, once, whatever its outcome; the sync
worker's GitHub requests as github.rest and github.graphql."""

from __future__ import annotations

from datetime import timedelta

import orjson

from tests.helpers import (
    AUTH,
    fake_github,
    make_settings,
    payload,
    polling_settings,
    post_delivery,
    running_app,
)
from webhook_service.app import Service
from webhook_service.ops.minutes import MinuteRecorder
from webhook_service.store import utcnow


async def totals(service: Service) -> dict[str, int]:
    """Each counter's sum over the last few minutes (a flush may straddle two)."""
    series = await service.store.minute_counts(utcnow() - timedelta(minutes=5))
    return {name: sum(value for _, value in points) for name, points in series.items()}


def recorder(service: Service) -> MinuteRecorder:
    assert service.minutes is not None and service.minutes.running
    return service.minutes


async def test_every_delivery_outcome_is_counted_once_after_a_flush(database_url: str) -> None:
    newer = payload("pull_request/opened", updated_at="2030-01-02T00:00:00Z")
    older = payload("pull_request/opened", updated_at="2030-01-01T00:00:00Z")
    async with running_app(make_settings(database_url)) as (service, client):
        assert (await post_delivery(client, newer, guid="d-1")).json()["status"] == "applied"
        assert (await post_delivery(client, newer, guid="d-1")).json()["status"] == "duplicate"
        assert (await post_delivery(client, older, guid="d-2")).json()["outcome"] == "stale"
        assert (await post_delivery(client, newer, event="issues")).status_code == 202
        body = orjson.dumps(newer)
        unsigned = {"Content-Type": "application/json", "X-GitHub-Event": "pull_request"}
        assert (
            await client.post("/webhooks/github", content=body, headers=unsigned)
        ).status_code == 401
        assert (await client.post("/webhooks/github", content=b"{", headers={})).status_code == 415

        added = await recorder(service).flush()
        assert added == {
            "deliveries.applied": 1,
            "deliveries.duplicate": 1,
            "deliveries.stale": 1,
            "deliveries.ignored": 1,
            "deliveries.rejected": 2,
        }
        assert await totals(service) == added
        assert await recorder(service).flush() == {}  # nothing new: nothing added
        assert await totals(service) == added


async def test_the_last_counts_are_flushed_when_the_app_stops(database_url: str) -> None:
    settings = make_settings(database_url)
    async with running_app(settings) as (service, client):
        await post_delivery(client, payload("pull_request/opened"))
    async with running_app(settings) as (service, _client):
        assert (await totals(service)).get("deliveries.applied") == 1


async def test_the_sync_workers_requests_are_counted_by_api(database_url: str) -> None:
    async with fake_github("ghp_minutes", "octo/app") as fake:
        settings = polling_settings(database_url, fake, "ghp_minutes", "octo/app")
        async with running_app(settings) as (service, client):
            response = await client.post("/api/sync", headers=AUTH)
            assert response.status_code == 200, response.text
            worker = service.worker
            assert worker is not None
            await worker.stop()  # no request after this, so the counts hold still
            await recorder(service).flush()
            api = worker.github.stats
            assert api.graphql_calls > 0 and api.calls > api.graphql_calls
            counted = await totals(service)
            assert counted["github.graphql"] == api.graphql_calls
            assert counted["github.rest"] == api.calls - api.graphql_calls
