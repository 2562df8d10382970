"""Failed-delivery recovery: deliveries of our hooks with no OK attempt that we never
applied are redelivered, once per GUID (GitHub's own recipe:
https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries).

GitHub never retries a failed delivery by itself, and keeps them for three days.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from webhook_service.config import Settings
from webhook_service.github.client import GitHub, HookRef
from webhook_service.github.errors import GitHubError
from webhook_service.store import Store, StoreUnavailable, utcnow
from webhook_service.sync.failures import failure
from webhook_service.sync.stats import SyncStats

logger = logging.getLogger(__name__)

_REDELIVERY_WINDOW = timedelta(days=3)  # GitHub redelivers deliveries up to 3 days old
_RECOVERY_INTERVAL = 300.0  # look for failed deliveries at most every 5 minutes...
_RECOVERY_OVERLAP = 600.0  # ...reading 10 minutes further back than the last look


class DeliveryRecovery:
    """Asks GitHub to redeliver what never reached us, from the hooks we can read."""

    def __init__(self, github: GitHub, store: Store, settings: Settings, stats: SyncStats) -> None:
        self._github = github
        self._store = store
        self._stats = stats
        self.hooks = _hooks(settings, github)
        self._recovered_until: float | None = None  # epoch of the last delivery recovery

    def due(self) -> bool:
        """Whether five minutes have passed since the last recovery (or there was none)."""
        last = self._recovered_until
        return last is None or utcnow().timestamp() - last >= _RECOVERY_INTERVAL

    async def run(self) -> list[str]:
        """Recover every hook's failed deliveries; the error lines."""
        errors = []
        started = utcnow()
        oldest = started - _REDELIVERY_WINDOW
        since = oldest.timestamp()
        if self._recovered_until is not None:
            since = max(since, self._recovered_until - _RECOVERY_OVERLAP)
        for hook in self.hooks:
            try:
                await self._recover(hook, since, oldest)
            except (GitHubError, StoreUnavailable) as exc:
                errors.append(failure(f"recovering deliveries of {hook.path}", exc))
        if not errors:
            self._recovered_until = started.timestamp()
        return errors

    async def _recover(self, hook: HookRef, since: float, oldest: datetime) -> None:
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
