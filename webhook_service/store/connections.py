"""The store's connections: opening and closing the pool, one connection at a time
(:meth:`_Connections.connection`) or held by a worker (:class:`ConnectionLease`), the
writing transaction (:meth:`_Connections.unit_of_work`), and each SQLite connection's
set-up."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from databases import Database

from webhook_service.store.availability import UNAVAILABLE_ERRORS, Availability
from webhook_service.store.dialects import Connection, _Dialect, _SQLiteDialect
from webhook_service.store.locks import _WRITER_LOCK, pull_locks
from webhook_service.store.records import PRKey
from webhook_service.store.unit_of_work import UnitOfWork

#: How long a SQLite connection waits for another's write lock before it fails with
#: "database is locked": well inside GitHub's 10 s delivery timeout.
_SQLITE_BUSY_TIMEOUT = 5.0
_RELAXED = "SET synchronous_commit = off"
_KEYED = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off"


def normalize_url(url: str) -> str:
    """Add pool bounds to a PostgreSQL URL that has none (asyncpg opens min_size at start)."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return url
    query = dict(parse_qsl(parts.query))
    query.setdefault("min_size", "1")
    query.setdefault("max_size", "8")
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Connections:
    """The part of :class:`~webhook_service.store.Store` every query uses: the URL, the
    dialect, the pool and the availability tracker."""

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
            # would otherwise stay in use as the table grows. The reconciler's own
            # connection plans once, with scans ruled out (``lease(keyed=True)``).
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

    def lease(self, *, relaxed: bool = False, keyed: bool = False) -> ConnectionLease:
        """A connection kept across many transactions by one long-lived task.

        ``relaxed``: its commits do not wait for the disk (PostgreSQL's
        ``synchronous_commit = off``): for writes a crash may lose harmlessly.
        ``keyed``: every statement on it finds rows by key (the reconciler's). On
        PostgreSQL each is planned once for the connection instead of on every call
        (``plan_cache_mode = force_generic_plan``: planning was a quarter of the
        database's time per batch), and never as a table scan (``enable_seqscan =
        off``), so a plan made while the tables were small stays right as they grow.
        """
        settings = [_RELAXED] * relaxed + [_KEYED] * keyed
        return ConnectionLease(self, settings)

    @asynccontextmanager
    async def unit_of_work(
        self, conn: Connection, *, pulls: Iterable[PRKey] | None = None
    ) -> AsyncIterator[UnitOfWork]:
        """One writing transaction on ``conn``; it commits when the block exits normally.

        On SQLite it is the only writer from its first statement on (BEGIN IMMEDIATE).
        On PostgreSQL, with ``pulls`` (a reconciling batch: the PRs it may change) it
        holds ``_WRITER_LOCK`` shared and a lock per PR; without, ``_WRITER_LOCK``
        exclusive. The locks are taken in the same round trip as BEGIN, before anything
        is read: a read-then-write transaction never decides on rows another writer is
        changing (nor fails half-way with "database is locked" on SQLite).
        """
        if not conn.is_pg:
            begin = "BEGIN IMMEDIATE"
        elif pulls is None:
            begin = f"BEGIN; SELECT pg_advisory_xact_lock({_WRITER_LOCK})"
        else:
            # Integers made here, never text from outside: safe to inline. unnest
            # yields them in the array's order, so they are locked in that order.
            keys = ",".join(map(str, pull_locks(pulls)))
            begin = (
                f"BEGIN; SELECT pg_advisory_xact_lock_shared({_WRITER_LOCK});"
                f" SELECT pg_advisory_xact_lock(k) FROM unnest('{{{keys}}}'::int8[]) AS k"
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

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")


class ConnectionLease:
    """Holds one connection for a worker task; dropped and reopened after a failure.

    (Opening a SQLite connection costs a thread and a file open; asyncpg's pool is
    cheap, but a held connection also skips the pool's reset on release.)
    """

    def __init__(self, store: _Connections, settings: Sequence[str] = ()) -> None:
        self._store = store
        self._settings = "; ".join(settings)  # PostgreSQL's, for the session
        self._cm: contextlib.AbstractAsyncContextManager[Connection] | None = None
        self._conn: Connection | None = None

    async def get(self) -> Connection:
        if self._conn is None:
            cm = self._store.connection(held=True)
            conn = await cm.__aenter__()
            self._cm = cm
            if self._settings and conn.is_pg:
                # Session-wide; asyncpg's pool resets them (RESET ALL) on release.
                try:
                    await conn.execute(self._settings)
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
