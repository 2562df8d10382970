"""What the store reads and writes: the records, the column lists of its tables, and
the mappings between a record and a row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_service.core.model import EventDraft, PRStatus, PullRequest, Source, Task, TaskStatus
from webhook_service.core.payloads import RepositoryChange

PRKey = tuple[str, int]  # (repository, number)
TaskKey = tuple[datetime, str]  # (created_at, id): the order of list_tasks


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    guid: str
    event: str
    action: str | None
    hook_id: int | None
    installation_id: int | None
    repository: str | None
    pr_number: int | None
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    processed_at: datetime | None
    outcome: str  # applied | ignored | failed
    detail: str | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    type: str
    repository: str | None
    task_id: str | None
    payload: Mapping[str, Any]
    created_at: datetime

    def message(self) -> dict[str, Any]:
        """The Socket.IO payload: the stored fields plus ``event_id``."""
        return {**self.payload, "event_id": self.id}


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything one reconciling transaction writes."""

    deliveries: Sequence[DeliveryRecord] = ()
    pulls: Sequence[PullRequest] = ()
    tasks: Sequence[Task] = ()
    events: Sequence[EventDraft] = ()
    refetch: Sequence[PRKey] = ()
    refetch_reason: str = "ambiguous observation"
    repositories: Sequence[RepositoryChange] = ()  # from installation webhooks
    cleanups: Sequence[str] = ()  # task ids whose worktree is to be removed
    observations: Sequence[ObservationDraft] = ()
    #: GUIDs of deliveries received again: each adds one to its row's ``attempts``.
    duplicates: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ObservationDraft:
    """An applied observation to record (table ``observations``): the PR, where it came
    from, what was observed and what the core decided. ``changes`` lacks ``event_ids``:
    the write adds the ids of the events at ``events`` (indexes into
    :attr:`Changes.events`), which only the database assigns."""

    repository: str
    number: int
    source: str  # webhook | worker | replay | manual
    delivery_guid: str | None
    observed_status: str | None  # open | closed | merged | closed? (None: no snapshot)
    observed_updated_at: datetime | None
    outcome: str  # the core's Outcome
    changes: Mapping[str, Any]
    events: range = range(0)


@dataclass(frozen=True, slots=True)
class StoredObservation:
    """A recorded observation, as read back: ``changes`` has its ``event_ids``."""

    id: int
    repository: str
    number: int
    source: str
    delivery_guid: str | None
    observed_status: str | None
    observed_updated_at: datetime | None
    outcome: str
    changes: Mapping[str, Any]
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class DeliverySummary:
    """A stored delivery without its headers and body: a row of a list."""

    guid: str
    event: str
    action: str | None
    repository: str | None
    pr_number: int | None
    received_at: datetime
    processed_at: datetime | None
    outcome: str  # as stored: applied | ignored | failed
    detail: str | None
    attempts: int

    @property
    def shown_outcome(self) -> str:
        """The outcome the console shows: ``stale`` for one applied but older than
        what was stored (the core's ``stale`` or ``terminal``), else as stored."""
        if self.outcome == "applied" and self.detail in STALE_DECISIONS:
            return "stale"
        return self.outcome


#: The core's outcomes that make an applied delivery ``stale`` to the console.
STALE_DECISIONS = ("stale", "terminal")


@dataclass(frozen=True, slots=True)
class CleanupJob:
    task_id: str
    worktree_path: str
    status: str  # pending | done | refused | failed
    attempts: int
    last_error: str | None
    # Set once the worktree is removed and only its repository's bookkeeping is left.
    repository: str | None = None
    branch: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    title: str
    status: TaskStatus
    repository: str | None
    branch: str | None
    worktree_path: str | None
    created_at: datetime
    updated_at: datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value))


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _delivery_row(r: DeliveryRecord) -> tuple[Any, ...]:
    return (
        r.guid,
        r.event,
        r.action,
        r.hook_id,
        r.installation_id,
        r.repository,
        r.pr_number,
        orjson.dumps(r.headers).decode(),
        r.body,
        r.received_at,
        r.processed_at,
        r.outcome,
        r.detail,
    )


def _pull_row(p: PullRequest) -> tuple[Any, ...]:
    return (
        p.id,
        p.repository,
        p.number,
        str(p.status),
        p.draft,
        p.title,
        p.head_ref,
        p.head_sha,
        p.base_ref,
        p.url,
        p.node_id,
        p.github_id,
        p.merged_at,
        p.closed_at,
        p.github_updated_at,
        p.task_id,
        str(p.last_source),
        p.last_delivery_id,
    )


