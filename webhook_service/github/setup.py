"""From nothing to a registered GitHub App: the manifest flow, and ``.env`` written.

GitHub's "Registering a GitHub App from a manifest"
(https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest):

1. the browser POSTs a form with ``manifest`` (the App's settings as JSON) to
   ``{web}/settings/apps/new`` (a user's App) or
   ``{web}/organizations/{org}/settings/apps/new`` (an organization's), with a ``state``;
2. the person confirms on GitHub, which redirects to the manifest's ``redirect_url``
   with ``?code=...&state=...``;
3. within an hour, ``POST {api}/app-manifests/{code}/conversions`` (no authentication)
   answers the App's ``id``, ``pem``, ``webhook_secret``, ``client_id`` and
   ``client_secret``.

This module builds the manifest (the same as ``deploy/app.yml``, with the public URL
filled in), checks ``state`` against CSRF, exchanges the code, and writes the App's
settings into ``.env`` beside what it held, the key into a file of mode 0600.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from dotenv.parser import parse_stream
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from webhook_service.config import Settings, read_env_file

#: The App's webhook events: each needs "Pull requests" read; GitHub delivers
#: ``installation`` and ``installation_repositories`` to every App unasked (and refuses
#: them in a manifest). See deploy/app.yml and tests/test_deploy.py.
EVENTS = ("pull_request", "pull_request_review", "pull_request_review_comment",
          "pull_request_review_thread")  # fmt: skip
#: The least the service needs: list, read and open pull requests; the default branch.
PERMISSIONS = {"pull_requests": "write", "metadata": "read"}
CALLBACK_PATH = "/setup/callback"


class SetupError(Exception):
    """The setup cannot go on; the message says why and what to do."""


def manifest(
    public_url: str, *, webhook_path: str, name: str = "webhook-service"
) -> dict[str, Any]:
    """The App's manifest for a service reachable at ``public_url``."""
    base = public_url.rstrip("/")
    return {
        "name": name,
        "url": base,
        "description": "Keeps pull-request and task state in sync with GitHub.",
        "public": False,
        "hook_attributes": {"url": f"{base}{webhook_path}", "active": True},
        "redirect_url": f"{base}{CALLBACK_PATH}",
        "default_permissions": dict(PERMISSIONS),
        "default_events": list(EVENTS),
    }


def registration_url(github_url: str, org: str | None) -> str:
    """Where the manifest form is posted (github.com or GitHub Enterprise Server)."""
    base = github_url.rstrip("/")
    if org:
        return f"{base}/organizations/{quote(org, safe='')}/settings/apps/new"
    return f"{base}/settings/apps/new"


def new_state() -> str:
    return secrets.token_urlsafe(24)


