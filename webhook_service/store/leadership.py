"""The lead among replicas for a once-per-deployment job (the sync worker)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os

from webhook_service.store.availability import UNAVAILABLE_ERRORS, StoreUnavailable
from webhook_service.store.connections import ConnectionLease, _Connections
from webhook_service.store.locks import _POLLER_LOCK

logger = logging.getLogger("webhook_service.store")  # one name for the whole store

_LEADERSHIP_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailable, *UNAVAILABLE_ERRORS)


class Leadership:
    """The right to run a once-per-deployment job (the sync worker) among replicas.

    PostgreSQL: a session advisory lock (``_POLLER_LOCK``) on a connection this
    object keeps; it is released when that connection ends, so a replica that dies
    (or loses the database) gives it up at once, and another takes it the next time
    it asks. SQLite: an exclusive ``flock`` on a file beside the database, released
    by the kernel when the process dies.
    """

    def __init__(self, store: _Connections) -> None:
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
