"""What the fake GitHub holds: repositories, pull requests and App installations, changed
with GitHub's rules (a merged pull request stays merged, one number per repository, ...).

No HTTP and no JSON here: the endpoints read this state and ``rendering`` shows it in
GitHub's shapes. Ids and timestamps come from one counter and one :class:`Clock`, so every
object the fake makes (deliveries too) has a distinct id and a later stamp.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook_service.testing.fake_github.clock import Clock, Timestamp, epoch, iso


@dataclass
class Repo:
    id: int
    full_name: str
    default_branch: str = "main"

    @property
    def key(self) -> str:
        return self.full_name.lower()  # GitHub resolves owner/name case-insensitively

    @property
    def owner(self) -> str:
        return self.full_name.partition("/")[0]


@dataclass
class Pull:
    repo: Repo
    number: int
    id: int
    title: str
    head_ref: str
    head_sha: str
    base_ref: str
    user: str
    body: str | None
    draft: bool
    created_at: int
    updated_at: int
    state: str = "open"
    merged: bool = False
    closed_at: int | None = None
    merged_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self, *, merged: bool, at: int) -> None:
        self.state, self.closed_at, self.merged = "closed", at, merged
        self.merged_at = at if merged else None


@dataclass
class Installation:
    id: int
    account: str
    repos: set[str]  # repository keys
    created_at: str


def fake_sha(seed: str) -> str:
    """A commit SHA that stays the same for the same seed."""
    return hashlib.sha256(seed.encode()).hexdigest()[:40]


class State:
    """Repositories (by lower-cased "owner/name"), their pull requests and installations.

    ``managed(pull)`` names the JSON fields the fake computes (``rendering``), which a
    pull request's free-form extra fields may not set; ``changed(pull)`` hears of every
    new or changed pull request (the search index follows it).
    """

    def __init__(
        self,
        *,
        managed: Callable[[Pull], Collection[str]],
        changed: Callable[[Pull], None],
    ) -> None:
        self.clock = Clock()
        self.repos: dict[str, Repo] = {}
        self.pulls: dict[str, dict[int, Pull]] = {}  # repository key -> number -> pull
        self.installations: dict[int, Installation] = {}
        self._managed = managed
        self._changed = changed
        self._last_id = 1000

    def new_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def repo(self, full_name: str) -> Repo:
        """The repository, created if new ("owner/name")."""
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository must be 'owner/name', not {full_name!r}")
        repo = self.repos.get(full_name.lower())
        if repo is None:
            repo = Repo(1296269 + len(self.repos), full_name)
            self.repos[repo.key] = repo
            self.pulls[repo.key] = {}
        return repo

    def pull(self, repository: str, number: int) -> Pull:
        pull = self.pulls.get(repository.lower(), {}).get(number)
        if pull is None:
            raise KeyError(f"no pull request {repository}#{number}")
        return pull

    def add_installation(self, installation_id: int, repositories: list[str], account: str) -> None:
        keys = {self.repo(name).key for name in repositories}
        created = iso(self.clock.tick())
        self.installations[installation_id] = Installation(installation_id, account, keys, created)

    def add_pull(
        self,
        repository: str,
        number: int | None = None,
        *,
        title: str | None = None,
        state: Literal["open", "closed"] = "open",
        merged: bool = False,
        draft: bool = False,
        head_ref: str | None = None,
        head_sha: str | None = None,
        base_ref: str = "main",
        user: str = "octocat",
        body: str | None = None,
        created_at: Timestamp | None = None,
        updated_at: Timestamp | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Pull:
        """A new pull request (see ``FakeGitHub.add_pull``)."""
        repo = self.repo(repository)
        number = number or max(self.pulls[repo.key], default=0) + 1
        if number in self.pulls[repo.key]:
            raise ValueError(f"{repository}#{number} already exists")
        # The clock moves (a second at least) only for a timestamp it stamps: a PR
        # given its times leaves it alone, so loading many does not run it ahead.
        dated = created_at is not None and updated_at is not None
        now = self.clock.now() if dated else self.clock.tick()
        pull = Pull(
            repo,
            number,
            self.new_id(),
            title or f"Pull request {number}",
            head_ref or f"feature-{number}",
            head_sha or fake_sha(f"{repo.key}#{number}@{now}"),
            base_ref,
            user,
            body,
            draft,
            epoch(created_at) if created_at is not None else now,
            epoch(updated_at) if updated_at is not None else now,
        )
        self._set_extra(pull, extra or {})
        self.pulls[repo.key][number] = pull
        if state == "closed" or merged:
            pull.close(merged=merged, at=pull.updated_at)
        self._changed(pull)
        return pull

    def update_pull(
        self,
        pull: Pull,
        *,
        state: Literal["open", "closed"] | None,
        merged: bool | None,
        changes: Mapping[str, str | bool | None],
        extra: Mapping[str, Any],
    ) -> None:
        """Change a pull request (see ``FakeGitHub.update_pull``); ``changes`` are its
        plain fields (title, draft, ...), None for those that stay."""
        if pull.merged and (state == "open" or merged is False):
            raise ValueError("a merged pull request cannot be reopened or unmerged")
        self._set_extra(pull, extra)
        now = self.clock.tick()
        if merged and not pull.merged:
            pull.close(merged=True, at=now)
        elif state == "closed" and pull.state == "open":
            pull.close(merged=False, at=now)
        elif state == "open":
            pull.state, pull.closed_at = "open", None
        for name, value in changes.items():
            if value is not None:
                setattr(pull, name, value)
        pull.updated_at = now
        self._changed(pull)

    def _set_extra(self, pull: Pull, extra: Mapping[str, Any]) -> None:
        if extra and (clash := extra.keys() & set(self._managed(pull))):
            raise TypeError(f"{sorted(clash)} are managed by the fake (named parameters)")
        pull.extra.update(extra)
