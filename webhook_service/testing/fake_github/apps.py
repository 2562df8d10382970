"""The fake's GitHub App registration from a manifest (docs "Registering a GitHub App
from a manifest", https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest).

Two sides, as on GitHub:

- the web page a browser POSTs the manifest form to, ``/settings/apps/new`` or
  ``/organizations/{org}/settings/apps/new`` (``?state=``). GitHub shows it to the
  person, who confirms; the fake confirms at once and redirects (302) to the manifest's
  ``redirect_url`` with ``code`` and ``state``;
- ``POST /app-manifests/{code}/conversions`` (no authentication; a code works once,
  for an hour): 201 with the App's id, slug, html_url, pem, webhook_secret, client_id
  and client_secret. The App is the fake's own (its ``app_id`` and key), so the App's
  JWT and installations then work against the same fake.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

#: Events a manifest may subscribe to, with the permission each needs (docs "Webhook
#: events and payloads"); the ones GitHub delivers to every App cannot be subscribed.
_EVENT_PERMISSION = {
    "pull_request": "pull_requests",
    "pull_request_review": "pull_requests",
    "pull_request_review_comment": "pull_requests",
    "pull_request_review_thread": "pull_requests",
    "push": "contents",
    "issues": "issues",
}
_AUTOMATIC = frozenset({"installation", "installation_repositories", "github_app_authorization"})
_CODE_LIFETIME = 3600.0


@dataclass
class _Pending:
    manifest: dict[str, Any]
    owner: str
    issued: float = field(default_factory=time.monotonic)


class ManifestFlow:
    """Registered manifests waiting for their conversion, and the routes for both."""

    def __init__(
        self, *, app_id: Callable[[], str], pem: Callable[[], str], url: Callable[[], str]
    ):
        self._app_id = app_id
        self._pem = pem
        self._url = url
        self._pending: dict[str, _Pending] = {}
        self.registered: list[dict[str, Any]] = []  # the manifests GitHub "created"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/settings/apps/new", self._new),
            web.post("/organizations/{org}/settings/apps/new", self._new),
            web.post("/app-manifests/{code}/conversions", self._convert),
        ]

    async def _new(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            document = json.loads(str(form.get("manifest", "")))
        except ValueError:
            return web.Response(status=422, text="Invalid GitHub App configuration: not JSON")
        problem = _invalid(document)
        if problem is not None:
            return web.Response(status=422, text=f"Invalid GitHub App configuration: {problem}")
        code = secrets.token_hex(10)
        self._pending[code] = _Pending(document, request.match_info.get("org", "octocat"))
        query = {"code": code}
        if "state" in request.query:
            query["state"] = request.query["state"]
        raise web.HTTPFound(f"{document['redirect_url']}?{urlencode(query)}")

    async def _convert(self, request: web.Request) -> web.Response:
        pending = self._pending.pop(request.match_info["code"], None)
        if pending is None or time.monotonic() - pending.issued > _CODE_LIFETIME:
            return web.json_response({"message": "Not Found"}, status=404)
        document = pending.manifest
        slug = str(document.get("name", "app")).lower().replace(" ", "-")
        self.registered.append(document)
        answer = {
            "id": int(self._app_id()),
            "slug": slug,
            "node_id": "A_kwDOfake",
            "owner": {"login": pending.owner},
            "name": document.get("name"),
            "description": document.get("description", ""),
            "external_url": document["url"],
            "html_url": f"{self._url()}/apps/{slug}",
            "permissions": document.get("default_permissions", {}),
            "events": document.get("default_events", []),
            "client_id": "Iv1." + secrets.token_hex(8),
            "client_secret": secrets.token_hex(20),
            "webhook_secret": secrets.token_hex(20),
            "pem": self._pem(),
        }
        return web.json_response(answer, status=201)


def _invalid(document: Any) -> str | None:
    """What GitHub would refuse in a manifest, or None."""
    if not isinstance(document, dict):
        return "the manifest is not a JSON object"
    url = document.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        return "url is required"
    redirect = document.get("redirect_url")
    if not isinstance(redirect, str) or urlsplit(redirect).scheme not in ("http", "https"):
        return "redirect_url is required"
    hook = document.get("hook_attributes") or {}
    if hook.get("active", True) and not isinstance(hook.get("url"), str):
        return "hook_attributes.url is required for an active webhook"
    permissions = document.get("default_permissions") or {}
    events = document.get("default_events") or []
    automatic = sorted(set(events) & _AUTOMATIC)
    if automatic:
        return f"Default events unsupported: {', '.join(automatic)}"
    for event in events:
        needed = _EVENT_PERMISSION.get(event)
        if needed is None or permissions.get(needed) not in ("read", "write"):
            return f"Default events unsupported: {event}"
    return None
