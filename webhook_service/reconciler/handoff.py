"""After a commit: each job's future is settled with its result, and each PR status
change is logged once, with the delivery's GUID (the stored events themselves go to the
``on_commit`` callback, the outbox dispatcher, in :mod:`.batching`)."""

from __future__ import annotations

import logging

from webhook_service.reconciler.jobs import Job, Result

#: The room's logger, as before it was a package: log lines keep their logger name.
logger = logging.getLogger("webhook_service.reconciler")


def settle(job: Job, outcome: Result | BaseException) -> None:
    """Resolve ``job``'s future, once (a job retried alone may be settled already)."""
    if job.future.done():
        return
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)


def log_change(job: Job, result: Result) -> None:
    """One line per PR status change, carrying the GUID, repository and PR number."""
    if not result.events or job.observation is None:
        return
    snap = job.observation.snapshot
    for event in result.events:
        payload = event.payload
        logger.info(
            "%s: %s -> %s",
            event.type,
            payload.get("old_status"),
            payload.get("new_status"),
            extra={
                "guid": job.observation.delivery_id,
                "repository": snap.repository,
                "pr": snap.number,
                "source": str(job.observation.source),
                "event_id": event.id,
            },
        )
