"""Faults injected into the fake GitHub (fake_github.faults): errors, delays, refusals."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from gidgethub import BadRequest, GitHubBroken, RateLimitExceeded
from gidgethub.aiohttp import GitHubAPI

from tests.testing.fake_github.support import REPO, TOKEN, get
from webhook_service.testing import FakeGitHub


async def test_secondary_rate_limit(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_pull(REPO)
    url = f"{gh.url}/repos/{REPO}/pulls"
    gh.secondary_limit_next(1, status=429, retry_after=2)
    status, body, response = await get(http, url)
    assert status == 429
    assert "secondary rate limit" in body["message"]
    assert response.headers["Retry-After"] == "2"
    assert int(response.headers["X-RateLimit-Remaining"]) > 0
    assert (await get(http, url))[0] == 200

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
    assert (await get(http, f"{gh.url}/repos/octo-org/other/pulls"))[0] == 200
    status, body, response = await get(http, f"{gh.url}/repos/{REPO}/pulls")
    assert (status, body["message"]) == (502, "Bad Gateway")
    assert "X-RateLimit-Remaining" not in response.headers
    async with aiohttp.ClientSession() as session:
        api = GitHubAPI(session, "tests", oauth_token=TOKEN, base_url=gh.url)
        with pytest.raises(GitHubBroken):
            await api.getitem(f"/repos/{REPO}/pulls/1")
    assert (await get(http, f"{gh.url}/repos/{REPO}/pulls"))[0] == 200

    gh.delay_next(1, 0.3)
    started = time.monotonic()
    assert (await get(http, f"{gh.url}/repos/{REPO}/pulls/1"))[0] == 200
    assert time.monotonic() - started >= 0.3
    gh.delay_next(1, 2.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await get(http, f"{gh.url}/repos/{REPO}/pulls/1")
    started = time.monotonic()
    assert (await get(http, f"{gh.url}/repos/{REPO}/pulls/1"))[0] == 200
    assert time.monotonic() - started < 1.0


async def test_fault_periods(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    """``*_for``: every request under the prefix during a period, however many."""
    gh.add_pull(REPO)
    url = f"{gh.url}/repos/{REPO}/pulls"
    started = time.monotonic()
    gh.fail_for(0.3, 503, path_prefix=f"/repos/{REPO}/")
    gh.secondary_limit_for(0.3, status=429, retry_after=3, after=0.3)
    gh.delay_for(0.3, delay=0.2, after=0.6)
    assert (await get(http, f"{gh.url}/repos/octo-org/other/pulls"))[0] == 404  # prefix
    assert [(await get(http, url))[0] for _ in range(5)] == [503] * 5
    await asyncio.sleep(max(0.0, started + 0.35 - time.monotonic()))
    status, body, response = await get(http, url)
    assert (status, response.headers["Retry-After"]) == (429, "3")
    assert "secondary rate limit" in body["message"]
    assert (await get(http, url))[0] == 429
    await asyncio.sleep(max(0.0, started + 0.65 - time.monotonic()))
    before = time.monotonic()
    assert (await get(http, url))[0] == 200
    assert time.monotonic() - before >= 0.2  # held
    await asyncio.sleep(max(0.0, started + 0.95 - time.monotonic()))
    before = time.monotonic()
    assert (await get(http, url))[0] == 200  # every period is over
    assert time.monotonic() - before < 0.2
    times = [r.received_at for r in gh.requests]
    assert times == sorted(times) and started <= times[0] and times[-1] <= time.monotonic()
    with pytest.raises(ValueError, match="403 or 429"):
        gh.secondary_limit_for(1.0, status=500)
    with pytest.raises(ValueError, match="seconds > 0"):
        gh.fail_for(0.0)
