"""The GitHub calls the service makes: every REST path and GraphQL query it sends is
built here, so the App's permissions can be checked against one file
(tests/test_deploy.py reads it).

- pull requests: list a repository's (conditional, by page), get one, create one, find
  one by head branch, and search them (GraphQL, the poller's discovery);
- App installations: installation tokens (cached until five minutes before they
  expire), and each installation's account and repositories;
- webhook deliveries: list a hook's, ask for a redelivery.

How each request is sent (credentials, budgets, retries) is
:class:`~webhook_service.github.transport.Transport`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import gidgethub

from webhook_service.core.payloads import parse_timestamp
from webhook_service.github.errors import (
    GitHubError,
    GitHubValidationError,
    describe,
    validation_messages,
)
from webhook_service.github.etags import ETagCache
from webhook_service.github.transport import _API, Transport

_TOKEN_MARGIN = 300.0  # renew installation tokens five minutes before they expire


class GitHub(Transport):
    """One client per process; it owns the aiohttp session it was given."""

    @property
    def graphql_url(self) -> str:
        # GitHub Enterprise Server: REST at https://HOST/api/v3, GraphQL at
        # https://HOST/api/graphql; github.com (and the fake): beside REST.
        if self.base_url.endswith("api/v3"):
            return self.base_url.removesuffix("v3") + "graphql"
        return f"{self.base_url}/graphql"

    async def api_for(self, installation_id: int | None) -> _API:
        """The credential to use for a repository (its installation's, for an App)."""
        if installation_id is None or self._app_api is None:
            if self._token_api is None:
                raise GitHubError("no GitHub credential for this repository")
            return self._token_api
        async with self._installation_lock:
            cached = self._installations.get(installation_id)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
            app_api = self._app_api
            answer = await self._call(
                lambda: app_api.post(
                    f"/app/installations/{installation_id}/access_tokens", data=b""
                ),
                app_api,
            )
            expires = parse_timestamp(answer["expires_at"]).timestamp()
            # A new token means new ETags: the new credential gets a fresh cache.
            label = f"installation {installation_id}'s token"
            api = _API(self, label, oauth_token=answer["token"], cache=ETagCache())
            self._installations[installation_id] = (api, expires - _TOKEN_MARGIN)
            return api

    async def list_pulls_page(self, api: _API, url: str) -> Page:
        data, more, status = await self._conditional_get(api, url)
        if status == 304:
            return Page(304, [], None)
        return Page(status, list(data or []), more)

    async def get_pull(
        self, api: _API, repository: str, number: int, *, conditional: bool = True
    ) -> dict[str, Any] | None:
        """The PR (REST "get" shape, with ``merged``), or None when not modified."""
        url = f"/repos/{repository}/pulls/{number}"
        if not conditional:
            api.forget(url)
        data, _more, status = await self._conditional_get(api, url)
        return None if status == 304 else dict(data)

    async def create_pull(
        self,
        api: _API,
        repository: str,
        *,
        title: str,
        head: str,
        base: str,
        body: str | None = None,
        draft: bool = False,
    ) -> dict[str, Any]:
        """``POST /repos/{o}/{r}/pulls``: the new PR (REST "get" shape).

        A 422 raises :class:`GitHubValidationError`, with GitHub's ``errors[]`` messages
        (e.g. "A pull request already exists for o:branch."). 5xx answers and timeouts
        are retried like every call: a retry after a lost answer meets that 422, so a
        caller that handles it never opens a second PR.
        """
        document: dict[str, Any] = {"title": title, "head": head, "base": base, "draft": draft}
        if body is not None:
            document["body"] = body

        async def post() -> Any:
            try:
                return await api.post(f"/repos/{repository}/pulls", data=document)
            except (gidgethub.InvalidField, gidgethub.ValidationError) as exc:
                errors = validation_messages(exc.errors)
                raise GitHubValidationError(describe(exc), exc.status_code, errors) from exc

        return dict(await self._call(post, api))

    async def default_branch(self, api: _API, repository: str) -> str:
        """``GET /repos/{o}/{r}``: the repository's default branch."""
        data = await self._call(lambda: api.getitem(f"/repos/{repository}"), api)
        branch = data.get("default_branch") if isinstance(data, dict) else None
        if not isinstance(branch, str) or not branch:
            raise GitHubError(f"GitHub did not say which branch is {repository}'s default")
        return branch

    async def find_pull_by_head(
        self, api: _API, repository: str, owner: str, branch: str
    ) -> dict[str, Any] | None:
        """The PR whose head is ``owner:branch``, any state (list-item shape): the open
        one if there is one, else the newest; None when there is none.

        Not conditional (the URL is not watched): the answer is always fresh.
        """
        head = quote(f"{owner}:{branch}", safe=":/")
        url = f"/repos/{repository}/pulls?state=all&head={head}&per_page=100"
        items = await self._call(lambda: api.getitem(url), api)
        pulls = [dict(item) for item in items or []]
        for pull in pulls:
            if pull.get("state") == "open":
                return pull
        return pulls[0] if pulls else None  # newest created first (GitHub's default)

    async def installations(self) -> dict[int, Installation]:
        """Every installation of the App: its account and the repositories it covers."""
        if self._app_api is None:
            return {}
        app_api = self._app_api

        async def listed() -> list[dict[str, Any]]:
            return [dict(i) async for i in app_api.getiter("/app/installations")]

        found: dict[int, Installation] = {}
        for item in await self._call(listed, app_api):
            installation_id = int(item["id"])
            account = item.get("account") or {}
            api = await self.api_for(installation_id)

            async def repositories(api: _API = api) -> list[str]:
                pages = api.getiter("/installation/repositories", iterable_key="repositories")
                return [str(repo["full_name"]) async for repo in pages]

            found[installation_id] = Installation(
                account=str(account.get("login", "")),
                organization=account.get("type") == "Organization",
                repositories=tuple(await self._call(repositories, api)),
            )
        return found

    async def search_pulls(self, api: _API, query: str, after: str | None = None) -> SearchPage:
        """One page (100) of GraphQL ``search`` for pull requests matching ``query``
        (GitHub's search syntax). GitHub returns at most 1,000 results per search
        (docs "About searching on GitHub"); callers narrow the query to see more."""
        data = await self._call(
            lambda: api.graphql(
                SEARCH_PULLS, endpoint=self.graphql_url, q=query, first=100, after=after
            ),
            api,
            graphql=True,
        )
        search = data.get("search") if isinstance(data, dict) else None
        if not isinstance(search, dict):
            raise GitHubError("GitHub's search answer has no 'search'")
        info = search.get("pageInfo") or {}
        return SearchPage(
            total=int(search.get("issueCount") or 0),
            nodes=[dict(n) for n in search.get("nodes") or [] if isinstance(n, dict) and n],
            end_cursor=info.get("endCursor"),
            has_next=bool(info.get("hasNextPage")),
        )

    async def hook_deliveries(self, hook: HookRef, since: float) -> list[dict[str, Any]]:
        """A hook's deliveries since ``since`` (epoch seconds), newest first, walking
        GitHub's cursor pages only as far back as needed."""
        api = self._hook_api(hook)

        async def walk() -> list[dict[str, Any]]:
            found = []
            async for delivery in api.getiter(f"{hook.path}/deliveries?per_page=100"):
                if parse_timestamp(str(delivery["delivered_at"])).timestamp() < since:
                    break
                found.append(dict(delivery))
            return found

        return await self._call(walk, api)

    async def redeliver(self, hook: HookRef, delivery_id: int) -> None:
        api = self._hook_api(hook)
        await self._call(
            lambda: api.post(f"{hook.path}/deliveries/{delivery_id}/attempts", data=b""), api
        )

    def _hook_api(self, hook: HookRef) -> _API:
        api = self._app_api if hook.app else self._token_api
        if api is None:
            raise GitHubError(f"no credential to read the deliveries of {hook.path}")
        return api


@dataclass(frozen=True, slots=True)
class Installation:
    """A GitHub App installation: whose it is, and what it covers."""

    account: str
    organization: bool
    repositories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SearchPage:
    total: int  # GitHub's issueCount: every match, beyond the 1,000 it pages through
    nodes: list[dict[str, Any]]
    end_cursor: str | None
    has_next: bool


#: The poller's one GraphQL query: pull requests by search, the fields the core needs
#: (docs: GraphQL "Queries: search" and the "PullRequest" object).
SEARCH_PULLS = """
query($q: String!, $first: Int!, $after: String) {
  search(query: $q, type: ISSUE, first: $first, after: $after) {
    issueCount
    pageInfo { hasNextPage endCursor }
    nodes {
      ... on PullRequest {
        number title state merged mergedAt closedAt updatedAt isDraft url id databaseId
        headRefName headRefOid baseRefName
        repository { nameWithOwner }
      }
    }
  }
  rateLimit { cost limit remaining resetAt }
}
"""


@dataclass(frozen=True, slots=True)
class HookRef:
    """A webhook whose deliveries we can list: the App's, or a repository's."""

    path: str  # "/app/hook" or "/repos/{o}/{r}/hooks/{id}"
    app: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    status: int  # 200, or 304 (not modified: ``items`` is empty)
    items: list[dict[str, Any]]
    next_url: str | None
