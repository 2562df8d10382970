"""Socket.IO clients as load: readers (``socketio.AsyncClient``s in a child process,
``python clients.py URL COUNT OUT per-event|batch``, uvloop, orjson as the server
encodes) recording every ``pr_status_change`` and every message, and stuck clients
(raw websockets that complete the Socket.IO handshake, then never read)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import BenchError
from bench.servers import python_env, stop

STALL_SECONDS = 15.0  # the readers' drain ends early when nothing arrives for this long
STUCK_RCVBUF = 4096  # a stuck client's SO_RCVBUF: the window it advertises


def _read_frame(sock: socket.socket, buf: bytearray) -> str:
    """The next text or close frame's payload from the server (never masked)."""
    while True:
        size, offset = (buf[1] & 0x7F, 2) if len(buf) >= 2 else (0, 2**20)
        if size >= 126:
            offset = 4 if size == 126 else 10
            size = int.from_bytes(buf[2:offset], "big") if len(buf) >= offset else 2**20
        if len(buf) >= offset + size:
            opcode, payload = buf[0] & 0x0F, bytes(buf[offset : offset + size])
            del buf[: offset + size]
            if opcode in (1, 8):  # text, close
                return payload.decode(errors="replace")
        elif not (chunk := sock.recv(65536)):
            raise BenchError("the server closed a stuck client's connection")
        else:
            buf += chunk


def _handshake(sock: socket.socket, port: int, token: str, batch: bool) -> None:
    """Upgrade to a websocket, then Engine.IO open and Socket.IO CONNECT (with ``auth``)."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}"
                  f"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
    buf = bytearray()
    while b"\r\n\r\n" not in buf and (chunk := sock.recv(4096)):
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise BenchError(f"websocket upgrade refused: {head[:200]!r}")
    if not (opening := _read_frame(sock, buf := bytearray(rest))).startswith("0{"):
        raise BenchError(f"expected the Engine.IO open packet, got {opening[:100]!r}")
    text, mask = f"40{json.dumps({'token': token, 'batch': batch})}".encode(), os.urandom(4)
    assert len(text) < 126  # one masked text frame with a 7-bit length (clients must mask)
    sock.sendall(bytes((0x81, 0x80 | len(text))) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(text)))  # fmt: skip
    if not (answer := _read_frame(sock, buf)).startswith("40"):
        raise BenchError(f"Socket.IO CONNECT refused: {answer[:200]!r}")


class StuckClient:
    """A Socket.IO client that connects, authenticates (``batch``: asks for lists), never reads."""

    def __init__(self, port: int, token: str, *, batch: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STUCK_RCVBUF)  # first
            self.sock.settimeout(10)
            self.sock.connect(("127.0.0.1", port))
            _handshake(self.sock, port, token, batch)
        except BaseException as exc:
            self.sock.close()
            if isinstance(exc, OSError):
                raise BenchError(f"a stuck client could not connect: {exc}") from exc
            raise
        self.local_port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def established(port: int, local_ports: set[int]) -> int:
    """How many of these clients' connections the server (on ``port``) still holds open."""
    import psutil

    return sum(1 for c in psutil.net_connections("tcp")
               if c.status == "ESTABLISHED" and c.laddr and c.laddr.port == port
               and c.raddr and c.raddr.port in local_ports)  # fmt: skip


@dataclass(slots=True)
class ReaderLog:
    ids: array[int]
    times: array[float]  # time.monotonic() at receipt
    messages: array[float]  # time.monotonic() at the receipt of each message (any event)


