"""Redis down (issue #7, "Faults"): webhooks are still stored and applied, clients that
reconnect with ``since`` get every event, and live fan-out comes back with Redis.

Two replicas share one database and one Redis (``SOCKETIO_MESSAGE_QUEUE``), as in
deploy/: a client connected to replica A gets replica B's events only through Redis.
The Redis is the test's own ``redis-server`` on a free loopback port, killed and
started again on that port; the machine's Redis (6379) is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio

from tests._redis import RedisServer
from tests.helpers import AUTH, make_settings, payload, post_delivery
from tests.servers import uvicorn_server
from tests.sockets import Client, connected

CHANNEL = "socketio"  # python-socketio's default message-queue channel
REPOSITORY = "Codertocat/Hello-World"  # the fixture's repository
WAIT = 10.0  # seconds any one expected thing may take


class PausableRedis(RedisServer):
    """A private Redis that can also hang: SIGSTOP keeps its connections open and
    answers nothing, as a hung server or a network partition looks."""

    def pause(self) -> None:
        assert self._process is not None and self._process.poll() is None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self, *, kill: bool = False) -> None:
        self.resume()  # a stopped process would not act on SIGTERM
        super().stop(kill=kill)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PausableRedis]:
    """The test's own ``redis-server`` (never the machine's, which other tests use)."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    try:
        server = PausableRedis(workdir)
    except RuntimeError as exc:  # no redis-server binary
        pytest.fail(f"these tests start a Redis of their own: {exc}", pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def subscribers(url: str) -> int:
    """How many listeners the Socket.IO channel has (one per replica that listens)."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        ((_, count),) = await client.pubsub_numsub(CHANNEL)
        return int(count)
    finally:
        await client.aclose()


async def wait_for_subscribers(url: str, count: int) -> float:
    """Wait until ``count`` replicas listen on Redis; returns how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < WAIT:
        if await subscribers(url) >= count:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} replicas listen on Redis after {WAIT}s")


async def got_all(client: Client, ids: Iterable[int]) -> None:
    """Wait until ``client`` has received every event in ``ids``."""
    wanted = set(ids)
    await client.wait_until(lambda seen: wanted <= set(seen))


def resyncs(client: Client) -> list[dict[str, Any]]:
    return [data for name, data in client.received if name == "resync_required"]


async def deliver(http: httpx.AsyncClient, number: int) -> None:
    """Post a signed ``pull_request`` delivery opening PR ``number`` (one event)."""
    started = time.monotonic()
    response = await post_delivery(http, payload("pull_request/opened", number=number))
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert elapsed < 2.0, f"delivery of #{number} took {elapsed:.1f}s"


async def events_since(http: httpx.AsyncClient, since: int) -> list[dict[str, Any]]:
    response = await http.get(f"/api/events?since={since}&limit=1000", headers=AUTH)
    assert response.status_code == 200
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def event_of(http: httpx.AsyncClient, since: int, number: int) -> int:
    """The id of the event PR ``number``'s delivery stored (after ``since``)."""
    ids = [e["event_id"] for e in await events_since(http, since) if e["pr_number"] == number]
    assert len(ids) == 1, ids
    return int(ids[0])


