"""What several stream tests do: store events as a commit would (and hand them to the
dispatcher), and build a pull_request delivery for another repository."""

from __future__ import annotations

from typing import Any

from tests.helpers import payload
from webhook_service.app import Service
from webhook_service.core.model import EventDraft
from webhook_service.store import utcnow


async def store_events(
    service: Service, count: int, repository: str = "o/r", pad: int = 0
) -> list[int]:
    drafts = [
        EventDraft(
            "pr_status_change",
            repository,
            None,
            {"type": "pr_status_change", "n": i, **({"pad": "x" * pad} if pad else {})},
        )
        for i in range(count)
    ]
    async with service.store.transaction() as uow:
        stored = await uow.insert_events(drafts, utcnow())
    service.dispatcher.notify(stored)
    return [e.id for e in stored]


def document(repository: str, number: int, **fields: Any) -> dict[str, Any]:
    document = payload("pull_request/opened", number=number, **fields)
    document["repository"]["full_name"] = repository
    return document
