"""How GitHub answers over HTTP, for every endpoint of the fake: JSON bodies, error bodies
(``{"message", "documentation_url"}``), and ``Link`` pagination."""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web
from yarl import URL

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"


class ApiError(Exception):
    """An endpoint's refusal, answered as GitHub's error body with ``extra`` fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def json_response(data: Any, status: int = 200, link: str | None = None) -> web.Response:
    headers = {"Link": link} if link else None
    body = orjson.dumps(data)
    return web.Response(
        status=status, body=body, content_type="application/json", charset="utf-8", headers=headers
    )


def error(status: int, message: str, docs: str = DOCS, **extra: Any) -> web.Response:
    # GitHub's error body: {"message": ..., "documentation_url": ...}
    return json_response({"message": message, **extra, "documentation_url": docs}, status)


def int_param(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query[name])
    except (KeyError, ValueError):
        value = 0
    return value if value > 0 else default  # GitHub ignores malformed paging parameters


def paginate(request: web.Request, items: list[Any], base_url: str) -> tuple[list[Any], str | None]:
    """A page, and GitHub's Link header (docs "Using pagination in the REST API")."""
    per_page = min(int_param(request, "per_page", 30), 100)
    page = int_param(request, "page", 1)
    last = max(1, math.ceil(len(items) / per_page))
    url = URL(base_url).with_path(request.path)
    query = {name: value for name, value in request.query.items() if name != "page"}

    def link(number: int, rel: str) -> str:
        return f'<{url.with_query(query | {"page": str(number)})}>; rel="{rel}"'

    links = [link(page - 1, "prev")] if page > 1 else []
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links.append(link(1, "first"))
    return items[(page - 1) * per_page : page * per_page], ", ".join(links) or None
