"""GET /api/console/health and POST /api/cleanups/{task_id}/retry on both backends:
the sync worker's state against a real fake GitHub (running, standby on a second
replica, stopped, not configured), the counters' minutes, a real worktree whose
clean-up fails (a lock file git cannot get past) listed and then retried."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.git_repos import git, worktree_root
from tests.helpers import (
    AUTH,
    fake_github,
    make_settings,
    payload,
    polling_settings,
    post_delivery,
    running_app,
    until,
)
from webhook_service.app import Service
from webhook_service.store import utcnow


async def health(client: httpx.AsyncClient, hours: int = 1) -> dict[str, Any]:
    response = await client.get(f"/api/console/health?hours={hours}", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_health_of_a_running_worker_with_its_cycle_budgets_and_minutes(
    database_url: str,
) -> None:
    async with fake_github("ghp_console", "octo/app") as fake:
        settings = polling_settings(database_url, fake, "ghp_console", "octo/app")
        async with running_app(settings) as (service, client):
            worker = service.worker
            assert worker is not None
            await until(lambda: worker.next_cycle_at is not None and worker.is_leader())
            assert (await post_delivery(client, payload("pull_request/opened"))).status_code == 200
            assert service.minutes is not None
            await service.minutes.flush()
            body = await health(client)

            sync = body["sync"]
            assert (sync["state"], sync["leader"]) == ("running", True)
            assert sync["last_cycle"]["counts"]["requests"] > 0
            assert sync["last_cycle"]["credential_error"] is None
            assert when(sync["next_cycle_at"]) > utcnow() + timedelta(minutes=30)
            (budget,) = sync["budgets"]
            assert budget["credential"] == "GITHUB_TOKEN"
            assert budget["rest"]["planned"] > 0 and "graphql" in budget
            assert (body["outbox_backlog"], body["clients"], body["cleanup_failing"]) == (0, 0, [])

            minutes = body["minutes"]
            start, end = when(minutes["from"]), when(minutes["to"])
            assert end - start == timedelta(minutes=59)
            assert start <= utcnow() - timedelta(minutes=59) and end <= utcnow()
            series = minutes["series"]
            assert [value for _, value in series["deliveries.applied"]] == [1]
            assert series["deliveries.failed"] == []
            assert sum(value for _, value in series["github.rest"]) > 0
            whole_day = (await health(client, hours=24))["minutes"]
            assert when(whole_day["to"]) - when(whole_day["from"]) == timedelta(
                hours=24, minutes=-1
            )

            await worker.stop()
            assert (await health(client))["sync"]["state"] == "stopped"


async def test_a_second_replica_is_on_standby(database_url: str) -> None:
    async with fake_github("ghp_console", "octo/app") as fake:
        settings = polling_settings(database_url, fake, "ghp_console", "octo/app")
        async with running_app(settings) as (first, first_client):
            assert first.worker is not None
            leader = first.worker
            await until(leader.is_leader)
            async with running_app(settings) as (second, second_client):
                assert second.worker is not None
                other = second.worker
                await until(lambda: other.next_cycle_at is not None)
                standby = (await health(second_client))["sync"]
                assert (standby["state"], standby["leader"]) == ("standby", False)
                assert standby["last_cycle"] is None  # it never polled
                assert (await health(first_client))["sync"]["state"] == "running"


async def test_health_without_github_says_not_configured(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        sync = (await health(client))["sync"]
    assert sync == {
        "state": "not configured",
        "leader": False,
        "last_cycle": None,
        "last_error": None,
        "next_cycle_at": None,
        "budgets": [],
    }


@pytest.mark.parametrize("hours", ["0", "25", "x", "-1", "", "1.5"])
async def test_a_bad_hours_is_400(database_url: str, hours: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        response = await client.get(f"/api/console/health?hours={hours}", headers=AUTH)
    assert response.status_code == 400
    assert "'hours'" in response.json()["error"]


# -- clean-up jobs: a real worktree whose branch git cannot delete ------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return worktree_root(tmp_path)


async def failing_cleanup(service: Service, client: httpx.AsyncClient, root: Path) -> Path:
    """A merged task whose clean-up failed once: its worktree is removed, but the
    branch's ref is locked (another git holds it), so `git branch -D` fails. Returns
    the lock file; the task id is its name."""
    task_id = str(uuid.uuid4())
    worktree = root / f"task-{task_id[:8]}"
    git("worktree", "add", "-q", "-b", f"task/{task_id}", str(worktree), cwd=root / "main")
    lock = root / "main" / ".git" / "refs" / "heads" / "task" / f"{task_id}.lock"
    lock.write_text("")
    body = {"id": task_id, "title": "t", "worktree_path": str(worktree)}
    assert (await client.post("/api/tasks", json=body, headers=AUTH)).status_code == 201
    for name in ("pull_request/opened", "pull_request/closed.merged"):
        document = payload(name)
        document["pull_request"]["head"]["ref"] = f"task/{task_id}"
        assert (await post_delivery(client, document)).status_code == 200
    await service.cleanup.run_due()  # or the runner's own tick did it first
    return lock


async def test_a_failing_cleanup_is_listed_and_a_retry_makes_it_due_now(
    database_url: str, root: Path
) -> None:
    settings = make_settings(database_url, WORKTREE_ROOT=str(root), CLEANUP_DELETE_BRANCH="true")
    async with running_app(settings) as (service, client):
        lock = await failing_cleanup(service, client, root)
        task_id = lock.name.removesuffix(".lock")
        (failing,) = (await health(client))["cleanup_failing"]
        assert failing["task_id"] == task_id
        assert failing["status"] == "pending" and failing["attempts"] == 1
        assert "branch -D" in failing["last_error"]
        assert when(failing["next_attempt_at"]) > utcnow()  # backing off

        lock.unlink()  # the operator removed the stale lock
        response = await client.post(f"/api/cleanups/{task_id}/retry", headers=AUTH)
        assert response.status_code == 200, response.text
        retried = response.json()
        assert (retried["task_id"], retried["status"], retried["attempts"]) == (
            task_id,
            "pending",
            1,
        )
        assert when(retried["next_attempt_at"]) <= utcnow()
        await service.cleanup.run_due()
        (job,) = await service.store.cleanup_jobs()
        assert (job.status, job.last_error) == ("done", None)
        assert (await health(client))["cleanup_failing"] == []

        done = await client.post(f"/api/cleanups/{task_id}/retry", headers=AUTH)
        assert done.status_code == 409 and "done" in done.json()["error"]


async def test_a_job_failed_for_good_is_pending_again_after_a_retry(
    database_url: str, tmp_path: Path
) -> None:
    """No runner here (CLEANUP_ON_MERGE=false): the job's state is the API's alone."""
    settings = make_settings(database_url, CLEANUP_ON_MERGE="false")
    async with running_app(settings) as (service, client):
        body = {"title": "t", "worktree_path": str(tmp_path / "w")}
        task_id = (await client.post("/api/tasks", json=body, headers=AUTH)).json()["id"]
        await service.store.enqueue_cleanups([task_id])
        later = utcnow() + timedelta(hours=1)
        await service.store.finish_cleanup(
            task_id, status="failed", attempts=8, error="gave up", next_attempt_at=later
        )
        (failing,) = (await health(client))["cleanup_failing"]
        assert (failing["status"], failing["attempts"]) == ("failed", 8)

        response = await client.post(f"/api/cleanups/{task_id.upper()}/retry", headers=AUTH)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["status"], answer["attempts"], answer["last_error"]) == (
            "pending",
            8,
            "gave up",
        )
        (job,) = await service.store.claim_cleanups(utcnow(), limit=5)  # due now
        assert job.task_id == task_id


@pytest.mark.parametrize(("task_id", "status"), [(str(uuid.uuid4()), 404), ("not-a-uuid", 400)])
async def test_retrying_no_job_is_404_and_a_bad_id_400(
    database_url: str, task_id: str, status: int
) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        response = await client.post(f"/api/cleanups/{task_id}/retry", headers=AUTH)
    assert response.status_code == status
    assert "error" in response.json()
