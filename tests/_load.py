"""A webhook load for fault tests: concurrent workers post signed ``pull_request``
deliveries to a running service until stopped, and record what each request got."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

import httpx
import orjson

from tests.helpers import payload, signed_headers

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
#: After an answer other than 2xx (or none), a worker waits this long before its next
#: request, so that an outage does not turn the load into a busy loop.
_BACKOFF = 0.02


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST and what came of it (times are ``time.monotonic()``)."""

    guid: str
    body: bytes
    number: int
    updated_at: datetime
    started: float
    finished: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    error: str | None = None

    @property
    def acked(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        answer = self.status if self.status is not None else self.error
        return f"{self.guid} (PR #{self.number}): {answer}"


class WebhookLoad:
    """``concurrency`` workers posting new deliveries (each a new GUID, each newer
    than the last) about ``prs`` pull requests, from ``async with`` until its exit."""

    def __init__(self, url: str, *, concurrency: int, prs: int = 50, timeout: float = 10.0) -> None:
        self.url = url
        self.attempts: list[Attempt] = []
        self._concurrency = concurrency
        self._prs = prs
        self._timeout = timeout
        self._seq = itertools.count()
        self._stopping = asyncio.Event()
        self._progress = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> WebhookLoad:
        self._client = httpx.AsyncClient(base_url=self.url, timeout=self._timeout)
        self._workers = [
            asyncio.create_task(self._work(self._client), name=f"load-{i}")
            for i in range(self._concurrency)
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Let every request in flight finish, then stop the workers."""
        self._stopping.set()
        try:
            await asyncio.gather(*self._workers)
        finally:
            self._workers = []
            if self._client is not None:
                await self._client.aclose()
                self._client = None

    def acked(self, *, since: float = float("-inf")) -> list[Attempt]:
        """The acknowledged (2xx) attempts that started at or after ``since``."""
        return [a for a in self.attempts if a.acked and a.started >= since]

    async def wait_for_acks(
        self, count: int, *, since: float = float("-inf"), within: float
    ) -> bool:
        """Wait (at most ``within`` seconds) until ``count`` attempts started at or after
        ``since`` were acknowledged; False if they were not."""
        deadline = time.monotonic() + within
        while len(self.acked(since=since)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 0.5))
        return True

    def _body(self, seq: int) -> tuple[bytes, int, datetime]:
        number = 1 + seq % self._prs
        updated_at = _EPOCH + timedelta(seconds=seq)
        document = payload(
            "pull_request/opened",
            number=number,
            state="closed" if seq % 3 == 0 else "open",
            merged=False,
            updated_at=updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        return orjson.dumps(document), number, updated_at

    async def _work(self, client: httpx.AsyncClient) -> None:
        while not self._stopping.is_set():
            body, number, updated_at = self._body(next(self._seq))
            guid = str(uuid.uuid4())
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            try:
                response = await client.post(
                    "/webhooks/github",
                    content=body,
                    headers=signed_headers(body, "pull_request", guid),
                )
                status = response.status_code
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            attempt = Attempt(
                guid, body, number, updated_at, started, time.monotonic(), status, error
            )
            self.attempts.append(attempt)
            self._progress.set()
            if not attempt.acked:
                await asyncio.sleep(_BACKOFF)
