"""The fake GitHub's primary rate limits (fake_github.budgets) over real HTTP."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from gidgethub import RateLimitExceeded
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_jwt

from tests.helpers import app_private_key
from tests.testing.fake_github.support import OTHER_TOKEN, REPO, TOKEN, auth, get
from webhook_service.testing import FakeGitHub


async def test_primary_rate_limit(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_pull(REPO)
    url = f"{gh.url}/repos/{REPO}/pulls"
    gh.exhaust_primary(TOKEN, reset_in=1.0)
    status, body, response = await get(http, url)
    assert status == 403
    assert body["message"].startswith("API rate limit exceeded")
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in response.headers
    assert gh.requests[-1].rate_cost == 0
    async with aiohttp.ClientSession() as session:
        api = GitHubAPI(session, "tests", oauth_token=TOKEN, base_url=gh.url)
        with pytest.raises(RateLimitExceeded):
            await api.getitem(f"/repos/{REPO}/pulls")
    status, _, _ = await get(http, url, auth(OTHER_TOKEN))
    assert status == 200  # limits are per credential

    reset = int(response.headers["X-RateLimit-Reset"])
    async with asyncio.timeout(5):
        await asyncio.sleep(max(0.0, reset - time.time()))
    status, _, response = await get(http, url)
    assert status == 200
    assert response.headers["X-RateLimit-Remaining"] == "4999"

    gh.exhaust_primary(reset_in=60)  # everyone, including credentials not seen yet
    assert gh.rate_remaining(TOKEN) == gh.rate_remaining(OTHER_TOKEN) == 0
    app_jwt = get_jwt(app_id=gh.app_id, private_key=gh.private_key_pem)
    status, _, _ = await get(
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
        responses = [await get(http, url) for _ in range(3)]
        assert [status for status, _, _ in responses] == [200, 200, 403]
        headers = responses[-1][2].headers
        assert (headers["X-RateLimit-Remaining"], headers["X-RateLimit-Used"]) == ("0", "2")
        assert gh.rate_remaining(TOKEN) == 0
        reset = int(headers["X-RateLimit-Reset"])  # the window started with the first request
        assert reset <= time.time() + 2
        async with asyncio.timeout(5):
            await asyncio.sleep(max(0.0, reset - time.time()))
        assert (await get(http, url))[0] == 200
