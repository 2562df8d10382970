"""Writing an answer: JSON bodies, and one page of a list with the URL of the next.

A page's cursor is the last row's key in the list's order (see :mod:`.routes` for the
keys of each list); :func:`~.requests.cursor` reads it back.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: its body gets ``next``, its response a ``Link`` header."""

    body: Mapping[str, Any]
    next: str | None

    def response(self) -> Response:
        response = json_response({**self.body, "next": self.next})
        if self.next is not None:
            response.headers["Link"] = f'<{self.next}>; rel="next"'
        return response


def next_url(request: Request, **moved: str) -> str:
    """This request's path and query with the ``moved`` parameters replaced."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in moved]
    return f"{request.url.path}?{urlencode([*query, *moved.items()])}"


def encode_cursor(kind: str, *key: Any) -> str:
    raw = orjson.dumps([kind, *key])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
