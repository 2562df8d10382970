"""The outbox: stored events read, claimed by one replica's dispatcher at a time, and
marked emitted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from webhook_service.store.availability import UNAVAILABLE_ERRORS, StoreUnavailable
from webhook_service.store.connections import ConnectionLease, _Connections
from webhook_service.store.dialects import Connection
from webhook_service.store.records import _EVENT_COLUMNS, StoredEvent, _event

#: How long a claim (an outbox event being emitted, a clean-up job being run) keeps
#: other replicas off; after that, the work of a replica that died is taken over.
CLAIM_LEASE = timedelta(seconds=30)
#: Events this young are left to the dispatcher of the replica that committed them.
FRESH_EVENT = timedelta(seconds=2)


class _Outbox(_Connections):
    async def events_since(self, since: int, limit: int) -> list[StoredEvent]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                since,
                limit,
            )
        return [_event(r) for r in rows]

    async def event_bounds(self) -> tuple[int | None, int]:
        """The oldest stored event id (None when none is stored) and the newest."""
        async with self.connection() as conn:
            rows = await conn.fetch("SELECT MIN(id) AS oldest, MAX(id) AS newest FROM events")
        oldest, newest = rows[0]["oldest"], rows[0]["newest"]
        return (None if oldest is None else int(oldest)), int(newest or 0)

    # -- outbox ---------------------------------------------------------------

    @asynccontextmanager
    async def _on(self, lease: ConnectionLease | None) -> AsyncIterator[Connection]:
        """``lease``'s connection (dropped if it fails), or a fresh one."""
        if lease is None:
            async with self.connection() as conn:
                yield conn
            return
        try:
            yield await lease.get()
        except UNAVAILABLE_ERRORS as exc:
            await lease.drop()
            raise self.availability.failed(str(exc) or type(exc).__name__) from exc
        except StoreUnavailable:
            await lease.drop()
            raise

    async def unemitted_events(
        self, after: int, limit: int, *, lease: ConnectionLease | None = None
    ) -> list[StoredEvent]:
        async with self._on(lease) as conn:
            rows = await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE emitted_at IS NULL AND id > $1"
                " ORDER BY id LIMIT $2",
                after,
                limit,
            )
        return [_event(r) for r in rows]

    async def claim_unemitted_events(
        self,
        claimer: str,
        now: datetime,
        limit: int,
        *,
        after: int = 0,
        fresh: timedelta = FRESH_EVENT,
        lease: timedelta = CLAIM_LEASE,
        conn_lease: ConnectionLease | None = None,
    ) -> list[StoredEvent]:
        """Claim unemitted events for ``claimer``'s dispatcher, in id order.

        Events younger than ``fresh`` belong to the replica that committed them (its
        dispatcher was told at commit). Older ones are claimable unless another
        claimer's claim still runs; a claim lasts ``lease``, so the events of a replica
        that died are taken over once it has run out. Rows another replica is claiming
        at this moment are skipped (``FOR UPDATE SKIP LOCKED``), so each event is
        claimed by one dispatcher at a time.
        """
        async with self._on(conn_lease) as conn:
            rows = await conn.fetch(
                f"UPDATE events SET claimed_by = $1, claimed_until = $2 WHERE id IN ("
                " SELECT id FROM events WHERE emitted_at IS NULL AND id > $3"
                " AND created_at <= $4"
                " AND (claimed_until IS NULL OR claimed_until < $5 OR claimed_by = $1)"
                f" ORDER BY id LIMIT $6{self.dialect.skip_locked})"
                f" RETURNING {_EVENT_COLUMNS}",
                claimer,
                now + lease,
                after,
                now - fresh,
                now,
                limit,
            )
        return sorted((_event(r) for r in rows), key=lambda event: event.id)

    async def mark_emitted(
        self, ids: Sequence[int], at: datetime, *, lease: ConnectionLease | None = None
    ) -> None:
        if not ids:
            return
        statement = f"UPDATE events SET emitted_at = $1 WHERE id {self.dialect.member(2, 'bigint')}"
        async with self._on(lease) as conn:
            if not conn.is_pg:
                await conn.execute(statement, at, self.dialect.list_param(ids))
                return
            await conn.execute(statement, at, list(ids))
