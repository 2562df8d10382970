"""The push benchmark's measurements: an open-loop sender of status-changing deliveries
with a Socket.IO listener (push latency), and a slow-clients run's figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import scratch_db
from bench.clients import ReaderLog
from bench.deliveries import PR, REPOSITORIES, Renderer, Verification, Workload, requests
from bench.load import LoadResult
from bench.servers import WEBHOOK_PATH

POST_TIMEOUT_SECONDS = 30.0
PUSH_WINDOW = 50  # PRs interleaved: a PR's deliveries are 50 apart (250 ms at 200/s)
PUSH_STORY = (("opened", None, "OPEN"), ("closed", "OPEN", "CLOSED"),
              ("reopened", "CLOSED", "OPEN"), ("merged", "OPEN", "MERGED"))  # fmt: skip
PUSH_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z
EventKey = tuple[str, int, str | None, str]  # repository, number, old status, new status
Changes = dict[tuple[str, int], list[tuple[str, EventKey]]]
Event = tuple[int, dict[str, Any]]  # a stored event: id, payload


PushDelivery = tuple[EventKey, dict[str, str], bytes]  # the event it causes, headers, body


def generate_push(count: int, secret: str, seed: int) -> list[PushDelivery]:
    """``count`` signed deliveries, each a status change of its PR: blocks of PUSH_WINDOW
    PRs, each step of PUSH_STORY for all of them in turn."""
    rng, renderer, prs, out = random.Random(seed), Renderer(secret), list[PR](), []
    for i in range(count):
        block, step = divmod(i, PUSH_WINDOW * len(PUSH_STORY))
        kind, old, new = PUSH_STORY[step // PUSH_WINDOW]
        index = block * PUSH_WINDOW + i % PUSH_WINDOW
        at = PUSH_EPOCH + 60 * (i + 1)
        if index == len(prs):
            repo, number = REPOSITORIES[index % 4], index // 4 + 1
            ref = f"feature/push-{number}-{rng.getrandbits(24):06x}"
            prs.append(PR(repo, number, 400_000_000 + index, at - 60,
                          f"Push benchmark change {number} in {repo}", ref))  # fmt: skip
        (pr := prs[index]).advance(kind, at, rng)
        _, headers, body = renderer.render(pr, kind, at, rng)
        out.append(((pr.repository, pr.number, old, new), headers, body))
    return out


def fetch_events(url: str) -> list[Event]:
    """The stored ``pr_status_change`` events, in id order: (id, payload)."""
    return [(int(i), json.loads(str(payload))) for i, payload in scratch_db.query(
        url, "SELECT id, payload FROM events WHERE type = 'pr_status_change' ORDER BY id")]


@dataclass(slots=True)
class PushLoad:
    """What the open-loop sender and the listener saw (times: time.monotonic())."""

    backend: str
    n: int
    warmup: int  # the first deliveries, not measured
    sent: dict[int, float] = field(default_factory=dict)  # delivery -> POST sent
    acked: dict[int, float] = field(default_factory=dict)  # delivery -> 2xx answer
    received: dict[int, list[float]] = field(default_factory=dict)  # delivery -> receipts
    unexpected: int = 0  # events matching no delivery

    def push_ms(self) -> list[float]:
        return [(t[0] - self.sent[i]) * 1000 for i, t in self.received.items() if i >= self.warmup]

    def ack_ms(self) -> list[float]:
        return [(t - self.sent[i]) * 1000 for i, t in self.acked.items() if i >= self.warmup]

    @property
    def not_ok(self) -> int:  # measured deliveries not answered 2xx
        return self.n - self.warmup - len(self.ack_ms())

    @property
    def missing(self) -> int:  # 2xx deliveries with no event
        return len(self.acked.keys() - self.received.keys())

    def every_event(self) -> bool:
        """Every measured delivery 2xx, every 2xx's event received, nothing unexpected."""
        return not (self.missing or self.not_ok or self.unexpected) and bool(self.push_ms())


