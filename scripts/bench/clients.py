"""Socket.IO clients as load: readers (``socketio.AsyncClient``s in a child process of
their own, uvloop, decoding with orjson through ``webhook_service.push.sio_json`` as
the server encodes) that record every ``pr_status_change`` and every message, and
stuck clients (raw websockets that complete the Engine.IO/Socket.IO handshake, then
never read), with the kernel queues of their connections (``ss``).

    python scripts/bench/clients.py URL COUNT OUT NICE per-event|batch   (the readers;
    scripts/ on PYTHONPATH, the token in BENCH_PUSH_TOKEN)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import BenchError
from bench.servers import python_env, stop

STALL_SECONDS = 15.0  # the readers' drain ends early when nothing arrives for this long


def _auth(token: str, batch: bool) -> dict[str, Any]:
    return {"token": token, "batch": True} if batch else {"token": token}


def _ws_frame(text: str) -> bytes:
    """A masked text frame (clients must mask)."""
    payload, mask = text.encode(), os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x81, 0x80 | size))
    elif size < 65536:
        head = bytes((0x81, 0x80 | 126)) + struct.pack("!H", size)
    else:
        head = bytes((0x81, 0x80 | 127)) + struct.pack("!Q", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _frame(buf: bytearray) -> tuple[int, bytes] | None:
    """(opcode, payload) of the first complete frame in ``buf`` (removed), or None."""
    if len(buf) < 2:
        return None
    size, offset = buf[1] & 0x7F, 2
    if size >= 126:
        offset = 4 if size == 126 else 10
        if len(buf) < offset:
            return None
        size = int.from_bytes(buf[2:offset], "big")
    if len(buf) < offset + size:
        return None
    opcode, payload = buf[0] & 0x0F, bytes(buf[offset : offset + size])  # never masked
    del buf[: offset + size]
    return opcode, payload


def _read_frame(sock: socket.socket, buf: bytearray) -> str:
    """The next text frame from the server, skipping control frames."""
    while True:
        frame = _frame(buf)
        if frame is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("the server closed a stuck client's connection")
            buf += chunk
        elif frame[0] == 8:
            raise BenchError("the server closed a stuck client's websocket")
        elif frame[0] == 1:
            return frame[1].decode()


class StuckClient:
    """A Socket.IO client that connects, authenticates and then never reads
    (``batch``: it asks for ``events`` lists)."""

    def __init__(self, port: int, token: str, rcvbuf: int, *, batch: bool = False) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Before connecting: it bounds the window the client advertises.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:"
                          f"{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-"
                          f"Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise BenchError("the server closed a stuck client's handshake")
                buf += chunk
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                raise BenchError(f"websocket upgrade refused: {head[:200]!r}")
            buf = bytearray(rest)
            if not (opening := _read_frame(sock, buf)).startswith("0{"):
                raise BenchError(f"expected the Engine.IO open packet, got {opening[:100]!r}")
            sock.sendall(_ws_frame("40" + json.dumps(_auth(token, batch))))
            if not (answer := _read_frame(sock, buf)).startswith("40"):
                raise BenchError(f"Socket.IO CONNECT refused: {answer[:200]!r}")
        except OSError as exc:
            sock.close()
            raise BenchError(f"a stuck client could not connect: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.local_port: int = sock.getsockname()[1]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


@dataclass(slots=True)
class Queues:
    """Kernel socket queues of the stuck clients' connections (from ``ss -tnm``)."""

    established: int = 0  # server-side sockets still established
    server_send_q: list[int] = field(default_factory=list)  # unsent bytes, per connection
    server_full: int = 0  # server-side send buffers full: the server's writes are blocked
    server_sndbuf: list[int] = field(default_factory=list)  # the kernel's (autotuned) sizes
    client_recv_q: list[int] = field(default_factory=list)
    available: bool = True


def _skmem(line: str) -> dict[str, int]:
    """``skmem:(r0,rb131072,t0,tb2626560,...)`` -> {"r": 0, "rb": 131072, ...}."""
    values: dict[str, int] = {}
    for item in line.partition("skmem:(")[2].partition(")")[0].split(","):
        name = item.rstrip("0123456789")
        with contextlib.suppress(ValueError):
            values[name] = int(item[len(name) :])
    return values