_DELIVERY_COLUMN_NAMES = (
    "guid, event, action, hook_id, installation_id, repository, pr_number, headers, body,"
    " received_at, processed_at, outcome, detail"
)
_PR_COLUMN_NAMES = (
    "id, repository, number, status, draft, title, head_ref, head_sha, base_ref, url, node_id,"
    " github_id, merged_at, closed_at, github_updated_at, task_id, last_source, last_delivery_id"
)
_PR_COLUMNS = _PR_COLUMN_NAMES
_TASK_COLUMNS = "id, title, status, repository, branch, worktree_path, created_at, updated_at"
_EVENT_COLUMNS = "id, type, repository, task_id, payload, created_at"
_CLEANUP_COLUMNS = "task_id, worktree_path, status, attempts, last_error, repository, branch"
_DELIVERY_COLUMNS = _DELIVERY_COLUMN_NAMES
_SUMMARY_COLUMNS = (
    "guid, event, action, repository, pr_number, received_at, processed_at, outcome, detail,"
    " attempts"
)
_OBSERVATION_COLUMN_NAMES = (
    "repository, number, source, delivery_guid, observed_updated_at, observed_status,"
    " outcome, changes, applied_at"
)
_OBSERVATION_COLUMNS = f"id, {_OBSERVATION_COLUMN_NAMES}"


def _pull(r: Mapping[str, Any]) -> PullRequest:
    return PullRequest(
        id=str(r["id"]),
        repository=str(r["repository"]),
        number=int(r["number"]),
        status=PRStatus(r["status"]),
        draft=bool(r["draft"]),
        title=str(r["title"]),
        head_ref=r["head_ref"],
        head_sha=r["head_sha"],
        base_ref=r["base_ref"],
        url=r["url"],
        node_id=r["node_id"],
        github_id=r["github_id"],
        merged_at=_opt_time(r["merged_at"]),
        closed_at=_opt_time(r["closed_at"]),
        github_updated_at=_time(r["github_updated_at"]),
        task_id=r["task_id"],
        last_source=Source(r["last_source"]),
        last_delivery_id=r["last_delivery_id"],
    )


def _task_record(r: Mapping[str, Any]) -> TaskRecord:
    return TaskRecord(
        id=str(r["id"]),
        title=str(r["title"]),
        status=TaskStatus(r["status"]),
        repository=r["repository"],
        branch=r["branch"],
        worktree_path=r["worktree_path"],
        created_at=_time(r["created_at"]),
        updated_at=_time(r["updated_at"]),
    )


def _cleanup_job(r: Mapping[str, Any]) -> CleanupJob:
    return CleanupJob(
        task_id=str(r["task_id"]),
        worktree_path=str(r["worktree_path"]),
        status=str(r["status"]),
        attempts=int(r["attempts"]),
        last_error=r["last_error"],
        repository=r["repository"],
        branch=r["branch"],
    )


def _event(r: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(
        id=int(r["id"]),
        type=str(r["type"]),
        repository=r["repository"],
        task_id=r["task_id"],
        payload=orjson.loads(r["payload"]),
        created_at=_time(r["created_at"]),
    )


def _delivery(r: Mapping[str, Any]) -> DeliveryRecord:
    return DeliveryRecord(
        guid=str(r["guid"]),
        event=str(r["event"]),
        action=r["action"],
        hook_id=r["hook_id"],
        installation_id=r["installation_id"],
        repository=r["repository"],
        pr_number=r["pr_number"],
        headers=orjson.loads(r["headers"]),
        body=bytes(r["body"]),
        received_at=_time(r["received_at"]),
        processed_at=_opt_time(r["processed_at"]),
        outcome=str(r["outcome"]),
        detail=r["detail"],
    )


def observation_values(o: ObservationDraft) -> tuple[Any, ...]:
    """What ``o`` says of itself, in _OBSERVATION_COLUMN_NAMES order up to ``changes``
    (which holds its events' ids once they are known) and ``applied_at``."""
    return (
        o.repository,
        o.number,
        o.source,
        o.delivery_guid,
        o.observed_updated_at,
        o.observed_status,
        o.outcome,
    )


def _observation_row(
    o: ObservationDraft, event_ids: Sequence[int], now: datetime
) -> tuple[Any, ...]:
    """The row of ``o`` (in _OBSERVATION_COLUMN_NAMES order), its events' ids added."""
    changes = orjson.dumps({**o.changes, "event_ids": list(event_ids)}).decode()
    return (*observation_values(o), changes, now)


def _observation(r: Mapping[str, Any]) -> StoredObservation:
    return StoredObservation(
        id=int(r["id"]),
        repository=str(r["repository"]),
        number=int(r["number"]),
        source=str(r["source"]),
        delivery_guid=r["delivery_guid"],
        observed_status=r["observed_status"],
        observed_updated_at=_opt_time(r["observed_updated_at"]),
        outcome=str(r["outcome"]),
        changes=orjson.loads(r["changes"]),
        applied_at=_time(r["applied_at"]),
    )


def _summary(r: Mapping[str, Any]) -> DeliverySummary:
    return DeliverySummary(
        guid=str(r["guid"]),
        event=str(r["event"]),
        action=r["action"],
        repository=r["repository"],
        pr_number=r["pr_number"],
        received_at=_time(r["received_at"]),
        processed_at=_opt_time(r["processed_at"]),
        outcome=str(r["outcome"]),
        detail=r["detail"],
        attempts=int(r["attempts"]),
    )
