"""The listening socket of ``serve`` and of ``setup``'s page: opened before the server
runs, so that a port in use or an address not of this machine is one line naming the
setting to change instead of a traceback from uvicorn."""

from __future__ import annotations

import errno
import socket

from webhook_service.config import ConfigError

#: The kernel send buffer of every accepted connection (inherited from the listening
#: socket). Linux would otherwise grow it to megabytes for a peer that stops reading:
#: megabytes of Socket.IO frames written, and copied, for a client that will never read
#: them, before the service can tell it is stuck (see push/fanout.py, MAX_BACKLOG).
SEND_BUFFER = 256 * 1024


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(_listen_problem(host, port, exc)) from None
    return sock


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"PORT: {host}:{port} is already in use (another webhook-service?); stop that"
            " process or choose another port with --port or PORT"
        )
    if exc.errno == errno.EACCES:
        return (
            f"PORT: no permission to listen on port {port} (ports below 1024 need root);"
            " choose a port above 1023 with --port or PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"HOST: cannot listen on {host!r} ({exc.strerror or exc}); use an address of this"
            " machine (127.0.0.1; 0.0.0.0 for every interface) with --host or HOST"
        )
    return f"HOST/PORT: cannot listen on {host}:{port}: {exc}"
