"""The fake GitHub's JSON (fake_github.rendering): GitHub's REST examples with its values."""

from __future__ import annotations

import aiohttp

from tests.testing.fake_github.support import REPO, example, get
from webhook_service.testing import FakeGitHub


async def test_pull_shapes_follow_the_rest_examples(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    stored = gh.add_pull(REPO, title="Add widgets", head_ref="widgets", user="alice")
    status, pull, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls/1")
    assert status == 200
    assert pull == stored
    assert list(pull) == list(example("pulls-get.json"))
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

    status, items, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls")
    assert status == 200
    assert set(items[0]) == set(example("pulls-list.json")[0])
    assert "merged" not in items[0]
    assert items[0]["merged_at"] is None

    # GitHub resolves owner/name case-insensitively.
    status, _, _ = await get(http, f"{gh.url}/repos/Octo-Org/WIDGETS/pulls/1")
    assert status == 200
    status, body, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls/99")
    assert (status, body["message"]) == (404, "Not Found")
    assert body["documentation_url"].startswith("https://docs.github.com/")
    status, body, _ = await get(http, f"{gh.url}/no/such/route")
    assert (status, body["message"]) == (404, "Not Found")
