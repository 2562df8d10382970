"""Creating and upgrading the schema: :meth:`_Schema.migrate` (one migrator at a time
across processes) and :meth:`_Schema.schema_version`."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from webhook_service.store.connections import _Connections
from webhook_service.store.dialects import _sqlite_time
from webhook_service.store.locks import _MIGRATION_LOCK
from webhook_service.store.migrations import MIGRATIONS

logger = logging.getLogger("webhook_service.store")  # one name for the whole store


class _Schema(_Connections):
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
