"""A ``json`` module for python-socketio and python-engineio, built on orjson.

``socketio.AsyncServer(json=sio_json)`` (and ``socketio.AsyncClient(json=...)``) takes
any module-like object with the standard library's ``dumps`` and ``loads``. The
default, ``engineio.json``, is the standard library with a Python callback for every
integer parsed (``parse_int``, a guard against huge numbers): decoding a batch of
events is then most of what a Python client does. orjson parses about five times
faster and refuses integers beyond 64 bits by itself. It writes the compact form
Socket.IO asks for (``separators=(",", ":")``), with non-ASCII text as UTF-8 rather than
``\\u`` escapes: the same values, in fewer bytes.

Note that python-socketio installs its ``json`` on the packet *classes*: every server
and client in the process then uses it.
"""

from __future__ import annotations

from typing import Any

import orjson

# The one keyword argument Socket.IO and Engine.IO pass; orjson's output is compact.
_COMPACT = (",", ":")


def dumps(obj: Any, *, separators: tuple[str, str] | None = None) -> str:
    """Compact JSON text of ``obj`` (``separators`` may only be the compact pair)."""
    if separators is not None and tuple(separators) != _COMPACT:
        raise ValueError(f"sio_json writes compact JSON only, not separators={separators!r}")
    return orjson.dumps(obj).decode()


def loads(text: str | bytes) -> Any:
    """The value of the JSON text ``text``; ``ValueError`` (orjson.JSONDecodeError,
    a subclass) when it is not valid JSON."""
    return orjson.loads(text)
