"""GitHub REST access for the poller: gidgethub, plus what gidgethub leaves to us.

- Credentials: a token, or a GitHub App (JWT -> installation tokens, cached until five
  minutes before they expire). Every credential has its own ETag cache: GitHub's ETags
  are per token, and gidgethub keys its cache by URL only.
- Conditional requests: the cache keeps ETags, not bodies. The poller skips all work
  on a 304, so a body is never needed again, and memory stays flat in the number of
  PRs watched.
- Rate limits (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api):
  every request, REST or GraphQL, first reserves its points from its credential's
  :class:`~webhook_service.github.budget.Budget` (a share of the secondary per-minute limits,
  spread evenly, and of the primary hourly one). ``x-ratelimit-*`` is read from every
  response, errors included; 403/429 with ``retry-after`` waits that long (and holds
  the credential's other requests), else until ``x-ratelimit-reset``, else backs off
  exponentially.
- 5xx answers and timeouts are retried with exponential backoff and jitter; other 4xx
  are not (they are our fault, or GitHub saying no).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import quote

import aiohttp
import gidgethub
import gidgethub.aiohttp
from gidgethub import sansio

from webhook_service.config import Settings
from webhook_service.core.payloads import parse_timestamp
from webhook_service.github.budget import Api, Budget, Limits, points

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_TOKEN_MARGIN = 300.0  # renew installation tokens five minutes before they expire
_MAX_RATE_WAIT = 3700.0  # never wait longer than one primary window (+ slack)


class GitHubError(Exception):
    """A GitHub API call failed; ``status`` is the HTTP status, if there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubValidationError(GitHubError):
    """A 422 "Validation Failed": ``errors`` are the messages of GitHub's ``errors[]``
    (a field error without a message reads ``"<field> <code>"``)."""

    def __init__(self, message: str, status: int, errors: Sequence[str]) -> None:
        super().__init__(message, status)
        self.errors = tuple(errors)

    @property
    def pull_request_exists(self) -> bool:
        """GitHub refused a second open pull request for the same head and base."""
        return any("pull request already exists" in e.lower() for e in self.errors)


class CredentialRejected(GitHubError):
    """GitHub refused the credential itself (401: a revoked or mistyped token, an App
    JWT signed with another App's key or naming another ``APP_ID``).

    Asking again with it cannot help: after the first 401, calls made with that
    credential fail at once with the same message, until the next cycle
    (:meth:`GitHub.new_cycle`). So a credential is tried at most once an interval, and
    every call it fails says the same thing, once (the worker logs distinct errors).
    """


class Stopped(Exception):
    """The client was closed while waiting (for a rate limit or a retry)."""


@dataclass(slots=True)
class ApiStats:
    calls: int = 0
    not_modified: int = 0
    retries: int = 0
    rate_limited: int = 0
    secondary_refusals: int = 0  # 403/429 answers for a secondary limit
    rate_limit_limit: int | None = None
    rate_limit_remaining: int | None = None
    rate_limit_reset: float | None = None  # epoch seconds
    last_error: str | None = None


