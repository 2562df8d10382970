"""Stored webhook deliveries: reads (the console's list: newest first, by keyset), the
redeliveries asked of GitHub, and retention (observations go with the deliveries)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from webhook_service.store.connections import _Connections
from webhook_service.store.pulls import _Where
from webhook_service.store.records import (
    _DELIVERY_COLUMNS,
    _SUMMARY_COLUMNS,
    STALE_DECISIONS,
    DeliveryRecord,
    DeliverySummary,
    _delivery,
    _summary,
    utcnow,
)
from webhook_service.store.unit_of_work import UnitOfWork

DeliveryKey = tuple[datetime, str]  # (received_at, guid): the order of delivery_summaries

_STALE = "(" + ", ".join(f"'{d}'" for d in STALE_DECISIONS) + ")"
#: The console's outcomes (DeliverySummary.shown_outcome) as SQL, and ``duplicate``.
OUTCOME_FILTERS = {
    "applied": f"outcome = 'applied' AND (detail IS NULL OR detail NOT IN {_STALE})",
    "stale": f"outcome = 'applied' AND detail IN {_STALE}",
    "ignored": "outcome = 'ignored'",
    "failed": "outcome = 'failed'",
    "duplicate": "attempts > 1",
}


class _Deliveries(_Connections):
    async def get_delivery(self, guid: str) -> DeliveryRecord | None:
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE guid = $1", guid
            )
        return _delivery(rows[0]) if rows else None

    async def list_deliveries(
        self,
        *,
        since: datetime | None = None,
        event: str | None = None,
        repository: str | None = None,
        guids: Sequence[str] = (),
        limit: int = 10_000,
    ) -> list[DeliveryRecord]:
        """Stored deliveries, oldest first, filtered by any of the arguments."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries"
                " WHERE ($1::timestamptz IS NULL OR received_at >= $1)"
                " AND ($2::text IS NULL OR event = $2) AND ($3::text IS NULL OR repository = $3)"
                f" AND ($4::int = 0 OR guid {self.dialect.member(5)})"
                " ORDER BY received_at, guid LIMIT $6",
                since,
                event,
                repository,
                len(guids),
                self.dialect.list_param(guids),
                limit,
            )
        return [_delivery(r) for r in rows]

    async def delivery_summaries(
        self,
        *,
        event: str | None = None,
        outcome: str | None = None,
        repository: str | None = None,
        number: int | None = None,
        since: datetime | None = None,
        limit: int = 50,
        after: DeliveryKey | None = None,
    ) -> list[DeliverySummary]:
        """Deliveries newest first, by (received_at, guid) descending; ``after`` is the
        last key of the previous page, ``outcome`` one of OUTCOME_FILTERS, ``since``
        exclusive. Headers and bodies are not read."""
        where = _Where()
        where.equal("event", event, "text")
        where.equal("repository", repository, "text")
        where.equal("pr_number", number, "int4")
        if outcome is not None:
            where.add(f"({OUTCOME_FILTERS[outcome]})")
        if since is not None:
            where.add(f"received_at > {where.param(since)}::timestamptz")
        where.before("received_at", "guid", after)
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_SUMMARY_COLUMNS} FROM webhook_deliveries{where.sql}"
                f" ORDER BY received_at DESC, guid DESC LIMIT {where.param(limit)}",
                *where.args,
            )
        return [_summary(r) for r in rows]

    async def delivery_summary(self, guid: str) -> DeliverySummary | None:
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_SUMMARY_COLUMNS} FROM webhook_deliveries WHERE guid = $1", guid
            )
        return _summary(rows[0]) if rows else None

    async def count_deliveries(self) -> dict[str, int]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT outcome, COUNT(*) AS n FROM webhook_deliveries GROUP BY outcome"
            )
        return {str(r["outcome"]): int(r["n"]) for r in rows}

    async def delivery_outcomes(self, guids: Sequence[str]) -> dict[str, str]:
        async with self.connection() as conn:
            known, _ = await UnitOfWork(conn).load(guids, ())
        return known

    async def redeliveries_requested(self, guids: Sequence[str]) -> set[str]:
        if not guids:
            return set()
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT guid FROM redelivery_requests WHERE guid {self.dialect.member(1)}",
                self.dialect.list_param(guids),
            )
        return {str(r["guid"]) for r in rows}

    async def record_redelivery(self, guid: str, hook: str, delivery_id: int) -> bool:
        """Remember that we asked GitHub to redeliver ``guid``; False if we already had."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "INSERT INTO redelivery_requests (guid, hook, delivery_id, requested_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (guid) DO NOTHING RETURNING guid",
                guid,
                hook,
                delivery_id,
                utcnow(),
            )
        return bool(rows)

    async def forget_redelivery(self, guid: str) -> None:
        async with self.connection() as conn:
            await conn.execute("DELETE FROM redelivery_requests WHERE guid = $1", guid)

    # -- retention ------------------------------------------------------------

    async def prune(self, before: datetime) -> tuple[int, int]:
        """Delete deliveries, observations and emitted events older than ``before``;
        the numbers of deliveries and of events deleted."""
        async with self.connection() as conn:
            await conn.execute("DELETE FROM observations WHERE applied_at < $1", before)
            deliveries = await conn.fetch(
                "DELETE FROM webhook_deliveries WHERE received_at < $1 RETURNING guid", before
            )
            events = await conn.fetch(
                "DELETE FROM events WHERE created_at < $1 AND emitted_at IS NOT NULL RETURNING id",
                before,
            )
        return len(deliveries), len(events)
