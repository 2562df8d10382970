"""``FakeGitHub``: the one object a test holds. It assembles the fake's parts, serves them
on 127.0.0.1, and offers the methods that set up GitHub's state and inject faults."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web

import webhook_service.testing.fake_github.pipeline as pipeline
from webhook_service.testing.fake_github.apps import ManifestFlow
from webhook_service.testing.fake_github.budgets import PrimaryLimits, Resource
from webhook_service.testing.fake_github.clock import Timestamp
from webhook_service.testing.fake_github.credentials import Credentials, new_private_key
from webhook_service.testing.fake_github.deliveries import Delivery, Hooks
from webhook_service.testing.fake_github.faults import FaultInjection
from webhook_service.testing.fake_github.limits import SecondaryLimits
from webhook_service.testing.fake_github.records import RequestRecord
from webhook_service.testing.fake_github.rendering import (
    Renderer,
    rest_fixtures_root,
    search_entry,
)
from webhook_service.testing.fake_github.routes import ROUTES
from webhook_service.testing.fake_github.search import SearchIndex
from webhook_service.testing.fake_github.state import State

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeGitHub(FaultInjection):
    """A GitHub API double on loopback (REST, and GraphQL's pull-request search):
    ``async with FakeGitHub() as gh: ...``.

    ``rate_window`` is the primary rate-limit window in seconds (``rate_limit`` REST and
    ``graphql_rate_limit`` GraphQL points per window and credential), ``token_ttl`` the
    lifetime of installation tokens, ``hook_timeout`` how long a hook may take to answer
    a redelivery (GitHub: 10 s). Pass ``private_key_pem`` to skip generating a key.

    Secondary limits (``limits``; defaults are GitHub's documented numbers): per
    credential, ``secondary_rest_points`` REST and ``secondary_graphql_points`` GraphQL
    points within any ``secondary_window`` seconds, and ``max_concurrent`` requests in
    flight. ``search_lag``: seconds before a pull-request change is visible to search.
    Faults: the methods of :class:`FaultInjection` (``fail_next``, ``delay_for``, ...).
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
        super().__init__()
        self.app_id = app_id
        self.rate_limit = rate_limit
        self.graphql_rate_limit = graphql_rate_limit
        self.rate_window = rate_window
        self.limits = SecondaryLimits(
            rest_points=secondary_rest_points,
            graphql_points=secondary_graphql_points,
            window=secondary_window,
            max_concurrent=max_concurrent,
        )
        self.secondary_refusals = 0  # answers refused for a secondary limit, injected too
        self.token_ttl = token_ttl
        self.hook_timeout = hook_timeout
        self.private_key_pem = private_key_pem if private_key_pem is not None else new_private_key()
        self.url = ""
        self.requests: list[RequestRecord] = []
        self.tokens_issued = 0
        self._assemble(fixtures_dir or rest_fixtures_root(), search_lag)
        self.deliveries: list[Delivery] = self._hooks.deliveries
        self._runner: web.AppRunner | None = None

    def _assemble(self, examples: Path, search_lag: float) -> None:
        """The parts (see the package docstring); settings are read through ``self``."""

        def app_id() -> str:  # read when used: a test may change it
            return self.app_id

        self._search = SearchIndex(search_lag)
        self._state = State(
            managed=lambda pull: self._render.pull_fields(pull).keys(),
            changed=lambda pull: self._search.record(search_entry(pull)),
        )
        self._credentials = Credentials(  # first, as before: a bad key fails early
            self.private_key_pem, app_id=app_id, installations=self._state.installations
        )
        self._render = Renderer(examples, url=lambda: self.url, app_id=app_id)
        self._primary = PrimaryLimits(
            limit=lambda api: self.rate_limit if api == "core" else self.graphql_rate_limit,
            window=lambda: self.rate_window,
        )
        self._hooks = Hooks(self._state, app_id=app_id)
        self.manifests = ManifestFlow(
            app_id=app_id, pem=lambda: self.private_key_pem, url=lambda: self.url
        )

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
            return await pipeline.answer(self, request)  # routed by aiohttp, answered here

        app = web.Application(middlewares=[middleware])
        # Registering an App from a manifest (apps.py).
        app.router.add_routes(self.manifests.routes())
        manifest_resources = {route.resource for route in app.router.routes()}
        for method, path in ROUTES:
            app.router.add_route(method, path, _unreachable)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._hooks.open()
        self._render.forget()  # rendered URLs now point at self.url
        return self.url

    async def close(self) -> None:
        """Stop the server and close the session used for redeliveries."""
        await self._hooks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitHub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def advance(self, seconds: float) -> None:
        """Move the timestamp clock forward (rate limits and token expiry use real time)."""
        self._state.clock.advance(seconds)

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        self.requests.clear()

    # -- credentials and rate limits -----------------------------------------------------

    def add_token(self, token: str) -> None:
        """Accept ``token`` (like a personal access token) for every repository."""
        self._credentials.tokens.add(token)

    def add_installation(
        self, installation_id: int, repositories: list[str], account: str = "Codertocat"
    ) -> None:
        """Install the App on ``account``, selecting ``repositories`` ("owner/name")."""
        self._state.add_installation(installation_id, repositories, account)

    def rate_remaining(self, token: str, *, resource: Resource = "core") -> int:
        """The primary rate limit left for ``token`` ("jwt" or any JWT: the App's);
        ``resource="graphql"``: of its GraphQL budget."""
        return self._primary.budget(self._credentials.budget_key(token), resource).remaining

    def exhaust_primary(
        self, token: str | None = None, reset_in: float = 2.0, *, resource: Resource = "core"
    ) -> None:
        """Use up the primary limit of ``token`` (None: of everyone) until ``reset_in`` s."""
        key = None if token is None else self._credentials.budget_key(token)
        self._primary.exhaust(key, reset_in, resource)

    # -- repositories and pull requests --------------------------------------------------

    def add_repository(self, full_name: str, *, default_branch: str = "main") -> None:
        """Create a repository ("owner/name") without pull requests (idempotent; the
        default branch is set each time)."""
        self._state.repo(full_name).default_branch = default_branch
        self._render.forget(full_name.lower())

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
        pull = self._state.add_pull(
            repository,
            number,
            title=title,
            state=state,
            merged=merged,
            draft=draft,
            head_ref=head_ref,
            head_sha=head_sha,
            base_ref=base_ref,
            user=user,
            body=body,
            created_at=created_at,
            updated_at=updated_at,
            extra=extra,
        )
        return self._render.public(pull)

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
        pull = self._state.pull(repository, number)
        changes = {"draft": draft, "title": title, "head_sha": head_sha, "body": body}
        changes |= {"head_ref": head_ref, "base_ref": base_ref}
        self._state.update_pull(pull, state=state, merged=merged, changes=changes, extra=extra)
        return self._render.public(pull)

    def pull(self, repository: str, number: int) -> dict[str, Any]:
        """One pull request in the REST "get" shape."""
        return self._render.public(self._state.pull(repository, number))

    def pulls(self, repository: str) -> list[dict[str, Any]]:
        """A repository's pull requests by number, in the REST "get" shape."""
        stored = self._state.pulls.get(repository.lower(), {})
        return [self._render.public(stored[number]) for number in sorted(stored)]

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
        self._hooks.configure(url=url, secret=secret, hook_id=hook_id, repository=repository)

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
        key = self._hooks.key(repository if hook == "repo" else None, hook_id)
        delivery = self._hooks.record(
            key, event, action, body, guid=guid, status_code=status_code, repository=repository
        )
        return delivery.guid


async def _unreachable(request: web.Request) -> web.StreamResponse:
    raise AssertionError("the middleware answers every request")
