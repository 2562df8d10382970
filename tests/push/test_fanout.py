"""Fan-out: batches, the frame budget, the slow-client cut-off, and id order."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from pathlib import Path

import httpx
import pytest

from tests._redis import redis_url
from tests.helpers import API_TOKEN, make_settings, post_delivery
from tests.push.shared import document, store_events
from tests.servers import uvicorn_server
from tests.sockets import Client, RawClient, connected
from webhook_service.app import Service
from webhook_service.push import fanout
from webhook_service.push.rooms import ALL


async def test_a_batch_client_gets_a_burst_in_a_few_messages_in_order(database_url: str) -> None:
    async with (
        uvicorn_server(make_settings(database_url)) as (service, url),
        connected(url, batch=True) as batched,
        connected(url) as single,
    ):
        ids = await store_events(service, 300)
        await batched.wait_for(300)
        await single.wait_for(300)
        await asyncio.sleep(0.2)  # anything extra would show up now
        assert batched.ids == ids == single.ids
        assert all(b == sorted(b) and b for b in batched.batches)
        assert len(batched.batches) <= 10, "one message per flush, not per event"
        # Quiet, then one event: sent at once, not after a full interval.
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=url) as http:
            await post_delivery(http, document("o/r", 77))
        await batched.wait_for(301)
        assert batched.batches[-1] == [batched.ids[-1]]


async def test_many_batch_clients_stretch_the_interval_to_the_frame_budget(
    database_url: str,
) -> None:
    """All batch clients together get at most SOCKETIO_FRAME_BUDGET frames a second:
    with a budget of 20, one client gets a batch every 0.05 s (BATCH_INTERVAL), five get one
    every 0.25 s each; the same steady stream of events either way."""

    async def steady(service: Service) -> list[int]:
        ids: list[int] = []
        for _ in range(24):  # about 0.6 s: an event every 25 ms
            ids += await store_events(service, 1)
            await asyncio.sleep(0.025)
        return ids

    def gaps(client: Client) -> list[float]:
        times = client.batch_times
        return [b - a for a, b in itertools.pairwise(times)]

    settings = make_settings(database_url, SOCKETIO_FRAME_BUDGET="20")
    async with (
        uvicorn_server(settings) as (service, url),
        connected(url, batch=True) as lone,
    ):
        ids = await steady(service)
        await lone.wait_for(len(ids))
        assert lone.ids == ids
        before = len(lone.batches)
        assert min(gaps(lone)) >= fanout.BATCH_INTERVAL - 0.01
        await asyncio.sleep(0.3)  # quiet

        async with contextlib.AsyncExitStack() as stack:
            four = [await stack.enter_async_context(connected(url, batch=True)) for _ in range(4)]
            lone_batches = len(lone.batches)
            more = await steady(service)
            for client in four:
                await client.wait_for(len(more))
                assert client.ids == more
                assert min(gaps(client)) >= 5 / 20 - 0.02, gaps(client)
            assert len(lone.batches) - lone_batches <= 4  # one of the five now
            assert before > 1.5 * max(len(c.batches) for c in four)


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
async def test_a_stuck_client_is_cut_off_and_resynced_when_it_reads_again(
    database_url: str, batch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops reading: the server queues at most the backlog bound for
    it (the rest stays in the kernel's buffers), others keep getting everything, and
    once it has read what was queued it is told to resync, then gets live events."""
    # Bounds well above what the reading client lets pile up (bursts of 20 events).
    monkeypatch.setattr(fanout, "MAX_BACKLOG", 100)
    monkeypatch.setattr(fanout, "MAX_BATCH_BACKLOG", 10)
    limit = 10 if batch else 100
    async with (
        uvicorn_server(make_settings(database_url)) as (service, url),
        connected(url) as keeping_up,
    ):
        stuck = await RawClient.connect(url, {"token": API_TOKEN, "batch": batch})
        try:
            ids: list[int] = []
            # 2 KB events, 3,000 of them: several times what the kernel's buffers of a
            # loopback connection hold; in bursts a reading client keeps up with.
            for _ in range(150):
                ids += await store_events(service, 20, pad=2000)
                await asyncio.sleep(0.06 if batch else 0.01)
            await keeping_up.wait_for(len(ids))
            assert keeping_up.ids == ids
            queued = [s.queue.qsize() for s in service.stream.sio.eio.sockets.values()]
            assert max(queued) <= limit, queued

            read = await stuck.messages(quiet=0.5)  # it reads again: what was queued
            live = await store_events(service, 1)
            read += await stuck.messages(quiet=0.5)
        finally:
            stuck.close()
    names = [name for name, _ in read]
    assert names.count("resync_required") == 1, names[-5:]
    cut = names.index("resync_required")
    before: list[int] = []
    for name, data in read[:cut]:
        before += [e["event_id"] for e in data] if name == "events" else [data["event_id"]]
    assert before == ids[: len(before)] and len(before) < len(ids), "cut off, in order"
    assert read[cut][1]["last_event_id"] == live[0] - 1
    after = read[cut + 1 :]
    got = [e["event_id"] for e in after[0][1]] if batch else [d["event_id"] for _, d in after]
    assert got == live


async def test_events_reach_clients_in_id_order_even_when_emitted_out_of_it(
    database_url: str,
) -> None:
    """What two replicas publishing at their own pace look like to a third: ids out of
    order. A later id waits for the earlier one; a gap is waited out briefly."""
    async with (
        uvicorn_server(make_settings(database_url)) as (service, url),
        connected(url) as single,
        connected(url, batch=True) as batched,
    ):

        async def emit(event_id: int) -> None:
            message = {"type": "pr_status_change", "event_id": event_id}
            await service.stream.sio.emit("pr_status_change", message, to=[ALL])

        for event_id in (1000, 1002, 1003, 1001, 1004):
            await emit(event_id)
        await emit(1006)  # 1005 never comes (a gap)
        await emit(1007)
        for client in (single, batched):
            await client.wait_for(7)
            assert client.ids == [1000, 1001, 1002, 1003, 1004, 1006, 1007]
        await emit(900)  # older than everything delivered (a late sweep): at once
        await single.wait_for(8)
        assert single.ids[-1] == 900


@pytest.mark.parametrize("queue", ["local", "redis"])
async def test_the_first_event_too_waits_for_a_smaller_id(
    database_url: str, queue: str, tmp_path: Path
) -> None:
    """A replica's first event may be another's, ahead of a smaller id still on its way
    (seen with ``serve --workers 2``): order starts after the newest stored event, not
    at whichever event arrives first."""
    with contextlib.ExitStack() as stack:
        extra = {}
        if queue == "redis":
            extra["SOCKETIO_MESSAGE_QUEUE"] = stack.enter_context(redis_url(tmp_path))
            extra["SOCKETIO_CHANNEL"] = f"test-{uuid.uuid4().hex}"
        async with (
            uvicorn_server(make_settings(database_url, **extra)) as (service, url),
            connected(url) as client,
        ):
            for event_id in (2, 1):  # nothing is stored yet: 1 is the first to expect
                message = {"type": "pr_status_change", "event_id": event_id}
                await service.stream.sio.emit("pr_status_change", message, to=[ALL])
            await client.wait_for(2)
            assert client.ids == [1, 2]
