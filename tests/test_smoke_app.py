from __future__ import annotations

from tests.helpers import AUTH, make_settings, payload, post_delivery, running_app


async def test_opened_then_merged_is_stored_and_emits_two_events(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        first = await post_delivery(client, payload("pull_request/opened"), guid="g-1")
        second = await post_delivery(client, payload("pull_request/closed.merged"), guid="g-2")
        assert (first.status_code, first.json()["outcome"]) == (200, "created")
        assert (second.status_code, second.json()["outcome"]) == (200, "transitioned")
        pr = (await client.get("/api/pulls/Codertocat/Hello-World/2", headers=AUTH)).json()
        assert pr["status"] == "MERGED"
        events = (await client.get("/api/events?since=0", headers=AUTH)).json()["events"]
        assert [(e["old_status"], e["new_status"]) for e in events] == [
            (None, "OPEN"),
            ("OPEN", "MERGED"),
        ]
