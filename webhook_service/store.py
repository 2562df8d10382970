"""The one module that talks to the database (PostgreSQL or SQLite).

``databases`` owns the connections (asyncpg's pool, aiosqlite connections); the
statements go to the driver connection underneath it, in batches: one round trip per
statement kind for a whole group of deliveries (asyncpg pipelines ``executemany``;
aiosqlite runs it in one hop to its thread). SQL is written once with ``$n``
placeholders; :class:`_Dialect` adapts placeholders, lists and values per backend.

Nothing else in the package imports ``databases``, ``asyncpg`` or ``aiosqlite``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import re
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
from databases import Database

from webhook_service.core import (
    TASK_FIELDS,
    EventDraft,
    PRStatus,
    PullRequest,
    Source,
    Task,
    TaskStatus,
)
from webhook_service.migrations import MIGRATIONS
from webhook_service.payloads import RepositoryChange

logger = logging.getLogger(__name__)

PRKey = tuple[str, int]  # (repository, number)
TaskKey = tuple[datetime, str]  # (created_at, id): the order of list_tasks

#: Errors that mean "the database is not there" (HTTP 503), as opposed to a bug.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    # SQLSTATE class 57: shutting down, crashed, not accepting connections yet.
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InternalClientError,
    sqlite3.OperationalError,
)

# The PostgreSQL advisory lock held by every reconciling transaction until it commits:
# one writer at a time across connections and replicas (as SQLite's BEGIN IMMEDIATE).
# It serializes work on each PR, and makes event ids increase in commit order, so a
# reader resuming after an id never misses an event committed later with a smaller
# one. Group commit keeps that one writer busy with whole batches.
_WRITER_LOCK = 0x57_48_53_45_56_54  # "WHSEVT"
_MIGRATION_LOCK = _WRITER_LOCK + 1
_POLLER_LOCK = _WRITER_LOCK + 2  # held by the one replica that runs the sync worker

#: How long a SQLite connection waits for another's write lock before it fails with
#: "database is locked": well inside GitHub's 10 s delivery timeout.
_SQLITE_BUSY_TIMEOUT = 5.0

#: How long a claim (an outbox event being emitted, a clean-up job being run) keeps
#: other replicas off; after that, the work of a replica that died is taken over.
CLAIM_LEASE = timedelta(seconds=30)
#: Events this young are left to the dispatcher of the replica that committed them.
FRESH_EVENT = timedelta(seconds=2)


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the work (retry later; HTTP 503).

    ``reported``: the store has logged it already, as the start of an outage or as part
    of one (see :class:`Availability`); whoever catches it then logs at DEBUG only.
    """

    def __init__(self, message: str, *, reported: bool = False) -> None:
        super().__init__(message)
        self.reported = reported


def log_unavailable(
    log: logging.Logger, exc: StoreUnavailable, message: str, *args: Any, **kwargs: Any
) -> None:
    """Log a component's failure for want of the database: at DEBUG when the store has
    reported the outage already (once, not once per component and attempt)."""
    log.log(logging.DEBUG if exc.reported else logging.WARNING, message, *args, **kwargs)


#: The Availability trackers whose outage is ongoing (logged, not yet over); weak, so
#: a store dropped during an outage does not silence asyncpg for the process.
_OUTAGES: weakref.WeakSet[Availability] = weakref.WeakSet()


