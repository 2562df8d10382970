"""The poller benchmark's moving parts: the fake's PRs and changes, the baseline's code
(``git archive`` of BASELINE_COMMIT), a poller process (``poll_child.py``), and one timed
run of one worker (first sweep, idle, injected changes) measured from the fake's log."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import secrets
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.poll_child import MARK
from bench.report import BenchError
from bench.servers import REPO_ROOT

if TYPE_CHECKING:
    from webhook_service.testing.fake_github import FakeGitHub, RequestRecord

CHILD = Path(__file__).resolve().with_name("poll_child.py")
BASELINE_COMMIT = "c353fc9"  # the per-repository sweep, every repository every cycle
OP_TIMEOUT = 300.0  # seconds one child operation may take
CHANGE_KINDS = ("push", "push", "retitle", "draft", "close", "merge")


@dataclass(frozen=True)
class Plan:
    """The time scale and the phases (seconds are scaled: wall-clock seconds here)."""

    scale: float  # GitHub's 60 s minute is 60 / scale seconds here
    changes: int  # injected per run
    idle_intervals: int
    change_intervals: int
    drain_intervals: int  # after the last change, how long to wait for it
    first_sweep_cap: float  # seconds
    seed: int

    @property
    def window(self) -> float:  # the secondary window and SYNC_INTERVAL: GitHub's minute
        return 60.0 / self.scale

    interval = window


@dataclass
class Traffic:
    """One worker's requests in a span, as the fake saw them (per API: rest, graphql)."""

    seconds: float = 0.0
    cycles: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    points: dict[str, int] = field(default_factory=dict)  # secondary points
    primary: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)  # most points in a window
    refusals: int = 0  # answers refusing a secondary limit


@dataclass
class WorkerRun:
    worker: str  # "new" or "baseline"
    repos: int
    prs: int
    first_sweep: float | None = None  # seconds to the end of the first cycle (None: cap)
    first: Traffic = field(default_factory=Traffic)
    settle: Traffic = field(default_factory=Traffic)  # the cycle after the first
    idle: Traffic = field(default_factory=Traffic)
    changed: Traffic = field(default_factory=Traffic)
    whole: Traffic = field(default_factory=Traffic)
    delays: list[float | None] = field(default_factory=list)  # None: never seen
    mismatches: list[str] = field(default_factory=list)
    rss_peak: int = 0
    errors: int = 0


def traffic(records: Sequence[RequestRecord], window: float, span: tuple[float, float]) -> Traffic:
    """The requests received within ``span`` (monotonic seconds)."""
    from webhook_service.testing.fake_github import max_window_points

    kept = [r for r in records if span[0] <= r.received_at < span[1]]
    found = Traffic(seconds=span[1] - span[0])
    for api in ("rest", "graphql"):
        mine = [r for r in kept if r.api == api]
        found.requests[api] = len(mine)
        found.points[api] = sum(r.points for r in mine)
        found.primary[api] = sum(r.rate_cost for r in mine)
        found.peak[api] = max_window_points(mine, api=api, window=window)
    # A secondary refusal is a 403/429 that cost a primary point (fake_github.pipeline._handle);
    # the primary limit's own 403 costs none.
    found.refusals = sum(1 for r in kept if r.status in (403, 429) and r.rate_cost == 1)
    return found


