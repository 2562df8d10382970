"""Webhooks: where the App's hook and repository hooks deliver, and every delivery attempt
as GitHub's hook-delivery endpoints list it. A redelivery really POSTs to the hook.

Docs "Webhook events and payloads" (delivery headers) and "Validating webhook
deliveries": a delivery's signatures are HMACs of its raw body with the hook's secret.
A redelivery is a new attempt with the same GUID and ``redelivery: true``, signed anew.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from webhook_service.testing.fake_github.clock import iso
from webhook_service.testing.fake_github.state import State

HookKey = tuple[str | None, int]  # (lower-cased "owner/name", hook id); None: the App's hook


@dataclass
class Hook:
    url: str
    secret: str


@dataclass
class Delivery:
    """One webhook delivery attempt, as GitHub's hook-delivery endpoints show it."""

    id: int
    guid: str
    delivered_at: str
    redelivery: bool
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    hook: HookKey
    url: str
    request_headers: dict[str, str]
    body: bytes  # the exact bytes sent and signed
    status: str = ""  # "OK", "Invalid HTTP Response: 502", "timed out", ...
    status_code: int = 0  # 0 when no HTTP response was received
    duration: float = 0.01
    throttled_at: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str | None = None

    def json(self, keys: Iterable[str]) -> dict[str, Any]:
        """The delivery as GitHub shows it, with the keys of a REST example."""
        request = {"headers": self.request_headers, "payload": orjson.loads(self.body)}
        response = {"headers": self.response_headers, "payload": self.response_body}
        parts = {"request": request, "response": response}
        return {key: parts[key] if key in parts else getattr(self, key) for key in keys}

    def _answered(self, status_code: int) -> None:
        self.status_code = status_code
        ok = 200 <= status_code < 300
        self.status = "OK" if ok else f"Invalid HTTP Response: {status_code}"


class Hooks:
    """The configured hooks and the deliveries (oldest first). ``app_id()`` is the App's
    id, for the App hook's headers; :meth:`open` before redelivering, :meth:`close` after."""

    def __init__(self, state: State, *, app_id: Callable[[], str]) -> None:
        self._state = state
        self._app_id = app_id
        self.hooks: dict[HookKey, Hook] = {}
        self.deliveries: list[Delivery] = []
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def configure(self, *, url: str, secret: str, hook_id: int, repository: str | None) -> None:
        """Set where a hook delivers (``repository`` None: the App's only hook)."""
        if repository is None:  # an App has exactly one webhook
            self.hooks = {key: hook for key, hook in self.hooks.items() if key[0] is not None}
        key = None if repository is None else self._state.repo(repository).key
        self.hooks[(key, hook_id)] = Hook(url, secret)

    def key(self, repository: str | None, hook_id: int | None) -> HookKey:
        """A hook's key; ``hook_id`` None: the configured one, else 1."""
        key = None if repository is None else self._state.repo(repository).key
        if hook_id is None:
            hook_id = min((k[1] for k in self.hooks if k[0] == key), default=1)
        return key, hook_id

    def record(
        self,
        key: HookKey,
        event: str,
        action: str | None,
        body: bytes,
        *,
        guid: str | None,
        status_code: int,
        repository: str | None,
    ) -> Delivery:
        """Store a past delivery to hook ``key`` (nothing is sent), answered ``status_code``;
        about ``repository`` if its payload names none."""
        delivery = self._store(key, event, action, body, guid or str(uuid.uuid1()), False)
        if repository is not None and delivery.repository_id is None:
            delivery.repository_id = self._state.repo(repository).id
        delivery._answered(status_code)
        return delivery

    def _store(
        self, key: HookKey, event: str, action: str | None, body: bytes, guid: str, again: bool
    ) -> Delivery:
        payload = orjson.loads(body)
        ids = {
            name: payload[name].get("id")
            for name in ("installation", "repository")
            if isinstance(payload, dict) and isinstance(payload.get(name), dict)
        }
        hook = self.hooks.get(key)
        delivery = Delivery(
            id=self._state.new_id(),
            guid=guid,
            delivered_at=iso(self._state.clock.tick()),
            redelivery=again,
            event=event,
            action=action,
            installation_id=ids.get("installation"),
            repository_id=ids.get("repository"),
            hook=key,
            url=hook.url if hook else "",
            request_headers=self._headers(key, hook, event, guid, body),
            body=body,
        )
        self.deliveries.append(delivery)
        return delivery

    def _headers(
        self, key: HookKey, hook: Hook | None, event: str, guid: str, body: bytes
    ) -> dict[str, str]:
        if key[0] is None:
            target = ("integration", self._app_id())
        else:
            target = ("repository", str(self._state.repos[key[0]].id))
        headers = {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Delivery": guid,
            "X-GitHub-Event": event,
            "X-GitHub-Hook-ID": str(key[1]),
            "X-GitHub-Hook-Installation-Target-ID": target[1],
            "X-GitHub-Hook-Installation-Target-Type": target[0],
        }
        if hook is not None:
            secret = hook.secret.encode()
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret, body, "sha1").hexdigest()
            signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = "sha256=" + signature
        return headers

    async def redeliver(self, original: Delivery, *, answer_within: float) -> Delivery:
        """POST the original bytes, signed now, and record the new attempt; the hook has
        ``answer_within`` seconds to answer (GitHub: 10)."""
        hook = self.hooks[original.hook]
        assert self._session is not None
        attempt = self._store(
            original.hook, original.event, original.action, original.body, original.guid, True
        )
        started = time.monotonic()
        try:
            async with (
                asyncio.timeout(answer_within),
                self._session.post(
                    hook.url, data=attempt.body, headers=attempt.request_headers
                ) as response,
            ):
                attempt.response_body = (await response.text(errors="replace"))[:4096]
                attempt.response_headers = dict(response.headers)
            attempt._answered(response.status)
        except TimeoutError:
            attempt.status = "timed out"
        except aiohttp.ClientError:
            attempt.status = "failed to connect to host"
        attempt.duration = round(time.monotonic() - started, 2)
        return attempt
