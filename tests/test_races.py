"""Concurrent deliveries and observations of one PR end in its newest state, with one
event per transition of the stored state, on both backends."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import AUTH, make_settings, payload, post_delivery, running_app
from webhook_service.core.model import Observation, Source
from webhook_service.core.payloads import PR_EVENTS, snapshot_from_api
from webhook_service.ingest.fixtures import fixtures_root, iter_deliveries
from webhook_service.reconciler import Reconciler
from webhook_service.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATES = {
    "OPEN": {"state": "open", "merged": False, "merged_at": None, "closed_at": None},
    "CLOSED": {"state": "closed", "merged": False, "merged_at": None},
    "MERGED": {"state": "closed", "merged": True},
}


def history(rng: random.Random, length: int = 50) -> list[str]:
    """A plausible life of one PR: open/closed flips, maybe merged at the end."""
    statuses = ["OPEN"]
    while len(statuses) < length - 1:
        statuses.append(statuses[-1] if rng.random() < 0.7 else rng.choice(["OPEN", "CLOSED"]))
    statuses.append(rng.choice(["OPEN", "CLOSED", "MERGED"]))
    return statuses


def snapshot_document(status: str, index: int) -> dict[str, Any]:
    stamp = (T0 + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields: dict[str, Any] = {**STATES[status], "updated_at": stamp, "title": f"version {index}"}
    if status != "OPEN":
        fields["closed_at"] = stamp
    if status == "MERGED":
        fields["merged_at"] = stamp
    return payload("pull_request/opened", **fields)


def assert_chain(events: list[dict[str, Any]], final: str) -> None:
    pr_events = [e for e in events if e["type"] == "pr_status_change"]
    assert pr_events, "a first sighting always emits an event"
    assert pr_events[0]["old_status"] is None
    for before, after in itertools.pairwise(pr_events):
        assert after["old_status"] == before["new_status"]
    assert all(e["old_status"] != e["new_status"] for e in pr_events)
    assert pr_events[-1]["new_status"] == final
    ids = [e["event_id"] for e in events]
    assert ids == sorted(set(ids))


async def test_fifty_concurrent_deliveries_end_in_the_newest_state(database_url: str) -> None:
    rng = random.Random(20261126)
    statuses = history(rng)
    order = list(range(len(statuses)))
    rng.shuffle(order)
    async with running_app(make_settings(database_url)) as (_service, client):
        responses = await asyncio.gather(
            *(post_delivery(client, snapshot_document(statuses[i], i)) for i in order)
        )
        assert all(r.status_code == 200 for r in responses)
        pr = (await client.get("/api/pulls/Codertocat/Hello-World/2", headers=AUTH)).json()
        events = (await client.get("/api/events", headers=AUTH)).json()["events"]
    newest = len(statuses) - 1
    assert pr["status"] == statuses[newest]
    assert pr["title"] == f"version {newest}"
    assert pr["github_updated_at"] == (T0 + timedelta(seconds=newest)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert_chain(events, statuses[newest])


async def test_open_updates_racing_a_merge_emit_exactly_the_real_transitions(
    database_url: str,
) -> None:
    statuses = ["OPEN"] * 49 + ["MERGED"]
    order = list(range(50))
    random.Random(7).shuffle(order)
    async with running_app(make_settings(database_url)) as (_service, client):
        await asyncio.gather(
            *(post_delivery(client, snapshot_document(statuses[i], i)) for i in order)
        )
        events = (await client.get("/api/events", headers=AUTH)).json()["events"]
    transitions = [(e["old_status"], e["new_status"]) for e in events]
    assert transitions in ([(None, "OPEN"), ("OPEN", "MERGED")], [(None, "MERGED")])


async def test_two_reconcilers_on_one_database_serialize_per_pr(database_url: str) -> None:
    """Two replicas (separate connections) apply shuffled observations concurrently."""
    rng = random.Random(99)
    statuses = history(rng, 40)
    observations = [
        Observation(
            snapshot_from_api(
                snapshot_document(s, i)["pull_request"], "Codertocat/Hello-World", merged_known=True
            ),
            Source.WORKER,
        )
        for i, s in enumerate(statuses)
    ]
    rng.shuffle(observations)
    stores = [Store(database_url), Store(database_url)]
    pattern = re.compile(r"^task/(?P<task_id>[0-9a-f-]{36})$")
    for store in stores:
        await store.connect()
    await stores[0].migrate()
    replicas = [Reconciler(s, task_branch_pattern=pattern, batch_max=4) for s in stores]
    try:
        for replica in replicas:
            replica.start()
        await asyncio.gather(*(replicas[i % 2].observe(o) for i, o in enumerate(observations)))
        for replica in replicas:
            await replica.stop()
        pr = await stores[0].get_pull("Codertocat/Hello-World", 2)
        events = [e.message() for e in await stores[0].events_since(0, 1000)]
    finally:
        for store in stores:
            await store.disconnect()
    assert pr is not None
    assert pr.status == statuses[-1]
    assert pr.github_updated_at == T0 + timedelta(seconds=len(statuses) - 1)
    assert_chain(events, statuses[-1])
    assert all(e["sync_source"] == "worker" for e in events)


@pytest.mark.parametrize("workers", [1, 2])
async def test_jobs_that_arrive_while_a_batch_waits_for_the_writer_lock_join_it(
    database_url: str, workers: int
) -> None:
    """Group commit: a worker with a job waits for the write lock (held here by another
    connection's transaction: SQLite's one writer, PostgreSQL's exclusive writer lock),
    and the jobs that arrive meanwhile make one batch, not one each. On SQLite they
    join the waiting transaction once it has the lock (with two workers the second
    also holds one job while it waits: two batches). On PostgreSQL a transaction locks
    the PRs of its jobs as it begins, so they make the next batch."""
    observations = [
        Observation(
            snapshot_from_api(
                snapshot_document("OPEN", n)["pull_request"] | {"number": n},
                "Codertocat/Hello-World",
                merged_known=True,
            ),
            Source.WORKER,
        )
        for n in range(1, 11)
    ]
    store, blocker = Store(database_url), Store(database_url)
    await store.connect()
    await blocker.connect()
    await store.migrate()
    pattern = re.compile(r"^task/(?P<task_id>[0-9a-f-]{36})$")
    reconciler = Reconciler(store, task_branch_pattern=pattern, workers=workers)
    reconciler.start()
    try:
        async with blocker.transaction():  # holds the writer lock
            first = [asyncio.create_task(reconciler.observe(o)) for o in observations[:workers]]
            async with asyncio.timeout(5):
                while not reconciler._queue.empty():  # noqa: ASYNC110 (each worker takes one)
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # and waits for the lock
            rest = [asyncio.create_task(reconciler.observe(o)) for o in observations[workers:]]
            await asyncio.sleep(0.1)
            assert reconciler.batches == 0
        results = await asyncio.gather(*first, *rest)
        await reconciler.stop()
        stored = await store.list_pulls()
    finally:
        await blocker.disconnect()
        await store.disconnect()
    assert [r.status for r in results] == ["applied"] * 10
    assert sorted(p.number for p in stored) == list(range(1, 11))
    assert reconciler.jobs == 10
    if store.is_postgres:  # the first jobs' batches (one or two), then the rest's
        assert reconciler.batches <= workers + 1
    else:
        assert reconciler.batches == workers


async def test_every_pr_fixture_applied_again_under_a_new_guid_emits_nothing(
    database_url: str,
) -> None:
    """Idempotence end to end: the same snapshot twice changes nothing the second time."""
    recorded = [
        r
        for r in iter_deliveries(fixtures_root())
        if r.event in PR_EVENTS and r.path.parent.name == r.event
    ]
    assert len(recorded) >= 30
    async with running_app(make_settings(database_url)) as (_service, client):
        for delivery in recorded:
            first = await post_delivery(client, delivery.body, delivery.event)
            assert first.status_code == 200, delivery.path
            before = (await client.get("/api/events", headers=AUTH)).json()["last_id"]
            again = await post_delivery(client, delivery.body, delivery.event)
            assert again.status_code == 200
            assert again.json()["outcome"] in ("unchanged", "stale", "terminal", "ambiguous")
            after = (await client.get("/api/events", headers=AUTH)).json()["last_id"]
            assert after == before, f"{delivery.path} emitted an event when applied again"
