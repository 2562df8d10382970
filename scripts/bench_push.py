"""Push benchmark: webhook POST -> Socket.IO event, and slow or stuck clients under load.

    .venv-dev/bin/python scripts/bench_push.py [--backend postgresql|sqlite|both]
        [--rate 200] [--seconds 20] [--clients 200] [--stuck 50] [--only push|slow]
        [--client-modes per-event,batch] [--push-replica [--message-queue URL]]

Everything runs on 127.0.0.1 and is bounded in count and time. Each server is
``webhook-service serve`` (one uvicorn worker, LOG_LEVEL=WARNING) on a scratch database
(PostgreSQL: a new database created from ``--postgres-url`` and dropped at the end;
SQLite: a file in the temp dir), started as in ``scripts/bench_ingest.py``, whose
helpers (workload generator, server process, RSS sampler, wrk driver, CPU accounting,
database checks) this script imports.

1. push (each backend): L listening ``socketio.AsyncClient``s (``--listeners``, 1)
   connect over websocket with ``auth={"token": API_TOKEN}``; then deliveries are POSTed
   at a steady ``--rate`` per second for ``--seconds`` (after ``--warmup`` seconds at the
   same rate that are not counted), open loop: each is sent at its scheduled instant,
   whatever the earlier ones are doing, over an aiohttp connection pool. Every delivery
   is a real, signed ``pull_request`` payload (the recorded fixtures, re-rendered as in
   bench_ingest) that changes its PR's status, so each yields exactly one
   ``pr_status_change``, identified by (repository, number, old status, new status):
   the PRs go opened -> closed -> reopened -> merged (null->OPEN, OPEN->CLOSED,
   CLOSED->OPEN, OPEN->MERGED) with increasing ``updated_at``, 50 PRs interleaved so that
   two deliveries about one PR are 250 ms apart at 200/s. Push latency = a listener's
   receive instant - the POST's send instant (same process, monotonic clock); ack
   latency = 2xx answer - send. Events missing after a drain period, and duplicates, are
   counted. Target: push p99 <= 50 ms on PostgreSQL; and every delivery answered 2xx
   with its event received by every listener (duplicates are counted, not failed:
   delivery is at least once, clients drop repeats by ``event_id``).
2. slow (each backend): the ingest load of bench_ingest (its realistic workload:
   ``--deliveries`` N signed deliveries about N/4 PRs; wrk closed loop at ``-c`` C, one
   thread; ``scripts/bench_push.lua`` = bench_ingest.lua that also logs each send
   instant), up to three times, each time against a fresh server and database:
   (a) no Socket.IO client (the baseline);
   (b) per-event clients, the original protocol (``auth={"token": ...}``): one
       ``pr_status_change`` (etc.) message per event;
   (c) batch clients, the opt-in mode (``auth={"token": ..., "batch": true}``): one
       ``events`` message, a list of the same payloads in id order, at most every
       ``BATCH_INTERVAL`` (0.05 s) per client, and at most ``SOCKETIO_FRAME_BUDGET`` (500)
       frames a second to all batch clients together: 0.4 s apart with 200 of them
       (webhook_service/push/stream.py).
   ``--client-modes`` picks (b), (c) or both (the default, run in that order); (a) is
   always run. (b) and (c) each have ``--clients`` clients of their kind, of which
   ``--stuck`` never read: raw websockets (receive buffer ``--stuck-rcvbuf`` bytes) that
   complete the Engine.IO/Socket.IO handshake (``40{"token": ...}``, with
   ``"batch": true`` in (c)) and then never read the socket, held by this process; the
   others are ``socketio.AsyncClient``s in one child process (this script with
   ``--reader-process``, uvloop, ``--reader-nice``, decoding with orjson through
   ``webhook_service.push.sio_json`` as the server encodes) that record every
   ``pr_status_change``: its ``event_id`` and receive instant (in (c), each such item of
   an ``events`` list, at the list's receive instant). They also count the messages
   (frames) they receive, reported per reading client per second of the load.
   After the load, the readers get up to ``--drain-seconds`` to receive what is still
   on its way; each must end with every stored ``pr_status_change`` (repeats are
   counted, not failed: delivery is at least once). The readers' receive latency is
   receive instant - send instant of the delivery that caused the event (matched
   through the PR's sequence of status changes); in (c) it includes the wait for the
   next batch. The issue's target: ingest throughput with ``--clients`` clients, some
   never reading, within 20% of none, i.e. deliveries/s ratio >= 0.8 x (a). Both ratios
   are printed, (b)/(a) and (c)/(a), and checked against it, but only the batch ratio
   (c)/(a) gates the exit status: batches are the answer to that target; the per-event
   ratio (b)/(a) is reported as a figure (the cost of the original protocol). With
   ``--client-modes per-event`` the target is not measured and does not gate. Reported
   too: each run's server peak RSS, the CPU used by the server, PostgreSQL, wrk, the
   readers and the whole machine (everything shares the same cores: the clients compete
   with the server), and whether the stuck sockets were really stuck (the kernel queues
   of their connections, from ``ss``).

With ``--push-replica`` (PostgreSQL) every slow run, (a) included, has two replicas on
one database and Redis (``--message-queue``): wrk posts to one, every client connects to
the other, as a deployment that keeps clients off its webhook receivers would (the
figures then include the second replica's CPU).

The exit status is 0 when every gating check passes, 1 otherwise, 2 on a usage or setup
error. Gating: push: p99 <= 50 ms on PostgreSQL and every event received (as above);
slow: every run's deliveries all answered 2xx and stored (bench_ingest's database
checks), every reading client of (b) and (c) received every event, and the batch ratio
(c)/(a) >= 0.8. Not gating: the per-event ratio (b)/(a), latencies, CPU and memory
figures. Run ``--help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import queue
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any


def _load_sibling(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` whether or not ``scripts/`` is on sys.path."""
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


if TYPE_CHECKING:
    import bench_ingest as ingest
else:
    ingest = _load_sibling("bench_ingest")

BenchError = ingest.BenchError

WEBHOOK_PATH = ingest.WEBHOOK_PATH
DEFAULT_ADMIN_URL = ingest.DEFAULT_ADMIN_URL
PUSH_LUA = Path(__file__).resolve().with_name("bench_push.lua")

TARGET_PUSH_P99_MS = 50.0
TARGET_SLOW_RATIO = 0.8

#: The slow measurement's client kinds: ``--client-modes`` name -> run label. Per-event
#: clients keep the original protocol; batch clients connect with ``"batch": true``.
CLIENT_MODES = {"per-event": "b", "batch": "c"}

MAX_PUSH_DELIVERIES = 60_000  # (rate x (seconds + warm-up)); ~28 KB each, kept in memory
MAX_SLOW_DELIVERIES = 100_000
MAX_CLIENTS = 1_000
PUSH_DRAIN_SECONDS = 10.0  # after the last answer, how long events may still arrive
POST_TIMEOUT_SECONDS = 30.0
READER_STALL_SECONDS = 15.0  # readers' drain ends early when nothing arrives for this long
#: Deliveries about one PR in the push workload are this many deliveries apart.
PUSH_WINDOW = 50
#: The push workload's PR story: fixture kind, status before, status after.
PUSH_STORY: tuple[tuple[str, str | None, str], ...] = (
    ("opened", None, "OPEN"),
    ("closed", "OPEN", "CLOSED"),
    ("reopened", "CLOSED", "OPEN"),
    ("merged", "OPEN", "MERGED"),
)
PUSH_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z

EventKey = tuple[str, int, str | None, str]  # repository, number, old status, new status


def _log(message: str) -> None:
    print(f"[bench_push] {message}", file=sys.stderr, flush=True)


