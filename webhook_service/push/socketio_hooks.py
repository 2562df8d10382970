"""The python-socketio and python-engineio internals the stream hooks, in one place.

Checked against python-socketio 5.18.1 and python-engineio 4.15.1 (the versions locked
in requirements/runtime.txt; pyproject.toml allows ``>=5.11,<6`` and ``>=4.9,<5``). When
either version moves, re-read the library code named below, then run tests/push/.

Everything else in ``push/`` uses python-socketio's documented API (``AsyncServer`` with
``client_manager=``, ``json=``, handlers and rooms; ``AsyncRedisManager(url, channel=,
json=)``) or the names this module defines. What it relies on beneath that API, and why:

``socketio.AsyncManager`` (a ``client_manager`` subclass), for local delivery:

- ``emit(event, data, namespace, room=None, skip_sid=None, callback=None, to=None,
  **kwargs)``: ``AsyncServer.emit`` calls it for every emit, and the pub/sub managers reach
  it through ``super().emit`` (see below). :meth:`StreamHooks.emit` overrides it to hand
  events that carry an ``event_id`` to :meth:`StreamHooks.deliver` (in-order delivery,
  the resume seam, batches, the slow-client cut-off: ``fanout.py``), instead of the
  library's one task per recipient and wait for them all.
- ``AsyncManager.emit`` called unbound (:meth:`StreamHooks.send_to`): one message to one
  local client, past both that override and the pub/sub layer (the message queue).
- ``get_participants(namespace, rooms)`` yields ``(sid, eio_sid)`` of this process's
  clients in any of ``rooms``; ``eio_sid_from_sid(sid, namespace)``.
- ``self.server`` (the server sets it on its manager): ``server.packet_class(EVENT,
  namespace=, data=[event, data]).encode()`` is a ``str``, or a ``list`` when there are
  binary attachments, encoded once for every recipient as ``AsyncManager.emit`` does;
  ``engineio.packet.Packet(MESSAGE, part)`` wraps each part.

python-engineio's ``AsyncSocket`` (``server.eio.sockets[eio_sid]``), for fan-out and the
slow-client cut-off:

- ``queue``: the client's unbounded ``asyncio.Queue`` of packets, which its writer task
  drains; ``queue.qsize()`` is how far behind the client is (:meth:`StreamHooks.backlog`).
- ``closed``; ``send(pkt)`` checks the ping timeout, then puts ``pkt`` on ``queue``
  without waiting (the queue is unbounded): packets are queued directly, with no task
  per recipient (what ``AsyncServer._send_eio_packet`` would cost each).

``socketio.AsyncRedisManager`` / ``AsyncPubSubManager``, for several replicas:

- Method order: a manager ``class M(PubSubHooks, <a StreamHooks subclass>)`` puts the
  pub/sub layer above :class:`StreamHooks`: ``AsyncPubSubManager.emit`` builds a message,
  passes it to ``_handle_emit`` (local delivery: ``super().emit``, which is then
  :meth:`StreamHooks.emit`) and ``_publish``es it; the listener (``_thread``) passes other
  replicas' messages to ``_handle_emit`` too. So every local delivery, its own and other
  replicas', goes through :meth:`StreamHooks.deliver`.
- ``_publish(data)`` and ``_listen()`` (an async iterator of raw messages, which
  ``_thread`` decodes with ``self.json.loads``) are overridden to call
  :meth:`PubSubHooks.publish` and :meth:`PubSubHooks.listen` (``managers.py`` says why).
- ``_redis_connect()`` sets ``self.redis`` to a client made from the URL as the library
  makes one (``redis://``, ``valkey://``, Sentinel URLs), and an unused ``self.pubsub``.
- ``thread``: the listener task ``initialize()`` starts with the first connection
  (absent until then); ``channel``: the constructor's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import engineio.packet
import socketio
import socketio.packet

NAMESPACE = "/"  # the stream's only namespace

#: One message encoded for Engine.IO, ready to queue on any client's socket.
Packets = list[Any]


#: The releases this module was last read against; tests/push/test_socketio_hooks.py
#: fails when the installed ones differ, so an upgrade gets the re-read it needs.
CHECKED_AGAINST = {"python-socketio": "5.18.1", "python-engineio": "4.15.1"}


class EngineSocket(Protocol):
    """What is used of python-engineio's ``AsyncSocket`` (see the module docs)."""

    closed: bool
    queue: asyncio.Queue[Any]

    async def send(self, pkt: Any) -> None: ...


