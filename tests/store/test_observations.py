"""Recorded observations and the console's reads of deliveries, on both backends: what
one write records (each observation with the ids of its own events), duplicates
counted, the delivery list's filters and keyset, a PR's timeline, and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.helpers import payload, reconciling
from tests.store.shared import draft
from webhook_service.core.model import Observation, Source
from webhook_service.core.payloads import snapshot_from_api
from webhook_service.store import Changes, DeliveryRecord, ObservationDraft, Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REPO = "Codertocat/Hello-World"


def delivery(
    guid: str, received_at: datetime, *, number: int | None = 2, detail: str = "created"
) -> DeliveryRecord:
    return DeliveryRecord(
        guid=guid,
        event="pull_request" if number else "ping",
        action="opened" if number else None,
        hook_id=1,
        installation_id=None,
        repository=REPO if number else None,
        pr_number=number,
        headers={"x-github-event": "pull_request"},
        body=b"{}",
        received_at=received_at,
        processed_at=received_at,
        outcome="applied" if number else "ignored",
        detail=detail if number else "ping",
    )


def observed(
    number: int, guid: str | None, events: range, outcome: str = "created"
) -> ObservationDraft:
    return ObservationDraft(
        repository=REPO,
        number=number,
        source="webhook",
        delivery_guid=guid,
        observed_status="open",
        observed_updated_at=NOW,
        outcome=outcome,
        changes={"pr": {"from": None, "to": "OPEN"}, "task": None, "follow_ups": []},
        events=events,
    )


async def _attempts(store: Store, guid: str) -> int:
    async with store.connection() as conn:
        return int(
            await conn.fetchval("SELECT attempts FROM webhook_deliveries WHERE guid = $1", guid)
        )


async def test_each_observation_gets_the_ids_of_its_own_events(store: Store) -> None:
    async with store.transaction() as uow:
        before = await uow.insert_events([draft(0)], NOW)  # ids do not start at 1
        stored = await uow.write(
            Changes(
                events=[draft(1), draft(2), draft(3)],
                observations=[
                    observed(1, "g-1", range(0, 2)),
                    observed(2, "g-2", range(2, 2), "unchanged"),
                    observed(3, None, range(2, 3)),
                ],
            ),
            NOW,
        )
    ids = [e.id for e in stored]
    assert ids[0] > before[0].id
    recorded = {n: (await store.observations_of_pull(REPO, n))[0] for n in (1, 2, 3)}
    assert recorded[1].changes == {
        "pr": {"from": None, "to": "OPEN"},
        "task": None,
        "follow_ups": [],
        "event_ids": ids[:2],
    }
    assert recorded[2].changes["event_ids"] == []
    assert recorded[3].changes["event_ids"] == ids[2:]
    assert (recorded[1].source, recorded[1].delivery_guid, recorded[1].outcome) == (
        "webhook",
        "g-1",
        "created",
    )
    assert recorded[1].observed_updated_at == NOW and recorded[1].applied_at == NOW
    assert [o.number for o in await store.observations_of_delivery("g-2")] == [2]


async def test_duplicates_add_to_attempts_once_per_time_received(store: Store) -> None:
    async with store.transaction() as uow:
        await uow.save_deliveries([delivery("old", NOW)])
    async with store.transaction() as uow:
        # "new" is stored and received again in the same write: counted after its insert.
        await uow.write(
            Changes(deliveries=[delivery("new", NOW)], duplicates=["old", "new", "old"]), NOW
        )
    assert await _attempts(store, "old") == 3
    assert await _attempts(store, "new") == 2
    assert [d.guid for d in await store.delivery_summaries(outcome="duplicate")] == ["old", "new"]


async def test_delivery_summaries_filter_and_page_newest_first(store: Store) -> None:
    rows = [
        delivery("a", NOW - timedelta(minutes=5)),
        delivery("b", NOW - timedelta(minutes=4), detail="stale"),
        delivery("c", NOW - timedelta(minutes=3), number=7),
        delivery("d", NOW - timedelta(minutes=3), detail="terminal"),  # same time as c
        delivery("e", NOW - timedelta(minutes=2), number=None),
    ]
    async with store.transaction() as uow:
        await uow.save_deliveries(rows)

    async def guids(**filters: object) -> list[str]:
        return [d.guid for d in await store.delivery_summaries(**filters)]  # type: ignore[arg-type]

    assert await guids() == ["e", "d", "c", "b", "a"]
    assert await guids(outcome="stale") == ["d", "b"]
    assert await guids(outcome="applied") == ["c", "a"]
    assert await guids(outcome="ignored") == ["e"]
    assert await guids(event="ping") == ["e"]
    assert await guids(repository=REPO, number=2) == ["d", "b", "a"]
    assert await guids(since=NOW - timedelta(minutes=3)) == ["e"]  # exclusive
    # A page boundary between two deliveries received at the same time.
    first = await store.delivery_summaries(limit=2)
    assert [d.guid for d in first] == ["e", "d"]
    key = (first[-1].received_at, first[-1].guid)
    assert await guids(limit=2, after=key) == ["c", "b"]
    assert await guids(after=(NOW - timedelta(minutes=5), "a")) == []
    summary = await store.delivery_summary("b")
    assert summary is not None
    assert (summary.outcome, summary.shown_outcome, summary.attempts) == ("applied", "stale", 1)
    assert await store.delivery_summary("nope") is None


async def test_the_reconciler_records_each_observation_and_its_decision(database_url: str) -> None:
    opened = payload("pull_request/opened")["pull_request"]
    newer = {**opened, "updated_at": "2019-05-15T16:00:00Z"}
    closed = {**newer, "state": "closed", "closed_at": "2019-05-15T16:00:00Z"}
    async with reconciling(database_url) as (store, reconciler):
        for document, source, guid in (
            (opened, Source.MONITOR, "g-open"),
            (closed, Source.WORKER, None),
            (opened, Source.REPLAY, "g-open"),  # older than what is stored now
        ):
            snap = snapshot_from_api(document, REPO, merged_known=True)
            await reconciler.observe(Observation(snap, source, guid))
        timeline = await store.observations_of_pull(REPO, 2)
        events = await store.events_since(0, 10)
        older = await store.observations_of_pull(REPO, 2, limit=1, before=timeline[0].id)
    assert [(o.source, o.delivery_guid, o.observed_status, o.outcome) for o in timeline] == [
        ("replay", "g-open", "open", "stale"),
        ("worker", None, "closed", "transitioned"),
        ("webhook", "g-open", "open", "created"),
    ]
    assert [o.changes["pr"] for o in timeline] == [
        None,
        {"from": "OPEN", "to": "CLOSED"},
        {"from": None, "to": "OPEN"},
    ]
    assert [o.changes["event_ids"] for o in timeline] == [[], [events[1].id], [events[0].id]]
    assert [o.id for o in older] == [timeline[1].id]


async def test_prune_takes_observations_with_the_deliveries(store: Store) -> None:
    old, recent = NOW - timedelta(days=8), NOW - timedelta(days=1)
    async with store.transaction() as uow:
        await uow.write(
            Changes(deliveries=[delivery("old", old)], observations=[observed(2, "old", range(0))]),
            old,
        )
        await uow.write(
            Changes(
                deliveries=[delivery("new", recent)], observations=[observed(2, "new", range(0))]
            ),
            recent,
        )
    assert await store.prune(NOW - timedelta(days=7)) == (1, 0)
    assert [o.delivery_guid for o in await store.observations_of_pull(REPO, 2)] == ["new"]
    assert await store.observations_of_delivery("old") == []
    assert await store.was_observed(REPO, 2)
    assert not await store.was_observed(REPO, 3)
