"""The PR creator: open the pull request of a task's branch, link it, watch it.

``create_pull_request`` is what ``POST /api/tasks/{id}/pull-request`` and
``webhook-service create-pr TASK_ID`` call:

1. the task must exist (404) and have a repository and a branch (400);
2. an open PR whose head is ``owner:branch`` (``owner`` = the repository's owner) is
   looked for first (``GET .../pulls?state=all&head=owner:branch``): if there is one,
   it is the task's PR and nothing is created. Closed PRs of the branch do not count:
   a new one is opened;
3. otherwise ``POST /repos/{o}/{r}/pulls`` (head = the branch, base = ``base`` or the
   repository's default branch from ``GET /repos/{o}/{r}``, title = ``title`` or the
   task's title). GitHub's 422 "A pull request
   already exists" (a concurrent creator, another replica, or our own retry after a
   lost answer) is answered by linking the PR the head listing finds: never a second
   PR;
4. the PR's JSON goes through the reconciliation core as an observation
   (``sync_source: "manual"``), then the PR is linked to the task (the task moves to
   ``CODE_REVIEWING`` with its ``task_status_change`` event) and monitored by the
   poller.

GitHub's refusals become :class:`CreateError` with GitHub's message: 404 (repository
unknown to our credential), 409, 422 (validation, e.g. "No commits between main and
x") keep their status; anything else from GitHub (5xx after retries, timeouts, 401/403
of our own credential, an unreadable answer) is a 502.

Concurrent calls for the same branch in one process are serialized; across processes,
GitHub's one-open-PR-per-head-and-base rule and the 422 handling above keep it to one
PR (two concurrent calls for the same branch with *different* bases in different
processes could still open two: GitHub allows that).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from webhook_service.core.model import Observation, PullRequest, Snapshot, Source
from webhook_service.core.payloads import PayloadError, snapshot_from_api
from webhook_service.github.client import GitHub
from webhook_service.github.errors import GitHubError, GitHubValidationError
from webhook_service.reconciler import DeliveryStatus, Reconciler
from webhook_service.store import Store, TaskRecord

#: GitHub statuses passed on as they are; any other GitHub failure is a 502.
_PASSED_ON = frozenset({404, 409, 422})

_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class Created:
    """The task's PR as stored, and whether this call opened it (or found it open)."""

    created: bool
    pull_request: PullRequest


class CreateError(Exception):
    """The PR could not be created or linked; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def create_pull_request(
    *,
    store: Store,
    reconciler: Reconciler,
    github: GitHub,
    task_id: str,
    title: str | None = None,
    body: str | None = None,
    base: str | None = None,
    draft: bool = False,
) -> Created:
    """Open (or find) the task's PR, link it and monitor it.

    Returns the stored PR (``created_json`` in :mod:`webhook_service.api.views` is how
    the API and the CLI show it); ``created`` is true when GitHub answered our POST with
    201 (a PR created by a POST whose answer was lost, then found by a retry, reads
    false). The reconciler must be
    running. Raises :class:`CreateError`; ``StoreUnavailable`` passes through (503).
    """
    task, repository, branch = await _target(store, task_id)
    title = title if title and title.strip() else task.title
    async with _serialized(repository, branch):
        try:
            pull, created = await _open(github, store, repository, branch, title, body, base, draft)
            snapshot = snapshot_from_api(pull, repository, merged_known=True)
        except GitHubError as exc:
            status = exc.status if exc.status in _PASSED_ON else 502
            raise CreateError(status, f"GitHub: {exc}") from exc
        except PayloadError as exc:
            raise CreateError(502, f"GitHub answered with an unexpected PR: {exc}") from exc
    return Created(created, await _store_and_link(store, reconciler, task.id, snapshot))


async def _target(store: Store, task_id: str) -> tuple[TaskRecord, str, str]:
    """The task, and the repository and branch it must name (else CreateError)."""
    task = await store.get_task(task_id.lower())
    if task is None:
        raise CreateError(404, f"task {task_id} does not exist")
    if not task.repository:
        raise CreateError(400, f"task {task.id} has no repository")
    if not task.branch:
        raise CreateError(400, f"task {task.id} has no branch")
    return task, task.repository, task.branch


async def _open(
    github: GitHub,
    store: Store,
    repository: str,
    branch: str,
    title: str,
    body: str | None,
    base: str | None,
    draft: bool,
) -> tuple[dict[str, Any], bool]:
    """The open PR of ``branch`` (REST JSON), POSTed unless GitHub lists one already,
    and whether our POST created it."""
    owner = repository.partition("/")[0]
    installation_id = (await store.tracked_repositories()).get(repository)
    api = await github.api_for(installation_id)
    pull = await github.find_pull_by_head(api, repository, owner, branch)
    if pull is not None and pull.get("state") == "open":
        return pull, False
    try:
        created = await github.create_pull(
            api,
            repository,
            title=title,
            head=branch,
            base=base or await github.default_branch(api, repository),
            body=body,
            draft=draft,
        )
        return created, True
    except GitHubValidationError as exc:
        if not exc.pull_request_exists:
            raise
        # A POST whose answer was lost, retried: GitHub has the PR, find it.
        pull = await github.find_pull_by_head(api, repository, owner, branch)
        if pull is None or pull.get("state") != "open":
            raise CreateError(
                409,
                f"GitHub says a pull request already exists for {owner}:{branch}"
                f" but does not list it yet; try again ({exc})",
            ) from exc
        return pull, False


async def _store_and_link(
    store: Store, reconciler: Reconciler, task_id: str, snapshot: Snapshot
) -> PullRequest:
    """Store the PR (GitHub's answer wins), link it to the task, monitor it."""
    repository = snapshot.repository
    key = (repository, snapshot.number)
    result = await reconciler.observe(Observation(snapshot, Source.MANUAL, authoritative=True))
    if result.status == DeliveryStatus.FAILED:
        raise CreateError(
            500,
            f"{snapshot.url or f'{repository}#{snapshot.number}'} is open on GitHub but"
            " could not be stored; try again to link it",
        )
    try:
        await reconciler.link(repository, snapshot.number, task_id, Source.MANUAL)
    except LookupError as exc:  # the task was deleted meanwhile
        raise CreateError(404, str(exc)) from exc
    await store.monitor_pull(key)
    stored = await store.get_pull(*key)
    if stored is None:  # observed and linked just above: only a concurrent deletion
        raise CreateError(500, f"pull request {repository}#{snapshot.number} is not stored")
    return stored


@asynccontextmanager
async def _serialized(repository: str, branch: str) -> AsyncIterator[None]:
    """One creation at a time per branch in this process (the lock lives while used)."""
    key = (repository.lower(), branch)
    lock = _locks.get(key)
    if lock is None:
        lock = _locks[key] = asyncio.Lock()
    async with lock:
        yield
