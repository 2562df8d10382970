"""A fake GitHub API: a real aiohttp server on 127.0.0.1, for tests and benchmarks.

It imitates the parts of https://docs.github.com/en/rest that the poller, the
failed-delivery recovery and the PR creator use, with GitHub's semantics rather than
canned answers: token and GitHub App (JWT) authentication, installation access tokens
that expire, pull-request list/get with GitHub's sorting, filters and ``Link``
pagination, pull-request creation with GitHub's validation errors, conditional
requests (``ETag`` → 304, free of the primary limit), primary rate limits per credential
(REST and GraphQL apart), GitHub's secondary limits (points per minute and concurrent
requests per credential: ``fake_limits``), injected secondary rate limits, errors and
delays (for the next requests, or for a period), webhook deliveries that can be listed
and really redelivered to a hook URL, and ``POST /graphql`` for the pull-request search
the poller sends (``fake_graphql``, ``fake_search``; with an optional index lag). JSON
shapes come from ``testing/rest/`` (GitHub's own REST examples): the stored values
replace the example's, field by field.

Time: pull-request and delivery timestamps come from an internal clock with GitHub's
one-second resolution. It follows the wall clock but moves at least one second per
mutation, so ``updated_at`` strictly increases, and :meth:`FakeGitHub.advance` pushes it.
Rate-limit windows and token expiry use the real ``time.time()``, so clients can wait.

Redelivery (``POST .../attempts``) POSTs to the hook inside the request handler, before
the 202 is sent: once a client has the 202, the attempt is recorded, and no background
task outlives a request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import secrets
import string
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

import aiohttp
import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.types import Options
from yarl import URL

import webhook_service.testing.fake_graphql as fake_graphql
from webhook_service.testing.fake_apps import ManifestFlow
from webhook_service.testing.fake_limits import (
    Api,
    Refusal,
    SecondaryLimits,
    max_window_points,
    secondary_points,
)
from webhook_service.testing.fake_search import SearchEntry, SearchIndex

__all__ = [
    "Delivery",
    "FakeGitHub",
    "RequestRecord",
    "max_window_points",
    "rest_fixtures_root",
]

Timestamp = datetime | str | int
HookKey = tuple[str | None, int]  # (lower-cased "owner/name", hook id); None: the App's hook
_Auth = Literal["token", "jwt"]
_Route = Callable[[web.Request, "_Credential"], Awaitable[web.Response]]
_Resource = Literal["core", "graphql"]  # x-ratelimit-resource of a primary budget
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_API = "https://api.github.com"  # the examples' API host; rendered JSON uses the fake's URL
_DOCS = "https://docs.github.com/rest"
_RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
_CREATE_PULL_DOCS = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
_APP = "jwt"  # RequestRecord.token of requests made with an App JWT
_PERMISSIONS = {"metadata": "read", "pull_requests": "read"}
_SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


def rest_fixtures_root() -> Path:
    """GitHub's REST response examples, shipped with the package (``testing/rest``)."""
    return Path(__file__).resolve().parent / "rest"


@dataclass
class RequestRecord:
    """One request the fake received, completed when it is answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int = 0
    token: str | None = None  # the token; "jwt" for an App JWT; None if not authenticated
    conditional: bool = False  # If-None-Match was sent
    rate_cost: int = 0  # taken from the primary rate limit (of ``api``): 0 or 1
    body: bytes = b""  # the request body, as sent
    received_at: float = field(default_factory=time.monotonic)  # time.monotonic() on arrival
    points: int = 0  # secondary-limit points charged (0: no known credential)
    api: Api = "rest"  # "graphql" for POST /graphql
    credential: str | None = None  # the budget: "token:<t>", "installation:<id>", "app"


@dataclass
class Delivery:
    """One webhook delivery attempt, as GitHub's hook-delivery endpoints show it."""

    id: int
    guid: str
    delivered_at: str
    redelivery: bool
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    hook: HookKey
    url: str
    request_headers: dict[str, str]
    body: bytes  # the exact bytes sent and signed
    status: str = ""  # "OK", "Invalid HTTP Response: 502", "timed out", ...
    status_code: int = 0  # 0 when no HTTP response was received
    duration: float = 0.01
    throttled_at: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str | None = None

    def json(self, keys: Iterable[str]) -> dict[str, Any]:
        """The delivery as GitHub shows it, with the keys of a REST example."""
        request = {"headers": self.request_headers, "payload": orjson.loads(self.body)}
        response = {"headers": self.response_headers, "payload": self.response_body}
        parts = {"request": request, "response": response}
        return {key: parts[key] if key in parts else getattr(self, key) for key in keys}

    def _answered(self, status_code: int) -> None:
        self.status_code = status_code
        ok = 200 <= status_code < 300
        self.status = "OK" if ok else f"Invalid HTTP Response: {status_code}"


@dataclass
class _Repo:
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
class _Pull:
    repo: _Repo
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


@dataclass
class _Installation:
    id: int
    account: str
    repos: set[str]  # repository keys
    created_at: str


@dataclass
class _Credential:
    label: str  # for RequestRecord.token
    raw: str  # the presented token or JWT (ETags vary with it)
    budget_key: str
    who: str  # for "API rate limit exceeded for ..."
    repos: frozenset[str] | None = None  # None: every repository


@dataclass
class _Budget:
    limit: int
    used: int
    reset: int  # epoch seconds, as in x-ratelimit-reset

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass
class _Fault:
    remaining: int | None  # None: every matching request from ``starts`` until ``ends``
    path_prefix: str
    status: int = 500
    seconds: float = 0.0
    retry_after: int | None = None
    method: str | None = None  # None: any method
    handled: bool = False  # "fail": the request takes effect, then its answer is lost
    starts: float = -math.inf  # time.monotonic() bounds of a fault period
    ends: float = math.inf


@dataclass
class _Hook:
    url: str
    secret: str


class _ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(value: Timestamp) -> int:
    if isinstance(value, int):
        return value
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return int(moment.timestamp())


def _sha(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:40]


def _node_id(kind: str, number: int) -> str:
    # GitHub's legacy global ids: base64 of "0<len(kind)>:<kind><id>", e.g. "04:User1".
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def _rewrite(value: Any, pairs: tuple[tuple[str, str], ...]) -> Any:
    """A copy of a JSON value with substrings replaced in every string."""
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {key: _rewrite(item, pairs) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewrite(item, pairs) for item in value]
    return value


def _json(data: Any, status: int = 200, link: str | None = None) -> web.Response:
    headers = {"Link": link} if link else None
    body = orjson.dumps(data)
    return web.Response(
        status=status, body=body, content_type="application/json", charset="utf-8", headers=headers
    )


