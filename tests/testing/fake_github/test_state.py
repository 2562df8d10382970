"""The fake GitHub's pull requests and clock (fake_github.state, fake_github.clock)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.testing.fake_github.support import REPO
from webhook_service.testing import FakeGitHub


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


async def test_dated_pull_requests_leave_the_clock_alone() -> None:
    """Loading many PRs with their own times must not run the fake's clock ahead: a
    later change would be stamped in the future (and look recent to every search)."""
    async with FakeGitHub() as gh:
        for number in range(1, 501):
            gh.add_pull("o/r", number, created_at=1_700_000_000, updated_at=1_700_000_000)
        changed = gh.update_pull("o/r", 1, title="now")
    stamp = datetime.fromisoformat(changed["updated_at"]).timestamp()
    assert abs(stamp - time.time()) < 5
