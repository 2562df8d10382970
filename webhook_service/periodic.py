"""Periodic background work that stops cleanly.

Stopping sets an event and waits for the current round to finish, instead of
cancelling it in the middle of I/O (a cancelled aiosqlite connect, for one, leaves
its thread to die later against a closed event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval: float, work: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval = interval
        self._work = work
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        await self._task
        self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._work()
            except Exception:
                logger.exception("%s failed; trying again in %.0f s", self._name, self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
