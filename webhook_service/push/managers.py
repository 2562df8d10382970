"""The client managers: one process alone, or replicas joined by Redis.

Both deliver locally through :class:`~webhook_service.push.fanout.Fanout`; the Redis
manager also publishes each event to the other replicas and delivers theirs (python-
socketio's pub/sub layer, above the fan-out: see ``socketio_hooks.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from webhook_service.config import Settings
from webhook_service.push import sio_json
from webhook_service.push.fanout import Fanout
from webhook_service.push.socketio_hooks import PubSubHooks

logger = logging.getLogger(__name__)


def make_manager(settings: Settings) -> Fanout:
    """The manager the settings ask for: Redis's with ``SOCKETIO_MESSAGE_QUEUE``."""
    queue = settings.socketio_message_queue
    manager = RedisManager(queue.reveal(), settings.socketio_channel) if queue else LocalManager()
    manager.setup_stream(settings.socketio_frame_budget)
    return manager


class LocalManager(Fanout):
    """One process: its clients are all there are."""


class RedisManager(PubSubHooks, Fanout):
    """AsyncRedisManager whose local deliveries (its own and other replicas') go
    through :class:`Fanout` (which sits below the pub/sub layer: ``socketio_hooks.py``).

    With Redis down or hung a replica loses only the fan-out to other replicas: its
    events are stored first and still reach its own clients, and other replicas'
    clients get them by reconnecting with ``since``. So publishing and listening
    replace the library's, which shared one client (each one's reconnect replaced the
    other's, left unclosed), logged two errors per event while Redis was down, let a
    hung Redis hold up every emit (the outbox dispatcher, hence live delivery here and
    shutdown) for seconds, and waited up to 60 s between attempts to listen again.
    Here each has its own client; a publish is bounded by ``PUBLISH_TIMEOUT``, and
    after one timed out none is tried for ``PUBLISH_PAUSE`` (a refused connection
    costs nothing, so then the next publish tries again); the listener tries again
    every ``LISTEN_RETRY_MAX`` s at most; an outage is logged when it starts and when
    it ends; :meth:`close` stops the listener and closes both clients.
    """

    PUBLISH_TIMEOUT = 1.0
    PUBLISH_PAUSE = 5.0
    LISTEN_RETRY_MAX = 2.0

    def __init__(self, url: str, channel: str = "socketio") -> None:
        super().__init__(url, channel=channel, json=sio_json)
        self._publisher: Any = None  # redis.asyncio.Redis, made by the first publish
        self._listener: Any = None  # the listener's, while it has one
        self._publish_failing = False
        self._publish_paused_until = 0.0
        self._unpublished = 0  # messages lost since publishing last worked
        self._closed = False
        #: Called when listening works again after an outage (set by the Stream).
        self.on_restored: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._restore_tasks: set[asyncio.Task[None]] = set()

    async def publish(self, data: Any) -> None:
        if self._closed or time.monotonic() < self._publish_paused_until:
            self._unpublished += 1
            return
        try:
            async with asyncio.timeout(self.PUBLISH_TIMEOUT):
                if self._publisher is None:
                    self._publisher = self.new_redis_client()
                await self._publisher.publish(self.channel, sio_json.dumps(data))
        except Exception as exc:  # a timed-out command's connection is dropped by redis-py
            self._unpublished += 1
            if isinstance(exc, TimeoutError):
                self._publish_paused_until = time.monotonic() + self.PUBLISH_PAUSE
            if not self._publish_failing:
                self._publish_failing = True
                logger.warning(
                    "cannot publish to Redis (%s): until it is back, events reach only "
                    "this replica's clients (others get them by reconnecting with 'since')",
                    self._describe(exc),
                )
            return
        if self._publish_failing:
            logger.info(
                "publishing to Redis again (%d messages were not published)", self._unpublished
            )
        self._publish_failing = False
        self._unpublished = 0

    async def listen(self) -> AsyncIterator[bytes]:
        channel = self.channel.encode()
        retry = 0.25
        failing = False
        while True:
            try:
                client = self._listener = self.new_redis_client()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(self.channel)
                    # Events committed from here on all arrive: expect the next one.
                    await self.seed()
                    if failing:
                        logger.info("listening on Redis again")
                        self._restored()
                    failing, retry = False, 0.25
                    async for message in pubsub.listen():
                        if message["channel"] == channel and message["type"] == "message":
                            yield message["data"]
                finally:
                    self._listener = None
                    for closing in (pubsub, client):
                        with contextlib.suppress(Exception):
                            await closing.aclose()
            except Exception as exc:
                if not failing:
                    failing = True
                    logger.warning(
                        "cannot listen on Redis (%s): until it is back, other replicas' "
                        "events do not reach this replica's clients (they get them by "
                        "reconnecting with 'since'); trying again every %.0f s",
                        self._describe(exc),
                        self.LISTEN_RETRY_MAX,
                    )
            await asyncio.sleep(retry)
            retry = min(retry * 2, self.LISTEN_RETRY_MAX)

    def _restored(self) -> None:
        """Listening again after an outage: clients here may have missed other
        replicas' events meanwhile (their ids may be below ones they got)."""
        if self.on_restored is not None:
            task = asyncio.create_task(self.on_restored(), name="redis-restored")
            self._restore_tasks.add(task)
            task.add_done_callback(self._restore_tasks.discard)

    async def close(self) -> None:
        """Stop listening and close both clients (the server is shutting down)."""
        self._closed = True
        for task in list(self._restore_tasks):
            task.cancel()
        thread = self.listener_task
        if thread is not None and not thread.done():
            thread.cancel()
            await asyncio.wait([thread])
        for client in (self._listener, self._publisher):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._listener = self._publisher = None

    @staticmethod
    def _describe(exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
