"""The values the core decides on and returns: statuses, what a source saw of a pull
request (:class:`Snapshot`, :class:`Observation`), the stored rows (:class:`PullRequest`,
:class:`Task`), and a :class:`Decision` with its events and follow-ups.

Plain frozen dataclasses and enums, no behaviour beyond reading a snapshot's status: both
inputs (webhooks and the poller) build them, the store reads and writes them, and
:mod:`webhook_service.core.rules` turns one into another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class PRStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    MERGED = "MERGED"


class TaskStatus(StrEnum):
    TODO = "TODO"
    IMPLEMENTING = "IMPLEMENTING"
    CODE_REVIEWING = "CODE_REVIEWING"
    DONE = "DONE"
    CANCELLED = "CANCELLED"


class Source(StrEnum):
    MONITOR = "monitor"  # a webhook delivery
    WORKER = "worker"  # the poller
    REPLAY = "replay"  # a recorded delivery applied offline
    MANUAL = "manual"  # an operator, through the API or CLI


class Outcome(StrEnum):
    """The recorded result of applying one observation."""

    CREATED = "created"
    TRANSITIONED = "transitioned"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"
    TERMINAL = "terminal"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one source saw of one pull request at ``updated_at``."""

    repository: str  # "owner/name"
    number: int
    state: str  # "open" | "closed"
    merged: bool | None  # None: the source does not say (review events)
    merged_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    draft: bool
    title: str
    head_ref: str | None = None
    head_sha: str | None = None
    base_ref: str | None = None
    url: str | None = None
    node_id: str | None = None
    github_id: int | None = None

    @property
    def status(self) -> PRStatus | None:
        """The PR status this snapshot proves, or None for an unconfirmed close."""
        if self.merged or self.merged_at is not None:
            return PRStatus.MERGED
        if self.state == "closed":
            return PRStatus.CLOSED if self.merged is False else None
        return PRStatus.OPEN


@dataclass(frozen=True, slots=True)
class Observation:
    snapshot: Snapshot
    source: Source
    delivery_id: str | None = None
    #: A fresh answer to "GET the PR" asked because of an ambiguity: it settles it.
    authoritative: bool = False


@dataclass(frozen=True, slots=True)
class PullRequest:
    """A stored pull request row."""

    id: str
    repository: str
    number: int
    status: PRStatus
    draft: bool
    title: str
    head_ref: str | None
    head_sha: str | None
    base_ref: str | None
    url: str | None
    node_id: str | None
    github_id: int | None
    merged_at: datetime | None
    closed_at: datetime | None
    github_updated_at: datetime
    task_id: str | None
    last_source: Source
    last_delivery_id: str | None


@dataclass(frozen=True, slots=True)
class Task:
    """A stored task row (only what the core needs to know)."""

    id: str
    status: TaskStatus


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event to store in the outbox; the store assigns ``event_id``."""

    type: str
    repository: str | None
    task_id: str | None
    payload: Mapping[str, Any]


class FollowUp(StrEnum):
    REFETCH = "refetch"  # ask the API for the PR; its answer wins
    CLEANUP_WORKTREE = "cleanup_worktree"  # the task is DONE


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    pr: PullRequest | None  # the row to write, None when nothing changes
    task: Task | None  # the task row to write, None when it does not change
    events: tuple[EventDraft, ...] = ()
    follow_ups: frozenset[FollowUp] = frozenset()
