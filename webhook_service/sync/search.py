"""Discovery's requests: one GraphQL search per scope (an installation's account, an
owner, a batch of repositories) for the PRs updated since its last search, reaching back
``SYNC_SEARCH_OVERLAP`` seconds further for the search index's lag. What to search is
decided without I/O in :mod:`webhook_service.sync.discovery`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from datetime import datetime, timedelta

from webhook_service.config import Settings
from webhook_service.core.model import Observation, Source
from webhook_service.core.payloads import PayloadError, snapshot_from_graphql
from webhook_service.github.client import GitHub, SearchPage
from webhook_service.github.errors import GitHubError
from webhook_service.store import PRKey, StoreUnavailable
from webhook_service.sync import discovery
from webhook_service.sync.failures import failure
from webhook_service.sync.stats import SyncStats

logger = logging.getLogger(__name__)

#: Observations into the reconciler, submitted together (so committed together).
Apply = Callable[[Sequence[Observation]], Awaitable[None]]


class Search:
    """The searches of every scope, each from where its last one began.

    ``seen`` (shared with the sweep) holds the ``updated_at`` of PRs recently found:
    a search reaching back over one again knows it is not news.
    """

    def __init__(
        self,
        github: GitHub,
        settings: Settings,
        stats: SyncStats,
        seen: MutableMapping[PRKey, datetime],
        apply: Apply,
    ) -> None:
        self._github = github
        self._settings = settings
        self._stats = stats
        self._seen = seen
        self._apply = apply
        self._searched: dict[str, datetime] = {}  # scope -> when its last search began

    async def discover(
        self,
        repositories: dict[str, int | None],
        accounts: Mapping[int, tuple[str, bool]],
        started: datetime,
    ) -> list[str]:
        """Search every scope of ``repositories``; the error lines."""
        if self._settings.sync_discovery != "search" or not repositories:
            return []
        errors = []
        overlap = timedelta(seconds=self._settings.sync_search_overlap)
        # A scope new since the last cycle (a repository added to a batch, a new
        # installation) is searched from the oldest search still due: its repositories'
        # changes since then are found now, not at their next sweep.
        oldest = min(self._searched.values(), default=None)
        scopes = discovery.scopes(repositories, accounts)
        for scope in scopes:
            since = self._searched.get(scope.key, oldest)
            try:
                if since is not None:  # else (the first cycle) the sweep lists them all
                    await self._search(scope, since - overlap, repositories)
                self._searched[scope.key] = started
            except (GitHubError, StoreUnavailable) as exc:
                errors.append(failure(f"searching {scope.qualifiers}", exc))
        horizon = started - overlap - overlap
        for key in [k for k, v in self._seen.items() if v < horizon]:
            del self._seen[key]
        live = {scope.key for scope in scopes}
        self._searched = {k: v for k, v in self._searched.items() if k in live}
        return errors

    async def _search(
        self, scope: discovery.Scope, since: datetime, repositories: dict[str, int | None]
    ) -> None:
        """Every PR of ``scope`` updated at or after ``since``, into the core."""
        api = await self._github.api_for(scope.installation_id)
        floor: datetime | None = since
        while floor is not None:
            q, after, fetched, newest = discovery.query(scope.qualifiers, floor), None, 0, None
            while True:
                page = await self._github.search_pulls(api, q, after)
                self._stats.searches += 1
                fetched += len(page.nodes)
                observations, newest = self._news(page, repositories, newest)
                self._stats.found += len(observations)
                await self._apply(observations)
                if not page.has_next or page.end_cursor is None:
                    break
                after = page.end_cursor
            # GitHub pages through 1,000 results at most: go on from the last one seen
            # (oldest first), unless that is where this search began.
            more = page.total > fetched and newest is not None and newest > floor
            floor = newest if more else None

    def _news(
        self, page: SearchPage, repositories: dict[str, int | None], newest: datetime | None
    ) -> tuple[list[Observation], datetime | None]:
        """The page's PRs of tracked repositories not found by the last search, and the
        ``updated_at`` of its last well-formed result (``newest`` if it has none)."""
        observations = []
        for node in page.nodes:
            try:
                snapshot = snapshot_from_graphql(node)
            except PayloadError as exc:
                logger.warning("skipping a malformed search result: %s", exc)
                continue
            newest = snapshot.updated_at
            key = (snapshot.repository, snapshot.number)
            if snapshot.repository not in repositories or self._seen.get(key) == newest:
                continue  # not tracked, or found by the last search already
            self._seen[key] = newest
            observations.append(Observation(snapshot, Source.WORKER))
        return observations, newest