class Availability:
    """Whether the database answers, so that an outage is logged once: a WARNING when
    an operation first fails, an INFO with its length when one succeeds again. What
    fails meanwhile is logged at DEBUG (:func:`log_unavailable`)."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.failures = 0
        self.answered_once = False

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, message: str) -> StoreUnavailable:
        """The exception to raise for a failed operation; the first of an outage logs.

        Before the database has ever answered there is no outage to report: the store
        cannot be used at all, and whoever connects says so (the CLI: one line naming
        ``DATABASE_URL``)."""
        if not self.answered_once:
            return StoreUnavailable(message)
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.failures = 0
            _OUTAGES.add(self)
            logger.warning(
                "database unavailable: %s (until it answers again, failures are logged at DEBUG)",
                message,
            )
        self.failures += 1
        return StoreUnavailable(message, reported=True)

    def answered(self) -> None:
        self.answered_once = True
        if self.down_since is not None:
            logger.info(
                "database answers again, after %.1f s and %d failed operations",
                time.monotonic() - self.down_since,
                self.failures,
            )
            self.down_since = None
            _OUTAGES.discard(self)


class _PoolFloorRetries(logging.Filter):
    """asyncpg logs a traceback each time it fails to reopen a pool connection (after
    1, 2, 4 ... 60 s while the server is away). Those become one line, and none while a
    store has reported the outage itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Failed to restore the pool connection floor"):
            return True
        if _OUTAGES:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = ()
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_PoolFloorRetries())


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    guid: str
    event: str
    action: str | None
    hook_id: int | None
    installation_id: int | None
    repository: str | None
    pr_number: int | None
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    processed_at: datetime | None
    outcome: str  # applied | ignored | failed
    detail: str | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    type: str
    repository: str | None
    task_id: str | None
    payload: Mapping[str, Any]
    created_at: datetime

    def message(self) -> dict[str, Any]:
        """The Socket.IO payload: the stored fields plus ``event_id``."""
        return {**self.payload, "event_id": self.id}


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything one reconciling transaction writes."""

    deliveries: Sequence[DeliveryRecord] = ()
    pulls: Sequence[PullRequest] = ()
    tasks: Sequence[Task] = ()
    events: Sequence[EventDraft] = ()
    refetch: Sequence[PRKey] = ()
    refetch_reason: str = "ambiguous observation"
    repositories: Sequence[RepositoryChange] = ()  # from installation webhooks
    cleanups: Sequence[str] = ()  # task ids whose worktree is to be removed


@dataclass(frozen=True, slots=True)
class CleanupJob:
    task_id: str
    worktree_path: str
    status: str  # pending | done | refused | failed
    attempts: int
    last_error: str | None
    # Set once the worktree is removed and only its repository's bookkeeping is left.
    repository: str | None = None
    branch: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    title: str
    status: TaskStatus
    repository: str | None
    branch: str | None
    worktree_path: str | None
    created_at: datetime
    updated_at: datetime


def normalize_url(url: str) -> str:
    """Add pool bounds to a PostgreSQL URL that has none (asyncpg opens min_size at start)."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return url
    query = dict(parse_qsl(parts.query))
    query.setdefault("min_size", "1")
    query.setdefault("max_size", "8")
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Dialect:
    """What differs between PostgreSQL and SQLite, and nothing else."""

    name = "postgresql"
    _placeholder = re.compile(r"\$(\d+)")
    #: Appended to a claiming sub-select: rows another transaction is claiming are
    #: passed over instead of waited for. SQLite has one writer, so nothing to skip.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def sql(self, statement: str) -> str:
        return statement

    def value(self, value: Any) -> Any:
        return value

    def member(self, n: int, kind: str = "text") -> str:
        """``IN`` the list passed as parameter ``n`` (see :meth:`list_param`)."""
        return f"= ANY(${n}::{kind}[])"

    def keys(self, n: int) -> str:
        """A relation of (repository, number) pairs passed as one parameter."""
        return f"SELECT * FROM unnest(${n}::text[], ${n + 1}::int[])"

    def key_params(self, keys: Sequence[PRKey]) -> list[Any]:
        return [[k[0] for k in keys], [k[1] for k in keys]]

    def list_param(self, items: Sequence[Any]) -> Any:
        return list(items)


class _SQLiteDialect(_Dialect):
    name = "sqlite"
    skip_locked = ""

    _cast = re.compile(r"::\w+(\[\])?")

    def sql(self, statement: str) -> str:
        return self._placeholder.sub(r"?\1", self._cast.sub("", statement))

    def value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return _sqlite_time(value)
        return value

    def member(self, n: int, kind: str = "text") -> str:
        return f"IN (SELECT value FROM json_each(${n}))"

    def keys(self, n: int) -> str:
        return (
            f"SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(${n})"
        )

    def key_params(self, keys: Sequence[PRKey]) -> list[Any]:
        return [orjson.dumps([list(k) for k in keys]).decode()]

    def list_param(self, items: Sequence[Any]) -> Any:
        return orjson.dumps(list(items)).decode()


def _sqlite_time(value: datetime) -> str:
    # Fixed width, so that text order is time order.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value))


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


class Connection:
    """A driver connection with the dialect applied to statements and values."""

    def __init__(self, raw: Any, dialect: _Dialect) -> None:
        self.raw = raw
        self.dialect = dialect
        self.is_pg = dialect.name == "postgresql"

    def _args(self, args: Sequence[Any]) -> list[Any]:
        return [self.dialect.value(a) for a in args]

    async def execute(self, statement: str, *args: Any) -> None:
        sql = self.dialect.sql(statement)
        if self.is_pg:
            await self.raw.execute(sql, *args)
        else:
            await self.raw.execute(sql, self._args(args))

    async def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        sql = self.dialect.sql(statement)
        if self.is_pg:
            await self.raw.executemany(sql, rows)
        else:
            await self.raw.executemany(sql, [self._args(r) for r in rows])

    async def fetch(self, statement: str, *args: Any) -> list[Mapping[str, Any]]:
        sql = self.dialect.sql(statement)
        if self.is_pg:
            return list(await self.raw.fetch(sql, *args))
        async with self.raw.execute(sql, self._args(args)) as cursor:
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]

    async def fetchval(self, statement: str, *args: Any) -> Any:
        rows = await self.fetch(statement, *args)
        if not rows:
            return None
        return next(iter(rows[0].values()))


