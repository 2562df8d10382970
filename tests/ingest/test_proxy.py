"""WEBHOOK_PROXY_URL: deliveries forwarded by a smee.io-compatible channel.

The channel is a real Server-Sent Events server on loopback (aiohttp) speaking smee's
format: each message's ``data`` is the delivery's headers, its ``body`` parsed, and
``query``. Deliveries go through the same receiver as a direct POST.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.helpers import SECRET, make_settings, payload, running_app, until
from webhook_service.ingest.proxy import candidate_bodies, parse_message
from webhook_service.ingest.signature import sign

DROP = "drop"


class Channel:
    """A smee-like channel: ``send`` queues a delivery; ``DROP`` cuts the stream."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.connections = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Channel:
        app = web.Application()
        app.router.add_get("/channel", self._stream)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/channel"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def send(self, headers: dict[str, str], body: bytes) -> None:
        """What smee.io streams for a POST of ``body`` with ``headers``."""
        message: dict[str, Any] = {k.lower(): v for k, v in headers.items()}
        message |= {"body": json.loads(body), "query": {}, "timestamp": int(time.time() * 1000)}
        self.queue.put_nowait(json.dumps(message))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"event: ready\ndata: {}\n\n: a comment\n\n")
        number = 0
        while True:
            message = await self.queue.get()
            if message == DROP:
                assert request.transport is not None
                request.transport.close()  # an abrupt end, as a network drop
                return response
            number += 1
            await response.write(f"id: {number}\nevent: ping\ndata: {{}}\n\n".encode())
            await response.write(f"id: {number}\ndata: {message}\n\n".encode())


def delivery(document: dict[str, Any], body: bytes | None = None) -> tuple[dict[str, str], bytes]:
    raw = body if body is not None else orjson.dumps(document)
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(raw, secret=SECRET.encode()),
        "Content-Type": "application/json",
        "Host": "smee.io",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    return headers, raw


@pytest.fixture
async def channel() -> AsyncIterator[Channel]:
    async with Channel() as c:
        yield c


async def test_forwarded_deliveries_go_through_the_receiver(
    database_url: str, channel: Channel
) -> None:
    settings = make_settings(database_url, WEBHOOK_PROXY_URL=channel.url)
    async with running_app(settings) as (service, _client):
        proxy, receiver, store = service.proxy, service.receiver, service.store
        assert proxy is not None
        await until(lambda: proxy.connected)

        opened = payload("pull_request/opened", number=501, title="via the channel")
        headers, body = delivery(opened)
        channel.send(headers, body)
        await until(lambda: receiver.outcomes[("pull_request", "applied")] == 1)
        pr = await store.get_pull(opened["repository"]["full_name"], 501)
        assert pr is not None and (pr.title, pr.last_source) == ("via the channel", "monitor")
        stored = await store.get_delivery(headers["X-GitHub-Delivery"])
        assert stored is not None and stored.body == body  # the bytes GitHub signed

        # The channel replays it (a reconnect): a duplicate, nothing applied twice.
        events = await store.events_since(0, 1000)
        channel.send(headers, body)
        await until(lambda: receiver.outcomes[("pull_request", "duplicate")] == 1)
        assert await store.events_since(0, 1000) == events

        # Signed with another secret: refused as a direct POST would be.
        forged = payload("pull_request/opened", number=502)
        forged_headers, forged_body = delivery(forged)
        forged_headers["X-Hub-Signature-256"] = sign(forged_body, secret=b"not the secret")
        channel.send(forged_headers, forged_body)
        await until(lambda: receiver.outcomes[("-", "unauthorized")] == 1)
        assert await store.get_pull(forged["repository"]["full_name"], 502) is None

        # GitHub's JSON escapes some characters; the channel's re-encoding does not.
        html = payload("pull_request/opened", number=503, title="a <b> & c — ü")
        escaped = (
            orjson.dumps(html)
            .decode()
            .replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
        )
        channel.send(*delivery(html, escaped.encode()))
        await until(lambda: receiver.outcomes[("pull_request", "applied")] == 2)
        pr = await store.get_pull(html["repository"]["full_name"], 503)
        assert pr is not None and pr.title == "a <b> & c — ü"

        assert proxy.forwarded == 4


async def test_the_proxy_reconnects_after_a_dropped_connection(
    database_url: str, channel: Channel
) -> None:
    settings = make_settings(database_url, WEBHOOK_PROXY_URL=channel.url)
    async with running_app(settings) as (service, _client):
        proxy = service.proxy
        assert proxy is not None
        await until(lambda: proxy.connected)
        channel.queue.put_nowait(DROP)
        await until(lambda: channel.connections == 2, within=10)  # backoff: 0.5-1 s

        document = payload("pull_request/opened", number=601)
        channel.send(*delivery(document))
        await until(lambda: service.receiver.outcomes[("pull_request", "applied")] == 1)
        assert proxy.connections == 2


def test_smee_messages_and_candidate_bodies() -> None:
    assert parse_message("{}") is None  # smee's "ready"
    assert parse_message("not json") is None
    forwarded = parse_message(
        json.dumps({"x-github-event": "ping", "host": "smee.io", "body": {"a": "<ü>"}, "query": {}})
    )
    assert forwarded is not None
    assert forwarded.headers == {"x-github-event": "ping"}
    assert list(candidate_bodies(forwarded.body)) == [
        '{"a":"<ü>"}'.encode(),
        b'{"a":"\\u003c\xc3\xbc\\u003e"}',
        b'{"a":"<\\u00fc>"}',
        b'{"a":"\\u003c\\u00fc\\u003e"}',
    ]
