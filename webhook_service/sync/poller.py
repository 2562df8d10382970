"""The sync worker: a low-frequency poller that catches every change webhooks missed.

GitHub never retries a failed delivery; this worker is what makes the database right
anyway (DESIGN.md §5). Its cost grows with what changed, not with the number of
repositories (see :mod:`webhook_service.sync.discovery`), and stays within a planned share
of each credential's rate limits (:mod:`webhook_service.github.budget`). Each cycle:

1. discovery: one GraphQL search per scope (an installation's account, an owner, a
   batch of repositories) for the PRs updated since the last search, reaching back
   ``SYNC_SEARCH_OVERLAP`` seconds further for the search index's lag;
2. the sweep, the safety net: the repositories due (each at least once per
   ``SYNC_FULL_SWEEP_INTERVAL``, spread evenly; active ones more often; every one on
   the first cycle) are listed with ``GET /repos/{o}/{r}/pulls?state=all&sort=updated&
   direction=desc&per_page=100`` and their ETag, walking pages only down to the newest
   ``updated_at`` the last sweep saw. An unchanged repository costs one 304;
3. PRs monitored one by one outside those repositories: ``GET .../pulls/{n}`` with ETag;
4. re-fetches the core asked for (ambiguous observations): the API's answer wins;
5. failed-delivery recovery: deliveries of our hooks with no OK attempt that we never
   applied are redelivered, once per GUID.

Every observation goes through the same reconciler as the webhooks, with
``sync_source: "worker"``. One repository failing never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from webhook_service.config import Settings
from webhook_service.core.events import timestamp
from webhook_service.core.model import Observation, Source
from webhook_service.core.payloads import PayloadError, snapshot_from_api, snapshot_from_graphql
from webhook_service.github.client import GitHub, HookRef
from webhook_service.github.errors import CredentialRejected, GitHubError, Stopped
from webhook_service.reconciler import Reconciler, Result
from webhook_service.store import Leadership, PRKey, Store, StoreUnavailable, utcnow
from webhook_service.sync import discovery

logger = logging.getLogger(__name__)

_JITTER = 0.10  # the interval varies by ±10%, so replicas and cycles do not align
_REDELIVERY_WINDOW = timedelta(days=3)  # GitHub redelivers deliveries up to 3 days old
_RECOVERY_INTERVAL = 300.0  # look for failed deliveries at most every 5 minutes...
_RECOVERY_OVERLAP = 600.0  # ...reading 10 minutes further back than the last look


@dataclass(slots=True)
class _Stats:
    sync_count: int = 0
    error_count: int = 0
    last_sync_at: datetime | None = None
    last_error: str | None = None
    observations: int = 0
    redeliveries: int = 0
    first_sweep_done: bool = False
    credential_error: str | None = None  # GitHub rejected a credential in the last cycle
    searches: int = 0  # search requests (pages)
    found: int = 0  # PRs discovery found changed
    swept: int = 0  # repository listings
    last_cycle: dict[str, int] = field(default_factory=dict)  # the last cycle's counts


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
        self._monotonic = monotonic
        # With several replicas, only the one holding the lead polls (None: always).
        self._leadership = leadership
        self._reconciler = reconciler
        self._github = github
        self._settings = settings
        self._hooks = _hooks(settings, github)
        self._watermarks: dict[str, datetime] = {}  # repository -> newest updated_at seen
        self._installation_of: dict[str, int | None] = {}
        self._accounts: dict[int, tuple[str, bool]] = {}  # installation -> (login, org)
        self._swept: dict[str, float] = {}  # repository -> when last listed (monotonic)
        self._searched: dict[str, datetime] = {}  # scope -> when its last search began
        self._seen: dict[PRKey, datetime] = {}  # updated_at found by recent searches
        # Repositories listed at once: each reserves its budget only when it starts.
        self._slots = asyncio.Semaphore(settings.sync_max_concurrency)
        self._stats = _Stats()
        self._recovered_until: float | None = None  # epoch of the last delivery recovery
        self._cycle_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
        api = self._github.stats
        return {
            "running": self.is_running(),
            "leader": self.is_leader(),
            "last_sync_at": _iso(self._stats.last_sync_at),
            "sync_count": self._stats.sync_count,
            "error_count": self._stats.error_count,
            "config": stats_config(self._settings),
            "api_calls": api.calls,
            "not_modified": api.not_modified,
            "retries": api.retries,
            "rate_limited": api.rate_limited,
            "rate_limit_remaining": api.rate_limit_remaining,
            "rate_limit_reset": api.rate_limit_reset,
            "last_error": self._stats.last_error or api.last_error,
            "observations": self._stats.observations,
            "redeliveries_requested": self._stats.redeliveries,
            "first_sweep_done": self._stats.first_sweep_done,
            "credential_error": self._stats.credential_error,
            "secondary_refusals": api.secondary_refusals,
            "searches": self._stats.searches,
            "found_by_search": self._stats.found,
            "repositories_swept": self._stats.swept,
            "repositories_tracked": len(self._installation_of),
            "last_cycle": dict(self._stats.last_cycle),
            "budgets": self._github.budgets(),
        }

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _lead(self) -> bool:
        if self._leadership is None:
            return True
        was = self._leadership.held
        leading = await self._leadership.hold()
        if leading != was:
            logger.info(
                "this replica %s the sync worker's lead", "took" if leading else "lost"
            )
        return leading

    async def sync_once(self, *, recover: bool = False) -> None:
        """One cycle over everything the worker watches.

        Failed-delivery recovery runs on the first cycle, when ``recover`` is set (a
        forced sync), and otherwise every five minutes.
        """
        async with self._cycle_lock:
            self._github.new_cycle()  # a rejected credential is tried again, once
            started, before = utcnow(), self._counts()
            errors: list[str] = []
            try:
                repositories = await self._repositories()
            except (StoreUnavailable, GitHubError) as exc:
                errors.append(_failure("listing repositories", exc))
                repositories = {}
            errors += await self._discover(repositories, started)
            errors += await self._sweep(repositories)
            errors += await self._sync_monitored(set(repositories))
            errors += await self._refetch_requested()
            if self._hooks and (recover or self._recovery_due()):
                errors += await self._recover_deliveries()
            # A rejected credential fails every call made with it, in the same words.
            errors = list(dict.fromkeys(errors))
            rejections = self._github.rejections
            self._stats.credential_error = "; ".join(rejections) or None
            self._stats.sync_count += 1
            self._stats.last_sync_at = utcnow()
            self._stats.error_count += len(errors)
            self._stats.last_cycle = {
                name: count - before[name] for name, count in self._counts().items()
            }
            if errors:
                self._stats.last_error = errors[-1]
                for error in errors:
                    level = logging.ERROR if error in rejections else logging.WARNING
                    logger.log(level, "sync: %s", error)
            elif all(r in self._swept for r in repositories):
                self._stats.first_sweep_done = True

    def _counts(self) -> dict[str, int]:
        api = self._github.stats
        return {
            "requests": api.calls,
            "not_modified": api.not_modified,
            "searches": self._stats.searches,
            "found_by_search": self._stats.found,
            "repositories_swept": self._stats.swept,
            "secondary_refusals": api.secondary_refusals,
        }

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

    # -- discovery: what changed, in requests that do not grow with repositories ----

    async def _discover(self, repositories: dict[str, int | None], started: datetime) -> list[str]:
        if self._settings.sync_discovery != "search" or not repositories:
            return []
        errors = []
        overlap = timedelta(seconds=self._settings.sync_search_overlap)
        # A scope new since the last cycle (a repository added to a batch, a new
        # installation) is searched from the oldest search still due: its repositories'
        # changes since then are found now, not at their next sweep.
        oldest = min(self._searched.values(), default=None)
        scopes = discovery.scopes(repositories, self._accounts)
        for scope in scopes:
            since = self._searched.get(scope.key, oldest)
            try:
                if since is not None:  # else (the first cycle) the sweep lists them all
                    await self._search(scope, since - overlap, repositories)
                self._searched[scope.key] = started
            except (GitHubError, StoreUnavailable) as exc:
                errors.append(_failure(f"searching {scope.qualifiers}", exc))
        horizon = started - overlap - overlap
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
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
                self._stats.found += len(observations)
                await self._apply(observations)
                if not page.has_next or page.end_cursor is None:
                    break
                after = page.end_cursor
            # GitHub pages through 1,000 results at most: go on from the last one seen
            # (oldest first), unless that is where this search began.
            more = page.total > fetched and newest is not None and newest > floor
            floor = newest if more else None

    # -- the sweep: every repository within the full-sweep period ---------------------

    async def _sweep(self, repositories: dict[str, int | None]) -> list[str]:
        settings = self._settings
        if settings.sync_discovery != "search":
            names = list(repositories)  # without discovery, every repository every cycle
        else:
            # A change in the last quarter period: swept within the next quarter.
            quarter = settings.sync_full_sweep_interval / discovery.HOT_FACTOR
            active_since = utcnow() - timedelta(seconds=quarter)
            hot = await self._store.active_repositories(active_since)
            names = discovery.due(
                self._swept,
                repositories,
                hot,
                now=self._monotonic(),
                horizon=settings.sync_interval,
                period=settings.sync_full_sweep_interval,
            )
        outcomes = await asyncio.gather(
            *(self._sweep_one(r) for r in names), return_exceptions=True
        )
        return _failures(names, outcomes)

    async def _sweep_one(self, repository: str) -> None:
        async with self._slots:
            await self._sync_repository(repository)
        self._swept[repository] = self._monotonic()
        self._stats.swept += 1

    async def _sync_repository(self, repository: str) -> None:
        api = await self._github.api_for(self._installation_of.get(repository))
        first = f"/repos/{repository}/pulls?state=all&sort=updated&direction=desc&per_page=100"
        try:
            await self._walk(api, repository, first)
        except BaseException:
            # Page 1's ETag would answer 304 next time and hide the pages not walked.
            api.forget(first)
            raise

    async def _walk(self, api: Any, repository: str, first: str) -> None:
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
            errors += _failures([f"{r}#{n}" for r, n in batch], outcomes)
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
                    errors.append(_failure(f"re-fetching {key[0]}#{key[1]}", exc))
                    continue
            except PayloadError as exc:
                errors.append(f"re-fetching {key[0]}#{key[1]}: unexpected answer: {exc}")
            await self._store.clear_refetch(key, started)
        return errors

    def _recovery_due(self) -> bool:
        last = self._recovered_until
        return last is None or utcnow().timestamp() - last >= _RECOVERY_INTERVAL

    async def _recover_deliveries(self) -> list[str]:
        """Ask GitHub to redeliver what never reached us (GitHub's own recipe:
        https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries)."""
        errors = []
        started = utcnow()
        oldest = started - _REDELIVERY_WINDOW
        since = oldest.timestamp()
        if self._recovered_until is not None:
            since = max(since, self._recovered_until - _RECOVERY_OVERLAP)
        for hook in self._hooks:
            try:
                deliveries = await self._github.hook_deliveries(hook, since)
                failed = _failed_guids(deliveries, oldest)
                known = await self._store.delivery_outcomes(list(failed))
                asked = await self._store.redeliveries_requested(list(failed))
                for guid, delivery_id in failed.items():
                    if known.get(guid) in ("applied", "ignored") or guid in asked:
                        continue
                    if not await self._store.record_redelivery(guid, hook.path, delivery_id):
                        continue  # another replica asked already
                    try:
                        await self._github.redeliver(hook, delivery_id)
                    except BaseException:
                        await self._store.forget_redelivery(guid)  # ask again next time
                        raise
                    self._stats.redeliveries += 1
                    logger.info("asked GitHub to redeliver %s", guid, extra={"guid": guid})
            except (GitHubError, StoreUnavailable) as exc:
                errors.append(_failure(f"recovering deliveries of {hook.path}", exc))
        if not errors:
            self._recovered_until = started.timestamp()
        return errors

    async def _apply(self, observations: Sequence[Observation]) -> None:
        # Submitted together, they are committed together (the reconciler batches).
        self._stats.observations += len(observations)
        await asyncio.gather(*(self._reconciler.observe(o) for o in observations))


def _hooks(settings: Settings, github: GitHub) -> list[HookRef]:
    hooks = [HookRef("/app/hook", app=True)] if github.is_app else []
    hooks += [HookRef(f"/repos/{repo}/hooks/{hook_id}") for repo, hook_id in settings.hook_ids]
    return hooks


def _failed_guids(deliveries: Sequence[dict[str, Any]], oldest: datetime) -> dict[str, int]:
    """GUID -> the newest attempt's id, for GUIDs with no successful attempt."""
    ok: set[str] = set()
    latest: dict[str, tuple[datetime, int]] = {}
    for delivery in deliveries:
        guid = str(delivery.get("guid"))
        delivered = datetime.fromisoformat(str(delivery.get("delivered_at")))
        if delivered < oldest:
            continue
        if 200 <= int(delivery.get("status_code") or 0) < 300:
            ok.add(guid)
        if guid not in latest or delivered > latest[guid][0]:
            latest[guid] = (delivered, int(delivery["id"]))
    return {guid: attempt for guid, (_, attempt) in latest.items() if guid not in ok}