class Store:
    """Connections, migrations and every query the service makes."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        scheme = urlsplit(self.url).scheme
        if scheme.startswith("postgres"):
            self.dialect: _Dialect = _Dialect()
        elif scheme.startswith("sqlite"):
            self.dialect = _SQLiteDialect()
            if ":memory:" in self.url or self.url.rstrip("/") in ("sqlite:", "sqlite:/"):
                raise ValueError(
                    "an in-memory SQLite database cannot be shared between connections; "
                    "use a file, e.g. sqlite:///./webhook-service.db"
                )
        else:
            raise ValueError(f"unsupported database URL scheme {scheme!r}")
        options: dict[str, Any] = {}
        if self.is_postgres:
            # Plan every execution for its arguments: asyncpg keeps statements prepared,
            # and a generic plan made while a table was nearly empty (sequential scans)
            # would otherwise stay in use as the table grows.
            options["server_settings"] = {"plan_cache_mode": "force_custom_plan"}
        self._db = Database(self.url, **options)
        self.availability = Availability()

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file (None on PostgreSQL)."""
        return None if self.is_postgres else Path(urlsplit(self.url).path[1:])

    @property
    def is_postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    async def connect(self) -> None:
        try:
            await self._db.connect()
        except UNAVAILABLE_ERRORS as exc:
            raise self.availability.failed(f"cannot connect to the database: {exc}") from exc
        # Not "answered" yet: SQLite's pool opens nothing until the first operation.

    async def disconnect(self) -> None:
        if self._db.is_connected:
            await self._db.disconnect()

    @asynccontextmanager
    async def connection(self, *, held: bool = False) -> AsyncIterator[Connection]:
        """One driver connection from ``databases``; errors reaching it become 503s.

        A block that ends normally tells :class:`Availability` the database answers,
        unless the connection is ``held`` by a :class:`ConnectionLease` (which also
        ends it after a failure; its transactions' commits tell instead)."""
        handle = self._db.connection()
        try:
            await handle.__aenter__()
        except Exception as exc:
            # Whatever stops us from getting a connection (refused, shutting down, not
            # accepting connections, a file that cannot be opened) is unavailability.
            raise self.availability.failed(f"cannot connect to the database: {exc}") from exc
        try:
            wrapped = Connection(handle.raw_connection, self.dialect)
            if not wrapped.is_pg:
                await _sqlite_setup(wrapped)
        except BaseException as exc:
            # Cancelled too (the set-up may be waiting for another connection): the
            # connection is closed here or never (aiosqlite's ResourceWarning later).
            with contextlib.suppress(Exception):
                await handle.__aexit__(None, None, None)
            if not isinstance(exc, Exception):
                raise
            raise self.availability.failed(f"cannot use the database connection: {exc}") from exc
        try:
            yield wrapped
        except UNAVAILABLE_ERRORS as exc:
            raise self.availability.failed(str(exc) or type(exc).__name__) from exc
        finally:
            with contextlib.suppress(Exception):
                await handle.__aexit__(None, None, None)
        if not held:
            self.availability.answered()

    def lease(self, *, relaxed: bool = False) -> ConnectionLease:
        """A connection kept across many transactions by one long-lived task.

        ``relaxed``: its commits do not wait for the disk (PostgreSQL's
        ``synchronous_commit = off``): for writes a crash may lose harmlessly.
        """
        return ConnectionLease(self, relaxed=relaxed)

    @asynccontextmanager
    async def unit_of_work(self, conn: Connection) -> AsyncIterator[UnitOfWork]:
        """One writing transaction on ``conn``; it commits when the block exits normally.

        It is the only writer from its first statement on: SQLite's BEGIN IMMEDIATE, or
        PostgreSQL's ``_WRITER_LOCK``, taken in the same round trip as BEGIN. Taking the
        lock up front also means a read-then-write transaction never fails half-way
        with "database is locked" (SQLite) or decides on rows another writer is
        changing (PostgreSQL).
        """
        begin = (
            f"BEGIN; SELECT pg_advisory_xact_lock({_WRITER_LOCK})"
            if conn.is_pg
            else "BEGIN IMMEDIATE"
        )
        try:
            await conn.raw.execute(begin)
            try:
                yield UnitOfWork(conn)
            except BaseException:
                with contextlib.suppress(Exception):  # a dead connection rolls back anyway
                    await conn.raw.execute("ROLLBACK")
                raise
            await conn.raw.execute("COMMIT")
        except UNAVAILABLE_ERRORS as exc:
            raise self.availability.failed(str(exc) or type(exc).__name__) from exc
        self.availability.answered()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        async with self.connection() as conn, self.unit_of_work(conn) as uow:
            yield uow

    # -- schema ---------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply every migration not applied yet; returns the versions applied.

        Several replicas may start at once: one migrates, the others wait for it as
        long as it takes, then find nothing left to do. PostgreSQL: the advisory lock
        ``_MIGRATION_LOCK``; SQLite: :meth:`_sqlite_migration_lock`, taken before the
        first connection.
        """
        applied: list[int] = []
        async with self._sqlite_migration_lock(), self.connection() as conn:
            # The lock comes first: two concurrent CREATE TABLE IF NOT EXISTS can both
            # go ahead, and one then fails on PostgreSQL's catalog (duplicate key in
            # pg_type).
            if conn.is_pg:
                await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                done = {
                    r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
                }
                for migration in MIGRATIONS:
                    if migration.version in done:
                        continue
                    async with self.unit_of_work(conn):
                        # Asked again inside the write transaction (BEGIN IMMEDIATE on
                        # SQLite): a process that does not take the lock (an older
                        # release) may have applied it since.
                        if await conn.fetchval(
                            "SELECT count(*) FROM schema_migrations WHERE version = $1",
                            migration.version,
                        ):
                            continue
                        for statement in migration.statements(self.dialect.name):
                            await conn.raw.execute(statement)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at)"
                            " VALUES ($1, $2, $3)",
                            migration.version,
                            migration.name,
                            _sqlite_time(datetime.now(UTC)),
                        )
                    applied.append(migration.version)
                    logger.info("applied migration %d (%s)", migration.version, migration.name)
            finally:
                if conn.is_pg:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        return applied

    @asynccontextmanager
    async def _sqlite_migration_lock(self) -> AsyncIterator[None]:
        """SQLite's ``_MIGRATION_LOCK``: an exclusive ``flock`` on ``<database>.migrate``.

        Held around the whole of :meth:`migrate`, so concurrent migrators wait for
        each other without a time limit, as on PostgreSQL; SQLite's own locks would
        make them give up after ``_SQLITE_BUSY_TIMEOUT`` (a long migration, a loaded
        machine). The kernel releases it when its holder dies. Polled rather than
        waited for in a thread, so a cancelled wait leaves nothing behind. Nothing on
        PostgreSQL.
        """
        if self.sqlite_path is None:
            yield
            return
        path = f"{self.sqlite_path}.migrate"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self.availability.failed(f"cannot open {path}: {exc}") from exc
        try:
            waiting = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waiting:
                        logger.info("waiting for another process's migrations (%s)", path)
                        waiting = True
                    await asyncio.sleep(0.05)
                except OSError as exc:
                    raise self.availability.failed(f"cannot lock {path}: {exc}") from exc
            yield
        finally:
            os.close(fd)  # closing the file releases the flock

    async def schema_version(self) -> int:
        """The newest migration applied; 0 for a database without the service's tables."""
        exists = (
            "SELECT to_regclass('schema_migrations') IS NOT NULL"
            if self.is_postgres
            else "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_migrations'"
        )
        async with self.connection() as conn:
            if not await conn.fetchval(exists):
                return 0
            return int(
                await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            )

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    # -- reads for the API ----------------------------------------------------

    async def list_pulls(
        self,
        *,
        repository: str | None = None,
        status: str | None = None,
        limit: int = 500,
        after: PRKey | None = None,
    ) -> list[PullRequest]:
        """Stored PRs in (repository, number) order: a unique key that never changes,
        so paging by ``after`` (the last key of the previous page) neither repeats nor
        skips a row, whatever is inserted or updated meanwhile."""
        where = _Where()
        where.equal("repository", repository, "text")
        where.equal("status", status, "text")
        if after is not None:
            where.add(
                f"(repository, number) > ({where.param(after[0])}::text,"
                f" {where.param(after[1])}::int4)"
            )
            if after[0] == repository:  # the same, in a form SQLite's planner uses too
                where.add(f"number > {where.param(after[1])}::int4")
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_PR_COLUMNS} FROM pull_requests{where.sql}"
                f" ORDER BY repository, number LIMIT {where.param(limit)}",
                *where.args,
            )
        return [_pull(r) for r in rows]

    async def get_pull(self, repository: str, number: int) -> PullRequest | None:
        async with self.connection() as conn:
            prs = await UnitOfWork(conn).load_pulls([(repository, number)])
        return prs.get((repository, number))

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        repository: str | None = None,
        limit: int = 500,
        after: TaskKey | None = None,
    ) -> list[TaskRecord]:
        """Tasks newest first: (created_at, id) descending, a unique key that never
        changes; ``after`` is the last key of the previous page (see list_pulls)."""
        where = _Where()
        where.equal("status", status, "text")
        where.equal("repository", repository, "text")
        if after is not None:
            where.add(
                f"(created_at, id) < ({where.param(after[0])}::timestamptz,"
                f" {where.param(after[1])}::text)"
            )
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_TASK_COLUMNS} FROM tasks{where.sql}"
                f" ORDER BY created_at DESC, id DESC LIMIT {where.param(limit)}",
                *where.args,
            )
        return [_task_record(r) for r in rows]

    async def get_task(self, task_id: str) -> TaskRecord | None:
        async with self.connection() as conn:
            rows = await conn.fetch(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
        return _task_record(rows[0]) if rows else None

    async def create_task(self, task: TaskRecord) -> None:
        async with self.connection() as conn:
            await conn.execute(
                "INSERT INTO tasks (id, title, status, repository, branch, worktree_path,"
                " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                task.id,
                task.title,
                str(task.status),
                task.repository,
                task.branch,
                task.worktree_path,
                task.created_at,
                task.updated_at,
            )

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

    async def count_deliveries(self) -> dict[str, int]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT outcome, COUNT(*) AS n FROM webhook_deliveries GROUP BY outcome"
            )
        return {str(r["outcome"]): int(r["n"]) for r in rows}

    # -- what the poller watches ----------------------------------------------

    async def tracked_repositories(self) -> dict[str, int | None]:
        """Repositories added by installations (or by hand): name -> installation id."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT repository, installation_id FROM tracked_repositories ORDER BY repository"
            )
        return {str(r["repository"]): r["installation_id"] for r in rows}

    async def track_repositories(
        self, repositories: Sequence[str], *, source: str, installation_id: int | None
    ) -> None:
        async with self.connection() as conn:
            await conn.executemany(
                "INSERT INTO tracked_repositories (repository, source, installation_id, added_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (repository) DO UPDATE"
                " SET source = excluded.source, installation_id = excluded.installation_id",
                [(r, source, installation_id, utcnow()) for r in repositories],
            )

    async def untrack_repositories(self, repositories: Sequence[str]) -> None:
        async with self.connection() as conn:
            await conn.executemany(
                "DELETE FROM tracked_repositories WHERE repository = $1",
                [(r,) for r in repositories],
            )

    async def monitored_pulls(self) -> list[PRKey]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT repository, number FROM monitored_pulls ORDER BY repository, number"
            )
        return [(str(r["repository"]), int(r["number"])) for r in rows]

    async def active_repositories(self, since: datetime) -> set[str]:
        """Repositories the poller sweeps more often: a PR updated at or after
        ``since``, an open PR a task owns, or a PR monitored by hand."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT repository FROM pull_requests WHERE github_updated_at >= $1"
                " OR (status = 'OPEN' AND task_id IS NOT NULL)"
                " UNION SELECT repository FROM monitored_pulls",
                since,
            )
        return {str(r["repository"]) for r in rows}

    async def monitor_pull(self, key: PRKey) -> None:
        async with self.connection() as conn:
            await conn.execute(
                "INSERT INTO monitored_pulls (repository, number, added_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (repository, number) DO NOTHING",
                key[0],
                key[1],
                utcnow(),
            )

    async def pending_refetches(self, limit: int) -> list[PRKey]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT repository, number FROM refetch_requests ORDER BY requested_at LIMIT $1",
                limit,
            )
        return [(str(r["repository"]), int(r["number"])) for r in rows]

    async def clear_refetch(self, key: PRKey, requested_before: datetime) -> None:
        """Forget a re-fetch request, unless it was asked again meanwhile."""
        async with self.connection() as conn:
            await conn.execute(
                "DELETE FROM refetch_requests"
                " WHERE repository = $1 AND number = $2 AND requested_at <= $3",
                key[0],
                key[1],
                requested_before,
            )

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

    # -- worktree clean-up jobs -------------------------------------------------

    async def enqueue_cleanups(self, task_ids: Sequence[str]) -> None:
        """Queue a clean-up job for each task (one with a worktree path), or queue its
        finished job again; a pending job (claimed, or waiting for its next attempt)
        keeps its claim, its backoff and its leftover."""
        async with self.connection() as conn:
            await conn.executemany(_ENQUEUE_CLEANUP, [(t, utcnow()) for t in task_ids])

    async def claim_cleanups(
        self, now: datetime, limit: int, *, lease: timedelta = CLAIM_LEASE
    ) -> list[CleanupJob]:
        """Take up to ``limit`` due clean-up jobs for ``lease``: another replica skips
        them until then (the job's next attempt is moved past the lease), and takes
        them over if this one dies before finishing them."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "UPDATE cleanup_jobs SET next_attempt_at = $3 WHERE task_id IN ("
                " SELECT task_id FROM cleanup_jobs"
                " WHERE status = 'pending' AND next_attempt_at <= $1"
                f" ORDER BY next_attempt_at LIMIT $2{self.dialect.skip_locked})"
                f" RETURNING {_CLEANUP_COLUMNS}",
                now,
                limit,
                now + lease,
            )
        return sorted((_cleanup_job(r) for r in rows), key=lambda job: job.task_id)

    async def cleanup_jobs(self) -> list[CleanupJob]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_CLEANUP_COLUMNS} FROM cleanup_jobs ORDER BY created_at"
            )
        return [_cleanup_job(r) for r in rows]

    async def finish_cleanup(
        self,
        task_id: str,
        *,
        status: str,
        attempts: int,
        error: str | None,
        next_attempt_at: datetime,
        leftover: tuple[str, str | None] | None = None,
    ) -> None:
        """Record an attempt's end. ``leftover`` (repository, branch): the worktree is
        gone, what a retry must finish (kept once set, until the job is queued anew)."""
        repository, branch = leftover if leftover is not None else (None, None)
        async with self.connection() as conn:
            await conn.execute(
                "UPDATE cleanup_jobs SET status = $2, attempts = $3, last_error = $4,"
                " next_attempt_at = $5, updated_at = $6,"
                " repository = COALESCE($7, repository),"
                " branch = CASE WHEN $7::text IS NULL THEN branch ELSE $8 END"
                " WHERE task_id = $1",
                task_id,
                status,
                attempts,
                error,
                next_attempt_at,
                utcnow(),
                repository,
                branch,
            )

    async def done_tasks_with_worktrees(self) -> list[tuple[str, str]]:
        """DONE tasks with a worktree path, except those with a job pending or refused."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT t.id, t.worktree_path FROM tasks t"
                " LEFT JOIN cleanup_jobs j ON j.task_id = t.id"
                " WHERE t.status = 'DONE' AND t.worktree_path IS NOT NULL"
                " AND (j.status IS NULL OR j.status NOT IN ('pending', 'refused'))"
            )
        return [(str(r["id"]), str(r["worktree_path"])) for r in rows]

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

    # -- retention ------------------------------------------------------------

    async def prune(self, before: datetime) -> tuple[int, int]:
        """Delete deliveries and emitted events older than ``before``."""
        async with self.connection() as conn:
            deliveries = await conn.fetch(
                "DELETE FROM webhook_deliveries WHERE received_at < $1 RETURNING guid", before
            )
            events = await conn.fetch(
                "DELETE FROM events WHERE created_at < $1 AND emitted_at IS NOT NULL RETURNING id",
                before,
            )
        return len(deliveries), len(events)


