"""Installation webhooks add and remove the repositories the poller tracks."""

from __future__ import annotations

from typing import Any

import orjson

from tests.helpers import fixture, make_settings, post_delivery, running_app


def _document(name: str, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(fixture(name).body)
    document.update(changes)
    return document


def _repo(full_name: str) -> dict[str, Any]:
    return {"id": abs(hash(full_name)) % 10**6, "full_name": full_name, "private": False}


async def test_installation_webhooks_track_and_untrack_repositories(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        created = _document(
            "installation/created", repositories=[_repo("o/a"), _repo("o/b"), _repo("o/c")]
        )
        installation_id = created["installation"]["id"]
        response = await post_delivery(client, created, "installation")
        assert response.json()["outcome"] == "tracked repositories +3 -0"
        assert await service.store.tracked_repositories() == {
            "o/a": installation_id,
            "o/b": installation_id,
            "o/c": installation_id,
        }

        changed = _document(
            "installation_repositories/added",
            action="removed",
            repositories_added=[_repo("o/d")],
            repositories_removed=[_repo("o/a")],
        )
        changed["installation"]["id"] = installation_id
        response = await post_delivery(client, changed, "installation_repositories")
        assert response.json()["outcome"] == "tracked repositories +1 -1"
        assert set(await service.store.tracked_repositories()) == {"o/b", "o/c", "o/d"}

        deleted = _document(
            "installation/created", action="deleted", repositories=[_repo("o/b"), _repo("o/c")]
        )
        await post_delivery(client, deleted, "installation")
        assert set(await service.store.tracked_repositories()) == {"o/d"}


async def test_installation_event_with_malformed_repositories_is_refused(
    database_url: str,
) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        bad = _document("installation/created", repositories=[{"name": "no full name"}])
        response = await post_delivery(client, bad, "installation")
        assert response.status_code == 400
        assert await service.store.tracked_repositories() == {}
        assert await service.store.count_deliveries() == {}