def _self_argv(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# -- push workload ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushDelivery:
    guid: str
    key: EventKey
    headers: dict[str, str]
    body: bytes


def generate_push(count: int, secret: str, seed: int) -> list[PushDelivery]:
    """``count`` signed deliveries, each a status change of its PR (see the docstring)."""
    import orjson

    from webhook_service.ingest.signature import sign

    rng = random.Random(seed)
    templates = ingest._load_templates()
    merged_by = templates["closed.merged"][0]["pull_request"]["merged_by"]
    secret_bytes = secret.encode()
    prs: list[ingest._PR] = []
    out: list[PushDelivery] = []
    at = PUSH_EPOCH
    block = 0
    while len(out) < count:
        for kind, old, new in PUSH_STORY:
            for j in range(PUSH_WINDOW):
                if len(out) >= count:
                    break
                index = block * PUSH_WINDOW + j
                if index == len(prs):
                    repository = ingest.REPOSITORIES[index % len(ingest.REPOSITORIES)]
                    number = index // len(ingest.REPOSITORIES) + 1
                    prs.append(
                        ingest._PR(
                            repository=repository,
                            number=number,
                            github_id=400_000_000 + index,
                            created_at=at,
                            title=f"Push benchmark change {number} in {repository}",
                            head_ref=f"feature/push-{number}-{rng.getrandbits(24):06x}",
                        )
                    )
                pr = prs[index]
                at += 60
                ingest._advance(pr, kind, at, rng)
                stem = ingest.TEMPLATES[kind]
                if pr.repository.startswith("octo-org/") and (
                    f"{stem}.with-organization" in templates
                ):
                    stem = f"{stem}.with-organization"
                doc, fixture_headers = templates[stem]
                ingest._render(doc, pr, at, merged_by)
                body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
                guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                headers = {
                    **fixture_headers,
                    "X-GitHub-Delivery": guid,
                    "X-Hub-Signature-256": sign(body, secret=secret_bytes),
                }
                out.append(PushDelivery(guid, (pr.repository, pr.number, old, new), headers, body))
        block += 1
    return out


# -- servers and databases -------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(backend: str, admin_url: str, tmp: Path, keep: bool) -> Iterator[str]:
    """A new, empty database for one server: its DATABASE_URL."""
    if backend == "sqlite":
        path = tmp / f"bench_push_{secrets.token_hex(3)}.db"
        yield f"sqlite:///{path}"
        return
    with ingest.scratch_postgres(admin_url, keep) as url:
        yield url


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def start_server(
    backend: str,
    url: str,
    run_dir: Path,
    secret: str,
    token: str,
    *,
    name: str = "server",
    extra_env: dict[str, str] | None = None,
) -> ingest.Server:
    port = ingest._free_port()
    env = {
        **ingest._python_env(),
        "WEBHOOK_SECRET": secret,
        "API_TOKEN": token,
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **(extra_env or {}),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    return ingest.Server(
        f"webhook-service ({backend}, {name})",
        ingest._service_argv(port),
        port=port,
        env=env,
        log=run_dir / f"{name}.log",
    )


def fetch_events(backend: str, url: str) -> list[tuple[int, dict[str, Any]]]:
    """The stored ``pr_status_change`` events, in id order: (id, payload)."""
    statement = "SELECT id, payload FROM events WHERE type = 'pr_status_change' ORDER BY id"
    if backend == "sqlite":
        db = sqlite3.connect(_sqlite_path(url))
        try:
            rows = [(int(i), str(p)) for i, p in db.execute(statement).fetchall()]
        finally:
            db.close()
    else:
        import asyncpg

        async def run() -> list[tuple[int, str]]:
            conn = await asyncpg.connect(url)
            try:
                return [(int(r["id"]), str(r["payload"])) for r in await conn.fetch(statement)]
            finally:
                await conn.close()

        rows = asyncio.run(run())
    return [(event_id, json.loads(payload)) for event_id, payload in rows]


@dataclass(slots=True)
class Cpu:
    """CPU seconds used so far by the processes a measurement cares about."""

    machine_busy: float
    machine_steal: float
    machine_total: float
    server: float
    postgres: dict[int, float]
    other: float  # a client process (the readers), or this process
    at: float

    @classmethod
    def now(cls, server_pid: int, database: str | None, other_pid: int | None) -> Cpu:
        busy, steal, total = ingest._machine_cpu()
        return cls(
            machine_busy=busy,
            machine_steal=steal,
            machine_total=total,
            server=ingest._cpu_seconds(server_pid),
            postgres=ingest._postgres_cpu(database),
            other=ingest._cpu_seconds(other_pid) if other_pid else time.process_time(),
            at=time.monotonic(),
        )


@dataclass(slots=True)
class CpuUse:
    """Cores used on average between two :class:`Cpu` readings."""

    machine: float = 0.0
    steal: float = 0.0
    server: float = 0.0
    postgres: float = 0.0
    other: float = 0.0
    seconds: float = 0.0

    @classmethod
    def between(cls, a: Cpu, b: Cpu) -> CpuUse:
        wall = b.at - a.at
        if wall <= 0:
            return cls()
        ncpu = os.cpu_count() or 1
        share = (
            ncpu / (b.machine_total - a.machine_total) if b.machine_total > a.machine_total else 0
        )
        return cls(
            machine=(b.machine_busy - a.machine_busy) * share,
            steal=(b.machine_steal - a.machine_steal) * share,
            server=(b.server - a.server) / wall,
            postgres=sum(t - a.postgres.get(pid, 0.0) for pid, t in b.postgres.items()) / wall,
            other=(b.other - a.other) / wall,
            seconds=wall,
        )


# -- measurement 1: push latency --------------------------------------------------------------


@dataclass(slots=True)
class PushLoad:
    """What the open-loop sender and the listeners saw (times: time.monotonic())."""

    scheduled: list[float]
    sent: list[float]
    acked: list[float]
    status: list[int]
    errors: Counter[str]
    received: list[dict[int, list[tuple[int, float]]]]  # per listener: index -> (id, t)
    unexpected: list[int]  # per listener: events matching no delivery
    disconnects: list[int]


async def push_load(
    port: int,
    token: str,
    deliveries: Sequence[PushDelivery],
    rate: float,
    listeners: int,
) -> PushLoad:
    import aiohttp
    import socketio

    n = len(deliveries)
    index_of = {d.key: i for i, d in enumerate(deliveries)}
    load = PushLoad(
        scheduled=[0.0] * n,
        sent=[0.0] * n,
        acked=[0.0] * n,
        status=[0] * n,
        errors=Counter(),
        received=[{} for _ in range(listeners)],
        unexpected=[0] * listeners,
        disconnects=[0] * listeners,
    )

    progress = asyncio.Event()  # an event arrived

    def on_event(k: int) -> Callable[[Any], None]:
        received = load.received[k]

        def handler(data: Any) -> None:
            now = time.monotonic()
            progress.set()
            key = (data.get("repository"), data.get("pr_number"), data.get("old_status"),
                   data.get("new_status"))  # fmt: skip
            index = index_of.get(key)
            if index is None:
                load.unexpected[k] += 1
            else:
                received.setdefault(index, []).append((int(data.get("event_id", -1)), now))

        return handler

    closing = False  # disconnects from here on are ours

    def on_disconnect(k: int) -> Callable[..., None]:
        def handler(*args: Any) -> None:
            if not closing:
                load.disconnects[k] += 1

        return handler

    base = f"http://127.0.0.1:{port}"
    clients: list[Any] = []
    for k in range(listeners):
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("pr_status_change", on_event(k))
        sio.on("disconnect", on_disconnect(k))
        clients.append(sio)
    try:
        for sio in clients:
            await sio.connect(
                base, auth={"token": token}, transports=["websocket"], wait_timeout=10
            )
        connector = aiohttp.TCPConnector(limit=1024)
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            url = base + WEBHOOK_PATH

            async def post(i: int) -> None:
                delivery = deliveries[i]
                load.sent[i] = time.monotonic()
                try:
                    async with session.post(
                        url, data=delivery.body, headers=delivery.headers
                    ) as response:
                        await response.read()
                        load.status[i] = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    load.status[i] = -1
                    load.errors[type(exc).__name__] += 1
                load.acked[i] = time.monotonic()

            tasks: list[asyncio.Task[None]] = []
            start = time.monotonic() + 0.05
            for i in range(n):
                load.scheduled[i] = target = start + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(i)))
            await asyncio.gather(*tasks)
        # Every event of a 2xx delivery is committed by now; give the push a moment.
        wanted = {i for i in range(n) if 200 <= load.status[i] < 300}
        deadline = time.monotonic() + PUSH_DRAIN_SECONDS
        while not all(wanted <= received.keys() for received in load.received):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), remaining)
    finally:
        closing = True
        for sio in clients:
            with contextlib.suppress(Exception):
                await sio.disconnect()
    return load


