"""The fake GitHub (webhook_service.testing) over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import BadRequest, GitHubBroken, RateLimitExceeded
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_installation_access_token, get_jwt
from yarl import URL

from tests.helpers import app_private_key
from webhook_service.github.client import SEARCH_PULLS  # the query the poller sends
from webhook_service.ingest.fixtures import fixtures_root, load_delivery
from webhook_service.ingest.signature import verify
from webhook_service.testing import FakeGitHub
from webhook_service.testing.fake_github import rest_fixtures_root

REPO = "octo-org/widgets"
TOKEN = "ghp_primary"
OTHER_TOKEN = "ghp_secondary"


def _example(name: str) -> Any:
    return json.loads((rest_fixtures_root() / name).read_text())


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(private_key_pem=app_private_key()) as fake:
        fake.add_token(TOKEN)
        fake.add_token(OTHER_TOKEN)
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Every request is bounded.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def _get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """GET; return status, decoded JSON (None if no body) and the response."""
    async with http.get(url, headers=headers if headers is not None else _auth()) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None, response


async def test_pull_shapes_follow_the_rest_examples(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    stored = gh.add_pull(REPO, title="Add widgets", head_ref="widgets", user="alice")
    status, pull, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls/1")
    assert status == 200
    assert pull == stored
    assert list(pull) == list(_example("pulls-get.json"))
    assert (pull["number"], pull["state"], pull["title"], pull["merged"]) == (
        1,
        "open",
        "Add widgets",
        False,
    )
    assert pull["user"]["login"] == "alice"
    assert pull["url"] == f"{gh.url}/repos/{REPO}/pulls/1"
    assert pull["html_url"] == f"https://github.com/{REPO}/pull/1"
    assert pull["head"]["label"] == "octo-org:widgets"
    assert pull["base"]["ref"] == "main"
    for side in ("head", "base"):
        assert pull[side]["repo"]["full_name"] == REPO
        assert pull[side]["repo"]["owner"]["login"] == "octo-org"
        assert pull[side]["repo"]["pulls_url"].startswith(f"{gh.url}/repos/{REPO}/pulls")

    status, items, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls")
    assert status == 200
    assert set(items[0]) == set(_example("pulls-list.json")[0])
    assert "merged" not in items[0]
    assert items[0]["merged_at"] is None

    # GitHub resolves owner/name case-insensitively.
    status, _, _ = await _get(http, f"{gh.url}/repos/Octo-Org/WIDGETS/pulls/1")
    assert status == 200
    status, body, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls/99")
    assert (status, body["message"]) == (404, "Not Found")
    assert body["documentation_url"].startswith("https://docs.github.com/")
    status, body, _ = await _get(http, f"{gh.url}/no/such/route")
    assert (status, body["message"]) == (404, "Not Found")


async def test_pull_lifecycle_and_clock(gh: FakeGitHub) -> None:
    first = gh.add_pull(REPO, mergeable=False)
    assert first["mergeable"] is False
    stamps = [gh.update_pull(REPO, 1, title=f"v{i}")["updated_at"] for i in range(5)]
    assert stamps == sorted(set(stamps))  # strictly increasing within one real second
    merged = gh.update_pull(REPO, 1, merged=True)
    assert (merged["state"], merged["merged"]) == ("closed", True)
    assert merged["merged_at"] == merged["closed_at"] == merged["updated_at"]
    assert merged["merged_by"]["login"] == "octocat"
    with pytest.raises(ValueError, match="merged"):
        gh.update_pull(REPO, 1, state="open")
    gh.add_pull(REPO, state="closed")
    reopened = gh.update_pull(REPO, 2, state="open", draft=True, head_sha="a" * 40)
    assert (reopened["state"], reopened["closed_at"], reopened["draft"]) == ("open", None, True)
    assert reopened["head"]["sha"] == "a" * 40
    with pytest.raises(TypeError, match="updated_at"):
        gh.update_pull(REPO, 2, updated_at="2020-01-01T00:00:00Z")
    before = datetime.fromisoformat(gh.pull(REPO, 2)["updated_at"])
    gh.advance(3600)
    after = datetime.fromisoformat(gh.update_pull(REPO, 2, title="later")["updated_at"])
    assert (after - before).total_seconds() >= 3600
    assert [p["number"] for p in gh.pulls(REPO)] == [1, 2]


async def _walk(http: aiohttp.ClientSession, url: str) -> list[list[dict[str, Any]]]:
    """Follow Link rel="next" from ``url``; return the pages."""
    pages: list[list[dict[str, Any]]] = []
    next_url: str | None = url
    while next_url is not None:
        status, page, response = await _get(http, next_url)
        assert status == 200
        pages.append(page)
        link = response.links.get("next")
        next_url = str(link["url"]) if link else None
    return pages


async def test_pagination_sorting_and_state(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    for number in range(1, 251):
        gh.add_pull(REPO, state="closed" if number % 10 == 0 else "open")
    for number in (7, 250, 1, 120, 33):  # updated order now differs from created order
        gh.update_pull(REPO, number, title="touched")

    query = "state=all&sort=updated&direction=desc&per_page=100"
    status, _, response = await _get(http, f"{gh.url}/repos/{REPO}/pulls?{query}")
    assert status == 200
    assert set(response.links) == {"next", "last"}
    assert URL(str(response.links["last"]["url"])).query == {
        "state": "all",
        "sort": "updated",
        "direction": "desc",
        "per_page": "100",
        "page": "3",
    }
    status, _, response = await _get(http, f"{gh.url}/repos/{REPO}/pulls?{query}&page=2")
    assert set(response.links) == {"prev", "next", "last", "first"}

    pages = await _walk(http, f"{gh.url}/repos/{REPO}/pulls?{query}")
    assert [len(page) for page in pages] == [100, 100, 50]
    seen = [pull["number"] for page in pages for pull in page]
    expected = sorted(gh.pulls(REPO), key=lambda p: (p["updated_at"], p["number"]), reverse=True)
    assert seen == [pull["number"] for pull in expected]
    assert seen[:5] == [33, 120, 1, 250, 7]

    # Defaults: state=open, sort=created, direction desc; sort=updated alone is ascending.
    pages = await _walk(http, f"{gh.url}/repos/{REPO}/pulls?per_page=100")
    numbers = [pull["number"] for page in pages for pull in page]
    assert numbers == [n for n in range(250, 0, -1) if n % 10]
    pages = await _walk(http, f"{gh.url}/repos/{REPO}/pulls?state=closed&sort=updated")
    assert [pull["number"] for page in pages for pull in page][-2:] == [250, 120]
    assert [len(page) for page in pages] == [25]  # per_page defaults to 30

    async with aiohttp.ClientSession() as session:
        api = GitHubAPI(session, "fake-github-tests", oauth_token=TOKEN, base_url=gh.url)
        via_gidgethub = [
            p["number"] async for p in api.getiter(f"/repos/{REPO}/pulls?per_page=100")
        ]
    assert via_gidgethub == numbers

    status, body, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls?state=merged")
    assert (status, body["errors"][0]["field"]) == (422, "state")


async def test_conditional_requests_are_free_and_vary_per_token(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    gh.add_pull(REPO)
    url = f"{gh.url}/repos/{REPO}/pulls/1"
    status, _, response = await _get(http, url)
    etag = response.headers["ETag"]
    assert status == 200 and etag.startswith('"')
    assert response.headers["X-RateLimit-Remaining"] == "4999"

    status, body, response = await _get(http, url, _auth() | {"If-None-Match": etag})
    assert (status, body) == (304, None)
    assert response.headers["X-RateLimit-Remaining"] == "4999"
    assert gh.rate_remaining(TOKEN) == 4999
    assert (gh.requests[-1].conditional, gh.requests[-1].rate_cost) == (True, 0)
    status, _, _ = await _get(http, url, _auth() | {"If-None-Match": f"W/{etag}"})
    assert status == 304

    # The same resource has another ETag for another token; a stale one costs a request.
    status, _, other = await _get(http, url, _auth(OTHER_TOKEN) | {"If-None-Match": etag})
    assert status == 200 and other.headers["ETag"] != etag
    assert gh.rate_remaining(OTHER_TOKEN) == 4999

    gh.update_pull(REPO, 1, title="changed")
    status, _, response = await _get(http, url, _auth() | {"If-None-Match": etag})
    assert status == 200 and response.headers["ETag"] != etag
    assert gh.rate_remaining(TOKEN) == 4998

    # gidgethub's cache sends If-None-Match and serves the 304 from the cache.
    async with aiohttp.ClientSession() as session:
        cache: dict[str, Any] = {}
        api = GitHubAPI(session, "tests", oauth_token=TOKEN, base_url=gh.url, cache=cache)
        first = await api.getitem(f"/repos/{REPO}/pulls/1")
        second = await api.getitem(f"/repos/{REPO}/pulls/1")
    assert first == second and first["title"] == "changed"
    assert [r.status for r in gh.requests[-2:]] == [200, 304]


async def test_primary_rate_limit(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_pull(REPO)
    url = f"{gh.url}/repos/{REPO}/pulls"
    gh.exhaust_primary(TOKEN, reset_in=1.0)
    status, body, response = await _get(http, url)
    assert status == 403
    assert body["message"].startswith("API rate limit exceeded")
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in response.headers
    assert gh.requests[-1].rate_cost == 0
    async with aiohttp.ClientSession() as session:
        api = GitHubAPI(session, "tests", oauth_token=TOKEN, base_url=gh.url)
        with pytest.raises(RateLimitExceeded):
            await api.getitem(f"/repos/{REPO}/pulls")
    status, _, _ = await _get(http, url, _auth(OTHER_TOKEN))
    assert status == 200  # limits are per credential

    reset = int(response.headers["X-RateLimit-Reset"])
    async with asyncio.timeout(5):
        await asyncio.sleep(max(0.0, reset - time.time()))
    status, _, response = await _get(http, url)
    assert status == 200
    assert response.headers["X-RateLimit-Remaining"] == "4999"

    gh.exhaust_primary(reset_in=60)  # everyone, including credentials not seen yet
    assert gh.rate_remaining(TOKEN) == gh.rate_remaining(OTHER_TOKEN) == 0
    app_jwt = get_jwt(app_id=gh.app_id, private_key=gh.private_key_pem)
    status, _, _ = await _get(
        http, f"{gh.url}/app/installations", {"Authorization": f"Bearer {app_jwt}"}
    )
    assert status == 403


async def test_a_window_runs_out_and_resets() -> None:
    async with (
        FakeGitHub(private_key_pem=app_private_key(), rate_limit=2, rate_window=1.0) as gh,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        gh.add_token(TOKEN)
        gh.add_pull(REPO)
        url = f"{gh.url}/repos/{REPO}/pulls/1"
        responses = [await _get(http, url) for _ in range(3)]
        assert [status for status, _, _ in responses] == [200, 200, 403]
        headers = responses[-1][2].headers
        assert (headers["X-RateLimit-Remaining"], headers["X-RateLimit-Used"]) == ("0", "2")
        assert gh.rate_remaining(TOKEN) == 0
        reset = int(headers["X-RateLimit-Reset"])  # the window started with the first request
        assert reset <= time.time() + 2
        async with asyncio.timeout(5):
            await asyncio.sleep(max(0.0, reset - time.time()))
        assert (await _get(http, url))[0] == 200


async def test_secondary_rate_limit(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_pull(REPO)
    url = f"{gh.url}/repos/{REPO}/pulls"
    gh.secondary_limit_next(1, status=429, retry_after=2)
    status, body, response = await _get(http, url)
    assert status == 429
    assert "secondary rate limit" in body["message"]
    assert response.headers["Retry-After"] == "2"
    assert int(response.headers["X-RateLimit-Remaining"]) > 0
    assert (await _get(http, url))[0] == 200

    gh.secondary_limit_next(1, retry_after=None)  # 403 without retry-after
    async with aiohttp.ClientSession() as session:
        api = GitHubAPI(session, "tests", oauth_token=TOKEN, base_url=gh.url)
        with pytest.raises(BadRequest) as caught:
            await api.getitem(f"/repos/{REPO}/pulls")
    assert not isinstance(caught.value, RateLimitExceeded)
    assert caught.value.status_code == 403
    assert "retry-after" not in caught.value.headers


async def test_fail_next_and_delay_next(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_pull(REPO)
    gh.add_pull("octo-org/other")
    gh.fail_next(2, status=502, path_prefix=f"/repos/{REPO}/")
    assert (await _get(http, f"{gh.url}/repos/octo-org/other/pulls"))[0] == 200
    status, body, response = await _get(http, f"{gh.url}/repos/{REPO}/pulls")
    assert (status, body["message"]) == (502, "Bad Gateway")
    assert "X-RateLimit-Remaining" not in response.headers
    async with aiohttp.ClientSession() as session:
        api = GitHubAPI(session, "tests", oauth_token=TOKEN, base_url=gh.url)
        with pytest.raises(GitHubBroken):
            await api.getitem(f"/repos/{REPO}/pulls/1")
    assert (await _get(http, f"{gh.url}/repos/{REPO}/pulls"))[0] == 200

    gh.delay_next(1, 0.3)
    started = time.monotonic()
    assert (await _get(http, f"{gh.url}/repos/{REPO}/pulls/1"))[0] == 200
    assert time.monotonic() - started >= 0.3
    gh.delay_next(1, 2.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await _get(http, f"{gh.url}/repos/{REPO}/pulls/1")
    started = time.monotonic()
    assert (await _get(http, f"{gh.url}/repos/{REPO}/pulls/1"))[0] == 200
    assert time.monotonic() - started < 1.0


async def test_fault_periods(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    """``*_for``: every request under the prefix during a period, however many."""
    gh.add_pull(REPO)
    url = f"{gh.url}/repos/{REPO}/pulls"
    started = time.monotonic()
    gh.fail_for(0.3, 503, path_prefix=f"/repos/{REPO}/")
    gh.secondary_limit_for(0.3, status=429, retry_after=3, after=0.3)
    gh.delay_for(0.3, delay=0.2, after=0.6)
    assert (await _get(http, f"{gh.url}/repos/octo-org/other/pulls"))[0] == 404  # prefix
    assert [(await _get(http, url))[0] for _ in range(5)] == [503] * 5
    await asyncio.sleep(max(0.0, started + 0.35 - time.monotonic()))
    status, body, response = await _get(http, url)
    assert (status, response.headers["Retry-After"]) == (429, "3")
    assert "secondary rate limit" in body["message"]
    assert (await _get(http, url))[0] == 429
    await asyncio.sleep(max(0.0, started + 0.65 - time.monotonic()))
    before = time.monotonic()
    assert (await _get(http, url))[0] == 200
    assert time.monotonic() - before >= 0.2  # held
    await asyncio.sleep(max(0.0, started + 0.95 - time.monotonic()))
    before = time.monotonic()
    assert (await _get(http, url))[0] == 200  # every period is over
    assert time.monotonic() - before < 0.2
    times = [r.received_at for r in gh.requests]
    assert times == sorted(times) and started <= times[0] and times[-1] <= time.monotonic()
    with pytest.raises(ValueError, match="403 or 429"):
        gh.secondary_limit_for(1.0, status=500)
    with pytest.raises(ValueError, match="seconds > 0"):
        gh.fail_for(0.0)


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


async def test_app_jwt_authentication(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_installation(42, [REPO])
    url = f"{gh.url}/app/installations"

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    valid = get_jwt(app_id=gh.app_id, private_key=gh.private_key_pem)
    status, body, _ = await _get(http, url, bearer(valid))
    assert status == 200
    assert [(i["id"], i["account"]["login"]) for i in body] == [(42, "Codertocat")]
    assert gh.requests[-1].token == "jwt"

    now = int(time.time())

    def signed(claims: dict[str, Any], key: str | None = None) -> str:
        return jwt.encode(claims, key or gh.private_key_pem, algorithm="RS256")

    refused: dict[str, str] = {
        "decoded": get_jwt(app_id=gh.app_id, private_key=_other_key()),  # wrong key
        "exp": signed({"iat": now - 700, "exp": now - 10, "iss": gh.app_id}),  # expired
        "far in the future": signed({"iat": now, "exp": now + 3600, "iss": gh.app_id}),
        "Issued at": signed({"iat": now + 300, "exp": now + 500, "iss": gh.app_id}),
        "Issuer": signed({"iat": now - 60, "exp": now + 500, "iss": "999"}),
    }
    for message, token in refused.items():
        status, body, _ = await _get(http, url, bearer(token))
        assert status == 401, message
        assert message in body["message"]
        assert "documentation_url" in body
    # A token is no JWT, a JWT is no token, and no credentials at all is refused.
    assert (await _get(http, url, _auth()))[0] == 401
    status, body, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls", bearer(valid))
    assert (status, body["message"]) == (401, "Bad credentials")
    status, body, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls", {})
    assert (status, body["message"]) == (401, "Requires authentication")
    status, body, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls", _auth("ghp_unknown"))
    assert (status, body["message"]) == (401, "Bad credentials")


async def test_installation_tokens_are_scoped_and_expire() -> None:
    async with (
        FakeGitHub(private_key_pem=app_private_key(), token_ttl=1.0) as gh,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        gh.add_installation(42, [REPO])
        gh.add_pull(REPO)
        gh.add_pull("someone/else")
        api = GitHubAPI(http, "tests", base_url=gh.url)
        issued = await get_installation_access_token(
            api, installation_id="42", app_id=gh.app_id, private_key=gh.private_key_pem
        )
        token = issued["token"]
        assert token.startswith("ghs_") and gh.tokens_issued == 1
        expires = datetime.fromisoformat(issued["expires_at"]).timestamp()
        assert 0 < expires - time.time() <= 1.0
        assert issued["repository_selection"] == "selected"

        bearer = {"Authorization": f"Bearer {token}"}
        status, pulls, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls", bearer)
        assert (status, len(pulls)) == (200, 1)
        assert (await _get(http, f"{gh.url}/repos/someone/else/pulls", _auth(token)))[0] == 404
        status, listing, _ = await _get(http, f"{gh.url}/installation/repositories", bearer)
        assert status == 200
        assert listing["total_count"] == 1
        assert [r["full_name"] for r in listing["repositories"]] == [REPO]
        # An installation's tokens share its rate limit.
        second = await get_installation_access_token(
            api, installation_id="42", app_id=gh.app_id, private_key=gh.private_key_pem
        )
        assert gh.rate_remaining(second["token"]) == gh.rate_remaining(token) == 4997
        with pytest.raises(BadRequest) as caught:
            await get_installation_access_token(
                api, installation_id="7", app_id=gh.app_id, private_key=gh.private_key_pem
            )
        assert caught.value.status_code == 404

        async with asyncio.timeout(5):
            await asyncio.sleep(max(0.0, expires + 1.0 - time.time()))
        status, body, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls", bearer)
        assert (status, body["message"]) == (401, "Bad credentials")


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
        status, first_page, response = await _get(http, url, app_auth)
        assert status == 200
        assert [d["event"] for d in first_page] == ["ping", "ping"]
        assert first_page[0]["id"] > first_page[1]["id"]
        assert set(first_page[0]) == set(_example("app-hook-deliveries-list.json")[0])
        next_url = URL(str(response.links["next"]["url"]))
        assert "cursor" in next_url.query and next_url.query["per_page"] == "2"
        status, second_page, response = await _get(http, str(next_url), app_auth)
        assert "next" not in response.links
        [failed] = second_page
        assert (failed["guid"], failed["redelivery"]) == (guid, False)
        assert (failed["status"], failed["status_code"]) == ("Invalid HTTP Response: 502", 502)
        assert failed["installation_id"] == 1  # from the payload, as GitHub records it

        status, full, _ = await _get(http, f"{gh.url}/app/hook/deliveries/{failed['id']}", app_auth)
        assert status == 200
        assert set(full) == set(_example("hook-delivery-get.json"))
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
        status, latest, _ = await _get(http, f"{gh.url}/app/hook/deliveries", app_auth)
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
        status, [item], _ = await _get(http, hook_url)
        assert status == 200
        assert (await _get(http, f"{gh.url}/repos/{REPO}/hooks/8/deliveries"))[1] == []
        async with http.post(f"{hook_url}/{item['id']}/attempts", headers=_auth()) as response:
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
            f"{gh.url}/repos/o/r/hooks/1/deliveries/{orphan}/attempts", headers=_auth()
        ) as response:
            assert response.status == 404


async def test_requests_are_recorded(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_pull(REPO)
    await _get(http, f"{gh.url}/repos/{REPO}/pulls?state=all")
    await _get(http, f"{gh.url}/repos/{REPO}/pulls", {})
    first, second = gh.requests
    assert (first.method, first.path, first.query) == (
        "GET",
        f"/repos/{REPO}/pulls",
        {"state": "all"},
    )
    assert (first.status, first.token, first.conditional, first.rate_cost) == (200, TOKEN, False, 1)
    assert (second.status, second.token, second.rate_cost) == (401, None, 0)
    gh.reset_requests()
    assert gh.requests == []


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


# -- POST /graphql: the pull-request search -----------------------------------------------



async def _graphql(
    http: aiohttp.ClientSession, gh: FakeGitHub, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = headers if headers is not None else _auth()
    async with http.post(f"{gh.url}/graphql", data=data, headers=headers) as response:
        return response.status, json.loads(await response.read()), response


async def _search(
    http: aiohttp.ClientSession,
    gh: FakeGitHub,
    q: str,
    *,
    first: int | None = 100,
    after: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """The search's data; fails on GraphQL errors."""
    variables = {"q": q, "first": first, "after": after}
    status, body, _ = await _graphql(
        http, gh, {"query": SEARCH_PULLS, "variables": variables}, headers
    )
    assert status == 200 and "errors" not in body, body
    return body["data"]