def _error(status: int, message: str, docs: str = _DOCS, **extra: Any) -> web.Response:
    # GitHub's error body: {"message": ..., "documentation_url": ...}
    return _json({"message": message, **extra, "documentation_url": docs}, status)


def _int_param(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query[name])
    except (KeyError, ValueError):
        value = 0
    return value if value > 0 else default  # GitHub ignores malformed paging parameters


def _etag_matches(header: str, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/"x" matches "x".
    return any(tag.strip().removeprefix("W/") in ("*", etag) for tag in header.split(","))


class FakeGitHub:
    """A GitHub API double on loopback (REST, and GraphQL's pull-request search):
    ``async with FakeGitHub() as gh: ...``.

    ``rate_window`` is the primary rate-limit window in seconds (``rate_limit`` REST and
    ``graphql_rate_limit`` GraphQL points per window and credential), ``token_ttl`` the
    lifetime of installation tokens, ``hook_timeout`` how long a hook may take to answer
    a redelivery (GitHub: 10 s). Pass ``private_key_pem`` to skip generating a key.

    Secondary limits (``fake_limits``; defaults are GitHub's documented numbers): per
    credential, ``secondary_rest_points`` REST and ``secondary_graphql_points`` GraphQL
    points within any ``secondary_window`` seconds, and ``max_concurrent`` requests in
    flight. ``search_lag``: seconds before a pull-request change is visible to search.
    """

    def __init__(
        self,
        *,
        app_id: str = "12345",
        rate_limit: int = 5000,
        rate_window: float = 3600.0,
        token_ttl: float = 3600.0,
        hook_timeout: float = 10.0,
        private_key_pem: str | None = None,
        fixtures_dir: Path | None = None,
        secondary_rest_points: int = 900,
        secondary_graphql_points: int = 2000,
        secondary_window: float = 60.0,
        max_concurrent: int = 100,
        graphql_rate_limit: int = 5000,
        search_lag: float = 0.0,
    ) -> None:
        self.app_id = app_id
        self.rate_limit = rate_limit
        self.graphql_rate_limit = graphql_rate_limit
        self.limits = SecondaryLimits(
            rest_points=secondary_rest_points,
            graphql_points=secondary_graphql_points,
            window=secondary_window,
            max_concurrent=max_concurrent,
        )
        self.secondary_refusals = 0  # answers refused for a secondary limit, injected too
        self.rate_window = rate_window
        self.token_ttl = token_ttl
        self.hook_timeout = hook_timeout
        if private_key_pem is None:
            private_key_pem = (
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
                .private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                )
                .decode()
            )
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("private_key_pem must be an RSA key")
        self.private_key_pem = private_key_pem
        self._public_key = key.public_key()
        examples = fixtures_dir or rest_fixtures_root()
        self._template: dict[str, Any] = orjson.loads((examples / "pulls-get.json").read_bytes())
        # pull-request-simple (list items) lacks some of pull-request's fields.
        simple = orjson.loads((examples / "pulls-list.json").read_bytes())[0]
        self._simple_missing = self._template.keys() - simple.keys()
        items = orjson.loads((examples / "app-hook-deliveries-list.json").read_bytes())
        self._delivery_item_keys = list(items[0])
        full = orjson.loads((examples / "hook-delivery-get.json").read_bytes())
        self._delivery_keys = list(full)
        self.url = ""
        self.manifests = ManifestFlow(
            app_id=lambda: self.app_id, pem=lambda: self.private_key_pem, url=lambda: self.url
        )
        self.requests: list[RequestRecord] = []
        self.deliveries: list[Delivery] = []
        self.tokens_issued = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._routes: dict[tuple[str, str], tuple[_Auth, _Route]] = {}
        self._tokens: set[str] = set()
        self._installation_tokens: dict[str, tuple[int, float]] = {}  # id, expiry
        self._installations: dict[int, _Installation] = {}
        self._repos: dict[str, _Repo] = {}
        self._pulls: dict[str, dict[int, _Pull]] = {}
        self._user_ids: dict[str, int] = {}
        self._budgets: dict[tuple[_Resource, str], _Budget] = {}
        self._exhausted_until: dict[_Resource, int] = {"core": 0, "graphql": 0}
        self._search = SearchIndex(search_lag)
        self._faults: dict[str, list[_Fault]] = {"delay": [], "fail": [], "secondary": []}
        self._hooks: dict[HookKey, _Hook] = {}
        self._last_id = 1000
        self._clock = 0
        self._clock_offset = 0.0
        self._cache: dict[str, dict[str, Any]] = {}

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1 (``port`` 0: a free one); return the base URL (also
        :attr:`url`)."""
        if self._runner is not None:
            return self.url

        @web.middleware
        async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
            if request.match_info.route.resource in manifest_resources:
                return await handler(request)  # GitHub's web pages, and the unauthenticated
            return await self._answer(request)  # routed by aiohttp, answered by the fake

        app = web.Application(middlewares=[middleware])
        # Registering an App from a manifest (webhook_service.testing.fake_apps).
        app.router.add_routes(self.manifests.routes())
        manifest_resources = {route.resource for route in app.router.routes()}
        repo = "/repos/{owner}/{repo}"
        hook = repo + "/hooks/{hook_id}/deliveries"
        routes: list[tuple[str, str, _Route, _Auth]] = [
            ("GET", "/app/installations", self._list_installations, "jwt"),
            ("POST", "/app/installations/{id}/access_tokens", self._create_token, "jwt"),
            ("GET", "/app/hook/deliveries", self._list_deliveries, "jwt"),
            ("GET", "/app/hook/deliveries/{delivery_id}", self._get_delivery, "jwt"),
            ("POST", "/app/hook/deliveries/{delivery_id}/attempts", self._redeliver, "jwt"),
            ("GET", "/installation/repositories", self._list_installation_repos, "token"),
            ("GET", repo, self._get_repository, "token"),
            ("GET", repo + "/pulls", self._list_pulls, "token"),
            ("POST", repo + "/pulls", self._create_pull, "token"),
            ("GET", repo + "/pulls/{number}", self._get_pull, "token"),
            ("GET", hook, self._list_deliveries, "token"),
            ("GET", hook + "/{delivery_id}", self._get_delivery, "token"),
            ("POST", hook + "/{delivery_id}/attempts", self._redeliver, "token"),
            ("POST", "/graphql", self._graphql, "token"),
        ]
        for method, path, handler, auth in routes:
            app.router.add_route(method, path, self._unreachable)
            self._routes[(method, path)] = (auth, handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession()
        self._cache.clear()  # rendered URLs now point at self.url
        return self.url

    async def close(self) -> None:
        """Stop the server and close the session used for redeliveries."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitHub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _tick(self) -> int:
        """The next timestamp: the wall clock plus advances, at least 1 s after the last."""
        self._clock = max(self._clock + 1, int(time.time() + self._clock_offset))
        return self._clock

    def advance(self, seconds: float) -> None:
        """Move the timestamp clock forward (rate limits and token expiry use real time)."""
        self._clock_offset += seconds
        self._clock += math.ceil(seconds)

    def _new_id(self) -> int:
        self._last_id += 1
        return self._last_id

    # -- credentials and rate limits -----------------------------------------------------

    def add_token(self, token: str) -> None:
        """Accept ``token`` (like a personal access token) for every repository."""
        self._tokens.add(token)

    def add_installation(
        self, installation_id: int, repositories: list[str], account: str = "Codertocat"
    ) -> None:
        """Install the App on ``account``, selecting ``repositories`` ("owner/name")."""
        keys = {self._repo(name).key for name in repositories}
        created = _iso(self._tick())
        self._installations[installation_id] = _Installation(
            installation_id, account, keys, created
        )

    def _budget_key(self, token: str) -> str:
        # Docs: installation requests share the installation's limit, whichever token.
        if token in self._tokens:
            return "token:" + token
        if token in self._installation_tokens:
            return f"installation:{self._installation_tokens[token][0]}"
        if token == _APP or token.count(".") == 2:
            return "app"
        raise KeyError(f"unknown token {token!r}")

    def _budget(self, key: str, resource: _Resource = "core") -> _Budget:
        # Docs "Rate limits for the GraphQL API": GraphQL has its own primary limit
        # (5,000 points an hour), apart from REST's; x-ratelimit-resource says which.
        now = time.time()
        budget = self._budgets.get((resource, key))
        if budget is None or now >= budget.reset:  # a new window
            limit = self.rate_limit if resource == "core" else self.graphql_rate_limit
            budget = _Budget(limit, 0, math.ceil(now + self.rate_window))
            if now < self._exhausted_until[resource]:
                budget.used, budget.reset = budget.limit, self._exhausted_until[resource]
            self._budgets[(resource, key)] = budget
        return budget

    def rate_remaining(self, token: str, *, resource: _Resource = "core") -> int:
        """The primary rate limit left for ``token`` ("jwt" or any JWT: the App's);
        ``resource="graphql"``: of its GraphQL budget."""
        return self._budget(self._budget_key(token), resource).remaining

    def exhaust_primary(
        self, token: str | None = None, reset_in: float = 2.0, *, resource: _Resource = "core"
    ) -> None:
        """Use up the primary limit of ``token`` (None: of everyone) until ``reset_in`` s."""
        reset = math.ceil(time.time() + reset_in)
        if token is None:
            self._exhausted_until[resource] = reset
        keys = (
            [key for kind, key in self._budgets if kind == resource]
            if token is None
            else [self._budget_key(token)]
        )
        for key in keys:
            budget = self._budget(key, resource)
            budget.used, budget.reset = budget.limit, reset

    # -- pull requests -------------------------------------------------------------------

    def add_repository(self, full_name: str, *, default_branch: str = "main") -> None:
        """Create a repository ("owner/name") without pull requests (idempotent; the
        default branch is set each time)."""
        self._repo(full_name).default_branch = default_branch
        self._cache.pop("repo:" + full_name.lower(), None)

    def _repo(self, full_name: str) -> _Repo:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository must be 'owner/name', not {full_name!r}")
        repo = self._repos.get(full_name.lower())
        if repo is None:
            repo = _Repo(1296269 + len(self._repos), full_name)
            self._repos[repo.key] = repo
            self._pulls[repo.key] = {}
        return repo

    def _pull(self, repository: str, number: int) -> _Pull:
        pull = self._pulls.get(repository.lower(), {}).get(number)
        if pull is None:
            raise KeyError(f"no pull request {repository}#{number}")
        return pull

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
        **extra: Any,
    ) -> dict[str, Any]:
        """Create a pull request (and its repository); return it in the REST "get" shape.

        Timestamps default to the fake's clock. ``extra`` sets other JSON fields
        verbatim, e.g. ``mergeable=False``.
        """
        repo = self._repo(repository)
        number = number or max(self._pulls[repo.key], default=0) + 1
        if number in self._pulls[repo.key]:
            raise ValueError(f"{repository}#{number} already exists")
        # The clock moves (a second at least) only for a timestamp it stamps: a PR
        # given its times leaves it alone, so loading many does not run it ahead.
        dated = created_at is not None and updated_at is not None
        now = int(time.time() + self._clock_offset) if dated else self._tick()
        pull = _Pull(
            repo,
            number,
            self._new_id(),
            title or f"Pull request {number}",
            head_ref or f"feature-{number}",
            head_sha or _sha(f"{repo.key}#{number}@{now}"),
            base_ref,
            user,
            body,
            draft,
            _epoch(created_at) if created_at is not None else now,
            _epoch(updated_at) if updated_at is not None else now,
        )
        self._set_extra(pull, extra)
        self._pulls[repo.key][number] = pull
        if state == "closed" or merged:
            _close(pull, merged=merged, at=pull.updated_at)
        self._search.record(_search_entry(pull))
        return self._public(pull)

    def update_pull(
        self,
        repository: str,
        number: int,
        *,
        state: Literal["open", "closed"] | None = None,
        merged: bool | None = None,
        draft: bool | None = None,
        title: str | None = None,
        head_sha: str | None = None,
        head_ref: str | None = None,
        base_ref: str | None = None,
        body: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Change a pull request as GitHub would, bump ``updated_at``, and return it.

        ``merged=True`` closes and merges it (``closed_at``, ``merged_at``, ``merged_by``);
        ``state="open"`` reopens it. As on GitHub, a merged pull request stays merged.
        """
        pull = self._pull(repository, number)
        if pull.merged and (state == "open" or merged is False):
            raise ValueError("a merged pull request cannot be reopened or unmerged")
        self._set_extra(pull, extra)
        now = self._tick()
        if merged and not pull.merged:
            _close(pull, merged=True, at=now)
        elif state == "closed" and pull.state == "open":
            _close(pull, merged=False, at=now)
        elif state == "open":
            pull.state, pull.closed_at = "open", None
        changes = {"draft": draft, "title": title, "head_sha": head_sha, "body": body}
        changes |= {"head_ref": head_ref, "base_ref": base_ref}
        for name, value in changes.items():
            if value is not None:
                setattr(pull, name, value)
        pull.updated_at = now
        self._search.record(_search_entry(pull))
        return self._public(pull)

    def _set_extra(self, pull: _Pull, extra: Mapping[str, Any]) -> None:
        if extra and (clash := extra.keys() & self._pull_fields(pull).keys()):
            raise TypeError(f"{sorted(clash)} are managed by the fake (named parameters)")
        pull.extra.update(extra)

    def pull(self, repository: str, number: int) -> dict[str, Any]:
        """One pull request in the REST "get" shape."""
        return self._public(self._pull(repository, number))

    def pulls(self, repository: str) -> list[dict[str, Any]]:
        """A repository's pull requests by number, in the REST "get" shape."""
        stored = self._pulls.get(repository.lower(), {})
        return [self._public(stored[number]) for number in sorted(stored)]

    def _public(self, pull: _Pull) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(orjson.dumps(self._render_pull(pull)))
        return data  # a deep copy: rendered JSON shares cached user and repository objects

    # -- JSON rendering: the REST examples (testing/rest) with the fake's values -------

    def _user_json(self, login: str) -> dict[str, Any]:
        if "user:" + login not in self._cache:
            user_id = self._user_ids.setdefault(login, 1000 + len(self._user_ids))
            pairs = (("octocat", login), (_API, self.url or _API))
            data = _rewrite(self._template["user"], pairs)
            data.update(login=login, id=user_id, node_id=_node_id("User", user_id))
            self._cache["user:" + login] = data
        return self._cache["user:" + login]

    def _repo_json(self, repo: _Repo) -> dict[str, Any]:
        if "repo:" + repo.key not in self._cache:
            pairs = (("octocat/Hello-World", repo.full_name), (_API, self.url or _API))
            data = _rewrite(self._template["head"]["repo"], pairs)
            data.update(id=repo.id, node_id=_node_id("Repository", repo.id))
            data.update(name=repo.full_name.partition("/")[2], full_name=repo.full_name)
            data.update(owner=self._user_json(repo.owner), default_branch=repo.default_branch)
            self._cache["repo:" + repo.key] = data
        return self._cache["repo:" + repo.key]

    def _render_pull(self, pull: _Pull, *, simple: bool = False) -> dict[str, Any]:
        """``pulls-get.json`` with the pull's values; ``simple``: a list item."""
        data = dict(self._template)  # GitHub's key order; the fake's values
        data.update(pull.extra)
        data.update(self._pull_fields(pull))
        if simple:
            for name in self._simple_missing:
                del data[name]
        return data

    def _pull_fields(self, pull: _Pull) -> dict[str, Any]:
        """The fields the fake manages. Nested template values are replaced too."""
        api, full, n = self.url or _API, pull.repo.full_name, pull.number
        url, issue = f"{api}/repos/{full}/pulls/{n}", f"{api}/repos/{full}/issues/{n}"
        html = f"https://github.com/{full}/pull/{n}"
        links = {  # _links.<rel>.href, and <rel>_url at the top level
            "self": url,
            "html": html,
            "issue": issue,
            "comments": issue + "/comments",
            "review_comments": url + "/comments",
            "review_comment": f"{api}/repos/{full}/pulls/comments{{/number}}",
            "commits": url + "/commits",
            "statuses": f"{api}/repos/{full}/statuses/{pull.head_sha}",
        }
        user, repo = self._user_json(pull.user), self._repo_json(pull.repo)

        def branch(ref: str, sha: str) -> dict[str, Any]:
            label = f"{pull.repo.owner}:{ref}"
            return {"label": label, "ref": ref, "sha": sha, "user": repo["owner"], "repo": repo}

        fields: dict[str, Any] = {f"{rel}_url": h for rel, h in links.items() if rel != "self"}
        fields.update(url=url, diff_url=html + ".diff", patch_url=html + ".patch")
        fields.update(id=pull.id, node_id=_node_id("PullRequest", pull.id), number=n)
        fields.update(state=pull.state, title=pull.title, user=user, body=pull.body)
        fields.update(created_at=_iso(pull.created_at), updated_at=_iso(pull.updated_at))
        fields.update(closed_at=_iso(pull.closed_at) if pull.closed_at else None)
        fields.update(merged_at=_iso(pull.merged_at) if pull.merged_at else None)
        fields.update(draft=pull.draft, merged=pull.merged, merged_by=user if pull.merged else None)
        fields.update(merge_commit_sha=_sha(f"merge:{full}#{n}:{pull.head_sha}"))
        fields.update(head=branch(pull.head_ref, pull.head_sha))
        fields.update(base=branch(pull.base_ref, _sha(f"{full}:{pull.base_ref}")))
        fields["_links"] = {rel: {"href": href} for rel, href in links.items()}
        # Not modelled: the example's lock, labels, milestone, assignees and reviewers.
        fields.update(locked=False, active_lock_reason=None, milestone=None, assignee=None)
        fields.update(labels=[], assignees=[], requested_reviewers=[], requested_teams=[])
        return fields

    def _installation_json(self, inst: _Installation) -> dict[str, Any]:
        # Docs "List installations for the authenticated app": one item.
        api, account = self.url or _API, self._user_json(inst.account)
        return {
            "id": inst.id,
            "account": account,
            "repository_selection": "selected",
            "access_tokens_url": f"{api}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{api}/installation/repositories",
            "html_url": f"https://github.com/settings/installations/{inst.id}",
            "app_id": int(self.app_id) if self.app_id.isdigit() else self.app_id,
            "target_id": account["id"],
            "target_type": "User",
            "permissions": _PERMISSIONS,
            "events": ["pull_request"],
            "created_at": inst.created_at,
            "updated_at": inst.created_at,
            "single_file_name": None,
            "suspended_at": None,
        }

    # -- fault injection: the next ``count`` requests under a prefix, or (``*_for``) -------
    # -- every request under a prefix during a period --------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 500,
        path_prefix: str = "",
        *,
        method: str | None = None,
        handled: bool = False,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (before authentication).

        ``method`` limits the rule to one HTTP method. ``handled=True`` lets each request
        take effect first and then replaces its answer with ``status``: a response lost
        on GitHub's side (e.g. a 502 for a pull request that was created).
        """
        fault = _Fault(count, path_prefix, status=status, method=method, handled=handled)
        self._faults["fail"].append(fault)

    def delay_next(self, count: int, seconds: float, path_prefix: str = "") -> None:
        """Hold the next ``count`` requests for ``seconds`` before handling them."""
        self._faults["delay"].append(_Fault(count, path_prefix, seconds=seconds))

    def secondary_limit_next(
        self, count: int, status: int = 403, retry_after: int | None = 1, path_prefix: str = ""
    ) -> None:
        """Refuse the next ``count`` authenticated requests with a secondary rate limit.

        Docs: a secondary limit is a 403 or 429 whose message says so; clients wait
        ``retry-after`` seconds when it is sent. Such a request costs 1 from the primary.
        """
        if status not in (403, 429):
            raise ValueError("GitHub answers a secondary rate limit with 403 or 429")
        fault = _Fault(count, path_prefix, status=status, retry_after=retry_after)
        self._faults["secondary"].append(fault)

    def fail_for(
        self,
        seconds: float,
        status: int = 500,
        path_prefix: str = "",
        *,
        after: float = 0.0,
        method: str | None = None,
    ) -> None:
        """An outage: answer every request under ``path_prefix`` with ``status`` (before
        authentication) for ``seconds``, starting ``after`` seconds from now."""
        starts, ends = _period(seconds, after)
        fault = _Fault(None, path_prefix, status=status, method=method, starts=starts, ends=ends)
        self._faults["fail"].append(fault)

    def delay_for(
        self, seconds: float, path_prefix: str = "", *, delay: float, after: float = 0.0
    ) -> None:
        """Hold every request under ``path_prefix`` that arrives during ``seconds`` (starting
        ``after`` seconds from now) for ``delay`` seconds before handling it: with a delay
        longer than the client's timeout, GitHub hangs for that period."""
        starts, ends = _period(seconds, after)
        fault = _Fault(None, path_prefix, seconds=delay, starts=starts, ends=ends)
        self._faults["delay"].append(fault)

    def secondary_limit_for(
        self,
        seconds: float,
        status: int = 403,
        retry_after: int | None = 1,
        path_prefix: str = "",
        *,
        after: float = 0.0,
    ) -> None:
        """Refuse every authenticated request under ``path_prefix`` with a secondary rate
        limit (see :meth:`secondary_limit_next`) for ``seconds``, starting ``after``
        seconds from now."""
        if status not in (403, 429):
            raise ValueError("GitHub answers a secondary rate limit with 403 or 429")
        starts, ends = _period(seconds, after)
        fault = _Fault(
            None, path_prefix, status=status, retry_after=retry_after, starts=starts, ends=ends
        )
        self._faults["secondary"].append(fault)

    def _take(self, kind: str, path: str, method: str | None = None) -> _Fault | None:
        now = time.monotonic()
        faults = self._faults[kind]
        faults[:] = [fault for fault in faults if fault.ends > now]  # periods that are over
        for fault in faults:
            if fault.starts > now:
                continue  # a period that has not begun
            if fault.method is not None and fault.method.upper() != method:
                continue
            if path.startswith(fault.path_prefix):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        faults.remove(fault)
                return fault
        return None

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        self.requests.clear()

    # -- webhook deliveries --------------------------------------------------------------

    def configure_hook(
        self,
        *,
        url: str,
        secret: str,
        hook_id: int = 1,
        repository: str | None = None,
        app: bool = False,
    ) -> None:
        """Set where the App's hook (``app=True``) or a repository hook delivers to."""
        if app == (repository is not None):
            raise ValueError("pass either app=True or repository=")
        if app:  # an App has exactly one webhook
            self._hooks = {key: hook for key, hook in self._hooks.items() if key[0] is not None}
        key = None if repository is None else self._repo(repository).key
        self._hooks[(key, hook_id)] = _Hook(url, secret)

    def _hook_key(self, repository: str | None, hook_id: int | None) -> HookKey:
        key = None if repository is None else self._repo(repository).key
        if hook_id is None:  # the configured one, else 1
            hook_id = min((k[1] for k in self._hooks if k[0] == key), default=1)
        return key, hook_id

    def record_delivery(
        self,
        *,
        event: str,
        action: str | None,
        payload: Mapping[str, Any] | bytes,
        guid: str | None = None,
        status_code: int = 502,
        hook: Literal["app", "repo"] = "app",
        repository: str | None = None,
        hook_id: int | None = None,
    ) -> str:
        """Store a past delivery (nothing is sent): "OK" if 2xx, else failed. Return its GUID.

        ``payload`` bytes are kept as the exact body. ``hook="repo"`` needs ``repository``.
        """
        if hook == "repo" and repository is None:
            raise ValueError('hook="repo" needs repository=')
        body = payload if isinstance(payload, bytes) else orjson.dumps(dict(payload))
        key = self._hook_key(repository if hook == "repo" else None, hook_id)
        delivery = self._store(key, event, action, body, guid or str(uuid.uuid1()), False)
        if repository is not None and delivery.repository_id is None:
            delivery.repository_id = self._repo(repository).id
        delivery._answered(status_code)
        return delivery.guid

    def _store(
        self, key: HookKey, event: str, action: str | None, body: bytes, guid: str, again: bool
    ) -> Delivery:
        payload = orjson.loads(body)
        ids = {
            name: payload[name].get("id")
            for name in ("installation", "repository")
            if isinstance(payload, dict) and isinstance(payload.get(name), dict)
        }
        hook = self._hooks.get(key)
        delivery = Delivery(
            id=self._new_id(),
            guid=guid,
            delivered_at=_iso(self._tick()),
            redelivery=again,
            event=event,
            action=action,
            installation_id=ids.get("installation"),
            repository_id=ids.get("repository"),
            hook=key,
            url=hook.url if hook else "",
            request_headers=self._delivery_headers(key, hook, event, guid, body),
            body=body,
        )
        self.deliveries.append(delivery)
        return delivery

    def _delivery_headers(
        self, key: HookKey, hook: _Hook | None, event: str, guid: str, body: bytes
    ) -> dict[str, str]:
        # Docs "Webhook events and payloads" (delivery headers) and "Validating webhook
        # deliveries": signatures are HMACs of the raw body with the hook's secret.
        if key[0] is None:
            target = ("integration", self.app_id)
        else:
            target = ("repository", str(self._repos[key[0]].id))
        headers = {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Delivery": guid,
            "X-GitHub-Event": event,
            "X-GitHub-Hook-ID": str(key[1]),
            "X-GitHub-Hook-Installation-Target-ID": target[1],
            "X-GitHub-Hook-Installation-Target-Type": target[0],
        }
        if hook is not None:
            secret = hook.secret.encode()
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret, body, "sha1").hexdigest()
            signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = "sha256=" + signature
        return headers

    async def _send(self, original: Delivery) -> Delivery:
        """Redeliver: POST the original bytes, signed now, and record the new attempt."""
        hook = self._hooks[original.hook]
        assert self._session is not None
        attempt = self._store(
            original.hook, original.event, original.action, original.body, original.guid, True
        )
        started = time.monotonic()
        try:  # GitHub gives a hook 10 s to answer
            async with (
                asyncio.timeout(self.hook_timeout),
                self._session.post(
                    hook.url, data=attempt.body, headers=attempt.request_headers
                ) as response,
            ):
                attempt.response_body = (await response.text(errors="replace"))[:4096]
                attempt.response_headers = dict(response.headers)
            attempt._answered(response.status)
        except TimeoutError:
            attempt.status = "timed out"
        except aiohttp.ClientError:
            attempt.status = "failed to connect to host"
        attempt.duration = round(time.monotonic() - started, 2)
        return attempt

    # -- HTTP: the pipeline every request goes through ------------------------------------

    async def _unreachable(self, request: web.Request) -> web.StreamResponse:
        raise AssertionError("the middleware answers every request")

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        """Every request: secondary limits, faults, routing, authentication, primary
        limits, conditional GETs."""
        body = await request.read() if request.can_read_body else b""  # kept for the handler
        record = RequestRecord(request.method, request.path, dict(request.query), body=body)
        record.conditional = "If-None-Match" in request.headers
        record.api = "graphql" if request.path == "/graphql" else "rest"
        self.requests.append(record)
        # Secondary limits count every request of a known credential as it arrives (refused
        # ones too: GitHub counts what is sent), before faults and routing, and its time in
        # flight until it is answered.
        key = self._credential_key(request.headers.get("Authorization", ""))
        refusal = None
        if key is not None:
            mutation = record.api == "graphql" and fake_graphql.is_mutation(body)
            record.credential = key
            record.points = secondary_points(request.method, record.api, mutation=mutation)
            refusal = self.limits.admit(key, record.api, record.points, record.received_at)
        try:
            response = await self._dispatch(request, record, refusal)
        finally:
            if key is not None:
                self.limits.release(key)
        record.status = response.status
        return response

    async def _dispatch(
        self, request: web.Request, record: RequestRecord, refusal: Refusal | None
    ) -> web.Response:
        if delay := self._take("delay", request.path, request.method):
            await asyncio.sleep(delay.seconds)
        fail = self._take("fail", request.path, request.method)
        if fail is not None and not fail.handled:
            return _error(fail.status, HTTPStatus(fail.status).phrase)
        response = await self._handle(request, record, refusal)
        if fail is not None:  # handled: it took effect (and cost), but the answer is lost
            return _error(fail.status, HTTPStatus(fail.status).phrase)
        return response

    async def _handle(
        self, request: web.Request, record: RequestRecord, refusal: Refusal | None
    ) -> web.Response:
        route = request.match_info.route
        if request.match_info.http_exception is not None or route.resource is None:
            return _error(404, "Not Found")
        auth, handler = self._routes[(route.method, route.resource.canonical)]
        credential = self._authenticate(request.headers.get("Authorization", ""), auth)
        if isinstance(credential, str):
            if record.api == "graphql":
                return _json(fake_graphql.unauthenticated(credential), 401)
            return _error(401, credential)
        record.token = credential.label
        resource: _Resource = "graphql" if record.api == "graphql" else "core"
        budget = self._budget(credential.budget_key, resource)
        if budget.remaining == 0 and resource == "graphql":
            response = _json(fake_graphql.rate_limited(credential.who))  # a 200, see there
        elif budget.remaining == 0:
            # Docs "Rate limits for the REST API": remaining 0 → 403, x-ratelimit-remaining 0.
            who = credential.who
            response = _error(403, f"API rate limit exceeded for {who}.", docs=_RATE_DOCS)
        elif (fault := self._take("secondary", request.path, request.method)) or refusal:
            response = self._secondary_refused(fault, refusal)
            record.rate_cost = 1  # a refused request costs 1 from the primary limit
            budget.used += 1
        else:
            record.rate_cost = 1
            budget.used += 1  # before the handler: GraphQL's rateLimit includes this query
            try:
                response = await handler(request, credential)
            except _ApiError as exc:
                response = _error(exc.status, exc.message, **exc.extra)
            if request.method == "GET" and response.status == 200:
                response = self._conditional(request, response, credential, record)
            budget.used -= 1 - record.rate_cost  # a 304 is free of the primary limit
        response.headers["X-RateLimit-Limit"] = str(budget.limit)
        response.headers["X-RateLimit-Remaining"] = str(budget.remaining)
        response.headers["X-RateLimit-Used"] = str(budget.used)
        response.headers["X-RateLimit-Reset"] = str(budget.reset)
        response.headers["X-RateLimit-Resource"] = resource
        response.headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
        return response

    def _secondary_refused(self, fault: _Fault | None, refusal: Refusal | None) -> web.Response:
        """Docs "Exceeding the rate limit": a secondary limit is a 403 or 429 whose message
        says so, with ``retry-after`` seconds when GitHub sends it. An injected fault wins
        over a limit the fake computed."""
        self.secondary_refusals += 1
        response = _error(fault.status if fault else 403, _SECONDARY, docs=_RATE_DOCS)
        retry_after = fault.retry_after if fault else refusal.retry_after if refusal else None
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    def _credential_key(self, header: str) -> str | None:
        """The budget a request's credential draws on, before routing (None: no valid one)."""
        value = header.partition(" ")[2].strip()
        credential = self._authenticate(header, "jwt" if value.count(".") == 2 else "token")
        return None if isinstance(credential, str) else credential.budget_key

    def _conditional(
        self,
        request: web.Request,
        response: web.Response,
        credential: _Credential,
        record: RequestRecord,
    ) -> web.Response:
        """A strong ETag of credential + Link + body (GitHub's vary per token); 304 if sent.

        Docs "Best practices" / conditional requests: a 304 to an authorized conditional
        request does not count against the primary rate limit.
        """
        assert isinstance(response.body, bytes)
        digest = hashlib.blake2b(digest_size=16)
        for part in (credential.raw, response.headers.get("Link", "")):
            digest.update(part.encode() + b"\0")
        digest.update(response.body)
        etag = f'"{digest.hexdigest()}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=60, s-maxage=60"}
        if _etag_matches(request.headers.get("If-None-Match", ""), etag):
            record.rate_cost = 0
            return web.Response(status=304, headers=headers)
        response.headers.update(headers)
        return response

    def _authenticate(self, header: str, auth: _Auth) -> _Credential | str:
        """The credential, or the 401 message (``Authorization: token X`` or ``Bearer X``)."""
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() not in ("token", "bearer") or not value:
            return "Requires authentication"
        if auth == "jwt":
            return self._check_jwt(value)
        if value in self._tokens:
            return _Credential(value, value, "token:" + value, "user ID 1")
        installation_id, expires = self._installation_tokens.get(value, (0, 0.0))
        if time.time() >= expires:  # unknown or expired
            return "Bad credentials"
        repos = frozenset(self._installations[installation_id].repos)
        who = f"installation ID {installation_id}"
        return _Credential(value, value, f"installation:{installation_id}", who, repos)

    def _check_jwt(self, value: str) -> _Credential | str:
        # Docs "Generating a JSON Web Token (JWT) for a GitHub App": RS256, iss = App ID,
        # iat may be backdated 60 s for clock drift, exp at most 10 minutes ahead.
        options: Options = {"verify_exp": False, "verify_iat": False, "verify_iss": False}
        try:
            claims = jwt.decode(value, self._public_key, algorithms=["RS256"], options=options)
        except jwt.PyJWTError:
            return "A JSON web token could not be decoded"
        now, exp, iat = time.time(), claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or exp <= now:
            return (
                "'Expiration time' claim ('exp') must be a numeric value representing the"
                " future time at which the assertion expires"
            )
        if exp > now + 601:
            return "'Expiration time' claim ('exp') is too far in the future"
        if not isinstance(iat, int | float) or iat > now + 60:
            return (
                "'Issued at' claim ('iat') must be an Integer representing the time that the"
                " assertion was issued"
            )
        if str(claims.get("iss")) != self.app_id:
            return "'Issuer' claim ('iss') must be the ID of the App"
        return _Credential(_APP, value, "app", f"app ID {self.app_id}")

    def _paginate(self, request: web.Request, items: list[Any]) -> tuple[list[Any], str | None]:
        """A page, and GitHub's Link header (docs "Using pagination in the REST API")."""
        per_page = min(_int_param(request, "per_page", 30), 100)
        page = _int_param(request, "page", 1)
        last = max(1, math.ceil(len(items) / per_page))
        url = URL(self.url).with_path(request.path)
        query = {name: value for name, value in request.query.items() if name != "page"}

        def link(number: int, rel: str) -> str:
            return f'<{url.with_query(query | {"page": str(number)})}>; rel="{rel}"'

        links = [link(page - 1, "prev")] if page > 1 else []
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links.append(link(1, "first"))
        return items[(page - 1) * per_page : page * per_page], ", ".join(links) or None

    def _access(self, request: web.Request, credential: _Credential) -> _Repo:
        """The path's repository if the credential may see it; GitHub hides others: 404."""
        info = request.match_info
        repo = self._repos.get(f"{info['owner']}/{info['repo']}".lower())
        if repo is None or (credential.repos is not None and repo.key not in credential.repos):
            raise _ApiError(404, "Not Found")
        return repo

    # -- HTTP: endpoints -----------------------------------------------------------------

    async def _list_installations(self, request: web.Request, _: _Credential) -> web.Response:
        installations = sorted(self._installations.items())
        page, link = self._paginate(request, [self._installation_json(i) for _, i in installations])
        return _json(page, link=link)

    async def _create_token(self, request: web.Request, _: _Credential) -> web.Response:
        # Docs "Create an installation access token for an app": 201, expires in an hour.
        # The optional body's repository narrowing is not imitated; permissions are echoed.
        number = request.match_info["id"]
        if not number.isdigit() or int(number) not in self._installations:
            raise _ApiError(404, "Not Found")
        raw = await request.read()
        try:
            options = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise _ApiError(400, "Problems parsing JSON") from None
        permissions = options.get("permissions") if isinstance(options, dict) else None
        alphabet = string.ascii_letters + string.digits
        token = "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))
        expires = time.time() + self.token_ttl
        self._installation_tokens[token] = (int(number), expires)
        self.tokens_issued += 1
        created: dict[str, Any] = {"token": token, "expires_at": _iso(int(expires))}
        created |= {"permissions": permissions or _PERMISSIONS, "repository_selection": "selected"}
        return _json(created, 201)

    async def _list_installation_repos(
        self, request: web.Request, credential: _Credential
    ) -> web.Response:
        # Docs "List repositories accessible to the app installation" (installation token).
        if credential.repos is None:
            raise _ApiError(403, "This endpoint requires an installation access token.")
        repos = sorted((self._repos[key] for key in credential.repos), key=lambda r: r.id)
        page, link = self._paginate(request, [self._repo_json(repo) for repo in repos])
        listing = {"total_count": len(repos), "repository_selection": "selected"}
        return _json(listing | {"repositories": page}, link=link)

    async def _get_repository(self, request: web.Request, credential: _Credential) -> web.Response:
        """``GET /repos/{owner}/{repo}``: the repository (its default branch, say)."""
        return _json(self._repo_json(self._access(request, credential)))

    async def _list_pulls(self, request: web.Request, credential: _Credential) -> web.Response:
        # Docs "List pull requests": state open|closed|all (default open); sort created|
        # updated|popularity|long-running (default created; the last two are ordered like
        # created here); direction defaults to desc for created, otherwise to asc.
        repo, query = self._access(request, credential), request.query
        state, sort = query.get("state", "open"), query.get("sort", "created")
        direction = query.get("direction", "desc" if sort == "created" else "asc")
        for name, value, allowed in (
            ("state", state, ("open", "closed", "all")),
            ("sort", sort, ("created", "updated", "popularity", "long-running")),
            ("direction", direction, ("asc", "desc")),
        ):
            if value not in allowed:
                error = {"resource": "PullRequest", "field": name, "code": "invalid"}
                raise _ApiError(422, "Validation Failed", errors=[error])
        pulls = [pull for pull in self._pulls[repo.key].values() if state in ("all", pull.state)]
        # head: "user:ref-name" (the head repository's owner); GitHub silently ignores a
        # value without the "user:" part. base: the base branch's name.
        head_owner, colon, head_ref = query.get("head", "").partition(":")
        if colon:
            pulls = [
                pull
                for pull in pulls
                if pull.repo.owner.lower() == head_owner.lower() and pull.head_ref == head_ref
            ]
        if "base" in query:
            pulls = [pull for pull in pulls if pull.base_ref == query["base"]]
        if sort == "updated":
            pulls.sort(key=lambda pull: (pull.updated_at, pull.number))
        else:
            pulls.sort(key=lambda pull: (pull.created_at, pull.number))
        if direction == "desc":
            pulls.reverse()
        page, link = self._paginate(request, pulls)
        return _json([self._render_pull(pull, simple=True) for pull in page], link=link)

    async def _create_pull(self, request: web.Request, credential: _Credential) -> web.Response:
        # Docs "Create a pull request": title, head ("branch" or "owner:branch"), base,
        # body, draft; 201 with the pull request and a Location header. One open pull
        # request per head and base: another is a 422 (code "custom"). Not imitated:
        # forks (head's owner must be the repository's), branches (any name is taken to
        # exist, with commits), ``issue`` (title is required), maintainer_can_modify.
        repo = self._access(request, credential)
        data = await _json_body(request)
        for name, kind in _CREATE_FIELDS.items():
            if data.get(name) is not None and not isinstance(data[name], kind[0]):
                raise _ApiError(
                    422,
                    f"Invalid request.\n\nFor 'properties/{name}', "
                    f"{orjson.dumps(data[name]).decode()} is not {kind[1]}.",
                    docs=_CREATE_PULL_DOCS,
                )
        for name in ("head", "base", "title"):
            if not data.get(name):
                error = {"resource": "PullRequest", "code": "missing_field", "field": name}
                raise _ApiError(422, "Validation Failed", errors=[error], docs=_CREATE_PULL_DOCS)
        owner, colon, ref = str(data["head"]).rpartition(":")
        if (colon and owner.lower() != repo.owner.lower()) or not ref:
            error = {"resource": "PullRequest", "field": "head", "code": "invalid"}
            raise _ApiError(422, "Validation Failed", errors=[error], docs=_CREATE_PULL_DOCS)
        base = str(data["base"])
        if ref == base:
            raise _validation_failed(f"No commits between {base} and {ref}")
        for pull in self._pulls[repo.key].values():
            if pull.state == "open" and pull.head_ref == ref and pull.base_ref == base:
                raise _validation_failed(f"A pull request already exists for {repo.owner}:{ref}.")
        created = self.add_pull(
            repo.full_name,
            title=str(data["title"]),
            head_ref=ref,
            base_ref=base,
            body=data.get("body"),
            draft=bool(data.get("draft")),
        )
        response = _json(created, 201)
        response.headers["Location"] = str(created["url"])
        return response

    async def _get_pull(self, request: web.Request, credential: _Credential) -> web.Response:
        repo, number = self._access(request, credential), request.match_info["number"]
        pull = self._pulls[repo.key].get(int(number)) if number.isdigit() else None
        if pull is None:
            raise _ApiError(404, "Not Found")
        return _json(self._render_pull(pull))

    def _path_hook(self, request: web.Request, credential: _Credential) -> HookKey:
        if "repo" not in request.match_info:
            return self._hook_key(None, None)  # /app/hook/...
        repo, hook_id = self._access(request, credential), request.match_info["hook_id"]
        if not hook_id.isdigit():
            raise _ApiError(404, "Not Found")
        return repo.key, int(hook_id)

    def _path_delivery(self, request: web.Request, credential: _Credential) -> Delivery:
        key, wanted = self._path_hook(request, credential), request.match_info["delivery_id"]
        for delivery in self.deliveries:
            if delivery.hook == key and str(delivery.id) == wanted:
                return delivery
        raise _ApiError(404, "Not Found")

    async def _list_deliveries(self, request: web.Request, credential: _Credential) -> web.Response:
        # Docs "List deliveries for an app webhook" / "... for a repository webhook": newest
        # first, per_page (max 100) and an opaque cursor in the Link rel="next" URL.
        key = self._path_hook(request, credential)
        deliveries = [d for d in reversed(self.deliveries) if d.hook == key]
        cursor = request.query.get("cursor")
        if cursor is not None:
            if not cursor.startswith("v1_") or not cursor[3:].isdigit():
                raise _ApiError(400, "Invalid cursor")
            deliveries = [d for d in deliveries if d.id <= int(cursor[3:])]
        per_page = min(_int_param(request, "per_page", 30), 100)
        link = None
        if len(deliveries) > per_page:
            query = dict(request.query) | {"cursor": f"v1_{deliveries[per_page].id}"}
            link = f'<{URL(self.url).with_path(request.path).with_query(query)}>; rel="next"'
        page = [delivery.json(self._delivery_item_keys) for delivery in deliveries[:per_page]]
        return _json(page, link=link)

    async def _get_delivery(self, request: web.Request, credential: _Credential) -> web.Response:
        return _json(self._path_delivery(request, credential).json(self._delivery_keys))

    async def _redeliver(self, request: web.Request, credential: _Credential) -> web.Response:
        # Docs "Redeliver a delivery for an app webhook": 202 {}. The new attempt has the
        # same GUID and redelivery=true; it is made before answering (module docstring).
        original = self._path_delivery(request, credential)
        if original.hook not in self._hooks:
            raise _ApiError(404, "Not Found (FakeGitHub: call configure_hook first)")
        await self._send(original)
        return _json({}, 202)

    async def _graphql(self, request: web.Request, credential: _Credential) -> web.Response:
        # Only tokens reach here (route auth "token"): docs "Authenticating as a GitHub App":
        # "The GraphQL API does not support any queries or mutations that require you to
        # authenticate with a JWT", so an App JWT is a 401 "Bad credentials" like any
        # unknown token. An installation token searches its installation's repositories.
        budget = self._budget(credential.budget_key, "graphql")
        rate = fake_graphql.RateLimit(budget.limit, budget.remaining, budget.reset)
        status, data = fake_graphql.answer(
            await request.read(), index=self._search, scope=credential.repos, rate=rate
        )
        return _json(data, status)


