"""Redis servers for the tests.

``redis_url()`` yields the URL of a Redis: ``TEST_REDIS_URL`` when it is set (the
machine's, as ``scripts/test`` sets it), otherwise a private one. ``RedisServer`` is a
private ``redis-server`` on a free loopback port that a test can stop and start again
(on the same port), for tests that take Redis away.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port

ENV_URL = "TEST_REDIS_URL"


class RedisServer:
    """``redis-server`` on 127.0.0.1, keeping nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server); "
                f"or set {ENV_URL} to a running Redis"
            )
        self._binary = binary
        self._workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        log = (self._workdir / "redis.log").open("ab")
        self._process = subprocess.Popen(
            [
                self._binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self._workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self, *, kill: bool = False) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self._process.wait(10)

    def ping(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(
            ("127.0.0.1", self.port), timeout=0.5
        ) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@contextlib.contextmanager
def redis_url(workdir: Path) -> Iterator[str]:
    if url := os.environ.get(ENV_URL):
        yield url
        return
    with redis_server(workdir) as server:
        yield server.url
