"""The handshake: a connection without the token, or with a bad ``since`` or ``batch``,
is refused."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import socketio

from tests.helpers import API_TOKEN, make_settings
from tests.servers import uvicorn_server


@pytest.mark.parametrize("auth", [None, {}, {"token": "wrong"}, {"token": 123}])
async def test_connection_without_the_token_is_refused(
    tmp_path: Any, auth: dict[str, Any] | None
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'rt.db'}")
    async with uvicorn_server(settings) as (_service, url):
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
        assert not client.connected
        await client.disconnect()


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


async def test_batch_must_be_a_boolean(database_url: str) -> None:
    async with uvicorn_server(make_settings(database_url)) as (_service, url):
        client = socketio.AsyncClient(reconnection=False)
        errors: list[Any] = []
        client.on("connect_error", errors.append)
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            await client.connect(url, auth={"token": API_TOKEN, "batch": "yes"}, wait_timeout=5)
        await client.disconnect()
        assert errors and "batch" in str(errors[0])
