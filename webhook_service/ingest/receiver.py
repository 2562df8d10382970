"""The webhook receiver: verify, record, apply, acknowledge (DESIGN.md §4).

The handler does no GitHub API calls and never sleeps: it checks the request, hands a
job to the reconciler and answers once the delivery is durably stored. Status codes:
401 unsigned, 400 malformed, 413 too large, 415 wrong content type, 503 database
unavailable, 2xx otherwise (200 applied, duplicate or ping; 202 ignored).

Refused requests are never written to the database (a flood of them must not fill
it): the last :data:`REJECTED_KEPT` are kept in memory, headers redacted and no body,
for the console (``GET /api/deliveries?outcome=rejected``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from webhook_service.core.model import Outcome, Source
from webhook_service.core.payloads import Delivery, PayloadError, decode_body, parse_delivery
from webhook_service.ingest.signature import SignatureError, verify
from webhook_service.reconciler import Job, Reconciler
from webhook_service.store import StoreUnavailable, log_unavailable, utcnow

logger = logging.getLogger(__name__)

#: GitHub caps payloads at 25 MB; anything larger is not from GitHub.
MAX_BODY_BYTES = 25 * 1024 * 1024
_CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")
_MAX_GUID_LENGTH = 200

#: Refused requests kept in memory (per process), newest replacing the oldest.
REJECTED_KEPT = 200
#: Header values shown as "[redacted]" (with every ``x-hub-signature*``): signatures
#: and credentials.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
#: A kept header value is cut to this many characters: memory stays bounded.
_HEADER_CHARS = 1024
#: The outcomes of requests refused before anything was stored.
_REFUSED = frozenset({"rejected", "unauthorized"})


def redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with signatures and credentials replaced by ``"[redacted]"``."""
    return {
        name: "[redacted]"
        if name.lower() in _SECRET_HEADERS or name.lower().startswith("x-hub-signature")
        else value
        for name, value in headers.items()
    }


@dataclass(frozen=True, slots=True)
class RejectedRequest:
    """A request refused before anything was stored: what the sender claimed (not
    verified), the answer and why. Headers redacted, values cut; no body."""

    received_at: datetime
    status: int
    reason: str
    event: str | None
    guid: str | None
    headers: Mapping[str, str]


#: A request's answer, the event it is counted under ("-" before it is verified: an
#: unsigned sender must not invent label values) and its outcome.
Answer = tuple[Response, str, str]


