"""Rooms: ``subscribe`` narrows a client's stream, ``unsubscribe`` widens it again."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.helpers import make_settings, post_delivery
from tests.push.shared import document
from tests.servers import uvicorn_server
from tests.sockets import connected


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
async def test_subscribe_narrows_and_unsubscribe_widens(database_url: str, batch: bool) -> None:
    async with (
        uvicorn_server(make_settings(database_url)) as (_service, url),
        connected(url, batch=batch) as client,
        httpx.AsyncClient(base_url=url) as http,
    ):
        ack = await client.sio.call("subscribe", {"repository": "o/a"}, timeout=5)
        assert ack == {"ok": True, "subscriptions": ["repository:o/a"]}
        await post_delivery(http, document("o/b", 1))
        await post_delivery(http, document("o/a", 2))
        await client.wait_for(1)
        await asyncio.sleep(0.2)
        assert [d["repository"] for _, d in client.received] == ["o/a"]

        await client.sio.call("unsubscribe", {"repository": "o/a"}, timeout=5)
        await post_delivery(http, document("o/b", 3))
        await client.wait_for(2)
        assert [d["repository"] for _, d in client.received] == ["o/a", "o/b"]
        bad = await client.sio.call("subscribe", {"nonsense": 1}, timeout=5)
        assert bad["ok"] is False
