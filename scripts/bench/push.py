"""The push benchmark's measurements: an open-loop sender of status-changing deliveries
with Socket.IO listeners (push latency), and one slow-clients run's figures (which
delivery caused each stored event, the readers' receive latency and message rates)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import scratch_db
from bench.clients import Queues, ReaderLog
from bench.deliveries import PR, REPOSITORIES, Renderer, Verification, Workload, requests
from bench.load import LoadResult
from bench.report import ms, percentile
from bench.servers import WEBHOOK_PATH, Cores, Server

PUSH_DRAIN_SECONDS, POST_TIMEOUT_SECONDS = 10.0, 30.0
PUSH_WINDOW = 50  # PRs interleaved: a PR's deliveries are 50 apart (250 ms at 200/s)
PUSH_STORY = (("opened", None, "OPEN"), ("closed", "OPEN", "CLOSED"),
              ("reopened", "CLOSED", "OPEN"), ("merged", "OPEN", "MERGED"))  # fmt: skip
PUSH_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z
EventKey = tuple[str, int, str | None, str]  # repository, number, old status, new status
Changes = dict[tuple[str, int], list[tuple[str, EventKey]]]
Event = tuple[int, dict[str, Any]]  # a stored event: id, payload


@dataclass(frozen=True, slots=True)
class PushDelivery:
    guid: str
    key: EventKey
    headers: dict[str, str]
    body: bytes


def generate_push(count: int, secret: str, seed: int) -> list[PushDelivery]:
    """``count`` signed deliveries, each a status change of its PR."""
    rng, renderer = random.Random(seed), Renderer(secret)
    prs: list[PR] = []
    out: list[PushDelivery] = []
    at = PUSH_EPOCH
    for block in range(count):
        for kind, old, new in PUSH_STORY:
            for index in range(block * PUSH_WINDOW, (block + 1) * PUSH_WINDOW):
                if len(out) >= count:
                    return out
                if index == len(prs):
                    repo, number = REPOSITORIES[index % 4], index // 4 + 1
                    title = f"Push benchmark change {number} in {repo}"
                    ref = f"feature/push-{number}-{rng.getrandbits(24):06x}"
                    prs.append(PR(repo, number, 400_000_000 + index, at, title, ref))
                pr = prs[index]
                at += 60
                pr.advance(kind, at, rng)
                guid, headers, body = renderer.render(pr, kind, at, rng)
                out.append(PushDelivery(guid, (pr.repository, pr.number, old, new), headers, body))
    return out


def fetch_events(url: str) -> list[Event]:
    """The stored ``pr_status_change`` events, in id order: (id, payload)."""
    statement = "SELECT id, payload FROM events WHERE type = 'pr_status_change' ORDER BY id"
    rows = scratch_db.query(url, statement)
    return [(int(i), json.loads(str(payload))) for i, payload in rows]


def start_server(url: str, run_dir: Path, secret: str, token: str, name: str, **env: str) -> Server:
    env |= {"WEBHOOK_SECRET": secret, "API_TOKEN": token, "DATABASE_URL": url,
            "LOG_LEVEL": "WARNING"}
    return Server("webhook-service", run_dir / f"{name}.log", env, name=f"webhook-service ({name})")


# -- measurement 1: push latency -------------------------------------------------------------


@dataclass(slots=True)
class PushLoad:
    """What the open-loop sender and the listeners saw (times: time.monotonic())."""

    n: int
    listeners: int
    scheduled: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    acked: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    received: list[dict[int, list[float]]] = field(default_factory=list)  # per listener
    unexpected: int = 0  # events matching no delivery
    disconnects: int = 0
    closing: bool = False  # disconnects from here on are ours

    def __post_init__(self) -> None:
        self.scheduled, self.sent, self.acked = [0.0] * self.n, [0.0] * self.n, [0.0] * self.n
        self.status, self.received = [0] * self.n, [{} for _ in range(self.listeners)]


async def _listen(port: int, token: str, deliveries: Sequence[PushDelivery], load: PushLoad,
                  progress: asyncio.Event, clients: list[Any]) -> None:  # fmt: skip
    import socketio

    index_of = {d.key: i for i, d in enumerate(deliveries)}
    for received in load.received:

        def on_event(data: Any, received: dict[int, list[float]] = received) -> None:
            now = time.monotonic()
            progress.set()
            key = tuple(data.get(k) for k in ("repository", "pr_number", "old_status",
                                              "new_status"))
            if (index := index_of.get(key)) is None:
                load.unexpected += 1
            else:
                received.setdefault(index, []).append(now)

        def on_disconnect(*args: Any) -> None:
            load.disconnects += not load.closing

        sio = socketio.AsyncClient(reconnection=False)
        sio.on("pr_status_change", on_event)
        sio.on("disconnect", on_disconnect)
        clients.append(sio)
        await sio.connect(f"http://127.0.0.1:{port}", auth={"token": token},
                          transports=["websocket"], wait_timeout=10)


async def push_load(port: int, token: str, deliveries: Sequence[PushDelivery], rate: float,
                    listeners: int) -> PushLoad:  # fmt: skip
    """Listeners connect; deliveries are POSTed each at its instant whatever the earlier
    ones do (an aiohttp pool); then the listeners get PUSH_DRAIN_SECONDS to catch up."""
    import aiohttp

    load, progress = PushLoad(len(deliveries), listeners), asyncio.Event()
    clients: list[Any] = []
    try:
        await _listen(port, token, deliveries, load, progress, clients)
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)
        connector = aiohttp.TCPConnector(limit=1024)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def post(i: int) -> None:
                load.sent[i] = time.monotonic()
                try:
                    url, d = f"http://127.0.0.1:{port}{WEBHOOK_PATH}", deliveries[i]
                    async with session.post(url, data=d.body, headers=d.headers) as response:
                        await response.read()
                        load.status[i] = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    load.status[i] = -1
                    load.errors[type(exc).__name__] += 1
                load.acked[i] = time.monotonic()

            tasks: list[asyncio.Task[None]] = []
            start = time.monotonic() + 0.05
            for i in range(load.n):
                load.scheduled[i] = start + i / rate
                await asyncio.sleep(max(0.0, load.scheduled[i] - time.monotonic()))
                tasks.append(asyncio.create_task(post(i)))
            await asyncio.gather(*tasks)
        wanted = {i for i in range(load.n) if 200 <= load.status[i] < 300}
        deadline = time.monotonic() + PUSH_DRAIN_SECONDS
        while not all(wanted <= r.keys() for r in load.received) and time.monotonic() < deadline:
            progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), deadline - time.monotonic())
    finally:
        load.closing = True
        for sio in clients:
            with contextlib.suppress(Exception):
                await sio.disconnect()
    return load


@dataclass(slots=True)
class PushResult:
    backend: str
    load: PushLoad
    warmup: int
    cpu: Cores
    peak_rss_mb: float
    seconds: float
    push_ms: list[float] = field(default_factory=list)
    missing: int = 0  # (listener, 2xx delivery) pairs with no event
    duplicated: int = 0

    def __post_init__(self) -> None:
        for received in self.load.received:
            for i in range(self.load.n):
                got = received.get(i, [])
                self.missing += not got and self.ok(i)
                self.duplicated += max(0, len(got) - 1)
                if got and i >= self.warmup:
                    self.push_ms.append((got[0] - self.load.sent[i]) * 1000)

    def ok(self, i: int) -> bool:
        return 200 <= self.load.status[i] < 300

    @property
    def measured(self) -> range:
        return range(self.warmup, self.load.n)

    def every_event(self) -> bool:
        not_ok = sum(1 for i in self.measured if not self.ok(i))
        return not (self.missing or not_ok or self.load.unexpected) and bool(self.push_ms)



def expected_events(w: Workload) -> Changes:
    """For each PR, the status changes its deliveries cause in send order, each with the
    GUID of the delivery that causes it."""
    import orjson

    changes: Changes = {}
    status: dict[tuple[str, int], str] = {}
    for guid, body in requests(w):
        doc = orjson.loads(body)
        pr = doc["pull_request"]
        key = (str(doc["repository"]["full_name"]), int(pr["number"]))
        closed = "CLOSED" if pr.get("state") == "closed" else "OPEN"
        new = "MERGED" if pr.get("merged") or pr.get("merged_at") else closed
        if status.get(key) != new:
            changes.setdefault(key, []).append((guid, (*key, status.get(key), new)))
            status[key] = new
    return changes


def match_events(events: Sequence[Event], changes: Changes) -> tuple[dict[int, str], int]:
    """event id -> GUID of the delivery that caused it; and how many matched none."""
    seen: Counter[tuple[str, int]] = Counter()
    cause: dict[int, str] = {}
    for event_id, payload in events:
        key = (str(payload.get("repository")), int(payload.get("pr_number") or 0))
        k, wanted = seen[key], changes.get(key, [])
        seen[key] += 1
        status = (payload.get("old_status"), payload.get("new_status"))
        if k < len(wanted) and wanted[k][1] == (*key, *status):
            cause[event_id] = wanted[k][0]
    return cause, len(events) - len(cause)


@dataclass(slots=True)
class SlowRun:
    label: str  # "a" (no clients), "b" (per-event clients), "c" (batch clients)
    mode: str | None  # None for (a), else a CLIENT_MODES name
    readers: int
    stuck: int
    prs: int
    load: LoadResult
    verification: Verification
    peak_rss_mb: float
    cores: dict[str, float]  # the readers' and the push replica's, during the load
    events: int  # stored pr_status_change events
    logs: list[ReaderLog]
    connected: int
    drain_seconds: float
    queues: tuple[Queues, Queues]  # stuck clients after the load, after the drain
    seconds: float
    unmatched: int = 0  # events matched to no delivery (no latency for them)
    latencies_ms: list[float] = field(default_factory=list)  # every (reader, event) receipt
    per_client_p99_ms: list[float] = field(default_factory=list)
    during_load: int = 0  # receipts before the load's end
    messages_per_s: list[float] = field(default_factory=list)  # each reader's, in the load

    def complete(self) -> bool:
        """Every delivery sent and answered 2xx, and the database holds exactly them."""
        load = self.load
        return load.complete and load.not_ok == 0 and self.verification.passed(load.ok, self.prs)

    def ratio(self, a: SlowRun) -> float:
        return self.load.rate / a.load.rate if a.load.rate else 0.0

    def full(self) -> int:
        return sum(1 for log in self.logs if len(set(log.ids)) == self.events)

    def readers_ok(self) -> bool:
        return self.connected == self.readers == len(self.logs) and self.full() == self.readers

    def summarise(self, events: list[Event], changes: Changes, sent: dict[str, int],
                  load_end: float) -> SlowRun:  # fmt: skip
        """Receive latencies (from the causing delivery's send) and message rates."""
        cause, self.unmatched = match_events(events, changes)
        sent_s = {eid: sent[guid] / 1e6 for eid, guid in cause.items() if guid in sent}
        first, last = self.load.first_us / 1e6, self.load.last_us / 1e6
        for log in self.logs:
            in_load = sum(1 for t in log.messages if first <= t <= last)
            self.messages_per_s.append(in_load / (last - first) if last > first else 0.0)
            pairs = zip(log.ids, log.times, strict=True)
            mine = sorted((t - sent_s[e]) * 1000 for e, t in pairs if e in sent_s)
            self.during_load += sum(1 for t in log.times if t <= load_end)
            self.per_client_p99_ms.append(percentile(mine, 99))
            self.latencies_ms += mine
        self.latencies_ms.sort()
        self.per_client_p99_ms.sort()
        self.messages_per_s.sort()
        return self


def read_sent(path: Path) -> dict[str, int]:
    with contextlib.suppress(FileNotFoundError), path.open() as lines:
        return {guid: int(us) for guid, _, us in (line.partition(" ") for line in lines)}
    return {}


def mode_kind(mode: str) -> str:
    """What a client run's clients are, as the report introduces them."""
    from webhook_service.config import DEFAULT_FRAME_BUDGET
    from webhook_service.push.stream import BATCH, BATCH_INTERVAL

    if mode != "batch":
        return "per-event clients (the original protocol: one message per event)"
    budget = int(os.environ.get("SOCKETIO_FRAME_BUDGET", DEFAULT_FRAME_BUDGET))
    return (f'batch clients (opt-in, auth "batch": true: one `{BATCH}` list per '
            f"{BATCH_INTERVAL:g} s at most, or less often: {budget:,} frames/s to all batch "
            "clients together)")


def _kib(values: list[int], *, total: bool = True) -> str:
    if not values:
        return "-"
    each = f"{min(values) / 1024:,.0f}-{max(values) / 1024:,.0f} KiB"
    return f"{sum(values) / 1024:,.0f} KiB in all (each {each})" if total else f"{each} each"


def report_clients(b: SlowRun) -> None:
    """The figures of one client run's readers and stuck clients."""
    tag, logs, lat, rates = f"({b.label}) {b.mode}", b.logs, b.latencies_ms, b.messages_per_s
    counts = sorted(len(set(log.ids)) for log in logs) or [0]
    receipts = sum(len(log.ids) for log in logs)
    if b.readers:
        print(f"\n{tag} readers: {b.connected}/{b.readers} connected; {b.full()}/{b.readers} "
              f"received all {b.events} events; unique events per client min {counts[0]} / "
              f"median {statistics.median(counts):g} / max {counts[-1]}; duplicates "
              f"{receipts - sum(len(set(log.ids)) for log in logs)}; disconnected at the end "
              f"{sum(not log.connected for log in logs)}")
        print(f"{tag} messages received per reader during the load: {ms(rates, 0)} to "
              f"{ms(rates, 100)}/s (median {statistics.median(rates or [0]):,.1f}/s); "
              f"{sum(len(log.messages) for log in logs)} messages in all for {receipts} receipts")
        print(f"{tag} reader receive latency (POST sent -> event received, all {len(lat)} "
              f"receipts): p50 {ms(lat, 50)} ms, p90 {ms(lat, 90)} ms, p99 {ms(lat, 99)} ms, max "
              f"{ms(lat, 100)} ms; per-client p99 from {ms(b.per_client_p99_ms, 0)} to "
              f"{ms(b.per_client_p99_ms, 100)} ms")
        print(f"{tag} receipts during the load: {b.during_load} of {receipts} "
              f"({b.during_load / max(1, receipts) * 100:.0f}%); the readers needed "
              f"{b.drain_seconds:.1f}s after the load to finish; {b.unmatched} events matched no "
              "delivery (no latency)")
    q, qe = b.queues
    if b.stuck and not q.available:
        print(f"{tag} stuck clients: `ss` unavailable, socket queues not measured")
    elif b.stuck:
        print(f"{tag} stuck clients: {q.established}/{b.stuck} still connected after the load "
              f"({qe.established} after the drain); kernel queues after the load: server send "
              f"{_kib(q.server_send_q)}, client receive {_kib(q.client_recv_q)}; server send "
              f"buffers {_kib(q.server_sndbuf, total=False)}, full (the server's writes blocked, "
              f"later events wait in the server's memory) for {q.server_full}/{q.established} "
              f"after the load, {qe.server_full}/{qe.established} after the drain")