class StreamHooks(socketio.AsyncManager):  # type: ignore[misc]
    """A client manager that hands every event carrying an ``event_id`` (in the stream's
    namespace) to :meth:`deliver`, and offers what delivering needs of the library."""

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        event_id = data.get("event_id") if isinstance(data, dict) else None
        if event_id is None or namespace != NAMESPACE:
            await super().emit(event, data, namespace, room, skip_sid, callback, to, **kwargs)
            return
        target = to or room
        rooms = {target} if isinstance(target, str) else set(target or [])
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        await self.deliver(event, data, rooms, skip)

    async def deliver(
        self, event: str, data: dict[str, Any], rooms: set[str], skip: set[Any]
    ) -> None:
        """Deliver one stored event to this process's clients in ``rooms`` but not in
        ``skip`` (their sids)."""
        raise NotImplementedError

    async def send_to(self, sid: str, event: str, data: Any) -> None:
        """Deliver to one local client, bypassing :meth:`deliver` and the message queue."""
        await socketio.AsyncManager.emit(self, event, data, NAMESPACE, to=sid)

    def encode(self, event: str, data: Any) -> Packets:
        """``event`` with ``data`` as Engine.IO packets, to queue on any client's socket."""
        encoded = self.server.packet_class(
            socketio.packet.EVENT, namespace=NAMESPACE, data=[event, data]
        ).encode()
        return [
            engineio.packet.Packet(engineio.packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]

    def recipients(self, rooms: list[str]) -> Iterator[tuple[str, str]]:
        """``(sid, eio_sid)`` of each local client in any of ``rooms``."""
        participants: Iterator[tuple[str, str]] = self.get_participants(NAMESPACE, rooms)
        return participants

    def eio_sid_of(self, sid: str) -> str | None:
        """The Engine.IO session of a connected client, or None."""
        eio_sid: str | None = self.eio_sid_from_sid(sid, NAMESPACE)
        return eio_sid

    def engine_socket(self, eio_sid: str) -> EngineSocket | None:
        """The client's Engine.IO socket, or None once it is gone or closed."""
        socket: EngineSocket | None = self.server.eio.sockets.get(eio_sid)
        return None if socket is None or socket.closed else socket

    @staticmethod
    def backlog(socket: EngineSocket) -> int:
        """How many packets wait in the socket's queue for its writer."""
        return socket.queue.qsize()

    @staticmethod
    async def queue(socket: EngineSocket, packets: Packets) -> None:
        """Put ``packets`` on the socket's (unbounded) queue: nothing here waits."""
        for pkt in packets:
            await socket.send(pkt)


class PubSubHooks(socketio.AsyncRedisManager):  # type: ignore[misc]
    """An ``AsyncRedisManager`` whose publishing is :meth:`publish` and whose listening
    is :meth:`listen`; subclassed together with a :class:`StreamHooks` subclass."""

    async def _publish(self, data: Any) -> None:
        await self.publish(data)

    def _listen(self) -> AsyncIterator[bytes]:
        return self.listen()

    async def publish(self, data: Any) -> None:
        """Publish one message (a dict) to the other replicas."""
        raise NotImplementedError

    def listen(self) -> AsyncIterator[bytes]:
        """The other replicas' messages, as published, for as long as the server runs."""
        raise NotImplementedError

    def new_redis_client(self) -> Any:
        """A new ``redis.asyncio.Redis`` client, made as the library makes its own."""
        self._redis_connect()  # sets self.redis (and an unused, unconnected self.pubsub)
        return self.redis

    @property
    def listener_task(self) -> asyncio.Task[None] | None:
        """The task running :meth:`listen`, once the first connection started it."""
        task: asyncio.Task[None] | None = getattr(self, "thread", None)
        return task
