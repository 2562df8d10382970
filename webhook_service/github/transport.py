"""How a request reaches GitHub: with which credential, when, and how often again.

- Credentials: a token, or a GitHub App (its JWT; installation tokens are minted by
  :meth:`~webhook_service.github.client.GitHub.api_for`). Each is an :class:`_API` with
  its own ETag cache (:mod:`~webhook_service.github.etags`) and budget; after GitHub's
  first 401 to it, its calls fail at once until the next cycle.
- Rate limits (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api):
  every request, REST or GraphQL, first reserves its points from its credential's
  :class:`~webhook_service.github.budget.Budget` (a share of the secondary per-minute limits,
  spread evenly, and of the primary hourly one). ``x-ratelimit-*`` is read from every
  response, errors included; 403/429 with ``retry-after`` waits that long (and holds
  the credential's other requests), else until ``x-ratelimit-reset``, else backs off
  exponentially.
- 5xx answers and timeouts are retried with exponential backoff and jitter; other 4xx
  are not (they are our fault, or GitHub saying no).

The calls themselves (paths, shapes of answers) are in :mod:`webhook_service.github.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aiohttp
import gidgethub
import gidgethub.aiohttp
from gidgethub import sansio

from webhook_service.config import Settings
from webhook_service.github.budget import Api, Budget, Limits, points
from webhook_service.github.errors import (
    CredentialRejected,
    GitHubError,
    Stopped,
    describe,
    error_message,
)
from webhook_service.github.etags import ETagCache

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_RATE_WAIT = 3700.0  # never wait longer than one primary window (+ slack)


@dataclass(slots=True)
class ApiStats:
    calls: int = 0
    graphql_calls: int = 0  # of ``calls``, those to GraphQL (the rest are REST)
    not_modified: int = 0
    retries: int = 0
    rate_limited: int = 0
    secondary_refusals: int = 0  # 403/429 answers for a secondary limit
    rate_limit_limit: int | None = None
    rate_limit_remaining: int | None = None
    rate_limit_reset: float | None = None  # epoch seconds
    last_error: str | None = None


class _API(gidgethub.aiohttp.GitHubAPI):
    """gidgethub with our hooks for timeouts, rate limits and retries."""

    def __init__(self, client: Transport, label: str, **kwargs: Any) -> None:
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
                self.reject(error_message(answer[2]))
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
        if api == "graphql":
            self._client.stats.graphql_calls += 1
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


class Transport:
    """The request core of :class:`~webhook_service.github.client.GitHub`: its
    credentials, pacing, retries and counters. One per process; it owns the aiohttp
    session it was given."""

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
    def graphql_url(self) -> str:
        """Where GraphQL goes (requests there are paced as GraphQL): the client, which
        builds every URL, says."""
        raise NotImplementedError
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
                    raise GitHubError(describe(exc), status) from exc
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
    return "retry-after" in headers or "secondary rate limit" in error_message(body).lower()
