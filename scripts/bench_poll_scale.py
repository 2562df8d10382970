"""The parent side of ``scripts/bench_poll.py``: the fake's PRs, the poller processes, and
one timed run of one worker (first sweep, idle, injected changes), measured from the
fake's request log. See bench_poll.py's docstring for the design."""

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

from bench_poll_child import MARK

if TYPE_CHECKING:
    from webhook_service.testing.fake_github import FakeGitHub, RequestRecord

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
CHILD = SCRIPTS / "bench_poll_child.py"
BASELINE_COMMIT = "c353fc9"  # the per-repository sweep, every repository every cycle
OP_TIMEOUT = 300.0  # seconds one child operation may take
CHANGE_KINDS = ("push", "push", "retitle", "draft", "close", "merge")


class BenchError(Exception):
    """A setup or child-process failure: the run cannot go on (exit status 2)."""


def log(message: str) -> None:
    print(f"[bench_poll] {message}", file=sys.stderr, flush=True)


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
    def window(self) -> float:
        return 60.0 / self.scale

    @property
    def interval(self) -> float:  # SYNC_INTERVAL: GitHub's minute, scaled
        return 60.0 / self.scale


@dataclass
class Traffic:
    """One worker's requests in a span, as the fake saw them."""

    seconds: float = 0.0
    cycles: int = 0
    requests: dict[str, int] = field(default_factory=dict)  # api -> requests
    points: dict[str, int] = field(default_factory=dict)  # api -> secondary points
    primary: dict[str, int] = field(default_factory=dict)  # api -> primary points
    peak: dict[str, int] = field(default_factory=dict)  # api -> most points in a window
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
    rss_start: int = 0
    errors: int = 0
    last_error: str | None = None


def traffic(records: Sequence[RequestRecord], window: float, span: tuple[float, float]) -> Traffic:
    """The requests received within ``span`` (monotonic seconds)."""
    from webhook_service.testing.fake_limits import max_window_points

    start, end = span
    kept = [r for r in records if start <= r.received_at < end]
    found = Traffic(seconds=end - start)
    for api in ("rest", "graphql"):
        mine = [r for r in kept if r.api == api]
        found.requests[api] = len(mine)
        found.points[api] = sum(r.points for r in mine)
        found.primary[api] = sum(r.rate_cost for r in mine)
        found.peak[api] = max_window_points(mine, api=api, window=window)
    # A secondary refusal is a 403/429 that cost a primary point (fake_github._handle);
    # the primary limit's own 403 costs none.
    found.refusals = sum(1 for r in kept if r.status in (403, 429) and r.rate_cost == 1)
    return found


# -- the fake's pull requests ---------------------------------------------------------------


