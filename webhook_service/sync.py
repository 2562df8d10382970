"""The sync worker: a low-frequency poller that catches every change webhooks missed.

GitHub never retries a failed delivery; this worker is what makes the database right
anyway (DESIGN.md §5). Each cycle:

1. every tracked repository: ``GET /repos/{o}/{r}/pulls?state=all&sort=updated&
   direction=desc&per_page=100`` with its ETag, walking pages only until
   ``updated_at`` falls below the newest one seen by the last sweep. An idle
   repository costs one request answered 304, which costs no rate limit;
2. PRs monitored one by one outside those repositories: ``GET .../pulls/{n}`` with ETag;
3. re-fetches the core asked for (ambiguous observations): the API's answer wins;
4. failed-delivery recovery: deliveries of our hooks with no OK attempt that we never
   applied are redelivered, once per GUID.

Every observation goes through the same reconciler as the webhooks, with
``sync_source: "worker"``. One repository failing never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from webhook_service.config import Settings
from webhook_service.core import Observation, Source, timestamp
from webhook_service.github import CredentialRejected, GitHub, GitHubError, HookRef, Stopped
from webhook_service.payloads import PayloadError, snapshot_from_api
from webhook_service.reconciler import Reconciler, Result
from webhook_service.store import Leadership, PRKey, Store, StoreUnavailable, utcnow

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
    ) -> None:
        self._store = store
        # With several replicas, only the one holding the lead polls (None: always).
        self._leadership = leadership
        self._reconciler = reconciler
        self._github = github
        self._settings = settings
        self._hooks = _hooks(settings, github)
        self._watermarks: dict[str, datetime] = {}  # repository -> newest updated_at seen
        self._installation_of: dict[str, int | None] = {}
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
            errors: list[str] = []
            try:
                repositories = await self._repositories()
            except (StoreUnavailable, GitHubError) as exc:
                errors.append(_failure("listing repositories", exc))
                repositories = {}
            outcomes = await asyncio.gather(
                *(self._sync_repository(r) for r in repositories), return_exceptions=True
            )
            errors += _failures(list(repositories), outcomes)
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
            if errors:
                self._stats.last_error = errors[-1]
                for error in errors:
                    level = logging.ERROR if error in rejections else logging.WARNING
                    logger.log(level, "sync: %s", error)
            else:
                self._stats.first_sweep_done = True

    async def _repositories(self) -> dict[str, int | None]:
        """Configured repositories and those of App installations."""
        if self._github.is_app and not self._installation_of:
            for installation_id, repos in (await self._github.installations()).items():
                await self._store.track_repositories(
                    repos, source="installation", installation_id=installation_id
                )
        tracked = await self._store.tracked_repositories()
        for repo in self._settings.github_repositories:
            tracked.setdefault(repo, None)
        self._installation_of = tracked
        return tracked

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
    }
