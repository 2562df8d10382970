"""The Socket.IO stream: rooms, resume with ``since``, and the retention bound."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import timedelta
from typing import Any

import httpx
import pytest
import socketio

from tests.helpers import API_TOKEN, AUTH, make_settings, payload, post_delivery
from tests.servers import uvicorn_server
from tests.sockets import Client, RawClient, connected
from webhook_service.app import Service
from webhook_service.core.model import EventDraft
from webhook_service.push import stream as realtime
from webhook_service.store import utcnow


async def _store_events(
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


def _document(repository: str, number: int, **fields: Any) -> dict[str, Any]:
    document = payload("pull_request/opened", number=number, **fields)
    document["repository"]["full_name"] = repository
    return document


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
async def test_subscribe_narrows_and_unsubscribe_widens(database_url: str, batch: bool) -> None:
    async with (
        uvicorn_server(make_settings(database_url)) as (_service, url),
        connected(url, batch=batch) as client,
        httpx.AsyncClient(base_url=url) as http,
    ):
        ack = await client.sio.call("subscribe", {"repository": "o/a"}, timeout=5)
        assert ack == {"ok": True, "subscriptions": ["repository:o/a"]}
        await post_delivery(http, _document("o/b", 1))
        await post_delivery(http, _document("o/a", 2))
        await client.wait_for(1)
        await asyncio.sleep(0.2)
        assert [d["repository"] for _, d in client.received] == ["o/a"]

        await client.sio.call("unsubscribe", {"repository": "o/a"}, timeout=5)
        await post_delivery(http, _document("o/b", 3))
        await client.wait_for(2)
        assert [d["repository"] for _, d in client.received] == ["o/a", "o/b"]
        bad = await client.sio.call("subscribe", {"nonsense": 1}, timeout=5)
        assert bad["ok"] is False


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
async def test_resume_sends_every_missed_event_then_live_without_gap_or_repeat(
    database_url: str, batch: bool
) -> None:
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        before = await _store_events(service, 1200)  # more than two replay pages
        since = before[99]
        async with httpx.AsyncClient(base_url=url) as http:
            # Events keep being committed while the client is catching up.
            async def keep_committing() -> None:
                for i in range(40):
                    await post_delivery(http, _document("o/r", 1000 + i))

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
                await post_delivery(http, _document("o/r", 5000))
                await client.wait_for(newest - since + 1)
                assert client.ids[-1] == newest + 1
        if batch:  # the catch-up came in pages, not one message per event
            assert len(client.batches) < (newest - since) // 10


async def test_resume_from_a_pruned_position_asks_to_resync(database_url: str) -> None:
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        ids = await _store_events(service, 5)
        await asyncio.sleep(0.5)  # emitted and marked
        await service.store.prune(utcnow() + timedelta(seconds=1))
        later = await _store_events(service, 2)
        async with connected(url, since=ids[1]) as client:
            await client.wait_for(1)
            name, data = client.received[0]
            assert name == "resync_required"
            assert data["oldest_event_id"] == later[0]
            assert data["last_event_id"] == later[-1]
            async with httpx.AsyncClient(base_url=url) as http:
                await post_delivery(http, _document("o/r", 9))
            await client.wait_for(2)
            assert client.received[1][0] == "pr_status_change"


async def test_resume_rejects_a_bad_since(database_url: str) -> None:
    async with uvicorn_server(make_settings(database_url)) as (_service, url):
        client = socketio.AsyncClient(reconnection=False)
        errors: list[Any] = []
        client.on("connect_error", errors.append)
        try:
            await client.connect(url, auth={"token": API_TOKEN, "since": "x"}, wait_timeout=5)
        except socketio.exceptions.ConnectionError:
            pass
        else:
            raise AssertionError("a non-numeric 'since' must be refused")
        finally:
            await client.disconnect()
        assert errors and "since" in str(errors[0])


async def test_events_committed_but_never_emitted_reach_connected_clients(
    database_url: str,
) -> None:
    """What a process that died between commit and emit left behind: rows in the
    outbox that no dispatcher was told about. The outbox sweep emits them."""
    async with (
        uvicorn_server(make_settings(database_url)) as (service, url),
        connected(url) as client,
    ):
        async with service.store.transaction() as uow:  # committed, never notified
            orphans = await uow.insert_events(
                [
                    EventDraft("pr_status_change", "o/r", None, {"type": "pr_status_change"})
                    for _ in range(3)
                ],
                utcnow(),
            )
        await client.wait_for(3)  # the sweep runs every 5 s
        assert client.ids == [e.id for e in orphans]
        # ...and they are marked emitted (polled: the mark is a database row).
        for _ in range(100):
            if not await service.store.unemitted_events(0, 10):
                break
            await asyncio.sleep(0.05)
        assert await service.store.unemitted_events(0, 10) == []


async def test_stats_report_the_monitor_and_the_stream(database_url: str) -> None:
    async with (
        uvicorn_server(make_settings(database_url)) as (_service, url),
        connected(url) as client,
        httpx.AsyncClient(base_url=url) as http,
    ):
        await post_delivery(http, _document("o/r", 1))
        await client.wait_for(1)
        monitor = (await http.get("/stats")).json()["monitor"]
        assert monitor["deliveries_received"] == 1
        assert monitor["jobs_applied"] == 1
        assert monitor["events_emitted"] == 1
        assert monitor["last_emitted_event_id"] == client.ids[-1]
        assert monitor["socketio_clients"] == 1


async def test_a_batch_client_gets_a_burst_in_a_few_messages_in_order(database_url: str) -> None:
    async with (
        uvicorn_server(make_settings(database_url)) as (service, url),
        connected(url, batch=True) as batched,
        connected(url) as single,
    ):
        ids = await _store_events(service, 300)
        await batched.wait_for(300)
        await single.wait_for(300)
        await asyncio.sleep(0.2)  # anything extra would show up now
        assert batched.ids == ids == single.ids
        assert all(b == sorted(b) and b for b in batched.batches)
        assert len(batched.batches) <= 10, "one message per flush, not per event"
        # Quiet, then one event: sent at once, not after a full interval.
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=url) as http:
            await post_delivery(http, _document("o/r", 77))
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
            ids += await _store_events(service, 1)
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
        assert min(gaps(lone)) >= realtime.BATCH_INTERVAL - 0.01
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


async def test_batch_must_be_a_boolean(database_url: str) -> None:
    async with uvicorn_server(make_settings(database_url)) as (_service, url):
        client = socketio.AsyncClient(reconnection=False)
        errors: list[Any] = []
        client.on("connect_error", errors.append)
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            await client.connect(url, auth={"token": API_TOKEN, "batch": "yes"}, wait_timeout=5)
        await client.disconnect()
        assert errors and "batch" in str(errors[0])


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
async def test_a_stuck_client_is_cut_off_and_resynced_when_it_reads_again(
    database_url: str, batch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops reading: the server queues at most the backlog bound for
    it (the rest stays in the kernel's buffers), others keep getting everything, and
    once it has read what was queued it is told to resync, then gets live events."""
    # Bounds well above what the reading client lets pile up (bursts of 20 events).
    monkeypatch.setattr(realtime, "MAX_BACKLOG", 100)
    monkeypatch.setattr(realtime, "MAX_BATCH_BACKLOG", 10)
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
                ids += await _store_events(service, 20, pad=2000)
                await asyncio.sleep(0.06 if batch else 0.01)
            await keeping_up.wait_for(len(ids))
            assert keeping_up.ids == ids
            queued = [s.queue.qsize() for s in service.stream.sio.eio.sockets.values()]
            assert max(queued) <= limit, queued

            read = await stuck.messages(quiet=0.5)  # it reads again: what was queued
            live = await _store_events(service, 1)
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
            await service.stream.sio.emit("pr_status_change", message, to=[realtime.ALL])

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