def populate(fake: FakeGitHub, repos: int, prs: int) -> list[tuple[str, int]]:
    """``prs`` open PRs over ``repos`` repositories, last updated a month ago or earlier."""
    names = [f"bench-org/repo-{i:04d}" for i in range(repos)]
    keys = [(names[i % repos], i // repos + 1) for i in range(prs)]
    old = int(time.time()) - 40 * 86_400
    for i, (repository, number) in enumerate(keys):
        fake.add_pull(repository, number, created_at=old + i, updated_at=old + i)
    # add_pull moves the fake's timestamp clock one second per PR even with explicit
    # times: 50,000 PRs would put every later change 14 h in the future, where each
    # search would find it again. Back to the wall clock (a private field of the fake).
    fake._clock = int(time.time())
    return keys


def change(fake: FakeGitHub, key: tuple[str, int], rng: random.Random) -> dict[str, Any]:
    """One realistic change of an open PR, no webhook; the PR as the fake now has it."""
    repository, number = key
    kind = rng.choice(CHANGE_KINDS)
    if kind == "push":
        return fake.update_pull(repository, number, head_sha=secrets.token_hex(20))
    if kind == "retitle":
        return fake.update_pull(repository, number, title=f"Retitled {rng.randrange(10**9)}")
    if kind == "draft":
        return fake.update_pull(
            repository, number, draft=not fake.pull(repository, number)["draft"]
        )
    if kind == "close":
        return fake.update_pull(repository, number, state="closed")
    return fake.update_pull(repository, number, merged=True)


def expected(key: tuple[str, int], pull: Mapping[str, Any]) -> dict[str, Any]:
    status = "MERGED" if pull["merged"] else "CLOSED" if pull["state"] == "closed" else "OPEN"
    return {
        "repository": key[0],
        "number": key[1],
        "status": status,
        "title": pull["title"],
        "head_sha": pull["head"]["sha"],
        "draft": pull["draft"],
        "updated_at": pull["updated_at"],
    }


def baseline_tree(workdir: Path) -> Path:
    """``webhook_service`` as of BASELINE_COMMIT, extracted under ``workdir``."""
    target = workdir / f"baseline-{BASELINE_COMMIT}"
    command = ["git", "-C", str(REPO_ROOT), "archive", BASELINE_COMMIT, "webhook_service"]
    archive = subprocess.run(command, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


# -- the poller process ---------------------------------------------------------------------


class Child:
    """A poller process; :meth:`call` sends one operation and waits for its answer."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name, self.proc, self.log = name, proc, log_path
        self.ready: dict[str, Any] = {}

    @classmethod
    async def spawn(
        cls, name: str, config: Mapping[str, Any], workdir: Path, package_root: Path
    ) -> Child:
        config_path = workdir / f"{name}.json"
        config_path.write_text(json.dumps(config))
        env = dict(os.environ) | {"PYTHONPATH": str(package_root)}
        log_path = workdir / f"{name}.log"
        with log_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(CHILD), str(config_path),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                cwd=workdir, env=env, limit=1 << 24,
            )  # fmt: skip
        child = cls(name, proc, log_path)
        try:
            child.ready = await child._answer("ready", 120.0)
        except BaseException:
            await child.close()
            raise
        if not _within(child.ready["package"], package_root):
            await child.close()
            raise BenchError(f"{name} imported {child.ready['package']}, not {package_root}'s")
        return child

    def _tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def _answer(self, op: str, seconds: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + seconds
        while True:
            try:
                left = max(0.1, deadline - time.monotonic())
                line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                raise BenchError(f"{self.name}: no answer to {op!r}\n{self._tail()}") from None
            if not line:
                await self.proc.wait()
                raise BenchError(f"{self.name} exited during {op!r}:\n{self._tail()}")
            text = line.decode(errors="replace")
            if text.startswith(MARK):
                answer: dict[str, Any] = json.loads(text[len(MARK) :])
                if "failed" in answer:
                    raise BenchError(f"{self.name}: {op!r}: {answer['failed']}\n{self._tail()}")
                return answer

    async def call(self, op: str, **params: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._answer(op, OP_TIMEOUT)

    async def close(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 30.0)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _within(path: str, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


# -- one run of one worker ------------------------------------------------------------------


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

    def records(self) -> list[RequestRecord]:
        key = "token:" + self.token
        return [r for r in self.fake.requests if r.credential == key]

    async def measure(self) -> WorkerRun:
        plan, child, result = self.plan, self.child, self.result
        result.rss_start = int(child.ready["rss"])
        started = time.monotonic()
        await child.call("start")
        result.first_sweep = await self._cycles(1, started, plan.first_sweep_cap)
        swept = time.monotonic()
        result.first = traffic(self.records(), plan.window, (started, swept))
        if result.first_sweep is not None:  # the next cycle: see bench_poll.py (settling)
            await self._cycles(2, swept, 4 * plan.interval)
        before = await child.call("stats")
        result.settle = traffic(self.records(), plan.window, (swept, before["now"]))
        await asyncio.sleep(plan.idle_intervals * plan.interval)
        after = await child.call("stats")
        result.idle = traffic(self.records(), plan.window, (before["now"], after["now"]))
        result.idle.cycles = after["sync_count"] - before["sync_count"]
        await self._changes()
        done = await child.call("stats")
        result.changed = traffic(self.records(), plan.window, (after["now"], done["now"]))
        result.changed.cycles = done["sync_count"] - after["sync_count"]
        result.whole = traffic(self.records(), plan.window, (started, done["now"]))
        result.whole.cycles = done["sync_count"]
        result.errors, result.last_error = done["error_count"], done["last_error"]
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
        plan = self.plan
        span = plan.change_intervals * plan.interval
        began = time.monotonic()
        moments = sorted(self.rng.uniform(0, span) for _ in range(plan.changes))
        injected: dict[str, float] = {}
        expect = []
        for moment, key in zip(moments, self.to_change, strict=False):
            await asyncio.sleep(max(0.0, began + moment - time.monotonic()))
            pull = change(self.fake, key, self.rng)
            injected[f"{key[0]}#{key[1]}"] = time.monotonic()
            expect.append(expected(key, pull))
            await self.child.call("watch", changes=[expect[-1]])
        deadline = time.monotonic() + plan.drain_intervals * plan.interval
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            found = await self.child.call("found")
            if not found["pending"]:
                break
            await asyncio.sleep(0.25)
        seen = found.get("found", {})
        self.result.delays = [
            seen[label] - at if label in seen else None for label, at in injected.items()
        ]
        self.result.mismatches = (await self.child.call("verify", expect=expect))["mismatches"]


async def run_worker(
    plan: Plan,
    fake: FakeGitHub,
    *,
    worker: str,
    keys: Sequence[tuple[str, int]],
    to_change: list[tuple[str, int]],
    database_url: str,
    workdir: Path,
    package_root: Path,
) -> WorkerRun:
    """Start one worker (``new``: the checkout's, ``baseline``: BASELINE_COMMIT's) in a
    process of its own against ``fake`` and measure it."""
    repositories = sorted({repository for repository, _ in keys})
    token = "ghp_" + secrets.token_hex(18)
    fake.add_token(token)
    config = {
        "token": token,
        "api_url": fake.url,
        "repositories": repositories,
        "database_url": database_url,
        # GitHub's minute and hour, scaled; the baseline reads SYNC_INTERVAL only.
        "env": {
            "SYNC_INTERVAL": str(plan.interval),
            "SYNC_FULL_SWEEP_INTERVAL": str(3600.0 / plan.scale),
            "SYNC_SEARCH_OVERLAP": str(300.0 / plan.scale),
            "SYNC_MAX_CONCURRENCY": "5",
        },
        "window": plan.window if worker == "new" else None,
    }
    name = f"{worker}-{len(repositories)}"
    child = await Child.spawn(name, config, workdir, package_root)
    result = WorkerRun(worker, len(repositories), len(keys))
    rng = random.Random(f"{plan.seed}-{name}")
    try:
        await Run(plan, fake, child, result, token, to_change, rng).measure()
        answer = await child.call("quit", grace=5.0)
        result.rss_peak = int(answer["rss_peak"])
    finally:
        await child.close()
    fake.reset_requests()  # the next worker's log starts empty
    return result
