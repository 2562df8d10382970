"""Resume with ``since``: every missed event, then live, with no gap or repeat; past the
retention bound, ``resync_required``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from tests.helpers import AUTH, make_settings, post_delivery
from tests.push.shared import document, store_events
from tests.servers import uvicorn_server
from tests.sockets import connected
from webhook_service.store import utcnow


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
async def test_resume_sends_every_missed_event_then_live_without_gap_or_repeat(
    database_url: str, batch: bool
) -> None:
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        before = await store_events(service, 1200)  # more than two replay pages
        since = before[99]
        async with httpx.AsyncClient(base_url=url) as http:
            # Events keep being committed while the client is catching up.
            async def keep_committing() -> None:
                for i in range(40):
                    await post_delivery(http, document("o/r", 1000 + i))

            committing = asyncio.create_task(keep_committing())
            async with connected(url, since=since, batch=batch) as client:
                await committing
                newest = (await http.get("/api/events?since=0&limit=5000", headers=AUTH)).json()[
                    "last_id"
                ]
                await client.wait_for(newest - since)
                await asyncio.sleep(0.3)  # anything extra would show up now
                assert client.ids == list(range(since + 1, newest + 1))
                # ...and then it is live.
                await post_delivery(http, document("o/r", 5000))
                await client.wait_for(newest - since + 1)
                assert client.ids[-1] == newest + 1
        if batch:  # the catch-up came in pages, not one message per event
            assert len(client.batches) < (newest - since) // 10


async def test_resume_from_a_pruned_position_asks_to_resync(database_url: str) -> None:
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        ids = await store_events(service, 5)
        await asyncio.sleep(0.5)  # emitted and marked
        await service.store.prune(utcnow() + timedelta(seconds=1))
        later = await store_events(service, 2)
        async with connected(url, since=ids[1]) as client:
            await client.wait_for(1)
            name, data = client.received[0]
            assert name == "resync_required"
            assert data["oldest_event_id"] == later[0]
            assert data["last_event_id"] == later[-1]
            async with httpx.AsyncClient(base_url=url) as http:
                await post_delivery(http, document("o/r", 9))
            await client.wait_for(2)
            assert client.received[1][0] == "pr_status_change"