def form_page(action: str, document: Mapping[str, Any], state: str) -> str:
    """The page that posts the manifest to GitHub (a button; no script needed)."""
    payload = html.escape(json.dumps(document), quote=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Register a GitHub App</title>
<style>body{{font:16px system-ui,sans-serif;max-width:40rem;margin:3rem auto;}}
button{{font-size:1rem;padding:.5rem 1rem}}</style></head><body>
<h1>Register webhook-service as a GitHub App</h1>
<p>GitHub will create the App with the permissions it needs (pull requests: read and
write; metadata: read) and the events it listens to, then send you back here.</p>
<form action="{html.escape(action, quote=True)}?state={quote(state)}" method="post">
<input type="hidden" name="manifest" value="{payload}">
<button type="submit">Register GitHub App</button></form></body></html>"""


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """What GitHub's conversion answers (the fields the service keeps)."""

    app_id: str
    slug: str
    html_url: str
    pem: str
    webhook_secret: str
    client_id: str
    client_secret: str

    @classmethod
    def from_conversion(cls, answer: Mapping[str, Any]) -> AppCredentials:
        try:
            return cls(
                app_id=str(int(answer["id"])),
                slug=str(answer["slug"]),
                html_url=str(answer["html_url"]),
                pem=str(answer["pem"]),
                webhook_secret=str(answer["webhook_secret"]),
                client_id=str(answer["client_id"]),
                client_secret=str(answer["client_secret"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SetupError(f"GitHub's answer lacks the App's {exc}") from None

    @property
    def install_url(self) -> str:
        return f"{self.html_url.rstrip('/')}/installations/new"


async def convert(session: aiohttp.ClientSession, api_url: str, code: str) -> AppCredentials:
    """``POST /app-manifests/{code}/conversions``: the new App's credentials."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,200}", code):
        raise SetupError("the code GitHub sent back is malformed: start again")
    url = f"{api_url.rstrip('/')}/app-manifests/{code}/conversions"
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "webhook-service"}
    async with session.post(url, headers=headers) as response:
        body = await response.json(content_type=None)
        if response.status != 201:
            message = body.get("message") if isinstance(body, dict) else None
            raise SetupError(
                f"GitHub refused the code ({response.status}: {message or 'no message'});"
                " codes last an hour and work once: start again"
            )
    return AppCredentials.from_conversion(body)


def configured(settings: Settings) -> bool:
    """Whether a GitHub App is configured already (setup would replace it)."""
    return settings.app_id is not None


def write_env(env_file: Path, credentials: AppCredentials) -> Path:
    """Write the App's settings into ``env_file`` beside what it holds (a key it names
    again is replaced in place; comments and other lines are kept), and its key into
    ``<slug>.private-key.pem`` beside it, mode 0600. Returns the key's path."""
    key_path = env_file.parent / f"{credentials.slug}.private-key.pem"
    _write_private(key_path, credentials.pem)
    values = {
        "APP_ID": credentials.app_id,
        "PRIVATE_KEY_PATH": str(key_path.resolve()),
        "WEBHOOK_SECRET": credentials.webhook_secret,
        "GITHUB_CLIENT_ID": credentials.client_id,
        "GITHUB_CLIENT_SECRET": credentials.client_secret,
    }
    held = read_env_file(env_file) if env_file.exists() else {}
    if held.get("WEBHOOK_SECRET"):  # a repository webhook may still sign with the old one
        values["WEBHOOK_SECRET"] += "," + held["WEBHOOK_SECRET"]
    text = env_file.read_text() if env_file.exists() else ""
    kept: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        if binding.key in values:
            kept.append(f"{binding.key}={_quoted(values.pop(binding.key))}\n")
        elif binding.key == "PRIVATE_KEY":  # it would win over PRIVATE_KEY_PATH: disabled
            kept.append("".join(f"# {line}" for line in original.splitlines(keepends=True)))
        else:
            kept.append(original)
    if kept and not kept[-1].endswith("\n"):
        kept.append("\n")
    kept += [f"{key}={_quoted(value)}\n" for key, value in values.items()]
    _write_private(env_file, "".join(kept))
    return key_path


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (0600)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)  # a file that existed keeps its mode otherwise


def _quoted(value: str) -> str:
    """A value python-dotenv reads back as written."""
    if re.fullmatch(r"[A-Za-z0-9_./:@+-]*", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SetupFlow:
    """The setup's two pages: ``/setup`` (the form, or the App's state once one is
    configured) and ``/setup/callback`` (GitHub's redirect: exchange, write ``.env``).

    ``token``: the ``/setup`` page asks for it (``?token=``, the ``API_TOKEN``), so that
    only the service's operator is handed a ``state``: the callback writes credentials
    into ``.env`` and must only finish a flow the operator started.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        env_file: Path,
        org: str | None = None,
        public_url: str | None = None,
        token: str | None = None,
        tracked: Callable[[], Awaitable[list[str]]] | None = None,
        replace: bool = False,
    ) -> None:
        self._settings = settings
        self._env_file = env_file
        self._org = org
        self._public_url = public_url
        self._token = token
        self._tracked = tracked
        self._replace = replace
        self._states: dict[str, float] = {}  # state -> when issued (monotonic)
        self.registered: AppCredentials | None = None
        self.finished = asyncio.Event()

    def routes(self) -> list[Route]:
        return [
            Route("/setup", self.page, methods=["GET"]),
            Route(CALLBACK_PATH, self.callback, methods=["GET"]),
        ]

    async def page(self, request: Request) -> Response:
        if self._token is not None and not secrets.compare_digest(
            request.query_params.get("token", "").encode(), self._token.encode()
        ):
            return _page(
                "Setup", "<p>Open this page as <code>/setup?token=API_TOKEN</code>.</p>", 401
            )
        if (configured(self._settings) and not self._replace) or self.registered is not None:
            return _page("GitHub App", await self._status())
        public = (self._public_url or str(request.base_url)).rstrip("/")
        document = manifest(public, webhook_path=self._settings.webhook_path)
        if self._settings.webhook_proxy_url:  # a laptop: GitHub delivers to the channel
            document["hook_attributes"]["url"] = self._settings.webhook_proxy_url
        state = new_state()
        self._states = {s: t for s, t in self._states.items() if time.monotonic() - t < 3600}
        self._states[state] = time.monotonic()
        action = registration_url(self._settings.github_url, self._org)
        return HTMLResponse(form_page(action, document, state))

    async def callback(self, request: Request) -> Response:
        offered = request.query_params.get("state", "")
        try:
            if self._states.pop(offered, None) is None:  # each state is good once
                raise SetupError(
                    "the state GitHub sent back is not one this setup handed out: start"
                    " again from /setup (a link from elsewhere, or an expired one)"
                )
            if configured(self._settings) and not self._replace:
                raise SetupError(
                    "a GitHub App is configured already: run `webhook-service setup"
                    " --replace` to register another"
                )
            async with aiohttp.ClientSession() as session:
                credentials = await convert(
                    session, self._settings.github_api_url, request.query_params.get("code", "")
                )
            key_path = write_env(self._env_file, credentials)
        except SetupError as exc:
            return _page("Setup failed", f"<p>{html.escape(str(exc))}</p>", 400)
        self.registered = credentials
        self.finished.set()
        install = html.escape(credentials.install_url, quote=True)
        body = (
            f"<p>GitHub App <b>{html.escape(credentials.slug)}</b> (id"
            f" {html.escape(credentials.app_id)}) is registered. Its settings are in"
            f" <code>{html.escape(str(self._env_file))}</code>, its key in"
            f" <code>{html.escape(str(key_path))}</code> (mode 0600).</p>"
            f'<ol><li><a href="{install}">Install the App</a> on the repositories to'
            " track.</li><li>Restart the service, which then reads them.</li></ol>"
        )
        return _page("GitHub App registered", body)

    async def _status(self) -> str:
        app_id = self._settings.app_id or (self.registered and self.registered.app_id)
        if self.registered is not None and not configured(self._settings):
            return "<p>Registered: restart the service to use the App.</p>"
        names = await self._tracked() if self._tracked is not None else []
        listed = "".join(f"<li>{html.escape(n)}</li>" for n in names) or "<li>none yet</li>"
        return (
            f"<p>A GitHub App (id {html.escape(str(app_id))}) is configured; run"
            " <code>webhook-service setup --replace</code> to register another.</p>"
            f"<p>Repositories tracked:</p><ul>{listed}</ul>"
        )


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"</head><body><h1>{title}</h1>{body}</body></html>",
        status_code=status,
    )
