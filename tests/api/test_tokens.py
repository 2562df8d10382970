"""DASHBOARD_TOKEN is read-only: every GET under /api answers it as it answers
API_TOKEN, every other method is 403 saying so (and changes nothing), a wrong token is
401, and the Socket.IO stream takes it. The routes are read from the app, so a new one
is covered without being listed here."""

from __future__ import annotations

import re

import httpx
import pytest
import socketio
from starlette.applications import Starlette
from starlette.routing import Route

from tests.helpers import AUTH, make_settings, payload, post_delivery, running_app
from tests.servers import uvicorn_server
from tests.sockets import connected
from webhook_service.app import create_app
from webhook_service.config import Settings

DASHBOARD_TOKEN = "test-dashboard-token"
READ_ONLY = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
WRONG = {"Authorization": "Bearer not-a-token"}
_PARAM = re.compile(r"\{(\w+)(:\w+)?\}")


def settings_with_token(database_url: str) -> Settings:
    return make_settings(database_url, DASHBOARD_TOKEN=DASHBOARD_TOKEN)


def api_routes(settings: Settings) -> list[tuple[str, str]]:
    """Every (method, path template) under /api, HEAD aside (it goes with GET)."""
    app = create_app(settings).other_asgi_app
    assert isinstance(app, Starlette)
    return sorted(
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api")
        for method in route.methods or ()
        if method != "HEAD"
    )


async def known_values(client: httpx.AsyncClient) -> dict[str, str]:
    """A PR, a task and a delivery that exist, for the routes' path parameters."""
    guid = "2f6f0a6e-0000-4000-8000-000000000001"
    response = await post_delivery(client, payload("pull_request/opened"), guid=guid)
    assert response.status_code == 200, response.text
    task = await client.post("/api/tasks", json={"title": "t"}, headers=AUTH)
    assert task.status_code == 201, task.text
    return {
        "owner": "Codertocat",
        "repo": "Hello-World",
        "number": "2",
        "task_id": task.json()["id"],
        "guid": guid,
    }


def concrete(template: str, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: values.get(m[1], "x"), template)


async def test_every_get_answers_the_read_only_token_as_the_api_token(database_url: str) -> None:
    settings = settings_with_token(database_url)
    gets = [path for method, path in api_routes(settings) if method == "GET"]
    assert "/api/console/health" in gets and "/api/pulls" in gets
    async with running_app(settings) as (_service, client):
        values = await known_values(client)
        for template in gets:
            path = concrete(template, values)
            full = await client.get(path, headers=AUTH)
            read_only = await client.get(path, headers=READ_ONLY)
            assert full.status_code == 200, (path, full.text)
            assert read_only.status_code == 200, (path, read_only.text)
            assert (await client.head(path, headers=READ_ONLY)).status_code == 200
            assert (await client.get(path, headers=WRONG)).status_code == 401
            assert (await client.get(path)).status_code == 401


async def test_every_write_is_403_for_the_read_only_token_and_changes_nothing(
    database_url: str,
) -> None:
    settings = settings_with_token(database_url)
    writes = [(m, p) for m, p in api_routes(settings) if m != "GET"]
    assert ("POST", "/api/cleanups/{task_id}/retry") in writes
    assert ("PATCH", "/api/tasks/{task_id}") in writes
    async with running_app(settings) as (_service, client):
        values = await known_values(client)
        before = (await client.get("/api/tasks", headers=AUTH)).json()["tasks"]
        for method, template in writes:
            path = concrete(template, values)
            body = {"title": "changed", "status": "DONE", "repository": "o/r", "number": 1}
            response = await client.request(method, path, json=body, headers=READ_ONLY)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == (
                f"DASHBOARD_TOKEN is read-only: {method} needs API_TOKEN"
            )
            wrong = await client.request(method, path, json=body, headers=WRONG)
            assert wrong.status_code == 401, (method, path)
        assert (await client.get("/api/tasks", headers=AUTH)).json()["tasks"] == before


async def test_without_a_dashboard_token_a_reader_has_nothing(database_url: str) -> None:
    """Unset, DASHBOARD_TOKEN's value is just a wrong token."""
    async with running_app(make_settings(database_url)) as (_service, client):
        response = await client.get("/api/pulls", headers=READ_ONLY)
        assert response.status_code == 401


async def test_the_stream_takes_the_read_only_token(database_url: str) -> None:
    settings = settings_with_token(database_url)
    async with uvicorn_server(settings) as (_service, url):
        async with connected(url, token=DASHBOARD_TOKEN) as reader:
            async with httpx.AsyncClient(base_url=url) as http:
                response = await post_delivery(http, payload("pull_request/opened"))
                assert response.status_code == 200
            await reader.wait_for(1)
            assert reader.received[0][0] == "pr_status_change"
        refused = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(
                url, auth={"token": "not-a-token"}, transports=["websocket"], wait_timeout=5
            )
        await refused.disconnect()