def populate(fake: FakeGitHub, repos: int, prs: int) -> list[tuple[str, int]]:
    """``prs`` open PRs over ``repos`` repositories, last updated 40 days ago or earlier."""
    keys = [(f"bench-org/repo-{i % repos:04d}", i // repos + 1) for i in range(prs)]
    old = int(time.time()) - 40 * 86_400
    for i, (repository, number) in enumerate(keys):
        fake.add_pull(repository, number, created_at=old + i, updated_at=old + i)
    if hasattr(fake, "_clock"):  # older fakes moved their clock a second per PR even with
        vars(fake)["_clock"] = int(time.time())  # explicit times: back to the wall clock
    return keys


def change(fake: FakeGitHub, key: tuple[str, int], rng: random.Random) -> dict[str, Any]:
    """One realistic change of an open PR, no webhook; what it expects in the store."""
    repository, number = key
    kind = rng.choice(CHANGE_KINDS)
    options: dict[str, dict[str, Any]] = {
        "push": {"head_sha": secrets.token_hex(20)}, "close": {"state": "closed"},
        "merge": {"merged": True},
    }
    fields = options.get(kind) or (
        {"title": f"Retitled {rng.randrange(10**9)}"} if kind == "retitle"
        else {"draft": not fake.pull(repository, number)["draft"]})  # fmt: skip
    pull = fake.update_pull(repository, number, **fields)
    status = "MERGED" if pull["merged"] else "CLOSED" if pull["state"] == "closed" else "OPEN"
    return {"repository": repository, "number": number, "status": status, "title": pull["title"],
            "head_sha": pull["head"]["sha"],
            "draft": pull["draft"], "updated_at": pull["updated_at"]}


def baseline_tree(workdir: Path) -> Path:
    """``webhook_service`` as of BASELINE_COMMIT, extracted under ``workdir``."""
    target = workdir / f"baseline-{BASELINE_COMMIT}"
    command = ["git", "-C", str(REPO_ROOT), "archive", BASELINE_COMMIT, "webhook_service"]
    archive = subprocess.run(command, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _within(path: str, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


class Child:
    """A poller process; :meth:`call` sends one operation and waits for its answer."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.ready: dict[str, Any] = {}

    @classmethod
    async def spawn(cls, name: str, config: Mapping[str, Any], workdir: Path, root: Path) -> Child:
        config_path, log = workdir / f"{name}.json", workdir / f"{name}.log"
        config_path.write_text(json.dumps(config))
        env = dict(os.environ) | {"PYTHONPATH": os.pathsep.join([str(root), str(CHILD.parents[1])])}
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(CHILD), str(config_path), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=err, cwd=workdir, env=env, limit=1 << 24,
            )  # fmt: skip
        child = cls(name, proc, log)
        try:
            child.ready = await child._answer("ready", 120.0)
            if not _within(child.ready["package"], root):
                raise BenchError(f"{name} imported {child.ready['package']}, not {root}'s")
        except BaseException:
            await child.close()
            raise
        return child

    async def _answer(self, op: str, seconds: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + seconds
        while True:
            try:
                left = max(0.1, deadline - time.monotonic())
                line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                raise self._failed(op, "no answer") from None
            if not line:
                raise self._failed(op, "it exited")
            if (text := line.decode(errors="replace")).startswith(MARK):
                answer: dict[str, Any] = json.loads(text[len(MARK) :])
                if "failed" in answer:
                    raise self._failed(op, answer["failed"])
                return answer

    def _failed(self, op: str, why: str) -> BenchError:
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-25:])
        return BenchError(f"{self.name}: {op!r}: {why}\n{tail}")

    async def call(self, op: str, **params: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._answer(op, OP_TIMEOUT)

    async def close(self) -> None:
        """EOF on its stdin ends it; SIGKILL after 30 s."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 30.0)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class Run:
    """One worker against one fake: its phases in order (see :meth:`measure`)."""

    plan: Plan
    fake: FakeGitHub
    child: Child
    result: WorkerRun
    token: str
    to_change: list[tuple[str, int]]  # never-changed PRs, this run's alone
    rng: random.Random

    def _traffic(self, since: float, until: float) -> Traffic:
        key = "token:" + self.token
        records = [r for r in self.fake.requests if r.credential == key]
        return traffic(records, self.plan.window, (since, until))

    async def measure(self) -> WorkerRun:
        """The first sweep (capped), the cycle after it (a first sweep of T lists about
        R * T / 2P more repositories, P the sweep period), idle intervals, changes."""
        plan, child, result = self.plan, self.child, self.result
        started = time.monotonic()
        await child.call("start")
        result.first_sweep = await self._cycles(1, started, plan.first_sweep_cap)
        swept = time.monotonic()
        result.first = self._traffic(started, swept)
        if result.first_sweep is not None:
            await self._cycles(2, swept, 4 * plan.interval)
        before = await child.call("stats")
        result.settle = self._traffic(swept, before["now"])
        await asyncio.sleep(plan.idle_intervals * plan.interval)
        after = await child.call("stats")
        result.idle = self._traffic(before["now"], after["now"])
        result.idle.cycles = after["sync_count"] - before["sync_count"]
        await self._changes()
        done = await child.call("stats")
        result.changed = self._traffic(after["now"], done["now"])
        result.changed.cycles = done["sync_count"] - after["sync_count"]
        result.whole = self._traffic(started, done["now"])
        result.whole.cycles, result.errors = done["sync_count"], done["error_count"]
        return result

    async def _cycles(self, count: int, since: float, cap: float) -> float | None:
        """Seconds from ``since`` until ``count`` cycles have ended; None past ``cap``."""
        while time.monotonic() - since < cap:
            stats = await self.child.call("stats")
            if stats["sync_count"] >= count:
                return float(stats["now"]) - since
            await asyncio.sleep(0.1)
        return None

    async def _changes(self) -> None:
        """``plan.changes`` changes at random moments, no webhook; then wait for them."""
        plan, began = self.plan, time.monotonic()
        span = plan.change_intervals * plan.interval
        moments = sorted(self.rng.uniform(0, span) for _ in range(plan.changes))
        injected: dict[str, float] = {}
        expect = []
        for moment, key in zip(moments, self.to_change, strict=False):
            await asyncio.sleep(max(0.0, began + moment - time.monotonic()))
            expect.append(change(self.fake, key, self.rng))
            injected[f"{key[0]}#{key[1]}"] = time.monotonic()
            await self.child.call("watch", changes=[expect[-1]])
        deadline = time.monotonic() + plan.drain_intervals * plan.interval
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            found = await self.child.call("found")
            if not found["pending"]:
                break
            await asyncio.sleep(0.25)
        seen = found.get("found", {})
        self.result.delays = [seen[k] - at if k in seen else None for k, at in injected.items()]
        self.result.mismatches = (await self.child.call("verify", expect=expect))["mismatches"]


async def run_worker(plan: Plan, fake: FakeGitHub, *, worker: str, keys: Sequence[tuple[str, int]],
                     to_change: list[tuple[str, int]], database_url: str, workdir: Path,
                     package_root: Path) -> WorkerRun:  # fmt: skip
    """One worker (``new``: the checkout's, ``baseline``: BASELINE_COMMIT's) in a process
    of its own against ``fake``, measured."""
    repositories = sorted({repository for repository, _ in keys})
    token = "ghp_" + secrets.token_hex(18)
    fake.add_token(token)
    config = {
        "token": token, "api_url": fake.url, "repositories": repositories,
        "database_url": database_url,
        # GitHub's minute and hour, scaled; the baseline reads SYNC_INTERVAL only.
        "env": {"SYNC_INTERVAL": str(plan.interval), "SYNC_MAX_CONCURRENCY": "5",
                "SYNC_FULL_SWEEP_INTERVAL": str(3600.0 / plan.scale),
                "SYNC_SEARCH_OVERLAP": str(300.0 / plan.scale)},
        "window": plan.window if worker == "new" else None,
    }  # fmt: skip
    name = f"{worker}-{len(repositories)}"
    child = await Child.spawn(name, config, workdir, package_root)
    result = WorkerRun(worker, len(repositories), len(keys))
    try:
        rng = random.Random(f"{plan.seed}-{name}")
        await Run(plan, fake, child, result, token, to_change, rng).measure()
        result.rss_peak = int((await child.call("quit", grace=5.0))["rss_peak"])
    finally:
        await child.close()
    fake.reset_requests()  # the next worker's log starts empty
    return result
