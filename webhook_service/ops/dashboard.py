"""The live dashboard: one page, plain ES2020, no build step.

``GET /`` serves ``static/index.html`` (without a token: the page asks for it and sends
it as ``Authorization: Bearer`` to ``/api`` and as ``auth.token`` to Socket.IO), and
``/static/...`` serves the page's script, style sheet and the vendored socket.io client
(``static/vendor/socket.io/``, see its README). Nothing is loaded from anywhere else;
the page's Content-Security-Policy says so.

Wired into the app by adding ``*dashboard.routes()`` to the Starlette routes in
``app.create_app``.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = STATIC_DIR / "index.html"

# A Host header we are willing to repeat in the policy (host, IPv4, [IPv6], port).
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def content_security_policy(host: str | None) -> str:
    """Only this origin's scripts, styles and connections. ``'self'`` covers ws:/wss:
    to the same host in CSP 3 browsers; the explicit ws/wss sources are for older ones."""
    connect = ["'self'"]
    if host and _HOST.fullmatch(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src {' '.join(connect)}",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


async def index(request: Request) -> Response:
    return Response(
        INDEX.read_bytes(),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": content_security_policy(request.headers.get("host")),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


def routes() -> list[BaseRoute]:
    """``GET /`` (the page) and ``/static`` (its files), neither behind the API token."""
    return [
        Route("/", index, methods=["GET"], name="dashboard"),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