def stuck_queues(port: int, local_ports: set[int]) -> Queues:
    if not local_ports:
        return Queues()
    ss = shutil.which("ss")
    try:
        text = subprocess.run([ss or "ss", "-tnmH", "state", "established"], capture_output=True,
                              text=True, timeout=10, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return Queues(available=False)
    queues, server_side = Queues(), False
    for line in text.splitlines():
        if "skmem:(" in line:
            if server_side:
                mem = _skmem(line)
                queues.server_sndbuf.append(mem.get("tb", 0))
                # Writes block once the queued bytes (with overhead) reach the buffer size.
                queues.server_full += mem.get("w", 0) >= mem.get("tb", 1) * 0.9
            continue
        server_side, parts = False, line.split()
        if len(parts) < 4:
            continue
        local, peer = int(parts[2].rpartition(":")[2]), int(parts[3].rpartition(":")[2])
        if local == port and peer in local_ports:
            server_side = True
            queues.established += 1
            queues.server_send_q.append(int(parts[1]))
        elif peer == port and local in local_ports:
            queues.client_recv_q.append(int(parts[0]))
    return queues


@dataclass(slots=True)
class ReaderLog:
    connected: bool
    disconnects: int
    ids: array[int]
    times: array[float]  # time.monotonic() at receipt
    messages: array[float]  # time.monotonic() at the receipt of each message (any event)


class Readers:
    """The reading clients' process; talks over stdin/stdout lines."""

    def __init__(self, port: int, token: str, clients: int, run_dir: Path, nice: int,
                 *, batch: bool = False) -> None:  # fmt: skip
        self.out, self.log = run_dir / "readers.bin", run_dir / "readers.log"
        self._lines: queue.Queue[str] = queue.Queue()
        argv = [sys.executable, __file__, f"http://127.0.0.1:{port}", str(clients), str(self.out),
                str(nice), "batch" if batch else "per-event"]  # fmt: skip
        env = python_env(BENCH_PUSH_TOKEN=token)
        env["PYTHONPATH"] += os.pathsep + str(Path(__file__).resolve().parents[1])  # bench
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, cwd=run_dir,
                                         start_new_session=True)
        threading.Thread(target=self._pump, name="reader-stdout", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode(errors="replace").strip())
        self._lines.put("")  # EOF

    def expect(self, word: str, timeout: float) -> list[str]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"the reader process did not say {word!r} in {timeout:.0f}s") from None
        if not line.split() or line.split()[0] != word:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"the reader process said {line!r}, not {word!r}:\n{tail}")
        return line.split()[1:]

    def drain(self, expected: int, max_seconds: float) -> tuple[list[ReaderLog], float]:
        """Wait for every client to have ``expected`` events (or for the time to pass)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"drain {expected} {max_seconds} {STALL_SECONDS}\n".encode())
        self.proc.stdin.flush()
        (waited,) = self.expect("done", max_seconds + 60)
        return _read_logs(self.out), float(waited)

    def close(self) -> None:
        stop(self.proc, 10)


def _read_logs(path: Path) -> list[ReaderLog]:
    import orjson

    logs = orjson.loads(path.read_bytes())
    return [ReaderLog(c, d, array("q", i), array("d", t), array("d", m)) for c, d, i, t, m in logs]


def _write_logs(path: Path, clients: Sequence[Any], logs: Sequence[ReaderLog]) -> None:
    import orjson

    path.write_bytes(orjson.dumps([[sio.connected, log.disconnects, log.ids.tolist(),
                                    log.times.tolist(), log.messages.tolist()]
                                   for sio, log in zip(clients, logs, strict=True)]))  # fmt: skip


def _recorders(log: ReaderLog, seen: set[int], batch: bool) -> tuple[Callable[..., None], ...]:
    """Handlers of one reader: its events (``pr_status_change`` messages, or the items of
    an ``events`` list, at the list's receive instant), other messages, disconnects."""
    ids, times, message = log.ids.append, log.times.append, log.messages.append
    monotonic = time.monotonic

    def event(data: Any) -> None:
        now = monotonic()
        message(now)
        for item in data if batch else (data,):
            if not batch or item.get("type") == "pr_status_change":
                times(now)
                ids(item["event_id"])
                seen.add(item["event_id"])

    def other(*args: Any) -> None:  # any other message, e.g. task_status_change
        message(monotonic())

    def disconnected(*args: Any) -> None:
        log.disconnects += 1

    return event, other, disconnected


async def _connect(clients: Sequence[Any], url: str, auth: dict[str, Any]) -> None:
    failures: Counter[str] = Counter()
    for start in range(0, len(clients), 25):
        for result in await asyncio.gather(*(
            sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=15)
            for sio in clients[start : start + 25]
        ), return_exceptions=True):  # fmt: skip
            if isinstance(result, BaseException):
                failures[f"{type(result).__name__}: {result}"] += 1
    for failure, n in failures.items():
        print(f"reader: {n} client(s) failed to connect: {failure}", file=sys.stderr)


async def _reader(url: str, token: str, count: int, out: Path, batch: bool) -> int:
    import socketio

    from webhook_service.push import sio_json
    from webhook_service.push.stream import BATCH

    logs = [ReaderLog(False, 0, array("q"), array("d"), array("d")) for _ in range(count)]
    unique = [set[int]() for _ in range(count)]  # the drain waits for unique events
    clients: list[Any] = []
    for log, seen in zip(logs, unique, strict=True):
        sio = socketio.AsyncClient(reconnection=False, json=sio_json)
        event, other, disconnected = _recorders(log, seen, batch)
        sio.on(BATCH if batch else "pr_status_change", event)
        sio.on("*", other)
        sio.on("disconnect", disconnected)
        clients.append(sio)
    await _connect(clients, url, _auth(token, batch))
    print(f"ready {sum(1 for sio in clients if sio.connected)}", flush=True)
    command = (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).split()
    if len(command) != 4 or command[0] != "drain":
        print(f"error unexpected command {command!r}", flush=True)
        return 2
    expected, max_seconds, stall = int(command[1]), float(command[2]), float(command[3])
    started = time.monotonic()
    last_total, last_change = -1, started
    while not all(len(u) >= expected for u in unique) and time.monotonic() - started <= max_seconds:
        total = sum(len(log.ids) for log in logs)
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > stall:
            break
        await asyncio.sleep(0.05)
    waited = time.monotonic() - started
    _write_logs(out, clients, logs)
    print(f"done {waited:.3f}", flush=True)
    for start in range(0, count, 50):
        await asyncio.gather(*(sio.disconnect() for sio in clients[start : start + 50]),
                             return_exceptions=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    _url, _count, _out, _nice, _mode = sys.argv[1:6]
    if int(_nice):
        os.nice(int(_nice))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    import uvloop

    _token = os.environ.get("BENCH_PUSH_TOKEN", "")
    sys.exit(uvloop.run(_reader(_url, _token, int(_count), Path(_out), _mode == "batch")))
