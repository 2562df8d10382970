"""What the fake GitHub's tests share: their repository and tokens, GitHub's REST
examples, and a GET that returns status, JSON and response."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from webhook_service.testing.fake_github import rest_fixtures_root

REPO = "octo-org/widgets"
TOKEN = "ghp_primary"
OTHER_TOKEN = "ghp_secondary"


def example(name: str) -> Any:
    return json.loads((rest_fixtures_root() / name).read_text())


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """GET; return status, decoded JSON (None if no body) and the response."""
    async with http.get(url, headers=headers if headers is not None else auth()) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None, response