def _failures(labels: Sequence[str], outcomes: Sequence[object]) -> list[str]:
    errors = []
    for label, outcome in zip(labels, outcomes, strict=True):
        if isinstance(outcome, Stopped):
            raise outcome
        if isinstance(outcome, (GitHubError, StoreUnavailable, PayloadError)):
            errors.append(_failure(label, outcome))
        elif isinstance(outcome, BaseException):
            errors.append(f"{label}: unexpected {outcome!r}")
            logger.error("sync of %s failed", label, exc_info=outcome)
    return errors


def _failure(label: str, exc: Exception) -> str:
    """An error line; a rejected credential's is the same for every call it failed."""
    return str(exc) if isinstance(exc, CredentialRejected) else f"{label}: {exc}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else timestamp(value)


def stats_config(settings: Settings) -> dict[str, Any]:
    """The worker's settings, as ``/stats`` shows them under ``config``."""
    return {
        "sync_interval": settings.sync_interval,
        "batch_size": settings.sync_batch_size,
        "max_concurrent_syncs": settings.sync_max_concurrency,
        "sync_timeout": settings.sync_timeout,
        "retry_attempts": settings.sync_retry_attempts,
        "retry_delay": settings.sync_retry_delay,
    }


def idle_stats(settings: Settings) -> dict[str, Any]:
    """``/stats`` of a service with no sync worker (no GitHub credential): the same keys
    as :meth:`PRSyncWorker.get_stats`, not running, with nulls and zeros, so monitoring
    that reads the original design's shape does not break."""
    return {
        "running": False,
        "leader": False,
        "last_sync_at": None,
        "sync_count": 0,
        "error_count": 0,
        "config": stats_config(settings),
        "api_calls": 0,
        "not_modified": 0,
        "retries": 0,
        "rate_limited": 0,
        "rate_limit_remaining": None,
        "rate_limit_reset": None,
        "last_error": None,
        "observations": 0,
        "redeliveries_requested": 0,
        "first_sweep_done": False,
        "credential_error": None,
        "secondary_refusals": 0,
        "searches": 0,
        "found_by_search": 0,
        "repositories_swept": 0,
        "repositories_tracked": 0,
        "last_cycle": {},
        "budgets": {},
    }
