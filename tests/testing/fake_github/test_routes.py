"""The fake GitHub's endpoints (fake_github.routes): listing pull requests."""

from __future__ import annotations

from typing import Any

import aiohttp
from gidgethub.aiohttp import GitHubAPI
from yarl import URL

from tests.testing.fake_github.support import REPO, TOKEN, get
from webhook_service.testing import FakeGitHub


async def _walk(http: aiohttp.ClientSession, url: str) -> list[list[dict[str, Any]]]:
    """Follow Link rel="next" from ``url``; return the pages."""
    pages: list[list[dict[str, Any]]] = []
    next_url: str | None = url
    while next_url is not None:
        status, page, response = await get(http, next_url)
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
    status, _, response = await get(http, f"{gh.url}/repos/{REPO}/pulls?{query}")
    assert status == 200
    assert set(response.links) == {"next", "last"}
    assert URL(str(response.links["last"]["url"])).query == {
        "state": "all",
        "sort": "updated",
        "direction": "desc",
        "per_page": "100",
        "page": "3",
    }
    status, _, response = await get(http, f"{gh.url}/repos/{REPO}/pulls?{query}&page=2")
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

    status, body, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls?state=merged")
    assert (status, body["errors"][0]["field"]) == (422, "state")
