"""The fake GitHub's rate limits (webhook_service.testing.fake_github.limits) over real HTTP.

GitHub's documented secondary limits: points per minute per credential (900 REST, 2,000
GraphQL), 100 concurrent requests; a separate GraphQL primary budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.helpers import app_private_key
from webhook_service.testing import FakeGitHub, RequestRecord
from webhook_service.testing.fake_github import max_window_points
from webhook_service.testing.fake_github.limits import Api

REPO = "octo-org/widgets"
TOKEN = "ghp_primary"
OTHER_TOKEN = "ghp_secondary"
THIRD_TOKEN = "ghp_third"
SEARCH = """
query($q: String!, $first: Int!, $after: String) {
  search(query: $q, type: ISSUE, first: $first, after: $after) {
    issueCount
    pageInfo { hasNextPage endCursor }
    nodes { ... on PullRequest { number state updatedAt } }
  }
  rateLimit { cost limit remaining resetAt }
}
"""


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def _fake(**options: Any) -> FakeGitHub:
    gh = FakeGitHub(private_key_pem=app_private_key(), **options)
    await gh.start()
    gh.add_token(TOKEN)
    gh.add_token(OTHER_TOKEN)
    gh.add_token(THIRD_TOKEN)
    gh.add_pull(REPO)
    return gh


async def _send(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = headers if headers is not None else _auth()
    async with http.request(method, url, headers=headers, **kwargs) as response:
        raw = await response.read()
        return response.status, await response.json() if raw else None, response


async def _search(
    http: aiohttp.ClientSession, gh: FakeGitHub, q: str = f"is:pr repo:{REPO}", **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    body = {"query": SEARCH, "variables": {"q": q, "first": 10}}
    return await _send(http, "POST", f"{gh.url}/graphql", json=body, **kwargs)


def _is_secondary(status: int, body: Any, response: aiohttp.ClientResponse) -> bool:
    return (
        status == 403
        and "exceeded a secondary rate limit" in body["message"]
        and int(response.headers["Retry-After"]) >= 1
    )


async def test_rest_points_in_a_sliding_window(http: aiohttp.ClientSession) -> None:
    gh = await _fake(secondary_rest_points=10, secondary_window=1.0)
    try:
        url = f"{gh.url}/repos/{REPO}/pulls/1"
        answers = [await _send(http, "GET", url) for _ in range(11)]
        assert [status for status, _, _ in answers[:10]] == [200] * 10
        status, body, response = answers[10]
        assert _is_secondary(status, body, response)
        assert response.headers["Retry-After"] == "1"  # the oldest points leave within 1 s
        assert response.headers["X-RateLimit-Resource"] == "core"
        assert int(response.headers["X-RateLimit-Remaining"]) == 5000 - 11
        assert {"X-RateLimit-Limit", "X-RateLimit-Used", "X-RateLimit-Reset"} <= set(
            response.headers
        )
        assert gh.secondary_refusals == 1
        assert [(r.api, r.points, r.credential) for r in gh.requests[-2:]] == [
            ("rest", 1, f"token:{TOKEN}")
        ] * 2
        assert max_window_points(gh.requests, window=1.0, credential=TOKEN) == 11
        assert (await _send(http, "GET", url, _auth(OTHER_TOKEN)))[0] == 200  # per credential

        await asyncio.sleep(int(response.headers["Retry-After"]))
        assert (await _send(http, "GET", url))[0] == 200

        # A POST costs 5: two fill the window of a fresh credential, a GET is then refused.
        created = [
            await _send(
                http,
                "POST",
                f"{gh.url}/repos/{REPO}/pulls",
                _auth(THIRD_TOKEN),
                json={"title": "t", "head": f"b{i}", "base": "main"},
            )
            for i in range(2)
        ]
        assert [status for status, _, _ in created] == [201, 201]
        assert [r.points for r in gh.requests[-2:]] == [5, 5]
        assert _is_secondary(*await _send(http, "GET", url, _auth(THIRD_TOKEN)))
    finally:
        await gh.close()


async def test_a_client_that_keeps_sending_while_refused_stays_refused(
    http: aiohttp.ClientSession,
) -> None:
    gh = await _fake(secondary_rest_points=5, secondary_window=0.5)
    try:
        url = f"{gh.url}/repos/{REPO}/pulls/1"
        assert [(await _send(http, "GET", url))[0] for _ in range(5)] == [200] * 5
        started = time.monotonic()
        while time.monotonic() - started < 1.2:  # hammering: every refusal is counted
            assert (await _send(http, "GET", url))[0] == 403
            await asyncio.sleep(0.05)
        status, body, response = await _send(http, "GET", url)
        assert _is_secondary(status, body, response)
        await asyncio.sleep(int(response.headers["Retry-After"]))  # waiting is what works
        assert (await _send(http, "GET", url))[0] == 200
    finally:
        await gh.close()


async def test_graphql_points_and_budget_are_apart_from_rest(http: aiohttp.ClientSession) -> None:
    gh = await _fake(secondary_rest_points=3, secondary_graphql_points=7, graphql_rate_limit=50)
    try:
        url = f"{gh.url}/repos/{REPO}/pulls/1"
        assert [(await _send(http, "GET", url))[0] for _ in range(4)] == [200, 200, 200, 403]
        # REST is refused; GraphQL has its own window and its own primary budget.
        for remaining in (49, 48):
            status, body, response = await _search(http, gh)
            assert status == 200 and body["data"]["search"]["issueCount"] == 1
            assert body["data"]["rateLimit"]["remaining"] == remaining
            assert response.headers["X-RateLimit-Resource"] == "graphql"
            assert response.headers["X-RateLimit-Limit"] == "50"
            assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        assert (gh.requests[-1].api, gh.requests[-1].points) == ("graphql", 1)
        # A mutation costs 5 (the fake answers it with an error): 1 + 1 + 5 = 7 points.
        mutation = {"query": "mutation { addStar(input: {starrableId: 1}) { clientMutationId } }"}
        status, body, _ = await _send(http, "POST", f"{gh.url}/graphql", json=mutation)
        assert status == 200 and "errors" in body
        assert gh.requests[-1].points == 5
        status, body, response = await _search(http, gh)
        assert _is_secondary(status, body, response)
        assert response.headers["X-RateLimit-Resource"] == "graphql"
        assert max_window_points(gh.requests, api="graphql") == 8
        assert max_window_points(gh.requests, api="rest") == 4
        assert gh.rate_remaining(TOKEN) == 5000 - 4
        assert gh.rate_remaining(TOKEN, resource="graphql") == 50 - 4
    finally:
        await gh.close()


async def test_graphql_primary_limit(http: aiohttp.ClientSession) -> None:
    gh = await _fake(graphql_rate_limit=2)
    try:
        assert [(await _search(http, gh))[0] for _ in range(2)] == [200, 200]
        # Docs: exceeding GraphQL's primary limit is still a 200, with an error.
        status, body, response = await _search(http, gh)
        assert status == 200 and "data" not in body
        [error] = body["errors"]
        assert error["type"] == "RATE_LIMIT" and "rate limit" in error["message"]
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert response.headers["X-RateLimit-Resource"] == "graphql"
        assert (await _send(http, "GET", f"{gh.url}/repos/{REPO}/pulls"))[0] == 200  # REST: fine
        gh.exhaust_primary(OTHER_TOKEN, resource="graphql")
        assert gh.rate_remaining(OTHER_TOKEN, resource="graphql") == 0
        assert gh.rate_remaining(OTHER_TOKEN) == 5000
    finally:
        await gh.close()


async def test_a_304_costs_a_secondary_point_but_no_primary_one(
    http: aiohttp.ClientSession,
) -> None:
    gh = await _fake(secondary_rest_points=3)
    try:
        url = f"{gh.url}/repos/{REPO}/pulls"
        status, _, response = await _send(http, "GET", url)
        assert status == 200
        etag = {"If-None-Match": response.headers["ETag"]}
        answers = [await _send(http, "GET", url, _auth() | etag) for _ in range(3)]
        assert [status for status, _, _ in answers] == [304, 304, 403]
        assert answers[1][2].headers["X-RateLimit-Remaining"] == "4999"  # 304s are free
        assert [(r.status, r.points, r.rate_cost) for r in gh.requests[-3:]] == [
            (304, 1, 0),
            (304, 1, 0),
            (403, 1, 1),
        ]
    finally:
        await gh.close()


async def test_concurrent_requests_per_credential(http: aiohttp.ClientSession) -> None:
    gh = await _fake(max_concurrent=2)
    try:
        gh.delay_for(1.0, delay=0.4)  # every request held 0.4 s: they overlap
        url = f"{gh.url}/repos/{REPO}/pulls/1"
        answers = await asyncio.gather(
            _send(http, "GET", url),
            _send(http, "GET", url),
            _search(http, gh),  # the limit is shared by REST and GraphQL
            _send(http, "GET", url, _auth(OTHER_TOKEN)),  # per credential
        )
        assert sorted(status for status, _, _ in answers[:3]) == [200, 200, 403]
        refused = next(answer for answer in answers if answer[0] == 403)
        assert _is_secondary(*refused) and refused[2].headers["Retry-After"] == "1"
        assert answers[3][0] == 200
        assert gh.secondary_refusals == 1
        assert gh.limits.in_flight(f"token:{TOKEN}") == 0  # released once answered
        assert (await _send(http, "GET", url))[0] == 200
    finally:
        await gh.close()


async def test_injected_secondary_limits_are_counted(http: aiohttp.ClientSession) -> None:
    gh = await _fake()
    try:
        gh.secondary_limit_next(2, status=429, retry_after=7)
        status, body, response = await _search(http, gh)  # GraphQL too
        assert (status, response.headers["Retry-After"]) == (429, "7")
        assert "secondary rate limit" in body["message"]
        assert (await _send(http, "GET", f"{gh.url}/repos/{REPO}/pulls"))[0] == 429
        assert gh.secondary_refusals == 2
    finally:
        await gh.close()


def test_max_window_points_counts_the_busiest_window() -> None:
    def record(at: float, points: int, api: Api = "rest", token: str = TOKEN) -> RequestRecord:
        return RequestRecord(
            "GET",
            "/",
            {},
            token=token,
            received_at=at,
            points=points,
            api=api,
            credential=f"token:{token}",
        )

    records = [
        record(0.0, 1),
        record(10.0, 5),
        record(59.9, 1),
        record(60.0, 1),  # (0, 60]: the request at 0.0 has left the window
        record(61.0, 1, token=OTHER_TOKEN),
        record(30.0, 100, api="graphql"),
    ]
    assert max_window_points(records) == 8
    assert max_window_points(records, window=1.0) == 5
    assert max_window_points(records, credential=TOKEN) == 7
    assert max_window_points(records, credential=f"token:{OTHER_TOKEN}") == 1
    assert max_window_points(records, api="graphql") == 100
    assert max_window_points([]) == 0


async def test_a_plain_per_repository_sweep_trips_the_default_limit(
    http: aiohttp.ClientSession,
) -> None:
    """Today's poller: one conditional GET /repos/{o}/{r}/pulls per repository, 5 at a time,
    no pacing. 1,000 repositories are more than 900 points in a minute."""
    gh = await _fake()
    try:
        repositories = [f"octo-org/repo-{n}" for n in range(1000)]
        for name in repositories:
            gh.add_repository(name)
        etags: dict[str, str] = {}

        async def sweep() -> list[int]:
            queue = asyncio.Queue[str]()
            for name in repositories:
                queue.put_nowait(name)
            statuses: list[int] = []

            async def worker() -> None:
                while not queue.empty():
                    name = queue.get_nowait()
                    headers = _auth() | ({"If-None-Match": etags[name]} if name in etags else {})
                    url = f"{gh.url}/repos/{name}/pulls"
                    async with http.get(url, headers=headers) as response:
                        statuses.append(response.status)
                        if "ETag" in response.headers:
                            etags[name] = response.headers["ETag"]

            await asyncio.gather(*(worker() for _ in range(5)))
            return statuses

        started = time.monotonic()
        first = await sweep()
        assert (first.count(200), first.count(403)) == (900, 100)
        # The next sweep would be all 304s, but they cost points too: the window is full.
        second = await sweep()
        assert second.count(403) == 1000
        assert time.monotonic() - started < 20
        assert gh.secondary_refusals == 1100
        assert max_window_points(gh.requests) == 2000
    finally:
        await gh.close()
