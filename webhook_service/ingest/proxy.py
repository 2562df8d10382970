"""Webhooks on a laptop: deliveries forwarded by a smee.io-compatible channel.

``WEBHOOK_PROXY_URL`` (Probot's name) is a channel that GitHub delivers to and that
streams each delivery back as a Server-Sent Event: ``data`` is a JSON object of the
request's headers (lower-case names), ``body`` (the payload, parsed) and ``query``
(smee.io's format; https://github.com/probot/smee-client). Each forwarded delivery
goes through the same receiver as a direct POST: signature check, storage, the same
outcomes; a GUID already applied is a duplicate, so a delivery the channel replays
after a reconnect is never applied twice.

The channel parses GitHub's body and hands it on as JSON, not as the bytes GitHub
signed. The bytes are rebuilt the ways GitHub writes JSON (compact; HTML characters as
``\\u003c``-style escapes or not; non-ASCII raw or escaped) and the first form the
signature verifies is the one received. One that none verifies is refused like any
unsigned POST (401, counted ``unauthorized``): the channel cannot prove it came from
GitHub.

A development aid, off by default: the channel's owner (anyone who knows its URL, on
smee.io) sees every payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from webhook_service.ingest.signature import SignatureError, verify

logger = logging.getLogger(__name__)

#: Reconnect backoff: 1 s doubling to 30 s, with jitter.
_FIRST_DELAY = 1.0
_MAX_DELAY = 30.0
#: Headers the channel adds or that describe its own request, not GitHub's.
_NOT_FORWARDED = frozenset({"host", "content-length", "connection", "accept-encoding"})

Deliver = Callable[[Mapping[str, str], bytes], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Forwarded:
    """One delivery as the channel hands it on."""

    headers: dict[str, str]
    body: Any  # the payload, parsed by the channel


def parse_message(data: str) -> Forwarded | None:
    """A channel message's delivery, or None for what is not one (smee's own events)."""
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or "body" not in document:
        return None
    headers = {
        str(name).lower(): str(value)
        for name, value in document.items()
        if name not in ("body", "query", "timestamp")
        and isinstance(value, str | int)
        and str(name).lower() not in _NOT_FORWARDED
    }
    return Forwarded(headers, document["body"])


def candidate_bodies(body: Any) -> Iterator[bytes]:
    """The bytes GitHub may have sent for ``body``, most likely first (GitHub's JSON is
    compact; some of it escapes ``<``, ``>``, ``&`` and non-ASCII characters)."""
    seen: set[bytes] = set()
    for ascii_only in (False, True):
        compact = json.dumps(body, separators=(",", ":"), ensure_ascii=ascii_only)
        for text in (compact, _escape_html(compact)):
            encoded = text.encode()
            if encoded not in seen:
                seen.add(encoded)
                yield encoded


def _escape_html(text: str) -> str:
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def signed_body(forwarded: Forwarded, secrets: Sequence[bytes]) -> bytes:
    """The rebuilt body the signature verifies (the first candidate when there is no
    secret, or none verifies: the receiver then refuses it as it would any POST)."""
    candidates = list(candidate_bodies(forwarded.body))
    signature = forwarded.headers.get("x-hub-signature-256")
    if not secrets or signature is None:
        return candidates[0]
    for candidate in candidates:
        with contextlib.suppress(SignatureError):
            verify(candidate, signature=signature, secrets=secrets, sha1=False)
            return candidate
    return candidates[0]


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """Server-Sent Events as (event type, data), per the HTML standard's parsing rules
    (``data`` lines joined by newlines; comments and unknown fields ignored)."""
    kind, data = "message", list[str]()
    async for raw in response.content:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)


class WebhookProxy:
    """Subscribes to ``url`` and hands each forwarded delivery to ``deliver`` (the
    receiver), reconnecting with backoff until stopped."""

    def __init__(self, url: str, deliver: Deliver, *, secrets: Sequence[bytes]) -> None:
        self._url = url
        self._deliver = deliver
        self._secrets = tuple(secrets)
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.forwarded = 0
        self.connections = 0

    def start(self) -> None:
        logger.warning(
            "WEBHOOK_PROXY_URL is set: deliveries come through %s. A development aid:"
            " the channel's owner sees every payload.",
            self._url,
        )
        self._task = asyncio.create_task(self._run(), name="webhook-proxy")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = _FIRST_DELAY
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self._listen(session)
                    delay = _FIRST_DELAY  # a stream that ended after working
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    logger.warning("webhook proxy: %s; reconnecting in %.0f s", exc, delay)
                self.connected = False
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _MAX_DELAY)

    async def _listen(self, session: aiohttp.ClientSession) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        async with session.get(self._url, headers=headers) as response:
            if response.status != 200:
                raise ValueError(f"the channel answered {response.status}")
            self.connected = True
            self.connections += 1
            logger.info("webhook proxy: connected to %s", self._url)
            async for kind, data in events(response):
                if kind != "message":
                    continue  # smee's "ready" and "ping"
                forwarded = parse_message(data)
                if forwarded is None:
                    continue
                status = await self._deliver(
                    forwarded.headers, signed_body(forwarded, self._secrets)
                )
                self.forwarded += 1
                logger.info(
                    "webhook proxy: %s %s -> %d",
                    forwarded.headers.get("x-github-event", "?"),
                    forwarded.headers.get("x-github-delivery", "?"),
                    status,
                )