@dataclass(slots=True)
class PushResult:
    backend: str
    measured: int  # deliveries after the warm-up
    warmup: int
    listeners: int
    ok: int
    not_ok: int
    errors: Counter[str]
    push_ms: list[float]  # sorted
    ack_ms: list[float]  # sorted
    lag_ms: list[float]  # sorted: actual send - scheduled send
    missing: int  # (listener, 2xx delivery) pairs with no event
    duplicated: int  # extra receipts
    unexpected: int
    disconnects: int
    send_rate: float
    cpu: CpuUse
    peak_rss_mb: float
    stored_events: int
    seconds: float


def bench_push(
    backend: str,
    args: argparse.Namespace,
    deliveries: Sequence[PushDelivery],
    secret: str,
    warmup: int,
    tmp: Path,
) -> PushResult:
    started = time.monotonic()
    token = secrets.token_hex(16)
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(scratch_database(backend, args.postgres_url, tmp, args.keep))
        server = start_server(backend, url, tmp / f"push-{backend}", secret, token)
        stack.callback(server.close)
        sampler = ingest.Sampler(server.pid)
        sampler.start()
        database = url.rpartition("/")[2] if backend == "postgresql" else None
        try:
            server.wait_ready("/readyz")
            _log(
                f"push/{backend}: server ready (pid {server.pid}); {len(deliveries)} deliveries "
                f"at {args.rate:g}/s ({warmup} warm-up), {args.listeners} listener(s)"
            )
            cpu0 = Cpu.now(server.pid, database, None)
            load = asyncio.run(push_load(server.port, token, deliveries, args.rate, args.listeners))
            cpu1 = Cpu.now(server.pid, database, None)
        finally:
            peak = sampler.stop()
        stored = len(fetch_events(backend, url))
        server.kill()
    return summarise_push(backend, load, warmup, CpuUse.between(cpu0, cpu1), peak, stored,
                          time.monotonic() - started)  # fmt: skip


def summarise_push(
    backend: str,
    load: PushLoad,
    warmup: int,
    cpu: CpuUse,
    peak: int,
    stored: int,
    seconds: float,
) -> PushResult:
    n = len(load.sent)
    measured = range(warmup, n)
    ok = [i for i in measured if 200 <= load.status[i] < 300]
    push_ms: list[float] = []
    missing = duplicated = 0
    for received in load.received:
        for i in range(n):
            got = received.get(i, [])
            if not got:
                missing += 200 <= load.status[i] < 300
                continue
            duplicated += len(got) - 1
            if i >= warmup:
                push_ms.append((got[0][1] - load.sent[i]) * 1000)
    first, last = load.sent[warmup] if n > warmup else 0.0, load.sent[-1] if n else 0.0
    return PushResult(
        backend=backend,
        measured=len(measured),
        warmup=warmup,
        listeners=len(load.received),
        ok=len(ok),
        not_ok=len(measured) - len(ok),
        errors=load.errors,
        push_ms=sorted(push_ms),
        ack_ms=sorted((load.acked[i] - load.sent[i]) * 1000 for i in ok),
        lag_ms=sorted((load.sent[i] - load.scheduled[i]) * 1000 for i in measured),
        missing=missing,
        duplicated=duplicated,
        unexpected=sum(load.unexpected),
        disconnects=sum(load.disconnects),
        send_rate=(len(measured) - 1) / (last - first) if last > first else 0.0,
        cpu=cpu,
        peak_rss_mb=peak / 2**20,
        stored_events=stored,
        seconds=seconds,
    )


# -- measurement 2: slow and stuck clients ------------------------------------------------


def expected_events(workload: ingest.Workload) -> dict[tuple[str, int], list[tuple[str, EventKey]]]:
    """For each PR of a bench_ingest workload, the status changes its deliveries cause,
    in send order, with the GUID of the delivery that causes each."""
    import orjson

    changes: dict[tuple[str, int], list[tuple[str, EventKey]]] = {}
    status: dict[tuple[str, int], str] = {}
    with workload.manifest.open() as manifest, workload.requests.open("rb") as requests:
        for line in manifest:
            offset, length, guid = line.split()
            requests.seek(int(offset))
            chunk = requests.read(int(length))
            doc = orjson.loads(chunk[chunk.index(b"\r\n\r\n") + 4 :])
            pr = doc["pull_request"]
            pr_key = (str(doc["repository"]["full_name"]), int(pr["number"]))
            if pr.get("merged") or pr.get("merged_at"):
                new = "MERGED"
            elif pr.get("state") == "closed":
                new = "CLOSED"
            else:
                new = "OPEN"
            old = status.get(pr_key)
            if old != new:
                changes.setdefault(pr_key, []).append((guid, (*pr_key, old, new)))
                status[pr_key] = new
    return changes


def match_events(
    events: Sequence[tuple[int, dict[str, Any]]],
    changes: dict[tuple[str, int], list[tuple[str, EventKey]]],
) -> tuple[dict[int, str], int]:
    """event id -> GUID of the delivery that caused it; and how many matched none."""
    seen: Counter[tuple[str, int]] = Counter()
    cause: dict[int, str] = {}
    unmatched = 0
    for event_id, payload in events:
        pr_key = (str(payload.get("repository")), int(payload.get("pr_number") or 0))
        k = seen[pr_key]
        seen[pr_key] += 1
        wanted = changes.get(pr_key, [])
        key = (*pr_key, payload.get("old_status"), payload.get("new_status"))
        if k < len(wanted) and wanted[k][1] == key:
            cause[event_id] = wanted[k][0]
        else:
            unmatched += 1
    return cause, unmatched


def _read_sent(path: Path) -> dict[str, int]:
    sent: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError), path.open() as lines:
        for line in lines:
            guid, _, us = line.partition(" ")
            sent[guid] = int(us)
    return sent


# Stuck clients: a minimal websocket client that completes the Engine.IO (v4) and
# Socket.IO handshakes and then never reads again.