def _found(data: Any) -> list[tuple[str, int]]:
    return [(n["repository"]["nameWithOwner"], n["number"]) for n in data["search"]["nodes"]]


async def _search_error(http: aiohttp.ClientSession, gh: FakeGitHub, **variables: Any) -> str:
    body = {"query": SEARCH_PULLS, "variables": {"first": 10} | variables}
    status, answer, _ = await _graphql(http, gh, body)
    assert status == 200 and "data" not in answer, answer
    [error] = answer["errors"]
    return str(error["message"])


async def test_search_nodes_are_the_rest_pull_requests(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    gh.add_pull(REPO, title="Draft", draft=True, head_ref="one")
    gh.add_pull(REPO, head_ref="two")
    gh.add_pull(REPO, state="closed", head_ref="three")
    gh.update_pull(REPO, 2, merged=True)
    data = await _search(http, gh, f"is:pr repo:{REPO}")
    assert data["search"]["issueCount"] == 3
    assert data["search"]["pageInfo"] == {"hasNextPage": False, "endCursor": "Y3Vyc29yOjM="}
    for node in data["search"]["nodes"]:
        _, rest, _ = await _get(http, f"{gh.url}/repos/{REPO}/pulls/{node['number']}")
        state = "MERGED" if rest["merged"] else rest["state"].upper()
        assert node == {
            "number": rest["number"],
            "title": rest["title"],
            "state": state,
            "merged": rest["merged"],
            "mergedAt": rest["merged_at"],
            "closedAt": rest["closed_at"],
            "updatedAt": rest["updated_at"],
            "isDraft": rest["draft"],
            "url": rest["html_url"],
            "id": rest["node_id"],
            "databaseId": rest["id"],
            "headRefName": rest["head"]["ref"],
            "headRefOid": rest["head"]["sha"],
            "baseRefName": rest["base"]["ref"],
            "repository": {"nameWithOwner": rest["base"]["repo"]["full_name"]},
        }
    assert [n["state"] for n in data["search"]["nodes"]] == ["OPEN", "CLOSED", "MERGED"]
    rate = data["rateLimit"]
    assert (rate["cost"], rate["limit"], rate["remaining"]) == (1, 5000, 4999)
    assert datetime.fromisoformat(rate["resetAt"]).timestamp() > time.time()

    # What the poller's client sends (gidgethub), with the endpoint beside REST's.
    async with aiohttp.ClientSession() as session:
        api = GitHubAPI(session, "tests", oauth_token=TOKEN, base_url=gh.url)
        via_gidgethub = await api.graphql(
            SEARCH_PULLS, endpoint=f"{gh.url}/graphql", q=f"repo:{REPO}", first=2, after=None
        )
    assert [n["number"] for n in via_gidgethub["search"]["nodes"]] == [1, 3]
    assert via_gidgethub["search"]["pageInfo"]["hasNextPage"] is True
    assert via_gidgethub["rateLimit"]["remaining"] == 4998
    assert gh.requests[-1].api == "graphql" and gh.requests[-1].rate_cost == 1
    assert gh.rate_remaining(TOKEN) == 5000 - 3  # the three REST GETs
    assert gh.rate_remaining(TOKEN, resource="graphql") == 4998


async def test_search_qualifiers(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    order = [
        ("octo-org/widgets", 1),
        ("alice/tools", 1),
        ("octo-org/gadgets", 1),
        ("Bob/Things", 1),
        ("octo-org/widgets", 2),
    ]
    for repository, number in order:
        gh.add_pull(repository, number)
    gh.update_pull("octo-org/widgets", 1, merged=True)  # now the latest update
    order = [*order[1:], order[0]]
    gh.update_pull("alice/tools", 1, state="closed")
    order = [*order[1:], order[0]]
    stamps = {key: gh.pull(*key)["updated_at"] for key in order}
    everything = await _search(http, gh, "is:pr")
    assert _found(everything) == order  # no sort: updated, oldest first
    assert _found(await _search(http, gh, "is:pr sort:updated-asc")) == order
    assert _found(await _search(http, gh, "is:pr sort:updated-desc")) == order[::-1]

    def owned(*owners: str) -> list[tuple[str, int]]:
        return [key for key in order if key[0].partition("/")[0].lower() in owners]

    assert _found(await _search(http, gh, "is:pr org:octo-org")) == owned("octo-org")
    assert _found(await _search(http, gh, "is:pr user:ALICE")) == owned("alice")
    assert _found(await _search(http, gh, "is:pr org:bob user:alice")) == owned("bob", "alice")
    both = await _search(http, gh, "is:pr repo:alice/tools repo:bob/things sort:updated-desc")
    assert _found(both) == owned("bob", "alice")[::-1]  # several repo: are OR'd
    mixed = await _search(http, gh, "repo:octo-org/gadgets org:alice repo:alice/tools")
    assert _found(mixed) == [k for k in order if k in (("octo-org/gadgets", 1), ("alice/tools", 1))]
    assert (await _search(http, gh, "is:pr repo:no/such"))["search"]["issueCount"] == 0

    middle = order[2]
    since = stamps[middle]
    assert _found(await _search(http, gh, f"is:pr updated:>={since}")) == order[2:]
    assert _found(await _search(http, gh, f"is:pr updated:>{since}")) == order[3:]
    assert _found(await _search(http, gh, f"updated:<{since}")) == order[:2]
    assert _found(await _search(http, gh, f"updated:<={since}")) == order[:3]
    window = f"updated:{stamps[order[1]]}..{stamps[order[3]]}"
    assert _found(await _search(http, gh, window)) == order[1:4]
    day = since[:10]  # a date: from midnight UTC
    on_or_after = [key for key in order if stamps[key][:10] >= day]
    assert _found(await _search(http, gh, f"updated:>={day}")) == on_or_after
    east = timezone(timedelta(hours=2))
    offset = datetime.fromisoformat(since).astimezone(east).isoformat()  # "...+02:00"
    assert _found(await _search(http, gh, f"updated:>={offset}")) == order[2:]
    org_since = await _search(http, gh, f"is:pr org:octo-org updated:>={since}")
    assert _found(org_since) == [k for k in order[2:] if k[0].startswith("octo-org/")]

    assert _found(await _search(http, gh, "is:pr is:merged")) == [("octo-org/widgets", 1)]
    assert _found(await _search(http, gh, "is:closed org:alice")) == [("alice/tools", 1)]
    assert len(_found(await _search(http, gh, "is:pr is:open"))) == 3
    assert _found(await _search(http, gh, "is:issue")) == []

    for q in ("is:pr label:bug", "is:pr fix", "updated:>=2026-13-45", "repo:nope", "sort:stars"):
        assert repr(q.split()[-1]) in await _search_error(http, gh, q=q)  # names the term


async def test_search_paging_stops_at_1000_results(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    for _ in range(1050):
        gh.add_pull(REPO)
    seen: list[int] = []
    after: str | None = None
    pages = 0
    while True:
        data = await _search(http, gh, f"is:pr repo:{REPO} sort:updated-asc", after=after)
        pages += 1
        assert data["search"]["issueCount"] == 1050  # the true count
        seen += [node["number"] for node in data["search"]["nodes"]]
        info = data["search"]["pageInfo"]
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert pages == 10 and seen == list(range(1, 1001))  # GitHub: at most 1,000 results
    beyond = await _search(http, gh, f"repo:{REPO}", after=info["endCursor"])
    assert beyond["search"]["nodes"] == [] and beyond["search"]["pageInfo"]["endCursor"] is None
    small = await _search(http, gh, f"repo:{REPO} sort:updated-desc", first=3)
    assert [node["number"] for node in small["search"]["nodes"]] == [1050, 1049, 1048]

    assert "exceeds the `first` limit of 100" in await _search_error(http, gh, q="is:pr", first=101)
    assert "`first` or `last`" in await _search_error(http, gh, q="is:pr", first=None)
    assert "cursor" in await _search_error(http, gh, q="is:pr", after="bm90IGEgY3Vyc29y")


async def test_search_sees_what_the_credential_may(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    gh.add_installation(42, [REPO])
    gh.add_pull(REPO)
    gh.add_pull("someone/else")
    async with aiohttp.ClientSession() as session:
        api = GitHubAPI(session, "tests", base_url=gh.url)
        issued = await get_installation_access_token(
            api, installation_id="42", app_id=gh.app_id, private_key=gh.private_key_pem
        )
    installation = _auth(issued["token"])
    assert _found(await _search(http, gh, "is:pr", headers=installation)) == [(REPO, 1)]
    hidden = await _search(http, gh, "is:pr repo:someone/else", headers=installation)
    assert hidden["search"]["issueCount"] == 0
    assert len(_found(await _search(http, gh, "is:pr"))) == 2  # a token sees everything

    # Docs: GraphQL does not take an App JWT; no credentials or a bad one is a 401.
    app_jwt = get_jwt(app_id=gh.app_id, private_key=gh.private_key_pem)
    query = {"query": SEARCH_PULLS, "variables": {"q": "is:pr", "first": 1}}
    for headers, message in (
        ({"Authorization": f"Bearer {app_jwt}"}, "Bad credentials"),
        ({}, "This endpoint requires you to be authenticated."),
        (_auth("ghp_unknown"), "Bad credentials"),
    ):
        status, body, _ = await _graphql(http, gh, query, headers)
        assert (status, body["message"]) == (401, message)
        assert body["documentation_url"].startswith("https://docs.github.com/graphql")


async def test_graphql_answers_what_it_cannot_run_like_github(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    for body, message in (
        (b"{not json", "Problems parsing JSON"),
        (b"[]", "Body should be a JSON object"),
    ):
        status, answer, response = await _graphql(http, gh, body)
        assert (status, answer["message"]) == (400, message)
        assert response.headers["X-RateLimit-Resource"] == "graphql"
    for document, message in (
        ({}, "A query attribute must be specified and must be a string."),
        ({"query": "{ viewer { login } }"}, "only the pull-request search"),
        ({"query": SEARCH_PULLS, "variables": []}, "Variables must be a JSON object."),
    ):
        status, answer, response = await _graphql(http, gh, document)
        assert status == 200 and message in answer["errors"][0]["message"]
        assert response.headers["X-RateLimit-Resource"] == "graphql"
    # Literal arguments, comments and other whitespace are read too; no rateLimit asked.
    literal = '{ # the poller\n search(first:1,type:ISSUE,query:"is:pr org:octo-org"){issueCount}}'
    gh.add_pull(REPO)
    status, answer, _ = await _graphql(http, gh, {"query": literal})
    assert (status, answer["data"]["search"]["issueCount"]) == (200, 1)
    assert "rateLimit" not in answer["data"]


async def test_search_index_lag(http: aiohttp.ClientSession) -> None:
    lag = 0.5
    async with FakeGitHub(private_key_pem=app_private_key(), search_lag=lag) as gh:
        gh.add_token(TOKEN)
        gh.add_pull(REPO, title="new")
        added = time.monotonic()
        assert (await _get(http, f"{gh.url}/repos/{REPO}/pulls/1"))[0] == 200  # REST: at once
        assert (await _search(http, gh, f"repo:{REPO}"))["search"]["issueCount"] == 0
        assert time.monotonic() - added < lag  # (the assertion above was within the lag)
        await asyncio.sleep(max(0.0, added + lag + 0.05 - time.monotonic()))
        [before] = (await _search(http, gh, f"repo:{REPO}"))["search"]["nodes"]
        assert (before["title"], before["state"]) == ("new", "OPEN")

        merged = gh.update_pull(REPO, 1, merged=True)
        changed = time.monotonic()
        assert (await _get(http, f"{gh.url}/repos/{REPO}/pulls/1"))[1]["merged"] is True
        [stale] = (await _search(http, gh, f"repo:{REPO}"))["search"]["nodes"]
        assert stale == before  # the old state and updatedAt
        since = f"repo:{REPO} updated:>={merged['updated_at']}"
        assert (await _search(http, gh, since))["search"]["issueCount"] == 0
        assert time.monotonic() - changed < lag
        await asyncio.sleep(max(0.0, changed + lag + 0.05 - time.monotonic()))
        [fresh] = (await _search(http, gh, since))["search"]["nodes"]
        assert (fresh["state"], fresh["updatedAt"]) == ("MERGED", merged["updated_at"])


async def test_search_over_50000_pull_requests_is_fast(http: aiohttp.ClientSession) -> None:
    async with FakeGitHub(private_key_pem=app_private_key()) as gh:
        gh.add_token(TOKEN)
        for repository in range(5000):
            for _ in range(10):
                gh.add_pull(f"org-{repository % 5}/repo-{repository}")
        first = await _search(http, gh, "is:pr")  # indexes the 50,000 changes
        assert first["search"]["issueCount"] == 50000
        since = first["search"]["nodes"][0]["updatedAt"]
        timings: list[float] = []
        for q in (
            "is:pr sort:updated-desc",
            "is:pr org:org-3 sort:updated-asc",
            f"is:pr org:org-1 updated:>={since}",
            "is:pr repo:org-1/repo-1 repo:org-2/repo-2",
            "is:pr is:open user:org-4",
        ) * 3:
            started = time.perf_counter()
            data = await _search(http, gh, q)
            timings.append(time.perf_counter() - started)
            assert data["search"]["issueCount"] in (50000, 10000, 20)
        timings.sort()
        assert timings[len(timings) // 2] < 0.05, timings  # the median, over loopback HTTP


async def test_dated_pull_requests_leave_the_clock_alone() -> None:
    """Loading many PRs with their own times must not run the fake's clock ahead: a
    later change would be stamped in the future (and look recent to every search)."""
    async with FakeGitHub() as gh:
        for number in range(1, 501):
            gh.add_pull("o/r", number, created_at=1_700_000_000, updated_at=1_700_000_000)
        changed = gh.update_pull("o/r", 1, title="now")
    stamp = datetime.fromisoformat(changed["updated_at"]).timestamp()
    assert abs(stamp - time.time()) < 5
