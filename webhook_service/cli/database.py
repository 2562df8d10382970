"""The service's database as a command uses it: connected and checked up front, so that
a database that cannot be used (a wrong ``DATABASE_URL``, a command run from another
directory, a schema not migrated) is one line naming the setting and what to do, never a
traceback, and never an empty database created by mistake."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from webhook_service.config import ConfigError, Settings
from webhook_service.store import Store, StoreUnavailable

if TYPE_CHECKING:
    from webhook_service.reconciler import Reconciler


async def open_store(settings: Settings, *, existing: bool = False) -> Store:
    """The store, connected and answering; a database that cannot be used is a
    :class:`ConfigError` naming ``DATABASE_URL`` and what to check. ``existing``: a
    SQLite file that is not there is one (connecting would create it)."""
    store = Store(settings.database_url.reveal())
    path = store.sqlite_path
    if existing and path is not None and not path.is_file():
        raise ConfigError(
            f"DATABASE_URL: {settings.safe_database_url()}: there is no such file here"
            f" ({Path.cwd()}); run from the service's directory, or set DATABASE_URL to"
            " its database"
        )
    folder = path.parent if path is not None else None
    if folder is not None and not folder.is_dir():
        raise ConfigError(
            f"DATABASE_URL: cannot use {settings.safe_database_url()}: the folder {folder}"
            " does not exist; create it, or name a file in an existing folder"
        )
    threads = set(threading.enumerate())
    try:
        await store.connect()
        await store.ping()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await store.disconnect()
        # aiosqlite stops the worker thread of a failed connection through the event
        # loop (Connection.stop() posts its result there): let it finish while the loop
        # is open, or it dies with a traceback once asyncio.run() has closed the loop.
        if store.sqlite_path is not None:
            for thread in set(threading.enumerate()) - threads:
                thread.join(timeout=2.0)
        raise ConfigError(_database_problem(settings, exc)) from None
    return store


def _database_problem(settings: Settings, exc: Exception) -> str:
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) and exc.__cause__ else exc
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if settings.database_url.reveal().startswith("sqlite"):
        check = "check that the file's folder exists and is writable"
    else:
        check = "check the host, port, database name, user and password, and that it runs"
    return f"DATABASE_URL: cannot use {settings.safe_database_url()}: {reason}; {check}"


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Store]:
    """The service's database, for one command. Only ``serve`` and ``migrate`` create
    or change the schema: a database without it (a mistyped DATABASE_URL, a command run
    from another directory) is said so, not filled with empty tables."""
    from webhook_service.store.migrations import MIGRATIONS

    url = settings.safe_database_url()
    store = await open_store(settings, existing=True)
    try:
        version = await store.schema_version()
        latest = MIGRATIONS[-1].version
        if version == 0:
            raise ConfigError(
                f"DATABASE_URL: {url} has no webhook-service tables; run `webhook-service"
                " migrate` (or serve), or set DATABASE_URL to the service's database"
            )
        if version < latest:
            raise ConfigError(
                f"DATABASE_URL: {url} is at schema version {version}, this release needs"
                f" {latest}: run `webhook-service migrate`"
            )
        yield store
    finally:
        await store.disconnect()


@asynccontextmanager
async def reconciling(
    settings: Settings, store: Store, *, cleanup_on_merge: bool | None = None
) -> AsyncIterator[Reconciler]:
    """A running reconciler on ``store`` with the settings' rules; stopped (its queue
    applied) on exit. ``cleanup_on_merge`` overrides the setting."""
    from webhook_service.reconciler import Reconciler

    reconciler = Reconciler(
        store,
        task_branch_pattern=settings.task_branch_pattern,
        cleanup_on_merge=(
            settings.cleanup_on_merge if cleanup_on_merge is None else cleanup_on_merge
        ),
    )
    reconciler.start()
    try:
        yield reconciler
    finally:
        await reconciler.stop()
