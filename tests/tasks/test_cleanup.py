"""Worktree clean-up on merge: a recorded job, retried, and level-triggered, with real
git repositories and worktrees."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.git_repos import git, worktree_root
from tests.helpers import AUTH, make_settings, payload, post_delivery, running_app
from webhook_service.app import Service
from webhook_service.tasks import cleanup as cleanup_module
from webhook_service.tasks.worktrees import CleanupError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return worktree_root(tmp_path)


def add_worktree(root: Path, task_id: str) -> Path:
    path = root / f"task-{task_id[:8]}"
    git("worktree", "add", "-q", "-b", f"task/{task_id}", str(path), cwd=root / "main")
    (path / "dirty.txt").write_text("uncommitted work")
    return path


async def create_task(
    client: httpx.AsyncClient, worktree: Path, task_id: str | None = None, **fields: str
) -> str:
    body = {"title": "t", "repository": "Codertocat/Hello-World", "worktree_path": str(worktree)}
    if task_id is not None:
        body["id"] = task_id
    response = await client.post("/api/tasks", json={**body, **fields}, headers=AUTH)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def on_branch(name: str, task_id: str) -> dict[str, Any]:
    document = payload(name)
    document["pull_request"]["head"]["ref"] = f"task/{task_id}"
    return document


async def merge(client: httpx.AsyncClient, task_id: str) -> None:
    for name in ("pull_request/opened", "pull_request/closed.merged"):
        assert (await post_delivery(client, on_branch(name, task_id))).status_code == 200


async def jobs(service: Service) -> dict[str, tuple[str, str | None]]:
    return {j.task_id: (j.status, j.last_error) for j in await service.store.cleanup_jobs()}


async def test_merge_records_a_job_that_removes_the_worktree(database_url: str, root: Path) -> None:
    settings = make_settings(database_url, WORKTREE_ROOT=str(root), CLEANUP_DELETE_BRANCH="true")
    task_id = str(uuid.uuid4())
    worktree = add_worktree(root, task_id)
    async with running_app(settings) as (service, client):
        await create_task(client, worktree, task_id)
        await merge(client, task_id)
        assert (await jobs(service))[task_id] == ("pending", None)
        assert await service.cleanup.run_due() == 1
        assert (await jobs(service))[task_id] == ("done", None)
    assert not worktree.exists()
    assert str(worktree) not in git("worktree", "list", "--porcelain", cwd=root / "main")
    assert f"task/{task_id}" not in git("branch", "--list", cwd=root / "main")


async def test_a_branch_left_by_a_removal_that_failed_half_way_is_deleted_by_the_retry(
    database_url: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worktree is removed, then `git branch -D` fails (another git process holds
    the ref's lock): the retry no longer has a worktree to find the repository by, so
    the job remembers the repository and branch, and the retry deletes the branch."""
    monkeypatch.setattr(cleanup_module, "_BASE_DELAY", 0.0)  # retry at once
    settings = make_settings(database_url, WORKTREE_ROOT=str(root), CLEANUP_DELETE_BRANCH="true")
    task_id = str(uuid.uuid4())
    worktree = add_worktree(root, task_id)
    lock = root / "main" / ".git" / "refs" / "heads" / "task" / f"{task_id}.lock"
    lock.write_text("")
    async with running_app(settings) as (service, client):
        await create_task(client, worktree, task_id)
        await merge(client, task_id)
        assert await service.cleanup.run_due() == 1
        (job,) = [j for j in await service.store.cleanup_jobs() if j.task_id == task_id]
        assert (job.status, job.attempts) == ("pending", 1)
        assert job.last_error is not None and "branch -D" in job.last_error
        assert (job.repository, job.branch) == (str(root / "main"), f"task/{task_id}")
        assert not worktree.exists()
        assert f"task/{task_id}" in git("branch", "--list", cwd=root / "main")

        lock.unlink()  # the other git process is done
        assert await service.cleanup.run_due() == 1
        assert (await jobs(service))[task_id] == ("done", None)
    assert f"task/{task_id}" not in git("branch", "--list", cwd=root / "main")


async def test_cleanup_on_merge_false_records_nothing(database_url: str, root: Path) -> None:
    settings = make_settings(database_url, WORKTREE_ROOT=str(root), CLEANUP_ON_MERGE="false")
    async with running_app(settings) as (service, client):
        task_id = await create_task(client, root / "x")
        await merge(client, task_id)
        task = (await client.get(f"/api/tasks/{task_id}", headers=AUTH)).json()
        assert task["status"] == "DONE"
        assert await jobs(service) == {}


async def test_a_done_task_whose_worktree_still_exists_is_cleaned_anyway(
    database_url: str, root: Path
) -> None:
    """Level-triggered: the merge event was lost, the task is DONE, the worktree leaks."""
    settings = make_settings(database_url, WORKTREE_ROOT=str(root))
    task_id = str(uuid.uuid4())
    worktree = add_worktree(root, task_id)
    async with running_app(settings) as (service, client):
        await create_task(client, worktree, task_id, status="DONE")
        # No merge was seen, so only the scan queues a job: this one, or the service's
        # own (its first tick may come first, and then this finds nothing left).
        assert await service.cleanup.enqueue_leaked() in (0, 1)
        await service.cleanup.run_due()
        assert (await jobs(service))[task_id] == ("done", None)
        assert not worktree.exists()
        assert await service.cleanup.enqueue_leaked() == 0  # nothing leaks any more


async def test_a_path_outside_the_root_is_refused_and_says_so(
    database_url: str, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    settings = make_settings(database_url, WORKTREE_ROOT=str(root))
    async with running_app(settings) as (service, client):
        task_id = await create_task(client, root / ".." / "elsewhere")
        await merge(client, task_id)
        await service.cleanup.run_due()
        status, error = (await jobs(service))[task_id]
        assert status == "refused"
        assert error is not None and "WORKTREE_ROOT" in error
    assert outside.exists()


async def test_a_failing_cleanup_is_retried_with_backoff(
    database_url: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def flaky(path: str, **kwargs: Any) -> Any:
        calls.append(path)
        raise CleanupError("git: index.lock exists", retryable=True)

    monkeypatch.setattr(cleanup_module, "cleanup_worktree", flaky)
    settings = make_settings(database_url, WORKTREE_ROOT=str(root))
    async with running_app(settings) as (service, client):
        task_id = await create_task(client, root / "t")
        await merge(client, task_id)
        assert await service.cleanup.run_due() == 1
        job = next(j for j in await service.store.cleanup_jobs() if j.task_id == task_id)
        assert (job.status, job.attempts) == ("pending", 1)
        assert job.last_error == "git: index.lock exists"
        assert await service.cleanup.run_due() == 0  # not due again until the backoff ends
        assert calls == [str(root / "t")]
        assert service.cleanup.outcomes["retry"] == 1