class Readers:
    """The reading clients' process; talks over stdin/stdout lines."""

    def __init__(self, port: int, token: str, clients: int, run_dir: Path, batch: bool) -> None:
        self.out, self.log = run_dir / "readers.json", run_dir / "readers.log"
        argv = [sys.executable, __file__, f"http://127.0.0.1:{port}", str(clients), str(self.out),
                "batch" if batch else "per-event"]  # fmt: skip
        env = python_env(BENCH_PUSH_TOKEN=token)
        env["PYTHONPATH"] += os.pathsep + str(Path(__file__).resolve().parents[1])  # bench
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, bufsize=0,
                                         stdout=subprocess.PIPE, stderr=err, cwd=run_dir,
                                         start_new_session=True)  # fmt: skip

    def expect(self, word: str, timeout: float) -> list[str]:
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise BenchError(f"the reader process did not say {word!r} in {timeout:.0f}s")
        if (line := self.proc.stdout.readline().decode(errors="replace").split())[:1] != [word]:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"the reader process said {line!r}, not {word!r}:\n{tail}")
        return line[1:]

    def drain(self, expected: int, max_seconds: float) -> list[ReaderLog]:
        """Wait for every client to have ``expected`` events (or for the time to pass)."""
        import orjson

        assert self.proc.stdin is not None
        self.proc.stdin.write(f"drain {expected} {max_seconds}\n".encode())
        self.expect("done", max_seconds + 60)
        return [ReaderLog(array("q", i), array("d", t), array("d", m))
                for i, t, m in orjson.loads(self.out.read_bytes())]  # fmt: skip

    def close(self) -> None:
        stop(self.proc, 10)


def _recorders(log: ReaderLog, seen: set[int], batch: bool) -> tuple[Callable[..., None], ...]:
    """One reader's handlers: of its events (``pr_status_change``s, or an ``events`` list's
    items, timed at the list's receipt), and of any other message."""
    ids, times, message = log.ids.append, log.times.append, log.messages.append
    monotonic = time.monotonic

    def event(data: Any) -> None:
        message(now := monotonic())
        for item in data if batch else (data,):
            if not batch or item.get("type") == "pr_status_change":
                times(now)
                ids(item["event_id"])
                seen.add(item["event_id"])

    return event, lambda *args: message(monotonic())


async def _reader(url: str, count: int, out: Path, batch: bool) -> None:
    """Connect ``count`` clients (25 at a time), say "ready N"; on "drain EXPECTED SECONDS",
    wait for the events, write the logs to ``out`` and say "done"."""
    import orjson
    import socketio

    from webhook_service.push import sio_json
    from webhook_service.push.stream import BATCH

    auth = {"token": os.environ.get("BENCH_PUSH_TOKEN", ""), "batch": batch}
    logs = [ReaderLog(array("q"), array("d"), array("d")) for _ in range(count)]
    unique = [set[int]() for _ in range(count)]  # the drain waits for unique events
    clients: list[Any] = []
    for log, seen in zip(logs, unique, strict=True):
        clients.append(sio := socketio.AsyncClient(reconnection=False, json=sio_json))
        event, other = _recorders(log, seen, batch)
        sio.on(BATCH if batch else "pr_status_change", event)
        sio.on("*", other)  # any other message, e.g. task_status_change
    for start in range(0, count, 25):
        for result in await asyncio.gather(*(
                sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=15)
                for sio in clients[start : start + 25]), return_exceptions=True):  # fmt: skip
            if isinstance(result, BaseException):
                print(f"reader: a client failed to connect: {result!r}", file=sys.stderr)
    print(f"ready {sum(1 for sio in clients if sio.connected)}", flush=True)
    command = (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).split()
    expected, max_seconds = int(command[1]), float(command[2])
    started = last_change = time.monotonic()
    last_total = -1
    while not all(len(u) >= expected for u in unique) and time.monotonic() - started <= max_seconds:
        if (total := sum(len(log.ids) for log in logs)) != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            break
        await asyncio.sleep(0.05)
    await asyncio.to_thread(out.write_bytes, orjson.dumps([
        [g.ids.tolist(), g.times.tolist(), g.messages.tolist()] for g in logs]))
    print("done", flush=True)
    for start in range(0, count, 50):
        await asyncio.gather(*(sio.disconnect() for sio in clients[start : start + 50]),
                             return_exceptions=True)  # fmt: skip


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    import uvloop

    uvloop.run(_reader(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "batch"))