_LEADERSHIP_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailable, *UNAVAILABLE_ERRORS)


class Leadership:
    """The right to run a once-per-deployment job (the sync worker) among replicas.

    PostgreSQL: a session advisory lock (``_POLLER_LOCK``) on a connection this
    object keeps; it is released when that connection ends, so a replica that dies
    (or loses the database) gives it up at once, and another takes it the next time
    it asks. SQLite: an exclusive ``flock`` on a file beside the database, released
    by the kernel when the process dies.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lease = ConnectionLease(store)
        self._fd: int | None = None
        self.held = False

    async def hold(self) -> bool:
        """Whether this process leads now, taking the lead if it is free."""
        if not self._store.is_postgres:
            self.held = self._flock()
            return self.held
        try:
            conn = await self._lease.get()
            if self.held:
                await conn.fetchval("SELECT 1")  # the session (and so the lock) lives
            else:
                self.held = bool(
                    await conn.fetchval("SELECT pg_try_advisory_lock($1)", _POLLER_LOCK)
                )
        except _LEADERSHIP_ERRORS as exc:
            if self.held:
                logger.warning("lost the sync worker's lock with the database: %s", exc)
            self.held = False
            await self._lease.drop()
        return self.held

    async def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None
        elif self.held:
            with contextlib.suppress(*_LEADERSHIP_ERRORS):
                conn = await self._lease.get()
                await conn.fetchval("SELECT pg_advisory_unlock($1)", _POLLER_LOCK)
        self.held = False
        await self._lease.drop()

    def _flock(self) -> bool:
        if self._fd is not None:
            return True
        path = f"{self._store.sqlite_path}.leader"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True


class ConnectionLease:
    """Holds one connection for a worker task; dropped and reopened after a failure.

    (Opening a SQLite connection costs a thread and a file open; asyncpg's pool is
    cheap, but a held connection also skips the pool's reset on release.)
    """

    def __init__(self, store: Store, *, relaxed: bool = False) -> None:
        self._store = store
        self._relaxed = relaxed
        self._cm: contextlib.AbstractAsyncContextManager[Connection] | None = None
        self._conn: Connection | None = None

    async def get(self) -> Connection:
        if self._conn is None:
            cm = self._store.connection(held=True)
            conn = await cm.__aenter__()
            self._cm = cm
            if self._relaxed and conn.is_pg:
                # Session-wide; asyncpg's pool resets it (RESET ALL) on release.
                try:
                    await conn.execute("SET synchronous_commit = off")
                except BaseException:
                    await self.drop()
                    raise
            self._conn = conn
        return self._conn

    async def drop(self) -> None:
        cm, self._cm, self._conn = self._cm, None, None
        if cm is not None:
            with contextlib.suppress(Exception):
                await cm.__aexit__(None, None, None)


async def _sqlite_setup(conn: Connection) -> None:
    # Per connection: wait for the write lock instead of failing, and commit durably
    # (every acknowledged delivery must survive a crash).
    await conn.raw.execute(f"PRAGMA busy_timeout = {round(_SQLITE_BUSY_TIMEOUT * 1000)}")
    await _sqlite_wal(conn)  # readers never block the writer
    await conn.raw.execute("PRAGMA synchronous = FULL")
    await conn.raw.execute("PRAGMA foreign_keys = ON")


async def _sqlite_wal(conn: Connection) -> None:
    """``PRAGMA journal_mode = WAL``, waiting for other connections as busy_timeout does.

    The file records the mode, so this changes something only on a new database (or
    one in another mode). There it reads the file's header, then writes it: an
    upgrade from a read lock to a write lock, for which SQLite never calls the busy
    handler (two connections each waiting for the other's read to end would wait
    forever). So while another connection holds the write lock (typically another
    process setting up the same new file at the same moment) it fails at once with
    "database is locked", whatever busy_timeout says: retry it for as long.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT
    pause = 0.002
    while True:
        try:
            await conn.raw.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


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
        rows = await self._conn.fetch(
            f"SELECT id, status FROM tasks WHERE id {self._d.member(1)}",
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
        batch of any size costs one round trip.
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
            )
            ids = sorted(int(r["id"]) for r in rows)
        else:
            ids = await self._sqlite_write(deliveries, pulls, tasks, refetch, events, now)
        return [
            StoredEvent(i, d.type, d.repository, d.task_id, d.payload, now)
            for i, d in zip(ids, drafts, strict=True)
        ]

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


def utcnow() -> datetime:
    return datetime.now(UTC)


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


class _Where:
    """A WHERE clause built from the filters given (None: no filter), so that each
    combination is its own statement, planned with the indexes it can use."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self._conditions: list[str] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self._conditions.append(condition)

    def equal(self, column: str, value: Any, kind: str) -> None:
        if value is not None:
            self.add(f"{column} = {self.param(value)}::{kind}")

    @property
    def sql(self) -> str:
        return f" WHERE {' AND '.join(self._conditions)}" if self._conditions else ""


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (PostgreSQL arrays for unnest)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _delivery_row(r: DeliveryRecord) -> tuple[Any, ...]:
    return (
        r.guid,
        r.event,
        r.action,
        r.hook_id,
        r.installation_id,
        r.repository,
        r.pr_number,
        orjson.dumps(r.headers).decode(),
        r.body,
        r.received_at,
        r.processed_at,
        r.outcome,
        r.detail,
    )


def _pull_row(p: PullRequest) -> tuple[Any, ...]:
    return (
        p.id,
        p.repository,
        p.number,
        str(p.status),
        p.draft,
        p.title,
        p.head_ref,
        p.head_sha,
        p.base_ref,
        p.url,
        p.node_id,
        p.github_id,
        p.merged_at,
        p.closed_at,
        p.github_updated_at,
        p.task_id,
        str(p.last_source),
        p.last_delivery_id,
    )


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
_DELIVERY_COLUMN_NAMES = (
    "guid, event, action, hook_id, installation_id, repository, pr_number, headers, body,"
    " received_at, processed_at, outcome, detail"
)
_PR_COLUMN_NAMES = (
    "id, repository, number, status, draft, title, head_ref, head_sha, base_ref, url, node_id,"
    " github_id, merged_at, closed_at, github_updated_at, task_id, last_source, last_delivery_id"
)

_PG_WRITE = f"""
WITH deliveries AS (
    INSERT INTO webhook_deliveries ({_DELIVERY_COLUMN_NAMES}, attempts)
    SELECT *, 1 FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[],
        $6::text[], $7::int4[], $8::text[], $9::bytea[], $10::timestamptz[],
        $11::timestamptz[], $12::text[], $13::text[])
    {_DELIVERY_UPSERT}
), pulls AS (
    INSERT INTO pull_requests ({_PR_COLUMN_NAMES}, created_at, updated_at)
    SELECT *, $41, $41 FROM unnest($14::text[], $15::text[], $16::int4[], $17::text[],
        $18::bool[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[],
        $24::text[], $25::int8[], $26::timestamptz[], $27::timestamptz[],
        $28::timestamptz[], $29::text[], $30::text[], $31::text[])
    {_PULL_UPSERT}
), tasks AS (
    UPDATE tasks SET status = u.status, updated_at = $41
    FROM unnest($32::text[], $33::text[]) AS u(id, status) WHERE tasks.id = u.id
), refetch AS (
    INSERT INTO refetch_requests (repository, number, reason, requested_at)
    SELECT *, $41 FROM unnest($34::text[], $35::int4[], $36::text[])
    {_REFETCH_UPSERT}
)
INSERT INTO events (type, repository, task_id, payload, created_at)
SELECT *, $41 FROM unnest($37::text[], $38::text[], $39::text[], $40::text[])
RETURNING id
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


_PR_COLUMNS = _PR_COLUMN_NAMES
_TASK_COLUMNS = "id, title, status, repository, branch, worktree_path, created_at, updated_at"
_EVENT_COLUMNS = "id, type, repository, task_id, payload, created_at"
_CLEANUP_COLUMNS = "task_id, worktree_path, status, attempts, last_error, repository, branch"
_DELIVERY_COLUMNS = _DELIVERY_COLUMN_NAMES


def _pull(r: Mapping[str, Any]) -> PullRequest:
    return PullRequest(
        id=str(r["id"]),
        repository=str(r["repository"]),
        number=int(r["number"]),
        status=PRStatus(r["status"]),
        draft=bool(r["draft"]),
        title=str(r["title"]),
        head_ref=r["head_ref"],
        head_sha=r["head_sha"],
        base_ref=r["base_ref"],
        url=r["url"],
        node_id=r["node_id"],
        github_id=r["github_id"],
        merged_at=_opt_time(r["merged_at"]),
        closed_at=_opt_time(r["closed_at"]),
        github_updated_at=_time(r["github_updated_at"]),
        task_id=r["task_id"],
        last_source=Source(r["last_source"]),
        last_delivery_id=r["last_delivery_id"],
    )


def _task_record(r: Mapping[str, Any]) -> TaskRecord:
    return TaskRecord(
        id=str(r["id"]),
        title=str(r["title"]),
        status=TaskStatus(r["status"]),
        repository=r["repository"],
        branch=r["branch"],
        worktree_path=r["worktree_path"],
        created_at=_time(r["created_at"]),
        updated_at=_time(r["updated_at"]),
    )


def _cleanup_job(r: Mapping[str, Any]) -> CleanupJob:
    return CleanupJob(
        task_id=str(r["task_id"]),
        worktree_path=str(r["worktree_path"]),
        status=str(r["status"]),
        attempts=int(r["attempts"]),
        last_error=r["last_error"],
        repository=r["repository"],
        branch=r["branch"],
    )


def _event(r: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(
        id=int(r["id"]),
        type=str(r["type"]),
        repository=r["repository"],
        task_id=r["task_id"],
        payload=orjson.loads(r["payload"]),
        created_at=_time(r["created_at"]),
    )


def _delivery(r: Mapping[str, Any]) -> DeliveryRecord:
    return DeliveryRecord(
        guid=str(r["guid"]),
        event=str(r["event"]),
        action=r["action"],
        hook_id=r["hook_id"],
        installation_id=r["installation_id"],
        repository=r["repository"],
        pr_number=r["pr_number"],
        headers=orjson.loads(r["headers"]),
        body=bytes(r["body"]),
        received_at=_time(r["received_at"]),
        processed_at=_opt_time(r["processed_at"]),
        outcome=str(r["outcome"]),
        detail=r["detail"],
    )
