"""Tasks by hand: PATCH /api/tasks/{id} and the original design's health check.

(The PATCH of fields other than the status: tests/tasks/test_task_edits.py.)
"""

from __future__ import annotations

import pytest

from tests.helpers import AUTH, make_settings, running_app
from webhook_service.core.model import TaskStatus
from webhook_service.core.task_edits import MANUAL_TASK_TRANSITIONS
from webhook_service.testing import FakeGitHub


async def test_status_changes_by_hand_follow_the_allowed_transitions(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        task_id = (await client.post("/api/tasks", json={"title": "t"}, headers=AUTH)).json()["id"]
        path = f"/api/tasks/{task_id}"
        for status in ("IMPLEMENTING", "CODE_REVIEWING", "DONE"):
            response = await client.patch(path, json={"status": status}, headers=AUTH)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == status
        refused = await client.patch(path, json={"status": "TODO"}, headers=AUTH)
        assert refused.status_code == 409
        assert "cannot become TODO" in refused.json()["error"]
        events = (await client.get("/api/events", headers=AUTH)).json()["events"]
    assert [(e["old_status"], e["new_status"], e["pr_trigger"]) for e in events] == [
        ("TODO", "IMPLEMENTING", False),
        ("IMPLEMENTING", "CODE_REVIEWING", False),
        ("CODE_REVIEWING", "DONE", False),
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"status": "NOPE"}, 400),
        ({"status": 3}, 400),
        ({}, 400),
        ({"status": "DONE", "bogus": "x"}, 400),
        ({"status": "TODO", "title": ""}, 400),
    ],
)
async def test_bad_patch_bodies_are_400(
    database_url: str, body: dict[str, object], status: int
) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        task_id = (await client.post("/api/tasks", json={"title": "t"}, headers=AUTH)).json()["id"]
        response = await client.patch(f"/api/tasks/{task_id}", json=body, headers=AUTH)
        assert response.status_code == status


async def test_unknown_task_is_404_and_same_status_changes_nothing(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        missing = await client.patch(
            "/api/tasks/00000000-0000-0000-0000-000000000000",
            json={"status": "DONE"},
            headers=AUTH,
        )
        assert missing.status_code == 404
        task_id = (await client.post("/api/tasks", json={"title": "t"}, headers=AUTH)).json()["id"]
        same = await client.patch(f"/api/tasks/{task_id}", json={"status": "TODO"}, headers=AUTH)
        assert same.status_code == 200
        assert (await client.get("/api/events", headers=AUTH)).json()["events"] == []


def test_done_is_terminal_and_every_status_has_a_rule() -> None:
    assert set(MANUAL_TASK_TRANSITIONS) == set(TaskStatus)
    assert MANUAL_TASK_TRANSITIONS[TaskStatus.DONE] == frozenset()


async def test_health_check_has_the_original_shape(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        response = await client.get("/health")
        # Webhook-only (no GitHub credential): healthy, the webhook path is what counts.
        assert response.status_code == 200
        body = response.json()
        assert body["service"] == "pr_sync_worker"
        assert (body["status"], body["sync_worker"]) == ("healthy", "not configured")
        assert body["checks"] == {"reconciler": True, "dispatcher": True, "database": True}
        assert body["stats"]["running"] is False

        await service.dispatcher.stop()  # what is really wrong still shows
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.json()["checks"]["dispatcher"] is False


async def test_health_check_is_healthy_while_the_worker_runs(database_url: str) -> None:
    async with FakeGitHub() as github:
        github.add_token("tok")
        github.add_pull("o/r", 1)
        settings = make_settings(
            database_url,
            GITHUB_TOKEN="tok",
            GITHUB_API_URL=github.url,
            GITHUB_REPOSITORIES="o/r",
        )
        async with running_app(settings) as (service, client):
            assert service.worker is not None
            await service.worker.force_sync()
            response = await client.get("/health")
            metrics = (await client.get("/metrics")).text
    for name in (
        "webhook_sync_cycles_total",
        "webhook_sync_errors_total 0.0",
        "webhook_github_api_calls_total",
        "webhook_github_not_modified_total",
        "webhook_github_rate_limit_remaining",
    ):
        assert name in metrics
    assert response.status_code == 200
    body = response.json()
    assert (body["service"], body["status"]) == ("pr_sync_worker", "healthy")
    assert body["stats"]["config"]["sync_interval"] == 60.0
