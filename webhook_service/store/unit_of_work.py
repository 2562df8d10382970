"""The statements of one reconciling transaction (:class:`UnitOfWork`) and its SQL: on
PostgreSQL one statement of data-modifying CTEs over arrays, on SQLite one
``executemany`` per table."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from webhook_service.core.model import EventDraft, PullRequest, Task, TaskStatus
from webhook_service.core.payloads import RepositoryChange
from webhook_service.core.task_edits import TASK_FIELDS
from webhook_service.store.dialects import Connection, _Dialect
from webhook_service.store.locks import _EVENTS_LOCK
from webhook_service.store.records import (
    _DELIVERY_COLUMN_NAMES,
    _OBSERVATION_COLUMN_NAMES,
    _PR_COLUMN_NAMES,
    _PR_COLUMNS,
    _TASK_COLUMNS,
    Changes,
    DeliveryRecord,
    ObservationDraft,
    PRKey,
    StoredEvent,
    TaskRecord,
    _delivery_row,
    _observation_row,
    _pull,
    _pull_row,
    _task_record,
    observation_values,
    utcnow,
)


class UnitOfWork:
    """The statements of one reconciling transaction: lock, read, then one write."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._d = conn.dialect

    async def load(
        self, guids: Sequence[str], keys: Sequence[PRKey]
    ) -> tuple[dict[str, str], dict[PRKey, PullRequest]]:
        """The stored outcome of each known GUID, and the stored PRs, in one round trip."""
        if not guids and not keys:
            return {}, {}
        rows = await self._conn.fetch(
            _load_statement(self._d),
            self._d.list_param(guids),
            *self._d.key_params(keys),
        )
        known: dict[str, str] = {}
        pulls: dict[PRKey, PullRequest] = {}
        for row in rows:
            if row["guid"] is not None:
                known[str(row["guid"])] = str(row["outcome"])
            else:
                pr = _pull(row)
                pulls[(pr.repository, pr.number)] = pr
        return known, pulls

    async def load_pulls(self, keys: Sequence[PRKey]) -> dict[PRKey, PullRequest]:
        return (await self.load((), keys))[1]

    async def load_tasks(self, ids: Sequence[str]) -> dict[str, Task]:
        if not ids:
            return {}
        # Locked until the commit (PostgreSQL; SQLite has one writer): batches about
        # different PRs of one task take turns at it. In id order, so they never wait
        # for each other in a cycle; after the PRs' locks, as every batch takes them.
        lock = " ORDER BY id FOR UPDATE" if self._conn.is_pg else ""
        rows = await self._conn.fetch(
            f"SELECT id, status FROM tasks WHERE id {self._d.member(1)}{lock}",
            self._d.list_param(ids),
        )
        return {str(r["id"]): Task(str(r["id"]), TaskStatus(r["status"])) for r in rows}

    async def load_task_record(self, task_id: str) -> TaskRecord | None:
        rows = await self._conn.fetch(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
        return _task_record(rows[0]) if rows else None

    async def update_task_fields(
        self, task_id: str, fields: Mapping[str, str | None], now: datetime
    ) -> None:
        """Set some of a task's TASK_FIELDS (title, repository, branch, worktree_path)."""
        unknown = set(fields) - set(TASK_FIELDS)
        if unknown:
            raise ValueError(f"not editable task fields: {sorted(unknown)}")
        if not fields:
            return
        names = list(fields)
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=3))
        await self._conn.execute(
            f"UPDATE tasks SET updated_at = $2, {assignments} WHERE id = $1",
            task_id,
            now,
            *(fields[name] for name in names),
        )

    async def unlinked_pulls_of_branch(self, branch: str) -> list[PullRequest]:
        """Stored PRs whose head is ``branch`` and that no task has, by key."""
        rows = await self._conn.fetch(
            f"SELECT {_PR_COLUMNS} FROM pull_requests WHERE head_ref = $1 AND task_id IS NULL"
            " ORDER BY repository, number",
            branch,
        )
        return [_pull(r) for r in rows]

    async def write(self, changes: Changes, now: datetime) -> list[StoredEvent]:
        """Write ``changes``; returns the stored events with their ids.

        On PostgreSQL this is one statement (data-modifying CTEs over arrays), so a
        batch of any size costs one round trip (two when it counts duplicates); its
        events take ``_EVENTS_LOCK`` until the commit. Each observation is recorded
        with the ids of the events it stored.
        """
        deliveries = [_delivery_row(r) for r in changes.deliveries]
        pulls = [_pull_row(p) for p in changes.pulls]
        tasks = [(t.id, str(t.status)) for t in changes.tasks]
        refetch = [(k[0], k[1], changes.refetch_reason) for k in changes.refetch]
        drafts = list(changes.events)
        events = [
            (d.type, d.repository, d.task_id, orjson.dumps(d.payload).decode()) for d in drafts
        ]
        await self._track(changes.repositories, now)
        await self._conn.executemany(_ENQUEUE_CLEANUP, [(t, now) for t in changes.cleanups])
        if self._conn.is_pg:
            rows = await self._conn.fetch(
                _PG_WRITE,
                *_columns(deliveries, 13),
                *_columns(pulls, 18),
                *_columns(tasks, 2),
                *_columns(refetch, 3),
                *_columns(events, 4),
                now,
                *_columns([_pg_observation(o) for o in changes.observations], 10),
            )
            ids = sorted(int(r["id"]) for r in rows)
        else:
            ids = await self._sqlite_write(deliveries, pulls, tasks, refetch, events, now)
            await self._conn.executemany(
                _SQLITE_OBSERVATIONS,
                [
                    _observation_row(o, ids[o.events.start : o.events.stop], now)
                    for o in changes.observations
                ],
            )
        await self._count_duplicates(changes.duplicates)
        return [
            StoredEvent(i, d.type, d.repository, d.task_id, d.payload, now)
            for i, d in zip(ids, drafts, strict=True)
        ]

    async def _count_duplicates(self, guids: Sequence[str]) -> None:
        """One statement adds one to ``attempts`` per time each GUID was received again.
        After the inserts: a GUID twice in one batch is inserted, then counted."""
        if guids:
            statement = _PG_DUPLICATES if self._conn.is_pg else _SQLITE_DUPLICATES
            await self._conn.execute(statement, self._d.list_param(guids))

    async def _track(self, changes: Sequence[RepositoryChange], now: datetime) -> None:
        """Installation webhooks add and remove the repositories the poller watches."""
        for change in changes:
            await self._conn.executemany(
                "DELETE FROM tracked_repositories WHERE repository = $1",
                [(r,) for r in change.removed],
            )
            await self._conn.executemany(
                "INSERT INTO tracked_repositories (repository, source, installation_id, added_at)"
                " VALUES ($1, 'installation', $2, $3) ON CONFLICT (repository) DO UPDATE"
                " SET source = excluded.source, installation_id = excluded.installation_id",
                [(r, change.installation_id, now) for r in change.added],
            )

    async def _sqlite_write(
        self,
        deliveries: list[tuple[Any, ...]],
        pulls: list[tuple[Any, ...]],
        tasks: list[tuple[Any, ...]],
        refetch: list[tuple[Any, ...]],
        events: list[tuple[Any, ...]],
        now: datetime,
    ) -> list[int]:
        conn = self._conn
        await conn.executemany(_SQLITE_DELIVERIES, deliveries)
        await conn.executemany(_SQLITE_PULLS, [(*p, now) for p in pulls])
        await conn.executemany(
            "UPDATE tasks SET status = $2, updated_at = $3 WHERE id = $1",
            [(*t, now) for t in tasks],
        )
        await conn.executemany(_SQLITE_REFETCH, [(*r, now) for r in refetch])
        if not events:
            return []
        # BEGIN IMMEDIATE holds the write lock: nobody else can take ids meanwhile.
        # sqlite_sequence remembers the highest id ever used, even after pruning.
        last = await conn.fetchval("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        first = int(last or 0) + 1
        ids = list(range(first, first + len(events)))
        await conn.executemany(
            "INSERT INTO events (id, type, repository, task_id, payload, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(i, *e, now) for i, e in zip(ids, events, strict=True)],
        )
        return ids

    # Conveniences over write(), for single-purpose callers.

    async def save_deliveries(self, records: Sequence[DeliveryRecord]) -> None:
        await self.write(Changes(deliveries=records), utcnow())

    async def insert_events(self, drafts: Sequence[EventDraft], now: datetime) -> list[StoredEvent]:
        return await self.write(Changes(events=drafts), now)


@functools.cache
def _load_statement(d: _Dialect) -> str:
    """Stored PRs by key ($2...) and known deliveries by GUID ($1), as one result."""
    pr_nulls = ", ".join(["NULL"] * len(_PR_COLUMNS.split(",")))
    return (
        f"SELECT {_PR_COLUMNS}, NULL AS guid, NULL AS outcome FROM pull_requests"
        f" WHERE (repository, number) IN ({d.keys(2)})"
        f" UNION ALL SELECT {pr_nulls}, guid, outcome FROM webhook_deliveries"
        f" WHERE guid {d.member(1)}"
    )


def _pg_observation(o: ObservationDraft) -> tuple[Any, ...]:
    """An observation's columns for _PG_WRITE, which adds ``event_ids`` from the events
    it inserts (``o.events``: their indexes, as first and count)."""
    return (
        *observation_values(o),
        orjson.dumps(o.changes).decode(),
        o.events.start,
        len(o.events),
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (PostgreSQL arrays for unnest)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


_ENQUEUE_CLEANUP = (
    "INSERT INTO cleanup_jobs (task_id, worktree_path, status, attempts, next_attempt_at,"
    " created_at, updated_at) SELECT id, worktree_path, 'pending', 0, $2, $2, $2 FROM tasks"
    " WHERE id = $1 AND worktree_path IS NOT NULL ON CONFLICT (task_id) DO UPDATE"
    " SET worktree_path = excluded.worktree_path, status = 'pending', attempts = 0,"
    " last_error = NULL, repository = NULL, branch = NULL,"
    " next_attempt_at = excluded.next_attempt_at,"
    " updated_at = excluded.updated_at"
    # A pending job is being carried out (claimed) or waits for its retry: left alone.
    " WHERE cleanup_jobs.status <> 'pending'"
)
_DELIVERY_UPSERT = (
    " ON CONFLICT (guid) DO UPDATE SET headers = excluded.headers, body = excluded.body,"
    " received_at = excluded.received_at, processed_at = excluded.processed_at,"
    " outcome = excluded.outcome, detail = excluded.detail,"
    " attempts = webhook_deliveries.attempts + 1"
)
_PULL_UPSERT = (
    " ON CONFLICT (id) DO UPDATE SET status = excluded.status, draft = excluded.draft,"
    " title = excluded.title, head_ref = excluded.head_ref, head_sha = excluded.head_sha,"
    " base_ref = excluded.base_ref, url = excluded.url, node_id = excluded.node_id,"
    " github_id = excluded.github_id, merged_at = excluded.merged_at,"
    " closed_at = excluded.closed_at, github_updated_at = excluded.github_updated_at,"
    " task_id = excluded.task_id, last_source = excluded.last_source,"
    " last_delivery_id = excluded.last_delivery_id, updated_at = excluded.updated_at"
)
_REFETCH_UPSERT = (
    " ON CONFLICT (repository, number) DO UPDATE"
    " SET reason = excluded.reason, requested_at = excluded.requested_at"
)

# One statement: a batch of any size costs one round trip. The events CTE's one-time
# filter first has the other rows written (``written``), then takes _EVENTS_LOCK, before
# the first id is drawn (and not at all when there are no events); it is held until the
# transaction ends, so ids follow commit order, and held no longer than needed.
_PG_WRITE = f"""
WITH deliveries AS (
    INSERT INTO webhook_deliveries ({_DELIVERY_COLUMN_NAMES}, attempts)
    SELECT *, 1 FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[],
        $6::text[], $7::int4[], $8::text[], $9::bytea[], $10::timestamptz[],
        $11::timestamptz[], $12::text[], $13::text[])
    {_DELIVERY_UPSERT}
    RETURNING 1
), pulls AS (
    INSERT INTO pull_requests ({_PR_COLUMN_NAMES}, created_at, updated_at)
    SELECT *, $41, $41 FROM unnest($14::text[], $15::text[], $16::int4[], $17::text[],
        $18::bool[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[],
        $24::text[], $25::int8[], $26::timestamptz[], $27::timestamptz[],
        $28::timestamptz[], $29::text[], $30::text[], $31::text[])
    {_PULL_UPSERT}
    RETURNING 1
), tasks AS (
    UPDATE tasks SET status = u.status, updated_at = $41
    FROM unnest($32::text[], $33::text[]) AS u(id, status) WHERE tasks.id = u.id
    RETURNING 1
), refetch AS (
    INSERT INTO refetch_requests (repository, number, reason, requested_at)
    SELECT *, $41 FROM unnest($34::text[], $35::int4[], $36::text[])
    {_REFETCH_UPSERT}
    RETURNING 1
), written AS (
    SELECT (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM pulls)
        + (SELECT count(*) FROM tasks) + (SELECT count(*) FROM refetch) AS n
), events AS (
    INSERT INTO events (type, repository, task_id, payload, created_at)
    SELECT *, $41 FROM unnest($37::text[], $38::text[], $39::text[], $40::text[])
    -- Once the rows are written (the lock's argument needs them), and only with events.
    WHERE (SELECT count(*) FROM written, LATERAL (
        SELECT pg_advisory_xact_lock({_EVENTS_LOCK} + 0 * written.n)
        WHERE cardinality($37::text[]) > 0) AS locked) >= 0
    RETURNING id
), numbered AS (
    -- Ids are assigned in the order given (UnitOfWork.write relies on it too).
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM events
), observed AS (
    INSERT INTO observations ({_OBSERVATION_COLUMN_NAMES})
    SELECT o.repository, o.number, o.source, o.guid, o.updated_at, o.status, o.outcome,
        jsonb_set(o.changes::jsonb, '{{event_ids}}', COALESCE((
            SELECT jsonb_agg(id ORDER BY id) FROM numbered
            WHERE n >= o.ev_first AND n < o.ev_first + o.ev_count), '[]'::jsonb))::text,
        $41
    FROM unnest($42::text[], $43::int4[], $44::text[], $45::text[], $46::timestamptz[],
        $47::text[], $48::text[], $49::text[], $50::int4[], $51::int4[])
        AS o(repository, number, source, guid, updated_at, status, outcome, changes,
             ev_first, ev_count)
)
SELECT id FROM events
"""

_SQLITE_DELIVERIES = (
    f"INSERT INTO webhook_deliveries ({_DELIVERY_COLUMN_NAMES}, attempts) VALUES"
    f" ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1){_DELIVERY_UPSERT}"
)
_SQLITE_PULLS = (
    f"INSERT INTO pull_requests ({_PR_COLUMN_NAMES}, created_at, updated_at) VALUES"
    " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
    f" $19, $19){_PULL_UPSERT}"
)
_SQLITE_REFETCH = (
    "INSERT INTO refetch_requests (repository, number, reason, requested_at)"
    f" VALUES ($1, $2, $3, $4){_REFETCH_UPSERT}"
)
_SQLITE_OBSERVATIONS = (
    f"INSERT INTO observations ({_OBSERVATION_COLUMN_NAMES})"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
# A GUID received n times again adds n.
_PG_DUPLICATES = (
    "UPDATE webhook_deliveries SET attempts = attempts + d.n"
    " FROM (SELECT g, COUNT(*) AS n FROM unnest($1::text[]) AS u(g) GROUP BY g) AS d"
    " WHERE guid = d.g"
)
_SQLITE_DUPLICATES = (
    "UPDATE webhook_deliveries SET attempts = attempts"
    " + (SELECT COUNT(*) FROM json_each($1) WHERE value = webhook_deliveries.guid)"
    " WHERE guid IN (SELECT value FROM json_each($1))"
)
