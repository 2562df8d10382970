"""The sweep, the safety net for what discovery missed: the repositories due (each at
least once per ``SYNC_FULL_SWEEP_INTERVAL``, spread evenly; active ones more often;
every one on the first cycle) are listed with ``GET /repos/{o}/{r}/pulls?state=all&
sort=updated&direction=desc&per_page=100`` and their ETag, walking pages only down to
the newest ``updated_at`` the last sweep saw. An unchanged repository costs one 304.

Which repositories are due is decided without I/O in :mod:`webhook_service.sync.discovery`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from datetime import datetime, timedelta

from webhook_service.config import Settings
from webhook_service.core.model import Observation, Source
from webhook_service.core.payloads import PayloadError, snapshot_from_api
from webhook_service.github.client import GitHub
from webhook_service.github.transport import _API
from webhook_service.store import PRKey, Store, utcnow
from webhook_service.sync import discovery
from webhook_service.sync.failures import failures
from webhook_service.sync.search import Apply
from webhook_service.sync.stats import SyncStats

logger = logging.getLogger(__name__)


class Sweep:
    """Lists repositories' pull requests, each within the full-sweep period."""

    def __init__(
        self,
        github: GitHub,
        store: Store,
        settings: Settings,
        stats: SyncStats,
        seen: MutableMapping[PRKey, datetime],
        apply: Apply,
        monotonic: Callable[[], float],
    ) -> None:
        self._github = github
        self._store = store
        self._settings = settings
        self._stats = stats
        self._seen = seen
        self._apply = apply
        self._monotonic = monotonic
        self._watermarks: dict[str, datetime] = {}  # repository -> newest updated_at seen
        self.swept: dict[str, float] = {}  # repository -> when last listed (monotonic)
        # Repositories listed at once: each reserves its budget only when it starts.
        self._slots = asyncio.Semaphore(settings.sync_max_concurrency)

    async def run(self, repositories: dict[str, int | None]) -> list[str]:
        """Sweep the repositories due (each with its installation's credential); the
        error lines."""
        settings = self._settings
        if settings.sync_discovery != "search":
            names = list(repositories)  # without discovery, every repository every cycle
        else:
            # A change in the last quarter period: swept within the next quarter.
            quarter = settings.sync_full_sweep_interval / discovery.HOT_FACTOR
            active_since = utcnow() - timedelta(seconds=quarter)
            hot = await self._store.active_repositories(active_since)
            names = discovery.due(
                self.swept,
                repositories,
                hot,
                now=self._monotonic(),
                horizon=settings.sync_interval,
                period=settings.sync_full_sweep_interval,
            )
        outcomes = await asyncio.gather(
            *(self._sweep_one(r, repositories.get(r)) for r in names), return_exceptions=True
        )
        return failures(names, outcomes)

    async def _sweep_one(self, repository: str, installation_id: int | None) -> None:
        async with self._slots:
            await self._sync_repository(repository, installation_id)
        self.swept[repository] = self._monotonic()
        self._stats.swept += 1

    async def _sync_repository(self, repository: str, installation_id: int | None) -> None:
        api = await self._github.api_for(installation_id)
        first = f"/repos/{repository}/pulls?state=all&sort=updated&direction=desc&per_page=100"
        try:
            await self._walk(api, repository, first)
        except BaseException:
            # Page 1's ETag would answer 304 next time and hide the pages not walked.
            api.forget(first)
            raise

    async def _walk(self, api: _API, repository: str, first: str) -> None:
        url: str | None = first
        watermark = self._watermarks.get(repository)
        newest = watermark
        while url is not None:
            page = await self._github.list_pulls_page(api, url)
            if page.status == 304:
                break  # nothing changed since the last sweep
            observations = []
            reached_watermark = False
            for item in page.items:
                try:
                    snapshot = snapshot_from_api(item, repository, merged_known=True)
                except PayloadError as exc:
                    logger.warning(
                        "skipping a malformed PR: %s",
                        exc,
                        extra={"repository": repository, "pr": item.get("number")},
                    )
                    continue
                if watermark is not None and snapshot.updated_at < watermark:
                    reached_watermark = True
                    break
                newest = max(newest or snapshot.updated_at, snapshot.updated_at)
                # A search reaching back over this PR then knows it is not news.
                self._seen[(repository, snapshot.number)] = snapshot.updated_at
                observations.append(Observation(snapshot, Source.WORKER))
            await self._apply(observations)
            url = None if reached_watermark else page.next_url
        if newest is not None:
            self._watermarks[repository] = newest
