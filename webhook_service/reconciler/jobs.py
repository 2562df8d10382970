"""What the reconciler is given and what it answers: a :class:`Job` in, a :class:`Result`
out (through the job's future, once its batch is committed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from webhook_service.core.model import FollowUp, Observation, Outcome, Source
from webhook_service.core.payloads import Delivery
from webhook_service.store import PRKey, StoredEvent, utcnow

Clock = Callable[[], datetime]


class DeliveryStatus:
    APPLIED = "applied"
    IGNORED = "ignored"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one job."""

    status: str  # applied | ignored | duplicate | failed
    outcome: Outcome | None = None  # the core's outcome for PR observations
    detail: str | None = None
    events: tuple[StoredEvent, ...] = ()
    follow_ups: frozenset[FollowUp] = frozenset()


@dataclass(slots=True)
class Job:
    """One unit of work: a delivery to record (and maybe apply), or an observation."""

    observation: Observation | None
    delivery: Delivery | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    received_at: datetime = field(default_factory=utcnow)
    ignored_reason: str | None = None
    future: asyncio.Future[Result] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @classmethod
    def for_delivery(
        cls, delivery: Delivery, *, source: Source, headers: Mapping[str, str], body: bytes
    ) -> Job:
        """The job for a verified, parsed delivery (the receiver's, or a replayed one)."""
        snapshot = delivery.snapshot
        return cls(
            observation=Observation(snapshot, source, delivery.guid) if snapshot else None,
            delivery=delivery,
            headers=dict(headers.items()),
            body=body,
            ignored_reason=(
                "ping" if delivery.event == "ping" else f"event {delivery.event!r} is not acted on"
            ),
        )

    @property
    def key(self) -> PRKey | None:
        if self.observation is None:
            return None
        snap = self.observation.snapshot
        return (snap.repository, snap.number)
