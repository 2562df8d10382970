"""Every request through the fake GitHub (fake_github.pipeline): ETags, the request log."""

from __future__ import annotations

from typing import Any

import aiohttp
from gidgethub.aiohttp import GitHubAPI

from tests.testing.fake_github.support import OTHER_TOKEN, REPO, TOKEN, auth, get
from webhook_service.testing import FakeGitHub


async def test_conditional_requests_are_free_and_vary_per_token(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    gh.add_pull(REPO)
    url = f"{gh.url}/repos/{REPO}/pulls/1"
    status, _, response = await get(http, url)
    etag = response.headers["ETag"]
    assert status == 200 and etag.startswith('"')
    assert response.headers["X-RateLimit-Remaining"] == "4999"

    status, body, response = await get(http, url, auth() | {"If-None-Match": etag})
    assert (status, body) == (304, None)
    assert response.headers["X-RateLimit-Remaining"] == "4999"
    assert gh.rate_remaining(TOKEN) == 4999
    assert (gh.requests[-1].conditional, gh.requests[-1].rate_cost) == (True, 0)
    status, _, _ = await get(http, url, auth() | {"If-None-Match": f"W/{etag}"})
    assert status == 304

    # The same resource has another ETag for another token; a stale one costs a request.
    status, _, other = await get(http, url, auth(OTHER_TOKEN) | {"If-None-Match": etag})
    assert status == 200 and other.headers["ETag"] != etag
    assert gh.rate_remaining(OTHER_TOKEN) == 4999

    gh.update_pull(REPO, 1, title="changed")
    status, _, response = await get(http, url, auth() | {"If-None-Match": etag})
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


async def test_requests_are_recorded(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_pull(REPO)
    await get(http, f"{gh.url}/repos/{REPO}/pulls?state=all")
    await get(http, f"{gh.url}/repos/{REPO}/pulls", {})
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
