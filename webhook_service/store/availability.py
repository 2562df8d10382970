"""Whether the database answers: the errors that mean it does not, the exception the
store raises for them, and the logging of an outage once (not once per failure)."""

from __future__ import annotations

import logging
import sqlite3
import time
import weakref
from typing import Any

import asyncpg

logger = logging.getLogger("webhook_service.store")  # one name for the whole store

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
