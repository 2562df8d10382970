"""fixtures/scenarios/: each ordered delivery set, replayed over HTTP and offline, ends
in the expected state with exactly the expected events."""

from __future__ import annotations

import pytest

from tests.helpers import SECRET, make_settings, reconciling
from tests.servers import uvicorn_server
from webhook_service.ingest.fixtures import fixtures_root
from webhook_service.ingest.replay import Summary, collect, replay_http, replay_offline
from webhook_service.store import Store

SCENARIOS = fixtures_root().parent / "scenarios"

#: scenario -> (PR transitions in order, duplicates among its deliveries)
EXPECTED: dict[str, tuple[list[tuple[str | None, str]], int]] = {
    "open-review-merge": ([(None, "OPEN"), ("OPEN", "MERGED")], 0),
    "open-close-reopen-merge": (
        [(None, "OPEN"), ("OPEN", "CLOSED"), ("CLOSED", "OPEN"), ("OPEN", "MERGED")],
        0,
    ),
    "draft-ready-merge": ([(None, "OPEN"), ("OPEN", "MERGED")], 0),
    # opened, closed, merged, then a stale reopen (merged is terminal) and two repeats
    "shuffled-duplicates": ([(None, "OPEN"), ("OPEN", "CLOSED"), ("CLOSED", "MERGED")], 2),
}


def test_every_scenario_directory_has_an_expectation() -> None:
    assert {p.name for p in SCENARIOS.iterdir() if p.is_dir()} == set(EXPECTED)


async def _check(store: Store, summary: Summary, name: str) -> None:
    transitions, duplicates = EXPECTED[name]
    assert summary.rejected == [] and summary.bad == []
    assert summary.duplicate == duplicates
    pr = await store.get_pull("Codertocat/Hello-World", 2)
    assert pr is not None and pr.status == "MERGED"
    events = [e.message() for e in await store.events_since(0, 100)]
    assert [(e["old_status"], e["new_status"]) for e in events] == transitions
    assert all(e["type"] == "pr_status_change" for e in events)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_scenario_over_http(database_url: str, name: str) -> None:
    deliveries, bad = collect([str(SCENARIOS / name)])
    assert bad == []
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        summary = await replay_http(deliveries, url=f"{url}/webhooks/github", secret=SECRET)
        await _check(service.store, summary, name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_scenario_offline(database_url: str, name: str) -> None:
    deliveries, _ = collect([str(SCENARIOS / name)])
    async with reconciling(database_url) as (store, reconciler):
        summary = await replay_offline(deliveries, reconciler)
        await _check(store, summary, name)
