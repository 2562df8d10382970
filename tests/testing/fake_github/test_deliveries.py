"""Webhook deliveries of the fake GitHub (fake_github.deliveries), redelivered for real."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiohttp
from aiohttp import web
from gidgethub.apps import get_jwt
from yarl import URL

from tests.testing.fake_github.support import REPO, auth, example, get
from webhook_service.ingest.fixtures import fixtures_root, load_delivery
from webhook_service.ingest.signature import verify
from webhook_service.testing import FakeGitHub


class _Receiver:
    """A tiny webhook receiver on loopback that records what it is sent."""

    def __init__(self, status: Callable[[str], int]) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self._status = status
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, dict(request.headers), await request.read()))
        return web.Response(status=self._status(request.path), text="ok")

    async def __aenter__(self) -> _Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_hook_deliveries_and_redelivery(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    recorded = load_delivery(fixtures_root() / "pull_request" / "opened.json")
    secret = "It's a Secret to Everybody"
    async with _Receiver(lambda path: 500 if path == "/broken" else 200) as receiver:
        gh.configure_hook(app=True, url=f"{receiver.url}/webhooks/github", secret=secret)
        guid = gh.record_delivery(
            event="pull_request", action="opened", payload=recorded.body, status_code=502
        )
        for _ in range(2):
            gh.record_delivery(
                event="ping", action=None, payload={"zen": "Keep it simple."}, status_code=200
            )
        app_auth = {
            "Authorization": f"Bearer {get_jwt(app_id=gh.app_id, private_key=gh.private_key_pem)}"
        }

        # Newest first, per_page and a cursor in Link rel="next".
        url = f"{gh.url}/app/hook/deliveries?per_page=2"
        status, first_page, response = await get(http, url, app_auth)
        assert status == 200
        assert [d["event"] for d in first_page] == ["ping", "ping"]
        assert first_page[0]["id"] > first_page[1]["id"]
        assert set(first_page[0]) == set(example("app-hook-deliveries-list.json")[0])
        next_url = URL(str(response.links["next"]["url"]))
        assert "cursor" in next_url.query and next_url.query["per_page"] == "2"
        status, second_page, response = await get(http, str(next_url), app_auth)
        assert "next" not in response.links
        [failed] = second_page
        assert (failed["guid"], failed["redelivery"]) == (guid, False)
        assert (failed["status"], failed["status_code"]) == ("Invalid HTTP Response: 502", 502)
        assert failed["installation_id"] == 1  # from the payload, as GitHub records it

        status, full, _ = await get(http, f"{gh.url}/app/hook/deliveries/{failed['id']}", app_auth)
        assert status == 200
        assert set(full) == set(example("hook-delivery-get.json"))
        assert full["request"]["payload"] == json.loads(recorded.body)
        assert full["request"]["headers"]["X-GitHub-Delivery"] == guid

        # Redelivery really POSTs the original bytes, signed, and records an OK attempt.
        attempts = f"{gh.url}/app/hook/deliveries/{failed['id']}/attempts"
        async with http.post(attempts, headers=app_auth) as response:
            assert (response.status, await response.json()) == (202, {})
        [(path, headers, body)] = receiver.received
        assert (path, body) == ("/webhooks/github", recorded.body)
        verify(
            body, signature=headers["X-Hub-Signature-256"], secrets=[secret.encode()], sha1=False
        )
        assert headers["X-GitHub-Event"] == "pull_request"
        assert headers["X-GitHub-Delivery"] == guid
        assert headers["X-GitHub-Hook-ID"] == "1"
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"].startswith("GitHub-Hookshot/")
        attempt = gh.deliveries[-1]
        assert (attempt.guid, attempt.redelivery) == (guid, True)
        assert (attempt.status, attempt.status_code) == ("OK", 200)
        status, latest, _ = await get(http, f"{gh.url}/app/hook/deliveries", app_auth)
        assert (latest[0]["guid"], latest[0]["redelivery"], latest[0]["status"]) == (
            guid,
            True,
            "OK",
        )

        # A repository hook, listed with a token; a failing receiver is recorded as failed.
        gh.configure_hook(repository=REPO, hook_id=7, url=f"{receiver.url}/broken", secret=secret)
        gh.record_delivery(
            event="ping", action=None, payload={"zen": "x"}, hook="repo", repository=REPO
        )
        hook_url = f"{gh.url}/repos/{REPO}/hooks/7/deliveries"
        status, [item], _ = await get(http, hook_url)
        assert status == 200
        assert (await get(http, f"{gh.url}/repos/{REPO}/hooks/8/deliveries"))[1] == []
        async with http.post(f"{hook_url}/{item['id']}/attempts", headers=auth()) as response:
            assert response.status == 202
        assert receiver.received[-1][0] == "/broken"
        assert receiver.received[-1][1]["X-GitHub-Hook-Installation-Target-Type"] == "repository"
        assert (gh.deliveries[-1].status, gh.deliveries[-1].status_code) == (
            "Invalid HTTP Response: 500",
            500,
        )

        # Without a configured hook nothing can be redelivered.
        gh.record_delivery(event="ping", action=None, payload={}, hook="repo", repository="o/r")
        gh.add_pull("o/r")
        orphan = gh.deliveries[-1].id
        async with http.post(
            f"{gh.url}/repos/o/r/hooks/1/deliveries/{orphan}/attempts", headers=auth()
        ) as response:
            assert response.status == 404


async def test_redelivery_to_an_unreachable_hook_is_recorded_as_failed(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    async with _Receiver(lambda path: 200) as receiver:
        dead_url = f"{receiver.url}/gone"
    gh.configure_hook(app=True, url=dead_url, secret="s")  # nothing listens there now
    gh.record_delivery(event="ping", action=None, payload={"zen": "z"})
    app_jwt = get_jwt(app_id=gh.app_id, private_key=gh.private_key_pem)
    attempts = f"{gh.url}/app/hook/deliveries/{gh.deliveries[-1].id}/attempts"
    async with http.post(attempts, headers={"Authorization": f"Bearer {app_jwt}"}) as response:
        assert response.status == 202
    attempt = gh.deliveries[-1]
    assert (attempt.redelivery, attempt.status, attempt.status_code) == (
        True,
        "failed to connect to host",
        0,
    )
