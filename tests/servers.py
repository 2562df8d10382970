"""Real servers for tests: uvicorn in this process, or ``webhook-service serve`` as a
child process (for tests that kill it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psutil
import uvicorn

from webhook_service.app import Service, create_app
from webhook_service.config import Settings

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, and never the same one twice in this
    process: two servers asked for ports back to back could otherwise both get it."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@asynccontextmanager
async def uvicorn_server(settings: Settings) -> AsyncIterator[tuple[Service, str]]:
    """The app under a real uvicorn server on loopback; yields (service, base URL)."""
    asgi = create_app(settings)
    port = free_port()
    config = uvicorn.Config(asgi, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            await task  # raises the startup error, if any
            raise RuntimeError("uvicorn did not start")
        yield asgi.service, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class ServerProcess:
    """``python -m webhook_service serve`` in a child process (or ``command``, e.g. an
    installed ``webhook-service serve``; ``inherit_env=False`` gives it ``env`` alone)."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        command: Sequence[str] = (sys.executable, "-m", "webhook_service", "serve"),
        inherit_env: bool = True,
        cwd: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = os.environ if inherit_env else {}
        self._env = {**base, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self._command = list(command)
        self._cwd = cwd
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command,
                env=self._env,
                cwd=self._cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
                    and self._listening()
                ):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server did not become ready: {self.log_tail()}")

    def _listening(self) -> bool:
        """Whether this process (not another that took the port) listens on it."""
        assert self.process is not None
        try:
            connections = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port
            for c in connections
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class TcpProxy:
    """A loopback TCP relay to a server (PostgreSQL, the service) that can be cut and
    restored: while cut, open connections are reset and new ones are refused, as when
    the server or the network goes away. ``start`` again restores it, on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()
        await self._drain_pipes()
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        for reader, writer in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pipe(reader, writer))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)

    async def _drain_pipes(self) -> None:
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
