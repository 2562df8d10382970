"""GET /api/pulls/{owner}/{repo}/{number}/timeline: a PR seen by a webhook, then the
poller, then linked by hand; newest first, paged; 404 and 400s. On both backends."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import AUTH, make_settings, payload, post_delivery, running_app
from webhook_service.core.model import Observation, Source
from webhook_service.core.payloads import snapshot_from_api

REPO = "Codertocat/Hello-World"
TIMELINE = f"/api/pulls/{REPO}/2/timeline"


async def get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url, headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_timeline_shows_webhook_worker_and_manual_newest_first(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        opened = await post_delivery(client, payload("pull_request/opened"), guid="g-open")
        assert opened.status_code == 200
        closed = payload(
            "pull_request/opened",
            state="closed",
            closed_at="2019-05-15T16:00:00Z",
            updated_at="2019-05-15T16:00:00Z",
        )["pull_request"]
        snap = snapshot_from_api(closed, REPO, merged_known=True)
        await service.reconciler.observe(Observation(snap, Source.WORKER))
        task = (await client.post("/api/tasks", json={"title": "t"}, headers=AUTH)).json()
        link = {"repository": REPO, "number": 2}
        linked = await client.post(f"/api/tasks/{task['id']}/link", json=link, headers=AUTH)
        assert linked.status_code == 200, linked.text

        timeline = await get(client, TIMELINE)
        events = (await get(client, "/api/events"))["events"]
        first = await client.get(f"{TIMELINE}?limit=2", headers=AUTH)
        rest = await get(client, first.json()["next"])

    assert timeline["pull_request"]["status"] == "CLOSED"
    assert timeline["pull_request"]["task_id"] == task["id"]
    assert timeline["next"] is None
    manual, worker, webhook = timeline["observations"]
    assert (manual["source"], manual["delivery_guid"], manual["observed"]) == (
        "manual",
        None,
        {"status": None, "updated_at": None},
    )
    assert manual["changes"]["pr"] is None
    assert manual["changes"]["task"] == {"id": task["id"], "from": "TODO", "to": "CANCELLED"}
    assert (worker["source"], worker["decision"]) == ("worker", "transitioned")
    assert worker["observed"] == {"status": "closed", "updated_at": "2019-05-15T16:00:00Z"}
    assert worker["changes"]["pr"] == {"from": "OPEN", "to": "CLOSED"}
    assert (webhook["source"], webhook["delivery_guid"], webhook["decision"]) == (
        "webhook",
        "g-open",
        "created",
    )
    assert webhook["changes"] == {
        "pr": {"from": None, "to": "OPEN"},
        "task": None,
        "follow_ups": [],
        "event_ids": [events[0]["event_id"]],
    }
    assert manual["changes"]["event_ids"] == [e["event_id"] for e in events[2:]]
    assert manual["id"] > worker["id"] > webhook["id"]
    # Two a page, then the last one.
    assert [o["id"] for o in first.json()["observations"]] == [manual["id"], worker["id"]]
    assert first.headers["link"] == f'<{first.json()["next"]}>; rel="next"'
    assert [o["id"] for o in rest["observations"]] == [webhook["id"]]
    assert rest["next"] is None


async def test_a_task_edit_that_links_the_pr_is_on_its_timeline(database_url: str) -> None:
    task_id = str(uuid.uuid4())
    branch = f"task/{task_id}"
    async with running_app(make_settings(database_url)) as (_service, client):
        # The branch names a task that does not exist yet: the PR is stored unlinked.
        document = payload("pull_request/opened", head={"ref": branch, "sha": "abc"})
        assert (await post_delivery(client, document)).status_code == 200
        task = {"title": "t", "id": task_id}
        assert (await client.post("/api/tasks", json=task, headers=AUTH)).status_code == 201
        edit = {"status": "IMPLEMENTING", "branch": branch}
        patched = await client.patch(f"/api/tasks/{task_id}", json=edit, headers=AUTH)
        assert patched.status_code == 200, patched.text
        manual, _webhook = (await get(client, TIMELINE))["observations"]
        events = (await get(client, "/api/events"))["events"]

    # The edit stored three events: its status move, the fields changed, then the link's.
    assert [e["type"] for e in events[1:]] == [
        "task_status_change",
        "task_updated",
        "task_status_change",
    ]
    assert (manual["source"], manual["decision"]) == ("manual", "updated")
    assert manual["changes"]["task"] == {
        "id": task_id,
        "from": "IMPLEMENTING",
        "to": "CODE_REVIEWING",
    }
    assert manual["changes"]["event_ids"] == [events[-1]["event_id"]]


async def test_a_pruned_pr_keeps_its_timeline_and_unknown_ones_are_404(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        assert (await post_delivery(client, payload("pull_request/opened"))).status_code == 200
        async with service.store.connection() as conn:
            await conn.execute("DELETE FROM pull_requests")
        orphan = await get(client, TIMELINE)
        unknown = await client.get(f"/api/pulls/{REPO}/3/timeline", headers=AUTH)
        huge = await client.get(f"/api/pulls/{REPO}/99999999999/timeline", headers=AUTH)
    assert orphan["pull_request"] is None and len(orphan["observations"]) == 1
    assert unknown.status_code == 404 and "never observed" in unknown.json()["error"]
    assert huge.status_code == 404


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?limit=0", "limit"),
        ("?limit=501", "limit"),
        ("?limit=x", "limit"),
        ("?cursor=x", "cursor"),
        # A cursor of another list is refused too.
        ("?cursor=WyJldmVudHMiLDFd", "cursor"),
    ],
)
async def test_bad_input_is_400(database_url: str, query: str, parameter: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        assert (await post_delivery(client, payload("pull_request/opened"))).status_code == 200
        response = await client.get(f"{TIMELINE}{query}", headers=AUTH)
    assert response.status_code == 400, response.text
    assert parameter in response.json()["error"]
