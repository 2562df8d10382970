"""The sync worker: a low-frequency poller that catches every change webhooks missed.

GitHub never retries a failed delivery; this worker is what makes the database right
anyway (DESIGN.md §5). Its cost grows with what changed, not with the number of
repositories (see :mod:`webhook_service.sync.discovery`), and stays within a planned share
of each credential's rate limits (:mod:`webhook_service.github.budget`). Each cycle:

1. discovery (:mod:`.search`): one GraphQL search per scope for the PRs updated since
   the last search;
2. the sweep (:mod:`.sweep`), the safety net: the repositories due are listed with
   their ETag, down to the newest ``updated_at`` the last sweep saw;
3. PRs monitored one by one outside those repositories: ``GET .../pulls/{n}`` with ETag;
4. re-fetches the core asked for (ambiguous observations): the API's answer wins;
5. failed-delivery recovery (:mod:`.recovery`): deliveries of our hooks with no OK
   attempt that we never applied are redelivered, once per GUID.

Every observation goes through the same reconciler as the webhooks, with
``sync_source: "worker"``. One repository failing never stops the others
(:mod:`.failures`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from webhook_service.config import Settings
from webhook_service.core.model import Observation, Source
from webhook_service.core.payloads import PayloadError, snapshot_from_api
from webhook_service.github.client import GitHub
from webhook_service.github.errors import GitHubError, Stopped
from webhook_service.reconciler import Reconciler, Result
from webhook_service.store import Leadership, PRKey, Store, StoreUnavailable, utcnow
from webhook_service.sync.failures import failure, failures
from webhook_service.sync.recovery import DeliveryRecovery
from webhook_service.sync.search import Search
from webhook_service.sync.stats import SyncStats, worker_stats
from webhook_service.sync.sweep import Sweep

logger = logging.getLogger(__name__)

_JITTER = 0.10  # the interval varies by ±10%, so replicas and cycles do not align


class PRSyncWorker:
    """``start``/``stop``/``force_sync``/``get_stats``/``is_running``, as in the original."""

    def __init__(
        self,
        store: Store,
        reconciler: Reconciler,
        github: GitHub,
        settings: Settings,
        *,
        leadership: Leadership | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        # With several replicas, only the one holding the lead polls (None: always).
        self._leadership = leadership
        self._reconciler = reconciler
        self._github = github
        self._settings = settings
        self._installation_of: dict[str, int | None] = {}
        self._accounts: dict[int, tuple[str, bool]] = {}  # installation -> (login, org)
        self._stats = SyncStats()
        seen: dict[PRKey, datetime] = {}  # updated_at found by recent searches and sweeps
        self._search = Search(github, settings, self._stats, seen, self._apply)
        self._sweep = Sweep(github, store, settings, self._stats, seen, self._apply, monotonic)
        self._recovery = DeliveryRecovery(github, store, settings, self._stats)
        self._cycle_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: When the loop wakes next (a cycle, or a standby's bid for the lead).
        self.next_cycle_at: datetime | None = None

    # -- the original design's API -----------------------------------------------

    async def start(self) -> None:
        """Start the loop; its first cycle is a full sweep of every repository."""
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name="pr-sync-worker")

    async def stop(self, grace: float | None = None) -> None:
        """Let the cycle in flight finish (up to ``grace`` s), then stop."""
        if self._task is None:
            return
        self._stopping.set()
        self._wake.set()
        grace = self._settings.sync_timeout if grace is None else grace
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._github.close()  # interrupts rate-limit and retry waits
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Stopped):
                await self._task
        self._task = None
        if self._leadership is not None:
            await self._leadership.release()  # another replica takes over at once

    async def force_sync(self) -> dict[str, Any]:
        """Run one cycle now (after the one in flight, if any); returns the stats."""
        await self.sync_once(recover=True)
        return self.get_stats()

    @property
    def github(self) -> GitHub:
        """The GitHub client this worker polls with (the PR creator uses it too)."""
        return self._github

    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    def is_leader(self) -> bool:
        """Whether this replica is the one that polls."""
        return self._leadership is None or self._leadership.held

    def get_stats(self) -> dict[str, Any]:
        return worker_stats(
            self._stats,
            self._github.stats,
            self._settings,
            running=self.is_running(),
            leader=self.is_leader(),
            tracked=len(self._installation_of),
            budgets=self._github.budgets(),
        )

    # -- cycles --------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before the cycle: a stop() during it must not be lost
            leading = await self._lead()
            if leading:
                try:
                    await self.sync_once()
                except Stopped:
                    return
                except Exception:  # a cycle must never kill the worker
                    logger.exception("sync cycle failed")
            if self._stopping.is_set():
                return
            # A follower asks for the lead twice per interval, so that it takes over
            # within one interval of the leader's death.
            interval = self._settings.sync_interval * (1.0 if leading else 0.5)
            delay = interval * random.uniform(1 - _JITTER, 1 + _JITTER)
            self.next_cycle_at = utcnow() + timedelta(seconds=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _lead(self) -> bool:
        if self._leadership is None:
            return True
        was = self._leadership.held
        leading = await self._leadership.hold()
        if leading != was:
            logger.info("this replica %s the sync worker's lead", "took" if leading else "lost")
        return leading

    async def sync_once(self, *, recover: bool = False) -> None:
        """One cycle over everything the worker watches.

        Failed-delivery recovery runs on the first cycle, when ``recover`` is set (a
        forced sync), and otherwise every five minutes.
        """
        async with self._cycle_lock:
            self._github.new_cycle()  # a rejected credential is tried again, once
            started, before = utcnow(), self._stats.counts(self._github.stats)
            errors: list[str] = []
            try:
                repositories = await self._repositories()
            except (StoreUnavailable, GitHubError) as exc:
                errors.append(failure("listing repositories", exc))
                repositories = {}
            errors += await self._search.discover(repositories, self._accounts, started)
            errors += await self._sweep.run(repositories)
            errors += await self._sync_monitored(set(repositories))
            errors += await self._refetch_requested()
            if self._recovery.hooks and (recover or self._recovery.due()):
                errors += await self._recovery.run()
            self._report(errors, before)
            if not errors and all(r in self._sweep.swept for r in repositories):
                self._stats.first_sweep_done = True

    def _report(self, errors: list[str], before: dict[str, int]) -> None:
        """Count the cycle and log its errors, each once."""
        # A rejected credential fails every call made with it, in the same words.
        errors = list(dict.fromkeys(errors))
        rejections = self._github.rejections
        self._stats.credential_error = "; ".join(rejections) or None
        self._stats.sync_count += 1
        self._stats.last_sync_at = utcnow()
        self._stats.error_count += len(errors)
        after = self._stats.counts(self._github.stats)
        self._stats.last_cycle = {name: count - before[name] for name, count in after.items()}
        if errors:
            self._stats.last_error = errors[-1]
            for error in errors:
                level = logging.ERROR if error in rejections else logging.WARNING
                logger.log(level, "sync: %s", error)

    async def _repositories(self) -> dict[str, int | None]:
        """Configured repositories and those of App installations (listed on the
        first cycle, and again when a webhook brought an installation not seen yet)."""
        tracked = await self._store.tracked_repositories()
        unknown = {i for i in tracked.values() if i is not None} - self._accounts.keys()
        if self._github.is_app and (not self._accounts or unknown):
            for installation_id, found in (await self._github.installations()).items():
                self._accounts[installation_id] = (found.account, found.organization)
                await self._store.track_repositories(
                    found.repositories, source="installation", installation_id=installation_id
                )
            tracked = await self._store.tracked_repositories()
        for repo in self._settings.github_repositories:
            tracked.setdefault(repo, None)
        self._installation_of = tracked
        return tracked

    # -- pull requests one by one -------------------------------------------------

    async def _sync_monitored(self, covered: set[str]) -> list[str]:
        """PRs monitored one by one, outside the repositories listed above."""
        keys = [k for k in await self._store.monitored_pulls() if k[0] not in covered]
        errors = []
        size = self._settings.sync_batch_size
        for start in range(0, len(keys), size):
            batch = keys[start : start + size]
            outcomes = await asyncio.gather(
                *(self.sync_pull(k) for k in batch), return_exceptions=True
            )
            errors += failures([f"{r}#{n}" for r, n in batch], outcomes)
        return errors

    async def sync_pull(self, key: PRKey, *, authoritative: bool = False) -> Result | None:
        """Fetch one PR (conditionally, unless ``authoritative``) and apply it."""
        repository, number = key
        api = await self._github.api_for(self._installation_of.get(repository))
        data = await self._github.get_pull(api, repository, number, conditional=not authoritative)
        if data is None:
            return None  # not modified
        snapshot = snapshot_from_api(data, repository, merged_known=True)
        observation = Observation(snapshot, Source.WORKER, authoritative=authoritative)
        self._stats.observations += 1
        return await self._reconciler.observe(observation)

    async def _refetch_requested(self) -> list[str]:
        """Settle ambiguous observations with a fresh answer from the API."""
        started = utcnow()
        keys = await self._store.pending_refetches(limit=self._settings.sync_batch_size * 5)
        errors = []
        for key in keys:
            try:
                await self.sync_pull(key, authoritative=True)
            except GitHubError as exc:
                if exc.status != 404:  # a PR that is gone has nothing left to settle
                    errors.append(failure(f"re-fetching {key[0]}#{key[1]}", exc))
                    continue
            except PayloadError as exc:
                errors.append(f"re-fetching {key[0]}#{key[1]}: unexpected answer: {exc}")
            await self._store.clear_refetch(key, started)
        return errors

    async def _apply(self, observations: Sequence[Observation]) -> None:
        # Submitted together, they are committed together (the reconciler batches).
        self._stats.observations += len(observations)
        await asyncio.gather(*(self._reconciler.observe(o) for o in observations))
