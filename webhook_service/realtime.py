"""Socket.IO: the live stream of stored events to dashboards (DESIGN.md §3).

A connection must present ``auth={"token": API_TOKEN}``; anything else is refused.
Every event is emitted with its ``event_id``; clients drop repeats by it.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import socketio

from webhook_service.config import Settings
from webhook_service.store import StoredEvent

logger = logging.getLogger(__name__)


def create_server(settings: Settings) -> socketio.AsyncServer:
    """The Socket.IO server. ``async_mode="asgi"`` always: with aiohttp installed the
    default would pick aiohttp mode, and every request would fail with a 500."""
    manager = None
    if settings.socketio_message_queue:
        manager = socketio.AsyncRedisManager(settings.socketio_message_queue.reveal())
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins=[],
        client_manager=manager,
        logger=False,
        engineio_logger=False,
    )
    token = settings.api_token.reveal().encode() if settings.api_token else None

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        offered = auth.get("token") if isinstance(auth, dict) else None
        if token is not None and not (
            isinstance(offered, str) and hmac.compare_digest(offered.encode(), token)
        ):
            logger.info("refused a Socket.IO connection with a missing or wrong token")
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")

    return sio


class Broadcaster:
    """Emits stored events to every connected client."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def emit(self, event: StoredEvent) -> None:
        await self._sio.emit(event.type, event.message())
