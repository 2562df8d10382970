"""The Socket.IO stream end to end: a real client on a real uvicorn server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import socketio

from tests.helpers import API_TOKEN, make_settings, payload, post_delivery
from tests.push.shared import document
from tests.servers import uvicorn_server
from tests.sockets import connected

PR_FIELDS = {
    "type",
    "event_id",
    "pr_id",
    "pr_number",
    "repository",
    "task_id",
    "old_status",
    "new_status",
    "sync_source",
    "timestamp",
}

TASK_FIELDS = {"type", "event_id", "task_id", "old_status", "new_status", "pr_trigger", "timestamp"}


async def _collect(client: socketio.AsyncClient) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
    received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def on_pr(data: dict[str, Any]) -> None:
        await received.put(("pr_status_change", data))

    async def on_task(data: dict[str, Any]) -> None:
        await received.put(("task_status_change", data))

    client.on("pr_status_change", on_pr)
    client.on("task_status_change", on_task)
    return received


async def test_client_receives_events_of_signed_deliveries(database_url: str) -> None:
    async with uvicorn_server(make_settings(database_url)) as (_service, url):
        client = socketio.AsyncClient()
        received = await _collect(client)
        await client.connect(url, auth={"token": API_TOKEN}, transports=["websocket"])
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                task = await http.post(
                    "/api/tasks",
                    json={"title": "Update README", "repository": "Codertocat/Hello-World"},
                    headers={"Authorization": f"Bearer {API_TOKEN}"},
                )
                task_id = task.json()["id"]
                head = {**payload("pull_request/opened")["pull_request"]["head"]}
                head["ref"] = f"task/{task_id}"
                opened = await post_delivery(http, payload("pull_request/opened", head=head))
                merged = await post_delivery(http, payload("pull_request/closed.merged", head=head))
                assert opened.status_code == merged.status_code == 200
            events = [await asyncio.wait_for(received.get(), 10) for _ in range(4)]
        finally:
            await client.disconnect()

    names = [name for name, _ in events]
    assert names == [
        "pr_status_change",
        "task_status_change",
        "pr_status_change",
        "task_status_change",
    ]
    for name, data in events:
        assert set(data) == (PR_FIELDS if name == "pr_status_change" else TASK_FIELDS)
        assert data["type"] == name
    pr_open, task_review, pr_merged, task_done = (data for _, data in events)
    assert (pr_open["old_status"], pr_open["new_status"]) == (None, "OPEN")
    assert pr_open["sync_source"] == "monitor"
    assert pr_open["repository"] == "Codertocat/Hello-World"
    assert pr_open["pr_number"] == 2
    assert pr_open["task_id"] == task_id
    assert (task_review["old_status"], task_review["new_status"]) == ("TODO", "CODE_REVIEWING")
    assert task_review["pr_trigger"] is True
    assert (pr_merged["old_status"], pr_merged["new_status"]) == ("OPEN", "MERGED")
    assert (task_done["old_status"], task_done["new_status"]) == ("CODE_REVIEWING", "DONE")
    ids = [data["event_id"] for _, data in events]
    assert ids == sorted(ids) and len(set(ids)) == 4


async def test_stats_report_the_monitor_and_the_stream(database_url: str) -> None:
    async with (
        uvicorn_server(make_settings(database_url)) as (_service, url),
        connected(url) as client,
        httpx.AsyncClient(base_url=url) as http,
    ):
        await post_delivery(http, document("o/r", 1))
        await client.wait_for(1)
        monitor = (await http.get("/stats")).json()["monitor"]
        assert monitor["deliveries_received"] == 1
        assert monitor["jobs_applied"] == 1
        assert monitor["events_emitted"] == 1
        assert monitor["last_emitted_event_id"] == client.ids[-1]
        assert monitor["socketio_clients"] == 1
