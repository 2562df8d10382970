"""The fake GitHub's POST /graphql (fake_github.graphql, fake_github.search): PR search."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_installation_access_token, get_jwt

from tests.helpers import app_private_key
from tests.testing.fake_github.support import REPO, TOKEN, auth, get
from webhook_service.github.client import SEARCH_PULLS  # the query the poller sends
from webhook_service.testing import FakeGitHub


async def _graphql(
    http: aiohttp.ClientSession, gh: FakeGitHub, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = headers if headers is not None else auth()
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
        _, rest, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls/{node['number']}")
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
    installation = auth(issued["token"])
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
        (auth("ghp_unknown"), "Bad credentials"),
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
        assert (await get(http, f"{gh.url}/repos/{REPO}/pulls/1"))[0] == 200  # REST: at once
        assert (await _search(http, gh, f"repo:{REPO}"))["search"]["issueCount"] == 0
        assert time.monotonic() - added < lag  # (the assertion above was within the lag)
        await asyncio.sleep(max(0.0, added + lag + 0.05 - time.monotonic()))
        [before] = (await _search(http, gh, f"repo:{REPO}"))["search"]["nodes"]
        assert (before["title"], before["state"]) == ("new", "OPEN")

        merged = gh.update_pull(REPO, 1, merged=True)
        changed = time.monotonic()
        assert (await get(http, f"{gh.url}/repos/{REPO}/pulls/1"))[1]["merged"] is True
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
