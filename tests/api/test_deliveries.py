"""GET /api/deliveries (filters, outcomes, keyset pages), one delivery (redacted
headers, body, what it changed), POST .../redeliver, and the requests the receiver
refused: real deliveries posted through the running app, on both backends."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from tests.helpers import (
    AUTH,
    fixture,
    make_settings,
    payload,
    post_delivery,
    running_app,
    signed_headers,
)

REPO = "Codertocat/Hello-World"
HOOK = "/webhooks/github"


async def deliveries(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/api/deliveries{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post(client: httpx.AsyncClient, name: str, guid: str, **fields: Any) -> None:
    response = await post_delivery(client, payload(name, **fields), guid=guid)
    assert response.status_code == 200, response.text


async def test_the_list_filters_by_outcome_and_pages_newest_first(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        await post(client, "pull_request/opened", "g-1")
        await post(client, "pull_request/opened", "g-2", updated_at="2019-05-15T16:00:00Z")
        await post(client, "pull_request/opened", "g-3")  # older than what is stored: stale
        await post(client, "pull_request/opened", "g-4", number=3)
        await post(client, "pull_request/opened", "g-1")  # received again: a duplicate
        ping = await post_delivery(
            client, orjson.loads(fixture("ping/repo-hook").body), event="ping", guid="g-ping"
        )
        assert ping.status_code == 200

        everything = (await deliveries(client))["deliveries"]
        assert [d["guid"] for d in everything] == ["g-ping", "g-4", "g-3", "g-2", "g-1"]
        first = everything[-1]
        assert first == {
            "guid": "g-1",
            "event": "pull_request",
            "action": "opened",
            "repository": REPO,
            "number": 2,
            "received_at": first["received_at"],
            "processed_at": first["processed_at"],
            "outcome": "applied",
            "decision": "created",
            "attempts": 2,
            "detail": "created",
        }
        assert [(d["outcome"], d["decision"]) for d in everything[:3]] == [
            ("ignored", None),
            ("applied", "created"),
            ("stale", "stale"),
        ]

        async def guids(query: str) -> list[str]:
            return [d["guid"] for d in (await deliveries(client, query))["deliveries"]]

        assert await guids("?outcome=stale") == ["g-3"]
        assert await guids("?outcome=applied") == ["g-4", "g-2", "g-1"]
        assert await guids("?outcome=duplicate") == ["g-1"]
        assert await guids("?outcome=ignored&event=ping") == ["g-ping"]
        assert await guids(f"?repository={REPO}&number=3") == ["g-4"]
        assert await guids("?event=pull_request&number=2") == ["g-3", "g-2", "g-1"]
        assert await guids("?since=2000-01-01T00:00:00Z&outcome=failed") == []
        assert await guids("?since=2999-01-01T00:00:00") == []

        # Two a page: the boundary falls inside the filtered list; next keeps the filters.
        response = await client.get("/api/deliveries?event=pull_request&limit=2", headers=AUTH)
        page = response.json()
        assert [d["guid"] for d in page["deliveries"]] == ["g-4", "g-3"]
        assert response.headers["link"] == f'<{page["next"]}>; rel="next"'
        assert "event=pull_request" in page["next"] and "limit=2" in page["next"]
        second = await deliveries(client, page["next"].removeprefix("/api/deliveries"))
        assert [d["guid"] for d in second["deliveries"]] == ["g-2", "g-1"]
        assert second["next"] is None


async def test_a_delivery_shows_its_headers_redacted_its_body_and_what_it_changed(
    database_url: str,
) -> None:
    body = orjson.dumps(payload("pull_request/closed.merged"))
    headers = {**signed_headers(body, "pull_request", "g-merge"), "X-Hub-Signature": "sha1=abc"}
    headers["Cookie"] = "session=secret-cookie"
    async with running_app(make_settings(database_url)) as (_service, client):
        await post(client, "pull_request/opened", "g-open")
        merged = await client.post(HOOK, content=body, headers=headers)
        assert merged.status_code == 200, merged.text

        response = await client.get("/api/deliveries/g-merge", headers=AUTH)
        assert response.status_code == 200, response.text
        detail = response.json()
        events = (await client.get("/api/events", headers=AUTH)).json()["events"]

    assert headers["X-Hub-Signature-256"] not in response.text
    assert "sha1=abc" not in response.text and "secret-cookie" not in response.text
    assert detail["headers"]["x-hub-signature-256"] == "[redacted]"
    assert detail["headers"]["x-hub-signature"] == "[redacted]"
    assert detail["headers"]["cookie"] == "[redacted]"
    assert detail["headers"]["x-github-delivery"] == "g-merge"
    assert detail["body"] == orjson.loads(body) and detail["body_text"] is None
    assert (detail["outcome"], detail["decision"], detail["attempts"]) == (
        "applied",
        "transitioned",
        1,
    )
    [change] = detail["changes"]
    assert change["source"] == "webhook" and change["delivery_guid"] == "g-merge"
    assert change["observed"]["status"] == "merged"
    assert change["decision"] == "transitioned"
    assert change["changes"]["pr"] == {"from": "OPEN", "to": "MERGED"}
    merge_events = [e["event_id"] for e in events if e.get("new_status") == "MERGED"]
    assert change["changes"]["event_ids"] == merge_events


async def test_a_form_encoded_body_is_shown_as_text(database_url: str) -> None:
    document = orjson.dumps(payload("pull_request/opened"))
    body = urlencode({"payload": document.decode()}).encode()
    headers = {
        **signed_headers(body, "pull_request", "g-form"),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with running_app(make_settings(database_url)) as (_service, client):
        assert (await client.post(HOOK, content=body, headers=headers)).status_code == 200
        detail = (await client.get("/api/deliveries/g-form", headers=AUTH)).json()
    assert detail["body"] is None
    assert detail["body_text"] == body.decode()


async def test_rejected_requests_are_listed_from_memory_not_stored(database_url: str) -> None:
    body = orjson.dumps(payload("pull_request/opened"))
    forged = signed_headers(body, "pull_request", "g-forged", secret="not the secret")
    async with running_app(make_settings(database_url)) as (service, client):
        assert (await client.post(HOOK, content=body, headers=forged)).status_code == 401
        malformed = b'{"not": "a pull request"}'
        answer = await client.post(
            HOOK, content=malformed, headers=signed_headers(malformed, "pull_request", "g-bad")
        )
        assert answer.status_code == 400
        text = {**signed_headers(body, "pull_request", "g-text"), "Content-Type": "text/plain"}
        assert (await client.post(HOOK, content=body, headers=text)).status_code == 415
        await post(client, "pull_request/opened", "g-good")

        rejected = (await deliveries(client, "?outcome=rejected"))["deliveries"]
        limited = await deliveries(client, "?outcome=rejected&limit=1")
        by_event = await deliveries(client, "?outcome=rejected&event=nope")
        by_pr = await deliveries(client, f"?outcome=rejected&repository={REPO}")
        listed = (await client.get("/api/deliveries?outcome=rejected", headers=AUTH)).text
        assert await service.store.get_delivery("g-forged") is None
        assert await service.store.get_delivery("g-bad") is None
        assert await service.store.count_deliveries() == {"applied": 1}

    assert [(r["guid"], r["status"], r["outcome"]) for r in rejected] == [
        ("g-text", 415, "rejected"),
        ("g-bad", 400, "rejected"),
        ("g-forged", 401, "rejected"),
    ]
    assert "signature" in rejected[2]["detail"].lower()
    assert rejected[2]["headers"]["x-hub-signature-256"] == "[redacted]"
    assert forged["X-Hub-Signature-256"] not in listed
    assert "body" not in rejected[0]
    assert [r["guid"] for r in limited["deliveries"]] == ["g-text"] and limited["next"] is None
    assert by_event["deliveries"] == [] and by_pr["deliveries"] == []


async def test_the_receiver_keeps_only_the_last_200_rejected(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        for n in range(205):
            await client.post(
                HOOK,
                content=b"{}",
                headers={"Content-Type": "text/plain", "X-GitHub-Delivery": f"r-{n}"},
            )
        kept = service.receiver.rejected()
    assert len(kept) == 200
    assert (kept[0].guid, kept[-1].guid) == ("r-204", "r-5")


async def test_redeliver_runs_the_stored_delivery_through_the_core_again(
    database_url: str,
) -> None:
    task_id = str(uuid.uuid4())
    async with running_app(make_settings(database_url)) as (_service, client):
        # The PR's branch names a task that does not exist yet: nothing to link.
        await post(
            client, "pull_request/opened", "g-open", head={"ref": f"task/{task_id}", "sha": "abc"}
        )
        created = await client.post("/api/tasks", json={"title": "t", "id": task_id}, headers=AUTH)
        assert created.status_code == 201, created.text

        response = await client.post("/api/deliveries/g-open/redeliver", headers=AUTH)
        assert response.status_code == 200, response.text
        again = response.json()
        task = (await client.get(f"/api/tasks/{task_id}", headers=AUTH)).json()
        detail = (await client.get("/api/deliveries/g-open", headers=AUTH)).json()
        events = (await client.get("/api/events", headers=AUTH)).json()["events"]
        missing = await client.post("/api/deliveries/nope/redeliver", headers=AUTH)

    assert (again["guid"], again["outcome"], again["decision"]) == (
        "g-open",
        "applied",
        "unchanged",
    )
    [change] = again["changes"]
    assert change["source"] == "replay" and change["delivery_guid"] == "g-open"
    assert change["changes"]["task"] == {"id": task_id, "from": "TODO", "to": "CODE_REVIEWING"}
    assert change["changes"]["event_ids"] == [events[-1]["event_id"]]
    assert events[-1]["type"] == "task_status_change"
    assert task["status"] == "CODE_REVIEWING"
    assert [c["source"] for c in detail["changes"]] == ["webhook", "replay"]
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?outcome=nope", "outcome"),
        ("?number=x", "number"),
        ("?number=0", "number"),
        ("?number=99999999999", "number"),
        ("?since=yesterday", "since"),
        ("?repository=nope", "repository"),
        ("?limit=0", "limit"),
        ("?limit=501", "limit"),
        ("?limit=-1", "limit"),
        ("?cursor=bm9wZQ", "cursor"),
        ("?cursor=!!", "cursor"),
        ("?event=", "event"),
    ],
)
async def test_bad_input_is_400_naming_the_parameter(
    database_url: str, query: str, parameter: str
) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        response = await client.get(f"/api/deliveries{query}", headers=AUTH)
    assert response.status_code == 400, response.text
    assert parameter in response.json()["error"]


async def test_unknown_guid_is_404_and_the_token_is_required(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        missing = await client.get("/api/deliveries/nope", headers=AUTH)
        anonymous = await client.get("/api/deliveries")
        unsigned = await client.post("/api/deliveries/nope/redeliver")
    assert missing.status_code == 404
    assert (anonymous.status_code, unsigned.status_code) == (401, 401)
