"""The events the core emits (webhook_service/core/events.py): exactly the documented
fields (DESIGN.md §3, without event_id), plain JSON, the time taken from now."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from tests.core.shared import (
    CL,
    MG,
    NEW,
    NEW_PR_ID,
    NUMBER,
    OFFSET,
    OP,
    PR_EVENT_KEYS,
    PR_ID,
    REPO,
    REVIEW,
    STAMP,
    T0,
    TASK_EVENT_KEYS,
    TASK_ID,
    TODO,
    observe,
    run,
    stored_pr,
)
from webhook_service.core.model import (
    Source,
    Task,
)
from webhook_service.core.rules import decide

# -- event payloads (DESIGN.md §3, without event_id) -------------------------------------


@pytest.mark.parametrize("source", list(Source))
def test_event_payloads_are_exactly_the_documented_fields(source: Source) -> None:
    stored = stored_pr(OP, task_id=TASK_ID)
    decision = run(stored, Task(TASK_ID, REVIEW), observe(MG, T0 + OFFSET[NEW], source))
    pr_change, task_change = decision.events

    assert set(pr_change.payload) == PR_EVENT_KEYS
    assert pr_change.payload == {
        "type": "pr_status_change",
        "pr_id": PR_ID,
        "pr_number": NUMBER,
        "repository": REPO,
        "task_id": TASK_ID,
        "old_status": "OPEN",
        "new_status": "MERGED",
        "sync_source": source.value,
        "timestamp": STAMP,
    }
    assert (pr_change.type, pr_change.repository, pr_change.task_id) == (
        "pr_status_change",
        REPO,
        TASK_ID,
    )

    assert set(task_change.payload) == TASK_EVENT_KEYS
    assert task_change.payload == {
        "type": "task_status_change",
        "task_id": TASK_ID,
        "old_status": "CODE_REVIEWING",
        "new_status": "DONE",
        "pr_trigger": True,
        "timestamp": STAMP,
    }
    assert (task_change.type, task_change.task_id) == ("task_status_change", TASK_ID)


def test_event_payloads_serialise_to_plain_json() -> None:
    decision = run(None, Task(TASK_ID, TODO), observe(OP, T0, Source.REPLAY))
    assert [orjson.loads(orjson.dumps(e.payload)) for e in decision.events] == [
        {
            "type": "pr_status_change",
            "pr_id": NEW_PR_ID,
            "pr_number": NUMBER,
            "repository": REPO,
            "task_id": TASK_ID,
            "old_status": None,
            "new_status": "OPEN",
            "sync_source": "replay",
            "timestamp": STAMP,
        },
        {
            "type": "task_status_change",
            "task_id": TASK_ID,
            "old_status": "TODO",
            "new_status": "CODE_REVIEWING",
            "pr_trigger": True,
            "timestamp": STAMP,
        },
    ]


def test_event_without_task_has_null_task_id() -> None:
    (event,) = run(None, None, observe(CL, T0)).events
    assert event.payload["task_id"] is None
    assert event.task_id is None
    assert event.repository == REPO


def test_timestamp_is_taken_from_now() -> None:
    now = datetime(2027, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)
    decision = decide(None, None, observe(OP, T0), now=now, new_pr_id="x")
    assert decision.events[0].payload["timestamp"] == "2027-01-02T03:04:05Z"