class WebhookReceiver:
    """The ASGI endpoint for ``POST WEBHOOK_PATH``."""

    def __init__(
        self,
        reconciler: Reconciler,
        *,
        secrets: Sequence[bytes],
        max_body_bytes: int = MAX_BODY_BYTES,
        latency: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._reconciler = reconciler
        #: The webhook secrets a delivery may be signed with (the proxy checks with them too).
        self.secrets = tuple(secrets)
        self._max_body = max_body_bytes
        self._latency = latency
        self.received = 0
        #: (event, outcome) -> count. The event is "-" for requests that were not
        #: verified: an unsigned sender must not be able to invent label values.
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._rejected: deque[RejectedRequest] = deque(maxlen=REJECTED_KEPT)
        #: Of the "applied" ones, those the core found older than what is stored.
        self.stale = 0

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        self.received += 1
        response, event, outcome = await self._handle(request)
        self.outcomes[(event, outcome)] += 1
        if outcome in _REFUSED:
            self._rejected.append(_rejected(request.headers, response))
        self._latency(time.perf_counter() - started)
        return response

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``handle`` as an ASGI app of its own (the service calls it before any
        routing or middleware), answering 500 where Starlette's error middleware did."""
        try:
            response = await self.handle(Request(scope, receive))
        except Exception:
            logger.exception("the webhook receiver failed")
            response = _error(500, "internal error")
        await response(scope, receive, send)

    def rejected(self) -> list[RejectedRequest]:
        """The refused requests kept in memory, newest first."""
        return list(reversed(self._rejected))

    async def deliver(self, headers: Mapping[str, str], body: bytes) -> int:
        """A delivery that came another way than an HTTP request (the webhook proxy):
        through the same checks, storage and outcomes as a POST; the status it got."""
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1", "replace"))
            for name, value in headers.items()
            if name.lower() not in ("content-length", "content-type")
        ]
        raw += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        scope = {"type": "http", "method": "POST", "path": "/", "headers": raw}
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, object]:
            return chunks.pop() if chunks else {"type": "http.disconnect"}

        response = await self.handle(Request(scope, receive))
        return response.status_code

    async def _handle(self, request: Request) -> Answer:
        """Check, verify, parse, submit: the first step that refuses answers."""
        headers = request.headers
        refused = self._framing_error(headers)
        if refused is not None:
            return refused
        body = await self._read_body(request)
        if body is None:
            return _error(413, "body exceeds 25 MiB"), "-", "rejected"
        refused = self._signature_error(headers, body) or _identity_error(headers)
        if refused is not None:
            return refused
        event = headers.get("x-github-event", "").strip()
        guid = headers.get("x-github-delivery", "").strip()
        hook_id = headers.get("x-github-hook-id", "")
        try:
            delivery = parse_delivery(
                guid,
                event,
                decode_body(body, _content_type(headers)),
                hook_id=int(hook_id) if hook_id.isdigit() and len(hook_id) < 19 else None,
            )
        except PayloadError as exc:
            return _error(400, str(exc)), event, "rejected"
        return await self._submit(delivery, headers, body)

    def _framing_error(self, headers: Mapping[str, str]) -> Answer | None:
        """413/400 for a Content-Length over the limit or not a number, 415 for a body
        that is neither JSON nor form-encoded: refused before the body is read."""
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            if length.isdigit():
                return _error(413, "body exceeds 25 MiB"), "-", "rejected"
            return _error(400, "invalid Content-Length"), "-", "rejected"
        if _content_type(headers) not in _CONTENT_TYPES:
            message = "Content-Type must be application/json or form-encoded"
            return _error(415, message), "-", "rejected"
        return None

    def _signature_error(self, headers: Mapping[str, str], body: bytes) -> Answer | None:
        """401 unless ``body`` is signed with one of the secrets (when there are any)."""
        if not self.secrets:
            return None
        try:
            verify(
                body,
                signature=headers.get("x-hub-signature-256"),
                secrets=self.secrets,
                sha1="x-hub-signature" in headers,
            )
        except SignatureError as exc:
            return _error(401, str(exc)), "-", "unauthorized"
        return None

    async def _submit(self, delivery: Delivery, headers: Mapping[str, str], body: bytes) -> Answer:
        """Hand the verified delivery to the reconciler; answer once it is stored."""
        guid, event = delivery.guid, delivery.event
        job = Job.for_delivery(delivery, source=Source.MONITOR, headers=headers, body=body)
        log: dict[str, object] = {"guid": guid, "event": event, "repository": delivery.repository}
        if delivery.snapshot is not None:
            log["pr"] = delivery.snapshot.number
        try:
            result = await self._reconciler.submit(job)
        except StoreUnavailable as exc:
            log_unavailable(logger, exc, "delivery refused (503): %s", exc, extra=log)
            message = "database unavailable; the delivery was not stored"
            return _error(503, message), event, "unavailable"
        if result.status == "failed":
            message = "the delivery was stored but could not be applied"
            return _error(500, message), event, "failed"
        logger.debug("delivery %s: %s", result.status, result.detail, extra=log)
        if result.outcome in (Outcome.STALE, Outcome.TERMINAL):
            self.stale += 1
        status = 202 if result.status == "ignored" and event != "ping" else 200
        response = JSONResponse(
            {"guid": guid, "status": result.status, "outcome": result.detail},
            status_code=status,
        )
        return response, event, result.status

    async def _read_body(self, request: Request) -> bytes | None:
        """The body, or None as soon as it grows past the limit (never buffered whole)."""
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self._max_body:
                    return None
                chunks.append(chunk)
        except ClientDisconnect:
            return b""
        return b"".join(chunks)


def _rejected(headers: Mapping[str, str], response: Response) -> RejectedRequest:
    kept = {name: value[:_HEADER_CHARS] for name, value in redacted(headers).items()}
    return RejectedRequest(
        received_at=utcnow(),
        status=response.status_code,
        reason=str(orjson.loads(response.body).get("error", "")),
        event=kept.get("x-github-event"),
        guid=kept.get("x-github-delivery"),
        headers=kept,
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _content_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _identity_error(headers: Mapping[str, str]) -> Answer | None:
    """400 without the event and delivery GUID headers, or with absurdly long ones."""
    event = headers.get("x-github-event", "").strip()
    guid = headers.get("x-github-delivery", "").strip()
    if not event or not guid:
        message = "X-GitHub-Event and X-GitHub-Delivery headers are required"
        return _error(400, message), "-", "rejected"
    if len(guid) > _MAX_GUID_LENGTH or len(event) > _MAX_GUID_LENGTH:
        message = "X-GitHub-Event or X-GitHub-Delivery is too long"
        return _error(400, message), "-", "rejected"
    return None