# "Create a pull request" body parameters: JSON type, and its name in GitHub's messages.
_CREATE_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "title": (str, "a string"),
    "head": (str, "a string"),
    "base": (str, "a string"),
    "body": (str, "a string"),
    "draft": (bool, "a boolean"),
    "maintainer_can_modify": (bool, "a boolean"),
    "issue": (int, "an integer"),
}


def _period(seconds: float, after: float) -> tuple[float, float]:
    """The time.monotonic() bounds of a fault period of ``seconds`` starting in ``after``."""
    if seconds <= 0 or after < 0:
        raise ValueError("a fault period needs seconds > 0 and after >= 0")
    starts = time.monotonic() + after
    return starts, starts + seconds


def _validation_failed(message: str) -> _ApiError:
    error = {"resource": "PullRequest", "code": "custom", "message": message}
    return _ApiError(422, "Validation Failed", errors=[error], docs=_CREATE_PULL_DOCS)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise _ApiError(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise _ApiError(400, "Problems parsing JSON")
    return data


def _search_entry(pull: _Pull) -> SearchEntry:
    """The pull request as search shows it: the GraphQL fields the poller asks for, from
    the same data the REST endpoints render."""
    full, status = pull.repo.full_name, "merged" if pull.merged else pull.state
    node = {
        "number": pull.number,
        "title": pull.title,
        "state": status.upper(),  # PullRequestState: OPEN, CLOSED, MERGED
        "merged": pull.merged,
        "mergedAt": _iso(pull.merged_at) if pull.merged_at else None,
        "closedAt": _iso(pull.closed_at) if pull.closed_at else None,
        "updatedAt": _iso(pull.updated_at),
        "isDraft": pull.draft,
        "url": f"https://github.com/{full}/pull/{pull.number}",
        "id": _node_id("PullRequest", pull.id),
        "databaseId": pull.id,
        "headRefName": pull.head_ref,
        "headRefOid": pull.head_sha,
        "baseRefName": pull.base_ref,
        "repository": {"nameWithOwner": full},
    }
    owner = pull.repo.owner.lower()
    return SearchEntry(pull.id, pull.repo.key, owner, pull.updated_at, status, node)


def _close(pull: _Pull, *, merged: bool, at: int) -> None:
    pull.state, pull.closed_at, pull.merged = "closed", at, merged
    pull.merged_at = at if merged else None