def outage_log(records: Iterable[logging.LogRecord]) -> list[str]:
    """What Socket.IO and the stream logged at WARNING or above."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.WARNING
        and (r.name.startswith("socketio") or r.name == "webhook_service.push.managers")
    ]


async def test_redis_down_webhooks_are_applied_and_resuming_clients_get_every_event(
    database_url: str, private_redis: PausableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, SOCKETIO_MESSAGE_QUEUE=private_redis.url)
    numbers = iter(range(1, 1000))
    async with (
        uvicorn_server(settings) as (_a, url_a),
        uvicorn_server(settings) as (_b, url_b),
        httpx.AsyncClient(base_url=url_a, timeout=5) as http_a,
        httpx.AsyncClient(base_url=url_b, timeout=5) as http_b,
        connected(url_a) as watcher,  # stays connected to replica A throughout
    ):
        # Replica A listens on Redis once it has a client (python-socketio starts its
        # listener on the first connection); B has none, so it only publishes.
        await wait_for_subscribers(private_redis.url, 1)

        # 1. Redis up: both replicas' events reach A's clients, B's through Redis.
        async with connected(url_a) as leaver:
            await deliver(http_a, next(numbers))
            await deliver(http_b, next(numbers))
            before = [e["event_id"] for e in await events_since(http_a, 0)]
            assert len(before) == 2
            await got_all(leaver, before)
            await got_all(watcher, before)
            assert leaver.ids == watcher.ids == before
            last_seen = leaver.ids[-1]
        # ...and the leaver has gone away, having seen everything up to last_seen.

        # 2. Redis dies. Every delivery, to either replica, is acknowledged promptly,
        # stored and applied; both replicas stay healthy and ready.
        private_redis.stop(kill=True)
        caplog.clear()
        during = [(http_a if i % 2 == 0 else http_b, next(numbers)) for i in range(10)]
        for http, number in during:
            await deliver(http, number)
        stored = await events_since(http_b, last_seen)
        assert [e["pr_number"] for e in stored] == [n for _, n in during]
        assert all(e["type"] == "pr_status_change" for e in stored)
        for http, number in during:
            other = http_b if http is http_a else http_a
            pull = await other.get(f"/api/pulls/{REPOSITORY}/{number}", headers=AUTH)
            assert pull.status_code == 200
            assert pull.json()["status"] == "OPEN"
        for http in (http_a, http_b):
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
        # A's own events still reach its clients live: local delivery needs no Redis.
        from_a = [e["event_id"] for e, (h, _) in zip(stored, during, strict=True) if h is http_a]
        await got_all(watcher, from_a)
        assert watcher.ids == sorted(set(watcher.ids))  # in order, no repeats

        # 3. The client that went away reconnects to A with the last id it saw (Redis
        # still down): it gets every event it missed, in order, then live ones.
        missed = [e["event_id"] for e in stored]
        async with connected(url_a, since=last_seen) as resumer:
            await got_all(resumer, missed)
            live_a = next(numbers)
            await deliver(http_a, live_a)
            live_a_id = await event_of(http_a, missed[-1], live_a)
            await got_all(resumer, [live_a_id])
            await asyncio.sleep(0.3)  # anything extra would show up now
            assert resyncs(resumer) == []
            assert resumer.ids == [*missed, live_a_id]

            # The outage was reported, not once per event: at most one line per
            # replica for publishing and one for listening.
            logged = outage_log(caplog.records)
            assert 1 <= len(logged) <= 3, "\n".join(logged)

            # 4. Redis comes back on the same port. A's listener subscribes again by
            # itself, and events from B reach A's clients live again.
            await asyncio.to_thread(private_redis.start)
            took = await wait_for_subscribers(private_redis.url, 1)
            assert took < 5.0, f"replica A listened on Redis again only after {took:.1f}s"
            back = [(http_b, next(numbers)), (http_a, next(numbers)), (http_b, next(numbers))]
            back_ids = []
            for http, number in back:
                await deliver(http, number)
                back_ids.append(await event_of(http, live_a_id, number))
            await got_all(resumer, back_ids)
            await got_all(watcher, back_ids)
            await asyncio.sleep(0.3)
            assert resumer.ids == [*missed, live_a_id, *back_ids]
            assert watcher.ids[-3:] == back_ids
            # Connected through the outage, the watcher missed B's events of that
            # time without a gap it could see: both clients were told to reload.
            assert set(missed) - set(watcher.ids), "the watcher did miss B's events"
            for client in (watcher, resumer):
                told = resyncs(client)
                assert len(told) == 1, told
                assert told[0]["last_event_id"] >= live_a_id
        shutdown_started = time.monotonic()
    shutdown = time.monotonic() - shutdown_started
    assert shutdown < 5.0, f"shutting down took {shutdown:.1f}s"


async def test_a_hung_redis_holds_up_neither_live_events_nor_shutdown(
    database_url: str, private_redis: PausableRedis
) -> None:
    """Redis stopped dead (SIGSTOP: connections stay open, nothing answers), as a
    hung server or a network partition looks: every emit's publish would wait for
    it, and the outbox dispatcher emits one event at a time."""
    settings = make_settings(database_url, SOCKETIO_MESSAGE_QUEUE=private_redis.url)
    try:
        async with (
            uvicorn_server(settings) as (_service, url),
            httpx.AsyncClient(base_url=url, timeout=5) as http,
            connected(url) as client,
        ):
            with _resume_on_error(private_redis):  # a failure here stays bounded
                await wait_for_subscribers(private_redis.url, 1)
                private_redis.pause()
                numbers = list(range(1, 7))
                started = time.monotonic()
                for number in numbers:
                    await deliver(http, number)
                stored = [e["event_id"] for e in await events_since(http, 0)]
                assert len(stored) == len(numbers)
                await got_all(client, stored)
                took = time.monotonic() - started
                assert client.ids == stored
                assert took < 5.0, f"{len(numbers)} events reached the client in {took:.1f}s"
                assert (await http.get("/healthz")).status_code == 200
            shutdown_started = time.monotonic()  # with Redis still hung
        shutdown = time.monotonic() - shutdown_started
        assert shutdown < 5.0, f"shutting down took {shutdown:.1f}s"
    finally:
        private_redis.resume()


@contextlib.contextmanager
def _resume_on_error(server: PausableRedis) -> Iterator[None]:
    try:
        yield
    except BaseException:
        server.resume()
        raise