class ETagCache(MutableMapping[str, tuple[Any, ...]]):
    """gidgethub's cache protocol, keeping validators only (see the module docs).

    Only URLs registered with :meth:`watch` are conditional: gidgethub's ``getitem``
    and ``getiter`` would hand a 304's missing body to their callers.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._watched: set[str] = set()

    def watch(self, url: str) -> None:
        self._watched.add(url)

    def __getitem__(self, url: str) -> tuple[Any, ...]:
        if url not in self._watched:
            raise KeyError(url)
        etag, last_modified, more = self._entries[url]
        return etag, last_modified, None, more

    def __setitem__(self, url: str, value: tuple[Any, ...]) -> None:
        if url not in self._watched:
            return
        etag, last_modified, _data, more = value
        self._entries[url] = (etag, last_modified, more)

    def __delitem__(self, url: str) -> None:
        del self._entries[url]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class Page:
    status: int  # 200, or 304 (not modified: ``items`` is empty)
    items: list[dict[str, Any]]
    next_url: str | None


class _API(gidgethub.aiohttp.GitHubAPI):
    """gidgethub with our hooks for timeouts, rate limits and retries."""

    def __init__(self, client: GitHub, label: str, **kwargs: Any) -> None:
        super().__init__(client.session, "webhook-service", base_url=client.base_url, **kwargs)
        self._client = client
        self.label = label  # which credential, for messages ("GITHUB_TOKEN", ...)
        self.budget = Budget(client.limits)  # rate limits are per credential
        # This cycle (GitHub.new_cycle): GitHub's 401 to this credential, or whether it
        # has accepted it. Until it has, requests go one at a time, so that a rejected
        # credential costs one request a cycle however many calls were waiting.
        self.rejected: CredentialRejected | None = None
        self.accepted = False
        self._first = asyncio.Lock()

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        if self.accepted:
            return await self._send(method, url, headers, body)
        async with self._first:
            if self.rejected is not None:
                raise self.rejected
            answer = await self._send(method, url, headers, body)
            if answer[0] == 401:
                self.reject(_error_message(answer[2]))
            else:
                self.accepted = True
            return answer

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        api: Api = "graphql" if url == self._client.graphql_url else "rest"
        await self._client.pace(self.budget, api, points(api, method))
        async with self._client.semaphore, asyncio.timeout(self._client.timeout):
            status, response_headers, data = await super()._request(method, url, headers, body)
        self._client.observe(status, response_headers, data, self.budget)
        return status, response_headers, data

    async def sleep(self, seconds: float) -> None:
        await self._client.sleep(seconds)

    def forget(self, url: str) -> None:
        """Drop the cached validators of ``url``: the next GET answers with a body."""
        if self._cache is not None:
            self._cache.pop(sansio.format_url(url, {}, base_url=self.base_url), None)

    def watch(self, url: str) -> None:
        """Make GETs of ``url`` conditional (see :class:`ETagCache`)."""
        if isinstance(self._cache, ETagCache):
            self._cache.watch(sansio.format_url(url, {}, base_url=self.base_url))

    async def manage_rate_limit(self, *, method: str, url: str) -> None:
        pass  # every request, GraphQL's too, is paced in _send

    def reject(self, message: str) -> CredentialRejected:
        """GitHub answered 401 (saying ``message``) to this credential: remembered for
        the rest of the cycle."""
        if self.rejected is None:
            fix = _FIXES[self.label.split()[0]]
            self.rejected = CredentialRejected(
                f"GitHub rejected {self.label}: GitHub answered 401: {message}; {fix}", 401
            )
        return self.rejected

    def new_cycle(self) -> None:
        self.rejected = None
        self.accepted = False

    async def handle_rate_limit_error(
        self,
        *,
        method: str,
        url: str,
        exception: gidgethub.HTTPException,
        attempt: int,
    ) -> bool:
        return await self._client.retry_after_error(exception, attempt, self.budget)


class GitHub:
    """One client per process; it owns the aiohttp session it was given."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        limits: Limits | None = None,
    ) -> None:
        """``limits``: GitHub's limits as planned (default: GitHub's documented ones, at
        ``SYNC_BUDGET_SHARE``); a time-scaled fake's in tests and benchmarks."""
        self.session = session
        self.base_url = settings.github_api_url
        # GitHub Enterprise Server: REST at https://HOST/api/v3, GraphQL at
        # https://HOST/api/graphql; github.com (and the fake): beside REST.
        self.graphql_url = (
            self.base_url.removesuffix("v3") + "graphql"
            if self.base_url.endswith("api/v3")
            else f"{self.base_url}/graphql"
        )
        self.timeout = settings.sync_timeout
        self._retries = settings.sync_retry_attempts
        self._retry_delay = settings.sync_retry_delay
        self.limits = limits or Limits(share=settings.sync_budget_share)
        self._clock = clock
        self._monotonic = time.monotonic
        self._stopping = asyncio.Event()
        # Held per HTTP request (never across waits or nested calls).
        self.semaphore = asyncio.Semaphore(settings.sync_max_concurrency)
        self.stats = ApiStats()
        token = settings.github_token.reveal() if settings.github_token else None
        self._token_api = (
            _API(self, "GITHUB_TOKEN", oauth_token=token, cache=ETagCache()) if token else None
        )
        self._app_api: _API | None = None
        if settings.app_id and settings.private_key:
            self._app_api = _API(
                self,
                f"APP_ID {settings.app_id} with its PRIVATE_KEY",
                app_id=str(settings.app_id),
                private_key=settings.private_key.reveal(),
            )
        self._installations: dict[int, tuple[_API, float]] = {}  # id -> (api, renew at)
        self._installation_lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self._token_api is not None or self._app_api is not None

    @property
    def is_app(self) -> bool:
        return self._app_api is not None

    def close(self) -> None:
        """Interrupt waits; calls in flight end with :class:`Stopped`."""
        self._stopping.set()

    def new_cycle(self) -> None:
        """Forget the credentials GitHub rejected: each is tried again, once a cycle.
        A rejected installation token is dropped, so that a fresh one is asked for."""
        for api in (self._token_api, self._app_api):
            if api is not None:
                api.new_cycle()
        for installation_id, (api, _) in list(self._installations.items()):
            if api.rejected is not None:
                del self._installations[installation_id]
            api.new_cycle()

    @property
    def rejections(self) -> list[str]:
        """What GitHub said of each credential it rejected in this cycle."""
        return [str(api.rejected) for api in self._apis() if api.rejected]

    # -- hooks used by _API ------------------------------------------------------

    def observe(self, status: int, headers: Mapping[str, str], body: bytes, budget: Budget) -> None:
        """Count an answer and read its rate-limit headers (errors included)."""
        self.stats.calls += 1
        if status == 304:
            self.stats.not_modified += 1
        budget.observe(headers)
        if status in (403, 429) and _secondary_limit(headers, body):
            self.stats.secondary_refusals += 1
            retry_after = headers.get("retry-after", "").strip()
            budget.refused(self._clock() + float(retry_after) if retry_after.isdigit() else None)
        try:
            self.stats.rate_limit_limit = int(headers["x-ratelimit-limit"])
            self.stats.rate_limit_remaining = int(headers["x-ratelimit-remaining"])
            self.stats.rate_limit_reset = float(headers["x-ratelimit-reset"])
        except (KeyError, ValueError):
            return

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self._stopping.is_set():
            raise Stopped("the GitHub client was closed")

    async def pace(self, budget: Budget, api: Api, cost: int) -> None:
        """Wait for the credential's plan to allow ``cost`` points of ``api``."""
        wait = budget.reserve(api, cost, now=self._monotonic(), clock=self._clock())
        await self.sleep(min(wait, _MAX_RATE_WAIT))
        while (late := budget.admit(api, cost, self._monotonic())) > 0:
            await self.sleep(late)

    def budgets(self) -> dict[str, dict[str, Any]]:
        """Each credential's budget and use, for ``/stats``."""
        now = self._monotonic()
        return {api.label: api.budget.snapshot(now) for api in self._apis()}

    def _apis(self) -> list[_API]:
        """Every credential in use: the token, the App's JWT, installation tokens."""
        apis = [self._token_api, self._app_api, *(a for a, _ in self._installations.values())]
        return [api for api in apis if api is not None]

    async def retry_after_error(
        self, exc: gidgethub.HTTPException, attempt: int, budget: Budget | None = None
    ) -> bool:
        """Whether (after waiting) to retry a request that failed with ``exc``.

        A rate-limit wait also holds the credential's (``budget``'s) next requests, the
        next cycle's included, when the retries have run out: GitHub asks for no request
        before ``retry-after`` (or the reset), not for one fewer retry.
        """
        # (gh.rate_limit is stale after errors; _API._request has already read the
        # rate-limit headers of this very response, and so do we here.)
        status = exc.status_code
        headers = getattr(exc, "headers", None) or {}
        wait = self._rate_limit_wait(status, headers, exc, attempt)
        if wait is not None and budget is not None:
            hold = self._clock() + min(wait, _MAX_RATE_WAIT)
            budget.hold_until = max(budget.hold_until, hold)
        return await self._retry(status, attempt, wait)

    async def _retry(self, status: int, attempt: int, rate_wait: float | None) -> bool:
        """Whether, after waiting, to send again a request answered ``status``: a
        rate limit waits ``rate_wait`` s (None: not a rate limit), a 5xx backs off."""
        if rate_wait is not None:
            if attempt > self._retries + 1 or rate_wait > _MAX_RATE_WAIT:
                return False
            self.stats.rate_limited += 1
            logger.warning("GitHub rate limit (%d); waiting %.1f s", status, rate_wait)
            await self.sleep(rate_wait)
            return True
        if status >= 500 and attempt <= self._retries:
            self.stats.retries += 1
            await self.sleep(self.backoff(attempt))
            return True
        return False

    def _rate_limit_wait(
        self,
        status: int,
        headers: Mapping[str, str],
        exc: gidgethub.HTTPException,
        attempt: int,
    ) -> float | None:
        if status not in (403, 429):
            return None
        retry_after = headers.get("retry-after")
        if retry_after is not None and retry_after.strip().isdigit():
            return float(retry_after)
        if headers.get("x-ratelimit-remaining") == "0" or isinstance(
            exc, gidgethub.RateLimitExceeded
        ):
            reset = headers.get("x-ratelimit-reset")
            if reset is not None and reset.strip().isdigit():
                return max(float(reset) - self._clock(), 0.0) + 1.0
        if status == 429 or "rate limit" in str(exc).lower():
            return self.backoff(attempt)  # a secondary limit without retry-after
        return None  # a 403 that is not about rate limits: permissions

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, self._retry_delay * 2 ** (attempt - 1))

    # -- calls -------------------------------------------------------------------

    async def _call(
        self, fn: Callable[[], Awaitable[_T]], api: _API, *, graphql: bool = False
    ) -> _T:
        """Run one API call with ``api``'s credential, retrying timeouts and connection
        errors. REST's 5xx and rate-limit answers are retried inside gidgethub (our
        ``handle_rate_limit_error``); its ``graphql()`` does not call that hook, so a
        ``graphql`` call's are retried here, the same way."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await fn()
            except (TimeoutError, aiohttp.ClientError) as exc:
                if attempt > self._retries:
                    raise GitHubError(f"GitHub did not answer: {exc!r}") from exc
                self.stats.retries += 1
                await self.sleep(self.backoff(attempt))
            except gidgethub.GraphQLAuthorizationFailure as exc:
                raise api.reject(str(exc)) from exc
            except (gidgethub.HTTPException, gidgethub.BadGraphQLRequest) as exc:
                status = int(exc.status_code)
                if status == 401:
                    raise api.reject(" ".join(str(a) for a in exc.args if a)) from exc
                if graphql and await self._retry_graphql(status, attempt, api.budget):
                    continue
                if isinstance(exc, gidgethub.HTTPException):
                    raise GitHubError(_describe(exc), status) from exc
                raise GitHubError(f"GitHub answered {status}: {exc}", status) from exc
            except gidgethub.GitHubException as exc:
                raise GitHubError(str(exc)) from exc

    async def _retry_graphql(self, status: int, attempt: int, budget: Budget) -> bool:
        """Whether (after waiting) to send a GraphQL request again, as
        :meth:`retry_after_error` decides for REST (observe() has read a retry-after
        into the budget)."""
        wait = None
        if status in (403, 429):
            wait = max(budget.hold_until - self._clock(), self.backoff(attempt))
        return await self._retry(status, attempt, wait)

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

    async def _conditional_get(self, api: _API, url: str) -> tuple[Any, str | None, int]:
        """GET with the credential's ETag; the status tells a 304 from a 200.

        (gidgethub's ``getitem`` hides a 304 behind the cached body, which our cache
        does not keep, so this uses the request method underneath it.)
        """
        api.watch(url)
        data, more, status = await self._call(
            lambda: api._make_request("GET", url, {}, b"", sansio.accept_format()), api
        )
        return cast(Any, data), more, status

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
                errors = _error_messages(exc.errors)
                raise GitHubValidationError(_describe(exc), exc.status_code, errors) from exc

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


def _error_messages(errors: Any) -> list[str]:
    """The text of a 422's ``errors``: strings, or objects with a message or a field."""
    if isinstance(errors, str):
        return [errors]
    messages = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, str):
            messages.append(error)
        elif isinstance(error, Mapping):
            message = error.get("message")
            fallback = f"{error.get('field', error.get('resource', '?'))} {error.get('code', '')}"
            messages.append(str(message) if message else fallback.strip())
    return messages


#: What to check when GitHub rejects a credential, by the first word of its label.
_FIXES = {
    "GITHUB_TOKEN": "check that the token is right, unexpired and not revoked",
    "APP_ID": "check that APP_ID is the App's id and PRIVATE_KEY a key of that App",
    "installation": "a new token is asked for next cycle; check the App is still installed",
}


def _secondary_limit(headers: Mapping[str, str], body: bytes) -> bool:
    """A 403/429 for a secondary limit (GitHub: a ``retry-after``, or the message
    "You have exceeded a secondary rate limit"), not for the primary one or access."""
    if headers.get("x-ratelimit-remaining") == "0":
        return False  # the primary limit
    return "retry-after" in headers or "secondary rate limit" in _error_message(body).lower()


def _error_message(body: bytes) -> str:
    """The ``message`` of GitHub's JSON error body."""
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        document = json.loads(body)
        if isinstance(document, dict) and document.get("message"):
            return str(document["message"])
    return "no message"


def _describe(exc: gidgethub.HTTPException) -> str:
    message = " ".join(str(a) for a in exc.args if a) or "no message"
    return f"GitHub answered {exc.status_code}: {message}"