async def push_load(port: int, token: str, deliveries: Sequence[PushDelivery], rate: float,
                    load: PushLoad) -> None:  # fmt: skip
    """Each delivery POSTed at its instant whatever earlier ones do; the listener's receipts."""
    import aiohttp
    import socketio

    index_of = {key: i for i, (key, _, _) in enumerate(deliveries)}

    def on_event(data: Any) -> None:
        now = time.monotonic()
        key = tuple(data.get(k) for k in ("repository", "pr_number", "old_status", "new_status"))
        if (index := index_of.get(key)) is None:
            load.unexpected += 1
        else:
            load.received.setdefault(index, []).append(now)

    async def post(session: aiohttp.ClientSession, i: int) -> None:
        load.sent[i], (_, headers, body) = time.monotonic(), deliveries[i]
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):  # not acked
            async with session.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", data=body,
                                    headers=headers) as response:  # fmt: skip
                await response.read()
                if 200 <= response.status < 300:
                    load.acked[i] = time.monotonic()

    sio = socketio.AsyncClient(reconnection=False)
    sio.on("pr_status_change", on_event)
    try:
        await sio.connect(f"http://127.0.0.1:{port}", auth={"token": token},
                          transports=["websocket"], wait_timeout=10)  # fmt: skip
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024),
                                         timeout=timeout) as session:  # fmt: skip
            tasks: list[asyncio.Task[None]] = []
            start = time.monotonic() + 0.05
            for i in range(load.n):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(post(session, i)))
            await asyncio.gather(*tasks)
        for _ in range(500):  # until every event came, or 10 s
            if load.acked.keys() <= load.received.keys():
                break
            await asyncio.sleep(0.02)
    finally:
        with contextlib.suppress(Exception):
            await sio.disconnect()


def expected_events(w: Workload) -> Changes:
    """Each PR's status changes in send order, with the GUID of the delivery causing each."""
    import orjson

    changes: Changes = {}
    status: dict[tuple[str, int], str] = {}
    for guid, body in requests(w):
        pr = (doc := orjson.loads(body))["pull_request"]
        key = (str(doc["repository"]["full_name"]), int(pr["number"]))
        closed = "CLOSED" if pr.get("state") == "closed" else "OPEN"
        new = "MERGED" if pr.get("merged") or pr.get("merged_at") else closed
        if status.get(key) != new:
            changes.setdefault(key, []).append((guid, (*key, status.get(key), new)))
            status[key] = new
    return changes


@dataclass(slots=True)
class SlowRun:
    """One slow-clients run, filled in as it goes."""

    label: str  # "a" (no clients), "b" (per-event clients), "c" (batch clients)
    mode: str | None  # None for (a), else "per-event" or "batch"
    readers: int
    stuck: int
    prs: int
    load: LoadResult = field(default_factory=LoadResult)
    verification: Verification = field(default_factory=Verification)
    readers_cores: float = 0.0  # the readers' process, during the load
    events: int = 0  # stored pr_status_change events
    logs: list[ReaderLog] = field(default_factory=list)
    connected: int = 0  # reading clients connected
    still_connected: tuple[int, int] = (0, 0)  # stuck clients after the load, after the drain
    latencies_ms: list[float] = field(default_factory=list)  # every (reader, event) receipt
    messages_per_s: list[float] = field(default_factory=list)  # each reader's, in the load

    def complete(self) -> bool:
        """Every delivery sent and answered 2xx, and the database holds exactly them."""
        ld = self.load
        return ld.complete and ld.not_ok == 0 and self.verification.passed(ld.ok, self.prs)

    def ratio(self, a: SlowRun) -> float:
        return self.load.rate / a.load.rate if a.load.rate else 0.0

    def full(self) -> int:
        return sum(1 for log in self.logs if len(set(log.ids)) == self.events)

    def readers_ok(self) -> bool:
        return self.connected == self.readers == len(self.logs) and self.full() == self.readers

    def summarise(self, events: list[Event], changes: Changes, sent_log: Path) -> None:
        """Receive latencies, from the send of the delivery that caused each event (a PR's
        k-th event is its k-th expected change), and message rates."""
        sent: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError), sent_log.open() as lines:
            sent = {guid: int(us) for guid, _, us in (line.partition(" ") for line in lines)}
        seen: Counter[tuple[str, int]] = Counter()
        sent_s: dict[int, float] = {}  # event id -> its delivery's send (s)
        for event_id, p in events:
            key = (str(p.get("repository")), int(p.get("pr_number") or 0))
            wanted, k = changes.get(key, []), seen[key]
            seen[key] += 1
            if k < len(wanted) and wanted[k][1] == (*key, p.get("old_status"), p.get(
                    "new_status")) and wanted[k][0] in sent:  # fmt: skip
                sent_s[event_id] = sent[wanted[k][0]] / 1e6
        self.events, first, last = len(events), self.load.first_us / 1e6, self.load.last_us / 1e6
        for log in self.logs:
            in_load = sum(1 for t in log.messages if first <= t <= last)
            self.messages_per_s.append(in_load / (last - first) if last > first else 0.0)
            pairs = zip(log.ids, log.times, strict=True)
            self.latencies_ms += [(t - sent_s[e]) * 1000 for e, t in pairs if e in sent_s]