def _ws_frame(text: str) -> bytes:
    """A masked text frame (clients must mask)."""
    payload = text.encode()
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x81, 0x80 | size))
    elif size < 65536:
        head = bytes((0x81, 0x80 | 126)) + struct.pack("!H", size)
    else:
        head = bytes((0x81, 0x80 | 127)) + struct.pack("!Q", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _parse_frame(buf: bytearray) -> tuple[int, bytes] | None:
    """(opcode, payload) of the first complete frame in ``buf`` (removed), or None."""
    if len(buf) < 2:
        return None
    opcode, size, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if size == 126:
        if len(buf) < 4:
            return None
        size, offset = struct.unpack_from("!H", buf, 2)[0], 4
    elif size == 127:
        if len(buf) < 10:
            return None
        size, offset = struct.unpack_from("!Q", buf, 2)[0], 10
    if len(buf) < offset + size:
        return None
    payload = bytes(buf[offset : offset + size])  # a server never masks
    del buf[: offset + size]
    return opcode, payload


def _read_frame(sock: socket.socket, buf: bytearray) -> str:
    """The next text frame from the server, skipping control frames."""
    while True:
        frame = _parse_frame(buf)
        if frame is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("the server closed a stuck client's connection")
            buf += chunk
            continue
        opcode, payload = frame
        if opcode == 8:
            raise BenchError("the server closed a stuck client's websocket")
        if opcode == 1:
            return payload.decode()


class StuckClient:
    """A Socket.IO client that connects, authenticates and then never reads.

    ``batch``: ask for ``events`` lists (``"batch": true`` in the CONNECT's auth)."""

    def __init__(self, port: int, token: str, rcvbuf: int, *, batch: bool = False) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Set before connecting: it bounds the window the client advertises.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
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
            opening = _read_frame(sock, buf)
            if not opening.startswith("0{"):
                raise BenchError(f"expected the Engine.IO open packet, got {opening[:100]!r}")
            auth: dict[str, Any] = {"token": token, "batch": True} if batch else {"token": token}
            sock.sendall(_ws_frame("40" + json.dumps(auth)))
            answer = _read_frame(sock, buf)
            if not answer.startswith("40"):
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
    """``skmem:(r0,rb131072,t0,tb2626560,f0,w0,o0,bl0,d0)`` -> {"tb": 2626560, ...}."""
    inside = line.partition("skmem:(")[2].partition(")")[0]
    values: dict[str, int] = {}
    for item in inside.split(","):
        name = item.rstrip("0123456789")
        with contextlib.suppress(ValueError):
            values[name] = int(item[len(name) :])
    return values


def stuck_queues(port: int, local_ports: set[int]) -> Queues:
    if not local_ports:
        return Queues()
    ss = shutil.which("ss")
    if ss is None:
        return Queues(available=False)
    try:
        text = subprocess.run(
            [ss, "-tnmH", "state", "established"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return Queues(available=False)
    queues = Queues()
    server_side = False
    for line in text.splitlines():
        if "skmem:(" in line:
            if server_side:
                mem = _skmem(line)
                queues.server_sndbuf.append(mem.get("tb", 0))
                # Writes block once the queued bytes (with overhead) reach the buffer size.
                queues.server_full += mem.get("w", 0) >= mem.get("tb", 1) * 0.9
            continue
        server_side = False
        parts = line.split()
        if len(parts) < 4:
            continue
        recv_q, send_q, local, peer = int(parts[0]), int(parts[1]), parts[2], parts[3]
        local_port = int(local.rpartition(":")[2])
        peer_port = int(peer.rpartition(":")[2])
        if local_port == port and peer_port in local_ports:
            server_side = True
            queues.established += 1
            queues.server_send_q.append(send_q)
        elif peer_port == port and local_port in local_ports:
            queues.client_recv_q.append(recv_q)
    return queues


# Readers: N socketio.AsyncClients in a child process (this script, --reader-process).

_READER_HEADER = struct.Struct("<qqqq")  # connected, disconnects, events, messages


class ReaderProcess:
    """The reading clients' process; talks over stdin/stdout lines."""

    def __init__(
        self, port: int, token: str, clients: int, out: Path, nice: int, log: Path,
        *, batch: bool = False,
    ) -> None:  # fmt: skip
        self.out = out
        self.clients = clients
        self._lines: queue.Queue[str] = queue.Queue()
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                _self_argv(
                    "--reader-process",
                    f"http://127.0.0.1:{port}",
                    str(clients),
                    str(out),
                    str(nice),
                    "batch" if batch else "per-event",
                ),
                env={**ingest._python_env(), "BENCH_PUSH_TOKEN": token},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=log.parent,
                start_new_session=True,
            )
        self.log = log
        threading.Thread(target=self._pump, name="reader-stdout", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

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
        parts = line.split()
        if not parts or parts[0] != word:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"the reader process said {line!r}, not {word!r}:\n{tail}")
        return parts[1:]

    def drain(self, expected: int, max_seconds: float) -> tuple[list[ReaderLog], float]:
        """Wait for every client to have ``expected`` events (or for the time to pass)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"drain {expected} {max_seconds} {READER_STALL_SECONDS}\n".encode())
        self.proc.stdin.flush()
        (waited,) = self.expect("done", max_seconds + 60)
        return read_reader_logs(self.out), float(waited)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(slots=True)
class ReaderLog:
    connected: bool
    disconnects: int
    ids: array[int]
    times: array[float]  # time.monotonic() at receipt
    messages: array[float]  # time.monotonic() at the receipt of each message (any event)


def read_reader_logs(path: Path) -> list[ReaderLog]:
    data = path.read_bytes()
    (count,) = struct.unpack_from("<q", data, 0)
    offset = 8
    logs: list[ReaderLog] = []
    for _ in range(count):
        connected, disconnects, n, m = _READER_HEADER.unpack_from(data, offset)
        offset += _READER_HEADER.size
        ids: array[int] = array("q")
        ids.frombytes(data[offset : offset + 8 * n])
        offset += 8 * n
        times: array[float] = array("d")
        times.frombytes(data[offset : offset + 8 * n])
        offset += 8 * n
        messages: array[float] = array("d")
        messages.frombytes(data[offset : offset + 8 * m])
        offset += 8 * m
        logs.append(ReaderLog(bool(connected), disconnects, ids, times, messages))
    return logs


def _write_reader_logs(
    path: Path, clients: Sequence[Any], ids: Sequence[array[int]],
    times: Sequence[array[float]], messages: Sequence[array[float]],
    disconnects: Sequence[int],
) -> None:  # fmt: skip
    with path.open("wb") as out:
        out.write(struct.pack("<q", len(clients)))
        for sio, client_ids, client_times, client_messages, lost in zip(
            clients, ids, times, messages, disconnects, strict=True
        ):
            out.write(
                _READER_HEADER.pack(
                    int(bool(sio.connected)), lost, len(client_ids), len(client_messages)
                )
            )
            out.write(client_ids.tobytes())
            out.write(client_times.tobytes())
            out.write(client_messages.tobytes())


async def _reader(url: str, token: str, count: int, out: Path, batch: bool) -> int:
    import socketio

    from webhook_service.push import sio_json
    from webhook_service.push.stream import BATCH

    ids: list[array[int]] = [array("q") for _ in range(count)]
    times: list[array[float]] = [array("d") for _ in range(count)]
    messages: list[array[float]] = [array("d") for _ in range(count)]
    disconnects = [0] * count
    monotonic = time.monotonic

    unique = [set[int]() for _ in range(count)]  # the drain waits for unique events

    def recorder(k: int) -> Callable[[Any], None]:
        """Per-event clients: one ``pr_status_change`` message."""
        client_ids, client_times, seen = ids[k].append, times[k].append, unique[k].add
        message = messages[k].append

        def handler(data: Any) -> None:
            now = monotonic()
            message(now)
            client_times(now)
            event_id = data["event_id"]
            client_ids(event_id)
            seen(event_id)

        return handler

    def batch_recorder(k: int) -> Callable[[Any], None]:
        """Batch clients: an ``events`` list; its ``pr_status_change`` items are recorded
        as the per-event handler records each message (receive instant: the list's)."""
        client_ids, client_times, seen = ids[k].append, times[k].append, unique[k].add
        message = messages[k].append

        def handler(data: Any) -> None:
            now = monotonic()
            message(now)
            for item in data:
                if item.get("type") == "pr_status_change":
                    client_times(now)
                    event_id = item["event_id"]
                    client_ids(event_id)
                    seen(event_id)

        return handler

    def other(k: int) -> Callable[..., None]:
        """Any other message (e.g. ``task_status_change``): only counted."""
        message = messages[k].append

        def handler(*args: Any) -> None:
            message(monotonic())

        return handler

    def on_disconnect(k: int) -> Callable[..., None]:
        def handler(*args: Any) -> None:
            disconnects[k] += 1

        return handler

    clients: list[Any] = []
    for k in range(count):
        sio = socketio.AsyncClient(reconnection=False, json=sio_json)
        if batch:
            sio.on(BATCH, batch_recorder(k))
        else:
            sio.on("pr_status_change", recorder(k))
        sio.on("*", other(k))
        sio.on("disconnect", on_disconnect(k))
        clients.append(sio)
    auth: dict[str, Any] = {"token": token, "batch": True} if batch else {"token": token}
    failures: Counter[str] = Counter()
    for start in range(0, count, 25):
        results = await asyncio.gather(
            *(
                sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=15)
                for sio in clients[start : start + 25]
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                failures[f"{type(result).__name__}: {result}"] += 1
    for failure, n in failures.items():
        print(f"reader: {n} client(s) failed to connect: {failure}", file=sys.stderr)
    print(f"ready {sum(1 for sio in clients if sio.connected)}", flush=True)

    loop = asyncio.get_running_loop()
    command = (await loop.run_in_executor(None, sys.stdin.readline)).split()
    if len(command) != 4 or command[0] != "drain":
        print(f"error unexpected command {command!r}", flush=True)
        return 2
    expected, max_seconds, stall = int(command[1]), float(command[2]), float(command[3])
    started = monotonic()
    last_total, last_change = -1, started
    while True:
        now = monotonic()
        total = sum(len(a) for a in ids)
        if all(len(u) >= expected for u in unique) or now - started > max_seconds:
            break
        if total != last_total:
            last_total, last_change = total, now
        elif now - last_change > stall:
            break
        await asyncio.sleep(0.05)
    waited = monotonic() - started
    _write_reader_logs(out, clients, ids, times, messages, disconnects)
    print(f"done {waited:.3f}", flush=True)
    for start in range(0, count, 50):
        await asyncio.gather(
            *(sio.disconnect() for sio in clients[start : start + 50]), return_exceptions=True
        )
    return 0


def reader_main(url: str, count: int, out: Path, nice: int, batch: bool = False) -> int:
    """The reader child process: ``count`` socketio.AsyncClients that record everything
    (``batch``: they connect with ``"batch": true`` and read ``events`` lists)."""
    token = os.environ.get("BENCH_PUSH_TOKEN", "")
    if nice:
        os.nice(nice)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_reader(url, token, count, out, batch))
    return uvloop.run(_reader(url, token, count, out, batch))


@dataclass(slots=True)
class SlowRun:
    label: str  # "a" (no clients), "b" (per-event clients), "c" (batch clients)
    mode: str | None  # None for (a), else a CLIENT_MODES name
    readers: int
    stuck: int
    prs: int  # distinct PRs in the workload
    load: ingest.LoadResult
    verification: ingest.Verification
    peak_rss_mb: float
    ready_rss_mb: float
    end_rss_mb: float  # right after the load
    reader_cores: float  # reader process, during the load
    push_cores: float | None  # the push replica (--push-replica), during the load
    events: int  # stored pr_status_change events
    unmatched: int  # events matched to no delivery (no latency for them)
    logs: list[ReaderLog]
    readers_connected: int
    drain_seconds: float
    load_end: float  # time.monotonic() when the load had been answered
    latencies_ms: list[float]  # sorted: every (reader, event) receipt
    per_client_p99_ms: list[float]
    received_during_load: int
    messages_per_s: list[float]  # sorted: each reader's messages per second of the load
    queues: Queues  # stuck clients, right after the load
    queues_end: Queues  # stuck clients, after the readers' drain
    seconds: float


def bench_slow_run(
    label: str,
    backend: str,
    args: argparse.Namespace,
    workload: ingest.Workload,
    changes: dict[tuple[str, int], list[tuple[str, EventKey]]],
    tmp: Path,
    *,
    mode: str | None = None,
    readers: int = 0,
    stuck: int = 0,
) -> SlowRun:
    started = time.monotonic()
    token = secrets.token_hex(16)
    batch = mode == "batch"
    run_dir = tmp / f"slow-{backend}-{label}"
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(scratch_database(backend, args.postgres_url, tmp, args.keep))
        # --push-replica: webhooks go to one replica, clients to another, events between
        # them through Redis (in every run, (a) included, so that the baseline pays the
        # same publishing).
        queue = (
            {"SOCKETIO_MESSAGE_QUEUE": args.message_queue, "SOCKETIO_CHANNEL": f"bench-{token}"}
            if args.push_replica
            else None
        )
        server = start_server(backend, url, run_dir, workload.secret, token, extra_env=queue)
        stack.callback(server.close)
        push_server = server
        if args.push_replica:
            server.wait_ready("/readyz")  # one after the other: both migrate on start
            push_server = start_server(
                backend, url, run_dir, workload.secret, token, name="push", extra_env=queue
            )
            stack.callback(push_server.close)
        sampler = ingest.Sampler(server.pid)
        sampler.start()
        database = url.rpartition("/")[2] if backend == "postgresql" else None
        logs: list[ReaderLog] = []
        drain = 0.0
        connected = 0
        queues = queues_end = Queues()
        push_cores: float | None = None
        try:
            server.wait_ready("/readyz")
            push_server.wait_ready("/readyz")
            reader: ReaderProcess | None = None
            if readers:
                reader = ReaderProcess(
                    push_server.port, token, readers, run_dir / "readers.bin", args.reader_nice,
                    run_dir / "readers.log", batch=batch,
                )  # fmt: skip
                stack.callback(reader.close)
                (ready,) = reader.expect("ready", 120)
                connected = int(ready)
            stuck_clients: list[StuckClient] = []

            def close_stuck() -> None:
                for client in stuck_clients:
                    client.close()

            stack.callback(close_stuck)
            for _ in range(stuck):
                stuck_clients.append(
                    StuckClient(push_server.port, token, args.stuck_rcvbuf, batch=batch)
                )
            ports = {c.local_port for c in stuck_clients}
            ready_rss = sampler.sample()
            _log(
                f"slow/{backend} ({label}): server ready (pid {server.pid}), "
                f"{connected} reading + {len(stuck_clients)} stuck clients"
                f"{f' ({mode})' if mode else ''}; sending load"
            )
            reader0 = ingest._cpu_seconds(reader.pid) if reader else 0.0
            push0 = ingest._cpu_seconds(push_server.pid)
            clock0 = time.monotonic()
            with _wrk_script(PUSH_LUA):
                load = ingest.run_wrk(
                    args.wrk,
                    workload,
                    target=f"webhook-service/{backend}/{label}",
                    port=server.port,
                    connections=args.concurrency,
                    threads=1,
                    max_seconds=args.max_seconds,
                    out_dir=run_dir / "wrk",
                    server_pid=server.pid,
                    database=database,
                )
            load_end = time.monotonic()
            reader_cores = (
                (ingest._cpu_seconds(reader.pid) - reader0) / (load_end - clock0) if reader else 0.0
            )
            push_cores = (
                (ingest._cpu_seconds(push_server.pid) - push0) / (load_end - clock0)
                if push_server is not server
                else None
            )
            end_rss = sampler.sample()
            queues = stuck_queues(push_server.port, ports)
            events = fetch_events(backend, url)
            if reader is not None:
                _log(f"slow/{backend} ({label}): load done; waiting for the readers to drain")
                logs, drain = reader.drain(len(events), args.drain_seconds)
            queues_end = stuck_queues(push_server.port, ports)
        finally:
            peak = sampler.stop()
        server.kill()
        push_server.kill()
        _log(f"slow/{backend} ({label}): verifying the database")
        if backend == "postgresql":
            verification = ingest.verify_postgres(url, load.ok_guids)
        else:
            verification = ingest.verify_sqlite(_sqlite_path(url), load.ok_guids)

    cause, unmatched = match_events(events, changes)
    sent = _read_sent(run_dir / "wrk" / "sent.txt")
    sent_s = {eid: sent[guid] / 1e6 for eid, guid in cause.items() if guid in sent}
    latencies: list[float] = []
    per_client: list[float] = []
    during = 0
    first, last = load.first_us / 1e6, load.last_us / 1e6  # the load, on the same clock
    rates: list[float] = []
    for log in logs:
        in_load = sum(1 for t in log.messages if first <= t <= last)
        rates.append(in_load / (last - first) if last > first else 0.0)
        mine: list[float] = []
        for eid, t in zip(log.ids, log.times, strict=True):
            s = sent_s.get(eid)
            if s is not None:
                mine.append((t - s) * 1000)
            during += t <= load_end
        mine.sort()
        per_client.append(ingest.percentile(mine, 99))
        latencies.extend(mine)
    latencies.sort()
    return SlowRun(
        label=label,
        mode=mode,
        readers=readers,
        stuck=stuck,
        prs=workload.prs,
        load=load,
        verification=verification,
        peak_rss_mb=peak / 2**20,
        ready_rss_mb=ready_rss / 2**20,
        end_rss_mb=end_rss / 2**20,
        reader_cores=reader_cores,
        push_cores=push_cores,
        events=len(events),
        unmatched=unmatched,
        logs=logs,
        readers_connected=connected,
        drain_seconds=drain,
        load_end=load_end,
        latencies_ms=latencies,
        per_client_p99_ms=sorted(per_client),
        received_during_load=during,
        messages_per_s=sorted(rates),
        queues=queues,
        queues_end=queues_end,
        seconds=time.monotonic() - started,
    )


@contextlib.contextmanager
def _wrk_script(path: Path) -> Iterator[None]:
    """Have bench_ingest.run_wrk use ``path`` (bench_push.lua wraps bench_ingest.lua)."""
    previous = ingest.LUA_SCRIPT
    ingest.LUA_SCRIPT = path
    try:
        yield
    finally:
        ingest.LUA_SCRIPT = previous


# -- report ---------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _ms(values: Sequence[float], pct: float) -> str:
    return f"{ingest.percentile(values, pct):.1f}" if values else "-"


def _table(columns: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> None:
    width = max([22, *(len(c) + 2 for c in columns)])
    label_width = max(len(label) for label, _ in rows) + 2
    print(" " * label_width + "".join(f"{c:>{width}}" for c in columns))
    for label, values in rows:
        print(f"{label:<{label_width}}" + "".join(f"{v:>{width}}" for v in values))


def _push_target_met(r: PushResult) -> bool:
    return bool(r.push_ms) and ingest.percentile(r.push_ms, 99) <= TARGET_PUSH_P99_MS


def report_push(results: Sequence[PushResult], args: argparse.Namespace) -> bool:
    if not results:
        return True
    r0 = results[0]
    print()
    print(
        f"push: webhook POST -> Socket.IO event, open loop at {args.rate:g} deliveries/s for "
        f"{args.seconds:g} s ({r0.measured} deliveries measured, after {r0.warmup} warm-up), "
        f"{r0.listeners} listener(s) (socketio.AsyncClient, websocket, same process as "
        "the sender); every delivery a status change (one pr_status_change each)"
    )
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[str]) -> None:
        rows.append((label, values))

    row("push latency p50 (ms)", [_ms(r.push_ms, 50) for r in results])
    row("push latency p90 (ms)", [_ms(r.push_ms, 90) for r in results])
    row("push latency p99 (ms)", [_ms(r.push_ms, 99) for r in results])
    row("push latency max (ms)", [_ms(r.push_ms, 100) for r in results])
    row("ack latency p50 (ms)", [_ms(r.ack_ms, 50) for r in results])
    row("ack latency p90 (ms)", [_ms(r.ack_ms, 90) for r in results])
    row("ack latency p99 (ms)", [_ms(r.ack_ms, 99) for r in results])
    row("ack latency max (ms)", [_ms(r.ack_ms, 100) for r in results])
    row("2xx / other answers", [f"{r.ok} / {r.not_ok}" for r in results])
    row("events missing / duplicated", [f"{r.missing} / {r.duplicated}" for r in results])
    row("unexpected events", [str(r.unexpected) for r in results])
    row("stored events (incl. warm-up)", [str(r.stored_events) for r in results])
    row("listener disconnects", [str(r.disconnects) for r in results])
    row("achieved send rate (/s)", [f"{r.send_rate:.1f}" for r in results])
    row("send lag p99 / max (ms)", [f"{_ms(r.lag_ms, 99)} / {_ms(r.lag_ms, 100)}" for r in results])
    row("server CPU (cores)", [f"{r.cpu.server:.2f}" for r in results])
    row("postgres CPU (cores)", [
        f"{r.cpu.postgres:.2f}" if r.backend == "postgresql" else "-" for r in results
    ])  # fmt: skip
    row("this process CPU (cores)", [f"{r.cpu.other:.2f}" for r in results])
    row("machine busy (cores)", [f"{r.cpu.machine:.2f} / {os.cpu_count()}" for r in results])
    row("server peak RSS (MB)", [f"{r.peak_rss_mb:.1f}" for r in results])
    all_pass = True
    target: list[str] = []
    exact: list[str] = []
    for r in results:
        every = _every_event(r)
        exact.append(_verdict(every))
        all_pass &= every
        if r.backend == "postgresql":
            ok = _push_target_met(r)
            target.append(f"{_verdict(ok)} (<= {TARGET_PUSH_P99_MS:.0f} ms)")
            all_pass &= ok
        else:
            target.append("n/a")
    row("target push p99", target)
    row("every event received", exact)
    _table([r.backend for r in results], rows)
    print()
    for r in results:
        errors = ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "none"
        print(f"push/{r.backend}: client errors: {errors}; run took {r.seconds:.1f}s")
    for r in results:
        if r.backend == "postgresql":
            print(
                f"{_verdict(_push_target_met(r))}"
                f": push p99 {_ms(r.push_ms, 99)} ms <= {TARGET_PUSH_P99_MS:.0f} ms "
                f"at {args.rate:g}/s on PostgreSQL"
            )
        print(
            f"{_verdict(_every_event(r))}: every delivery answered 2xx and its event received "
            f"by every listener ({r.missing} missing, {r.duplicated} repeats) ({r.backend})"
        )
    return all_pass


def _every_event(r: PushResult) -> bool:
    return r.missing == 0 and r.not_ok == 0 and r.unexpected == 0 and bool(r.push_ms)


def _per_ms(run: SlowRun) -> str:
    cpu = run.load.server_cores * run.load.wall
    return f"{cpu / run.load.answered * 1000:.2f}" if run.load.answered else "-"


@dataclass(slots=True)
class SlowResult:
    """One backend's slow measurement: the baseline (a) and the client runs, (b) and/or (c)."""

    backend: str
    baseline: SlowRun
    runs: list[SlowRun]  # in CLIENT_MODES order


_MODE_COLUMN = {None: "(a) no clients", "per-event": "(b) per-event clients",
                "batch": "(c) batch clients"}  # fmt: skip


def _mode_kind(mode: str) -> str:
    from webhook_service.config import DEFAULT_FRAME_BUDGET
    from webhook_service.push.stream import BATCH, BATCH_INTERVAL

    if mode == "batch":
        return (
            f'batch clients (opt-in, auth "batch": true: one `{BATCH}` list per '
            f"{BATCH_INTERVAL:g} s at most, or less often: "
            f"{int(os.environ.get('SOCKETIO_FRAME_BUDGET', DEFAULT_FRAME_BUDGET)):,} frames/s to "
            "all batch clients together)"
        )
    return "per-event clients (the original protocol: one message per event)"


def _run_complete(run: SlowRun) -> bool:
    """Every delivery sent and answered 2xx, and the database holds exactly them."""
    load = run.load
    return load.complete and load.not_ok == 0 and run.verification.passed(load.ok, run.prs)


def _ratio(run: SlowRun, baseline: SlowRun) -> float:
    return run.load.rate / baseline.load.rate if baseline.load.rate else 0.0


def _readers_ok(run: SlowRun) -> bool:
    full = sum(1 for log in run.logs if len(set(log.ids)) == run.events)
    return run.readers_connected == run.readers == len(run.logs) and full == run.readers


def report_slow(results: Sequence[SlowResult], args: argparse.Namespace) -> bool:
    if not results:
        return True
    all_pass = True
    for result in results:
        backend, a = result.backend, result.baseline
        runs = [a, *result.runs]
        measured = {r.mode: r for r in result.runs}
        print()
        print(
            f"slow clients ({backend}): wrk closed loop C={args.concurrency}, "
            f"N={a.load.answered} bench_ingest deliveries; {a.events} pr_status_change events "
            f"stored; each client run: {args.clients - args.stuck} reading "
            f"socketio.AsyncClients (one child process, nice {args.reader_nice}) + "
            f"{args.stuck} stuck raw websockets (SO_RCVBUF {args.stuck_rcvbuf}) = "
            f"{args.clients} clients, all of one kind"
            + (
                "; TOPOLOGY: webhooks to one replica, every client on a second replica "
                f"(same database, events through {args.message_queue}), in every run"
                if args.push_replica
                else ""
            )
        )
        for r in result.runs:
            assert r.mode is not None
            print(f"  ({r.label}) {_mode_kind(r.mode)}")
        rows: list[tuple[str, list[str]]] = []

        def row(label: str, values: list[str], rows: list[tuple[str, list[str]]] = rows) -> None:
            rows.append((label, values))

        row("deliveries/s", [f"{r.load.rate:,.0f}" for r in runs])
        row("ack p50 (ms)", [f"{r.load.percentile_ms(50):.2f}" for r in runs])
        row("ack p99 (ms)", [f"{r.load.percentile_ms(99):.2f}" for r in runs])
        row("ack max (ms)", [f"{r.load.percentile_ms(100):.2f}" for r in runs])
        row("2xx / other", [f"{r.load.ok} / {r.load.not_ok}" for r in runs])
        row("stored & applied", [
            f"{r.verification.applied} / {r.verification.rows}" for r in runs
        ])  # fmt: skip
        row("server CPU (cores)", [f"{r.load.server_cores:.2f}" for r in runs])
        row("server CPU per delivery (ms)", [_per_ms(r) for r in runs])
        row("postgres CPU (cores)", [
            f"{r.load.postgres_cores:.2f}" if backend == "postgresql" else "-" for r in runs
        ])  # fmt: skip
        row("wrk CPU (cores)", [f"{r.load.wrk_cores:.2f}" for r in runs])
        row("readers CPU (cores)", [f"{r.reader_cores:.2f}" if r.readers else "-" for r in runs])
        if args.push_replica:
            row("push replica CPU (cores)", [
                f"{r.push_cores:.2f}" if r.push_cores is not None else "-" for r in runs
            ])  # fmt: skip
        row("messages/s per reader (median)", [
            f"{statistics.median(r.messages_per_s):,.1f}" if r.messages_per_s else "-"
            for r in runs
        ])  # fmt: skip
        row("machine busy (cores)", [
            f"{r.load.machine_cores:.2f} / {os.cpu_count()}" for r in runs
        ])  # fmt: skip
        row("stolen by hypervisor", [f"{r.load.steal_cores:.2f}" for r in runs])
        row("server RSS ready (MB)", [f"{r.ready_rss_mb:.1f}" for r in runs])
        row("server RSS after load (MB)", [f"{r.end_rss_mb:.1f}" for r in runs])
        row("server peak RSS (MB)", [f"{r.peak_rss_mb:.1f}" for r in runs])
        row("load time (s)", [f"{r.load.seconds:.2f}" for r in runs])
        row("ratio to (a)", ["", *(f"{_ratio(r, a):.2f}" for r in result.runs)])
        target: list[str] = [""]
        for r in result.runs:
            met = _ratio(r, a) >= TARGET_SLOW_RATIO
            if r.mode == "batch":
                target.append(f"{_verdict(met and _run_complete(a) and _run_complete(r))} "
                              f"(>= {TARGET_SLOW_RATIO})")  # fmt: skip
            else:
                target.append(f"{'met' if met else 'not met'} (no gate)")
        row(f"target >= {TARGET_SLOW_RATIO}", target)
        _table([_MODE_COLUMN[r.mode] for r in runs], rows)

        for r in result.runs:
            _report_clients(r)

        # Verdicts: the batch ratio gates the target; the per-event ratio is a figure.
        print()
        complete = all(_run_complete(r) for r in runs)
        labels = ", ".join(f"({r.label})" for r in runs)
        print(
            f"{_verdict(complete)}: every delivery answered 2xx and stored, in each run "
            f"({labels}) ({backend})"
        )
        all_pass &= complete
        batch = measured.get("batch")
        if batch is not None:
            ratio = _ratio(batch, a)
            rate_ok = ratio >= TARGET_SLOW_RATIO and _run_complete(a) and _run_complete(batch)
            print(
                f"{_verdict(rate_ok)}: (c) batch clients (the opt-in mode; this gates the exit "
                f"status): ingest with {batch.readers + batch.stuck} clients ({batch.stuck} "
                f"stuck) at {ratio:.2f} x the rate without clients ({batch.load.rate:,.0f} vs "
                f"{a.load.rate:,.0f} deliveries/s; target >= {TARGET_SLOW_RATIO}) ({backend})"
            )
            all_pass &= rate_ok
        per_event = measured.get("per-event")
        if per_event is not None:
            ratio = _ratio(per_event, a)
            reached = "met" if ratio >= TARGET_SLOW_RATIO else "not met"
            print(
                f"INFO: (b) per-event clients (the original protocol; reported, does not gate "
                f"the exit status): ingest with {per_event.readers + per_event.stuck} clients "
                f"({per_event.stuck} stuck) at {ratio:.2f} x the rate without clients "
                f"({per_event.load.rate:,.0f} vs {a.load.rate:,.0f} deliveries/s; target >= "
                f"{TARGET_SLOW_RATIO} {reached}) ({backend})"
            )
        if batch is None:
            print(
                f"NOTE: no batch clients run (--client-modes {args.client_modes}): the ingest "
                f"target (>= {TARGET_SLOW_RATIO} with batch clients) was not measured and does "
                f"not gate the exit status ({backend})"
            )
        for r in result.runs:
            if not r.readers:
                continue
            full = sum(1 for log in r.logs if len(set(log.ids)) == r.events)
            dups = sum(len(log.ids) - len(set(log.ids)) for log in r.logs)
            ok = _readers_ok(r)
            print(
                f"{_verdict(ok)}: ({r.label}) every reading {r.mode} client received every "
                f"event ({full}/{r.readers} clients complete, {dups} repeats) ({backend})"
            )
            all_pass &= ok
        took = ", ".join(f"({r.label}) {r.seconds:.1f}s" for r in runs)
        print(f"slow/{backend}: runs took {took}")
    return all_pass


def _report_clients(b: SlowRun) -> None:
    """The figures of one client run's readers and stuck clients."""
    tag = f"({b.label}) {b.mode}"
    counts = sorted(len(set(log.ids)) for log in b.logs)
    dups = sum(len(log.ids) - len(set(log.ids)) for log in b.logs)
    full = sum(1 for c in counts if c == b.events)
    receipts = sum(len(log.ids) for log in b.logs)
    disconnected = sum(1 for log in b.logs if not log.connected)
    print()
    if b.readers:
        print(
            f"{tag} readers: {b.readers_connected}/{b.readers} connected; "
            f"{full}/{b.readers} received all {b.events} events; unique events per client "
            f"min {counts[0] if counts else 0} / median "
            f"{statistics.median(counts) if counts else 0:g} / max "
            f"{counts[-1] if counts else 0}; duplicates {dups}; disconnected at the end "
            f"{disconnected}"
        )
        rates = b.messages_per_s
        messages = sum(len(log.messages) for log in b.logs)
        print(
            f"{tag} messages received per reader during the load: "
            f"{_ms(rates, 0)} to {_ms(rates, 100)}/s (median "
            f"{statistics.median(rates) if rates else 0:,.1f}/s); {messages} messages in all "
            f"for {receipts} receipts"
        )
        print(
            f"{tag} reader receive latency (POST sent -> event received, all "
            f"{len(b.latencies_ms)} receipts): p50 {_ms(b.latencies_ms, 50)} ms, p90 "
            f"{_ms(b.latencies_ms, 90)} ms, p99 {_ms(b.latencies_ms, 99)} ms, max "
            f"{_ms(b.latencies_ms, 100)} ms; per-client p99 from "
            f"{_ms(b.per_client_p99_ms, 0)} to {_ms(b.per_client_p99_ms, 100)} ms"
        )
        share = b.received_during_load / receipts * 100 if receipts else 0.0
        print(
            f"{tag} receipts during the load: {b.received_during_load} of {receipts} "
            f"({share:.0f}%); the readers needed {b.drain_seconds:.1f}s after the load "
            f"to finish; {b.unmatched} events matched no delivery (no latency)"
        )
    if b.stuck:
        q, qe = b.queues, b.queues_end
        if q.available:
            print(
                f"{tag} stuck clients: {q.established}/{b.stuck} still connected after the "
                f"load ({qe.established} after the drain); kernel queues after the load: "
                f"server send {_kib(q.server_send_q)}, client receive "
                f"{_kib(q.client_recv_q)}; server send buffers "
                f"{_kib(q.server_sndbuf, total=False)}, full (the server's writes blocked, "
                f"later events wait in the server's memory) for {q.server_full}/"
                f"{q.established} after the load, {qe.server_full}/{qe.established} "
                "after the drain"
            )
        else:
            print(f"{tag} stuck clients: `ss` unavailable, socket queues not measured")


def _kib(values: Sequence[int], *, total: bool = True) -> str:
    if not values:
        return "-"
    if not total:
        return f"{min(values) / 1024:,.0f}-{max(values) / 1024:,.0f} KiB each"
    return (
        f"{sum(values) / 1024:,.0f} KiB in all (each {min(values) / 1024:,.0f}-"
        f"{max(values) / 1024:,.0f} KiB)"
    )


# -- main -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_push.py",
        description="Benchmark Socket.IO push latency and slow clients (see the docstring).",
    )
    parser.add_argument(
        "--backend", choices=("postgresql", "sqlite", "both"), default="postgresql",
        help="(postgresql)",
    )  # fmt: skip
    parser.add_argument("--only", choices=("push", "slow"), help="run one measurement")
    parser.add_argument("--rate", type=float, default=200.0, help="push: deliveries/s (200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="push: measured seconds (20)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="push: seconds sent first, not measured (1)"
    )
    parser.add_argument("--listeners", type=int, default=1, help="push: listening clients (1)")
    parser.add_argument(
        "--clients", type=int, default=200, help="slow: clients in (b) and in (c) (200)"
    )
    parser.add_argument("--stuck", type=int, default=50, help="slow: of which never read (50)")
    parser.add_argument(
        "--client-modes", default=",".join(CLIENT_MODES), metavar="MODES",
        help="slow: the client runs besides (a), comma-separated: per-event = (b), the "
        "original protocol (its ratio is reported, does not gate); batch = (c), "
        '"batch": true (its ratio gates the >= 0.8 target) (%(default)s)',
    )  # fmt: skip
    parser.add_argument(
        "--push-replica", action="store_true",
        help="slow: in every run, two replicas on one PostgreSQL database and Redis: wrk "
        "posts to one, every client connects to the other (DESIGN.md 11)",
    )  # fmt: skip
    parser.add_argument(
        "--message-queue", default="redis://127.0.0.1:6379/0", metavar="URL",
        help="slow, with --push-replica: the Redis both replicas use (%(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--stuck-rcvbuf", type=int, default=4096,
        help="slow: SO_RCVBUF of a stuck client's socket, bytes (4096)",
    )  # fmt: skip
    parser.add_argument(
        "--reader-nice", type=int, default=0,
        help="slow: nice value of the reading clients' process (0)",
    )  # fmt: skip
    parser.add_argument(
        "-n", "--deliveries", type=int, default=10_000, help="slow: deliveries N (10000)"
    )
    parser.add_argument("-c", "--concurrency", type=int, default=16, help="slow: wrk C (16)")
    parser.add_argument(
        "--drain-seconds", type=float, default=180.0,
        help="slow: how long the readers may take after the load (180)",
    )  # fmt: skip
    parser.add_argument(
        "--max-seconds", type=int, default=ingest.MAX_SECONDS,
        help=f"slow: give up a load run after this long ({ingest.MAX_SECONDS})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="workload random seed (1)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL),
        help="a PostgreSQL database to create the scratch databases from "
        "(BENCH_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir and the scratch databases"
    )
    parser.add_argument("--reader-process", nargs=5, help=argparse.SUPPRESS)
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.rate <= 2000:
        parser.error("--rate must be between 1 and 2000")
    if not 1 <= args.seconds <= 300 or not 0 <= args.warmup <= 10:
        parser.error("--seconds must be between 1 and 300, --warmup between 0 and 10")
    if args.rate * (args.seconds + args.warmup) > MAX_PUSH_DELIVERIES:
        parser.error(f"--rate x (--seconds + --warmup) must be at most {MAX_PUSH_DELIVERIES:,}")
    if not 1 <= args.listeners <= 20:
        parser.error("--listeners must be between 1 and 20")
    modes = [m.strip() for m in args.client_modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - CLIENT_MODES.keys())
    if not modes or unknown or len(set(modes)) != len(modes):
        parser.error(
            f"--client-modes must be a comma-separated subset of {','.join(CLIENT_MODES)}, "
            f"got {args.client_modes!r}"
        )
    args.modes = [m for m in CLIENT_MODES if m in modes]  # (b) before (c)
    if args.push_replica and args.backend != "postgresql":
        parser.error("--push-replica needs --backend postgresql (replicas share PostgreSQL)")
    if not 0 <= args.clients <= MAX_CLIENTS or not 0 <= args.stuck <= args.clients:
        parser.error(f"--clients must be between 0 and {MAX_CLIENTS}, --stuck at most --clients")
    if not 1024 <= args.stuck_rcvbuf <= 2**24:
        parser.error("--stuck-rcvbuf must be between 1024 and 16 MiB")
    if not 0 <= args.reader_nice <= 19:
        parser.error("--reader-nice must be between 0 and 19")
    if not 1 <= args.deliveries <= MAX_SLOW_DELIVERIES:
        parser.error(f"-n must be between 1 and {MAX_SLOW_DELIVERIES:,}")
    if not 1 <= args.concurrency <= 1024:
        parser.error("-c must be between 1 and 1024")
    if not 1 <= args.drain_seconds <= 600:
        parser.error("--drain-seconds must be between 1 and 600")
    if not 5 <= args.max_seconds <= ingest.MAX_SECONDS:
        parser.error(f"--max-seconds must be between 5 and {ingest.MAX_SECONDS}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.reader_process is not None:
        url, count, out, nice, mode = args.reader_process
        return reader_main(url, int(count), Path(out), int(nice), mode == "batch")
    _check(parser, args)
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    run_push = args.only in (None, "push")
    run_slow = args.only in (None, "slow")
    args.wrk = shutil.which("wrk")
    if run_slow and args.wrk is None:
        print("bench_push: error: wrk is not installed (or not on PATH)", file=sys.stderr)
        return 2

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench_push."))
    try:
        pg = ingest._pg_settings(args.postgres_url) if "postgresql" in backends else None
        background = ingest._background_load()
        if background > 0.2:
            _log(f"warning: the machine is already busy ({background:.2f} cores): noisy figures")
        push_results: list[PushResult] = []
        if run_push:
            secret = secrets.token_hex(16)
            warmup = round(args.rate * args.warmup)
            count = warmup + round(args.rate * args.seconds)
            _log(f"generating {count} push deliveries")
            deliveries = generate_push(count, secret, args.seed)
            for backend in backends:
                push_results.append(bench_push(backend, args, deliveries, secret, warmup, tmp))
            del deliveries
        slow_results: list[SlowResult] = []
        if run_slow:
            n = args.deliveries
            _log(f"generating {n} ingest deliveries (bench_ingest workload)")
            workload = ingest.generate_workload(tmp, n, max(1, n // 4), args.seed)
            changes = expected_events(workload)
            for backend in backends:
                a = bench_slow_run("a", backend, args, workload, changes, tmp)
                runs: list[SlowRun] = []
                for mode in args.modes:  # (b) per-event, then (c) batch
                    run = bench_slow_run(
                        CLIENT_MODES[mode], backend, args, workload, changes, tmp, mode=mode,
                        readers=args.clients - args.stuck, stuck=args.stuck,
                    )  # fmt: skip
                    runs.append(run)
                slow_results.append(SlowResult(backend, a, runs))

        print()
        print(
            f"bench_push: machine {os.cpu_count()} CPUs, {background:.2f} cores busy before "
            "the run (it competes with the benchmark); server: webhook-service serve, "
            "1 uvicorn worker" + (f"; PostgreSQL: {pg}" if pg else "")
        )
        passed = report_push(push_results, args)
        passed &= report_slow(slow_results, args)
        print()
        print(f"OVERALL: {_verdict(passed)}")
        print(f"total time: {time.monotonic() - started:.1f}s")
        return 0 if passed else 1
    except BenchError as exc:
        print(f"bench_push: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            _log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
