"""What the core's tests build: statuses in short, a stored PR, a snapshot, an
observation, and the events a decision holds, in short."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from webhook_service.core.model import (
    Decision,
    FollowUp,
    Observation,
    PRStatus,
    PullRequest,
    Snapshot,
    Source,
    Task,
    TaskStatus,
)
from webhook_service.core.rules import Freshness, decide

OP, CL, MG = PRStatus.OPEN, PRStatus.CLOSED, PRStatus.MERGED
NEW, EQ, OLD = Freshness.NEWER, Freshness.EQUAL, Freshness.OLDER
TODO, IMPL, REVIEW, DONE, CANCELLED = (
    TaskStatus.TODO,
    TaskStatus.IMPLEMENTING,
    TaskStatus.CODE_REVIEWING,
    TaskStatus.DONE,
    TaskStatus.CANCELLED,
)
REFETCH = frozenset({FollowUp.REFETCH})
CLEANUP = frozenset({FollowUp.CLEANUP_WORKTREE})
NONE: frozenset[FollowUp] = frozenset()

REPO = "octo-org/hello-world"
NUMBER = 42
PR_ID = "pr-0001"
NEW_PR_ID = "pr-new"
TASK_ID = "task-0001"
T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 26, 10, 30, 0, 987654, tzinfo=UTC)
STAMP = "2026-11-26T10:30:00Z"
OFFSET = {NEW: timedelta(minutes=5), EQ: timedelta(0), OLD: timedelta(minutes=-5)}

PR_EVENT_KEYS = {
    "type",
    "pr_id",
    "pr_number",
    "repository",
    "task_id",
    "old_status",
    "new_status",
    "sync_source",
    "timestamp",
}
TASK_EVENT_KEYS = {"type", "task_id", "old_status", "new_status", "pr_trigger", "timestamp"}


# -- builders ----------------------------------------------------------------------------


def snapshot(status: PRStatus | None, updated_at: datetime, **fields: Any) -> Snapshot:
    """A snapshot proving ``status``; None is a close that does not say whether it merged."""
    state = "open" if status is OP else "closed"
    merged: bool | None = {OP: False, CL: False, MG: True, None: None}[status]
    values: dict[str, Any] = {
        "repository": REPO,
        "number": NUMBER,
        "state": state,
        "merged": merged,
        "merged_at": updated_at if status is MG else None,
        "closed_at": None if status is OP else updated_at,
        "updated_at": updated_at,
        "draft": True,
        "title": "observed title",
        "head_ref": "task/observed",
        "head_sha": "b" * 40,
        "base_ref": "main",
        "url": f"https://github.com/{REPO}/pull/{NUMBER}",
        "node_id": "PR_observed",
        "github_id": 1001,
    }
    values.update(fields)
    return Snapshot(**values)


def observe(
    status: PRStatus | None,
    updated_at: datetime,
    source: Source = Source.MONITOR,
    delivery_id: str | None = "delivery-1",
) -> Observation:
    return Observation(snapshot(status, updated_at), source, delivery_id)


def stored_pr(
    status: PRStatus, updated_at: datetime = T0, task_id: str | None = None
) -> PullRequest:
    return PullRequest(
        id=PR_ID,
        repository=REPO,
        number=NUMBER,
        status=status,
        draft=False,
        title="stored title",
        head_ref="task/stored",
        head_sha="a" * 40,
        base_ref="main",
        url=f"https://github.com/{REPO}/pull/{NUMBER}",
        node_id="PR_stored",
        github_id=1001,
        merged_at=updated_at - timedelta(hours=1) if status is MG else None,
        closed_at=None if status is OP else updated_at - timedelta(hours=1),
        github_updated_at=updated_at,
        task_id=task_id,
        last_source=Source.WORKER,
        last_delivery_id=None,
    )


def run(stored: PullRequest | None, task: Task | None, observation: Observation) -> Decision:
    return decide(stored, task, observation, now=NOW, new_pr_id=NEW_PR_ID)


def event_summary(decision: Decision) -> list[tuple[str, str | None, str]]:
    return [(e.type, e.payload["old_status"], e.payload["new_status"]) for e in decision.events]


def pr_event(old: str | None, new: str) -> tuple[str, str | None, str]:
    return ("pr_status_change", old, new)


def task_event(old: str, new: str) -> tuple[str, str | None, str]:
    return ("task_status_change", old, new)


def from_observation(
    pr_id: str, status: PRStatus, observation: Observation, task_id: str | None
) -> PullRequest:
    """The row expected when the observation's metadata is taken as a whole."""
    snap = observation.snapshot
    return PullRequest(
        id=pr_id,
        repository=snap.repository,
        number=snap.number,
        status=status,
        draft=snap.draft,
        title=snap.title,
        head_ref=snap.head_ref,
        head_sha=snap.head_sha,
        base_ref=snap.base_ref,
        url=snap.url,
        node_id=snap.node_id,
        github_id=snap.github_id,
        merged_at=snap.merged_at,
        closed_at=snap.closed_at,
        github_updated_at=snap.updated_at,
        task_id=task_id,
        last_source=observation.source,
        last_delivery_id=observation.delivery_id,
    )
