"""The poller benchmark's parts: the fake's PRs and changes, the baseline's code (``git
archive`` of BASELINE_COMMIT), a poller process (``poll_child.py``) and one timed run of
one worker (first sweep, idle, injected changes) measured from the fake's request log."""

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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import BenchError
from bench.servers import REPO_ROOT

if TYPE_CHECKING:
    from webhook_service.testing.fake_github import FakeGitHub, RequestRecord

CHILD = Path(__file__).resolve().with_name("poll_child.py")
BASELINE_COMMIT = "c353fc9"  # the per-repository sweep, every repository every cycle
OP_TIMEOUT = 300.0  # seconds one child operation may take
CHANGE_KINDS = ("push", "push", "retitle", "draft", "close", "merge")
DRAIN_INTERVALS, FIRST_SWEEP_CAP = 4, 120.0  # after the last change; the first sweep (scaled s)
Call = Callable[..., Awaitable[dict[str, Any]]]  # an operation of the poller process


@dataclass(frozen=True)
class Plan:
    """bench_poll's options of the same names (seconds are wall-clock, scaled)."""

    scale: float  # GitHub's 60 s minute is 60 / scale seconds here
    changes: int  # injected per run
    idle_intervals: int
    change_intervals: int
    seed: int

    @property
    def window(self) -> float:  # the secondary window and SYNC_INTERVAL: GitHub's minute
        return 60.0 / self.scale


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
    # A secondary refusal costs a primary point (fake_github.pipeline), the primary's own none
    found.refusals = sum(1 for r in kept if r.status in (403, 429) and r.rate_cost == 1)
    return found


def populate(fake: FakeGitHub, repos: int, prs: int) -> list[tuple[str, int]]:
    """``prs`` open PRs over ``repos`` repositories, last updated 40 days ago or earlier."""
    keys = [(f"bench-org/repo-{i % repos:04d}", i // repos + 1) for i in range(prs)]
    old = int(time.time()) - 40 * 86_400
    for i, (repository, number) in enumerate(keys):
        fake.add_pull(repository, number, created_at=old + i, updated_at=old + i)
    return keys


def change(fake: FakeGitHub, key: tuple[str, int], rng: random.Random) -> dict[str, Any]:
    """One realistic change of an open PR, no webhook; what it expects in the store."""
    kind = rng.choice(CHANGE_KINDS)
    simple: dict[str, Any] = {"push": {"head_sha": secrets.token_hex(20)},
                              "close": {"state": "closed"}, "merge": {"merged": True}}
    fields = simple.get(kind) or (
        {"title": f"Retitled {rng.randrange(10**9)}"} if kind == "retitle"
        else {"draft": not fake.pull(*key)["draft"]})  # fmt: skip
    pull = fake.update_pull(*key, **fields)
    status = "MERGED" if pull["merged"] else "CLOSED" if pull["state"] == "closed" else "OPEN"
    return {"repository": key[0], "number": key[1], "status": status, "head_sha":
            pull["head"]["sha"]} | {k: pull[k] for k in ("title", "draft", "updated_at")}


def baseline_tree(workdir: Path) -> Path:
    """``webhook_service`` as of BASELINE_COMMIT, extracted under ``workdir``."""
    target = workdir / f"baseline-{BASELINE_COMMIT}"
    command = ["git", "-C", str(REPO_ROOT), "archive", BASELINE_COMMIT, "webhook_service"]
    with tarfile.open(fileobj=io.BytesIO(subprocess.run(command, check=True,
                                                        capture_output=True).stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


@contextlib.asynccontextmanager
async def child(name: str, config: Mapping[str, Any], workdir: Path,
                root: Path) -> AsyncIterator[Call]:  # fmt: skip
    """A poller process (``poll_child.py``) importing ``webhook_service`` from ``root``:
    ``call(op, wait, **params)`` returns its answer. EOF ends it; SIGKILL after 30 s."""
    log, env = workdir / f"{name}.log", {"PYTHONPATH": f"{root}{os.pathsep}{CHILD.parents[1]}"}
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), stdin=asyncio.subprocess.PIPE, limit=1 << 24,
            stdout=asyncio.subprocess.PIPE, stderr=err, cwd=workdir, env=dict(os.environ) | env)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def call(op: str, wait: float = OP_TIMEOUT, **params: Any) -> dict[str, Any]:
        stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
        await stdin.drain()
        try:
            line = await asyncio.wait_for(stdout.readline(), wait)
        except TimeoutError:
            line = b'{"failed": "no answer"}'
        answer: dict[str, Any] = json.loads(line or b'{"failed": "it exited"}')
        if "failed" in answer:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise BenchError(f"{name}: {op!r}: {answer['failed']}\n{tail}")
        return answer

    try:
        package = (await call("config", 120.0, **config))["package"]
        if not package.startswith(f"{root}{os.sep}"):  # the PYTHONPATH given
            raise BenchError(f"{name} imported {package}, not {root}'s")
        yield call
    finally:
        stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 30.0)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _cycles(call: Call, count: int, since: float, cap: float) -> float | None:
    """Seconds from ``since`` until ``count`` cycles have ended; None past ``cap``."""
    while time.monotonic() - since < cap:
        if (stats := await call("stats"))["sync_count"] >= count:
            return float(stats["now"]) - since
        await asyncio.sleep(0.1)
    return None


async def _changes(plan: Plan, fake: FakeGitHub, call: Call, to_change: list[tuple[str, int]],
                   result: WorkerRun) -> None:  # fmt: skip
    """``plan.changes`` changes at random moments, no webhook; then wait for them."""
    rng = random.Random(f"{plan.seed}-{result.worker}-{result.repos}")
    began, span = time.monotonic(), plan.change_intervals * plan.window
    injected, expect = dict[str, float](), []
    for moment, key in zip(sorted(rng.uniform(0, span) for _ in range(plan.changes)), to_change,
                           strict=False):  # fmt: skip
        await asyncio.sleep(max(0.0, began + moment - time.monotonic()))
        expect.append(change(fake, key, rng))
        injected[f"{key[0]}#{key[1]}"] = time.monotonic()
        await call("watch", changes=[expect[-1]])
    deadline, found = time.monotonic() + DRAIN_INTERVALS * plan.window, dict[str, Any]()
    while time.monotonic() < deadline:
        if not (found := await call("found"))["pending"]:
            break
        await asyncio.sleep(0.25)
    seen = found.get("found", {})
    result.delays = [seen[k] - at if k in seen else None for k, at in injected.items()]
    result.mismatches = (await call("verify", expect=expect))["mismatches"]


async def run_worker(plan: Plan, fake: FakeGitHub, *, worker: str, keys: Sequence[tuple[str, int]],
                     to_change: list[tuple[str, int]], database_url: str, workdir: Path,
                     package_root: Path) -> WorkerRun:  # fmt: skip
    """One worker (``new``: the checkout's, ``baseline``: BASELINE_COMMIT's) in a process of
    its own against ``fake``: the first sweep (capped), the cycle after it (a first sweep of
    T lists about R * T / 2P more repositories, P the sweep period), idle, changes."""
    repositories, token = sorted({repo for repo, _ in keys}), f"ghp_{secrets.token_hex(18)}"
    fake.add_token(token)
    config = {
        "token": token, "api_url": fake.url, "repositories": repositories,
        "database_url": database_url,
        # GitHub's minute and hour, scaled; the baseline reads SYNC_INTERVAL only.
        "env": {"SYNC_INTERVAL": str(plan.window), "SYNC_MAX_CONCURRENCY": "5",
                "SYNC_FULL_SWEEP_INTERVAL": str(3600.0 / plan.scale),
                "SYNC_SEARCH_OVERLAP": str(300.0 / plan.scale)},
        "window": plan.window if worker == "new" else None,
    }  # fmt: skip
    result = WorkerRun(worker, len(repositories), len(keys))

    def span(since: float, until: float) -> Traffic:
        records = [r for r in fake.requests if r.credential == "token:" + token]
        return traffic(records, plan.window, (since, until))

    async with child(f"{worker}-{len(repositories)}", config, workdir, package_root) as call:
        started = time.monotonic()
        await call("start")
        result.first_sweep = await _cycles(call, 1, started, FIRST_SWEEP_CAP)
        result.first = span(started, swept := time.monotonic())
        if result.first_sweep is not None:
            await _cycles(call, 2, swept, 4 * plan.window)
        before = await call("stats")
        result.settle = span(swept, before["now"])
        await asyncio.sleep(plan.idle_intervals * plan.window)
        after = await call("stats")
        result.idle = span(before["now"], after["now"])
        result.idle.cycles = after["sync_count"] - before["sync_count"]
        await _changes(plan, fake, call, to_change, result)
        done = await call("stats")
        result.changed, result.whole = span(after["now"], done["now"]), span(started, done["now"])
        result.errors = done["error_count"]
        result.rss_peak = int((await call("quit", grace=5.0))["rss_peak"])
    fake.reset_requests()  # the next worker's log starts empty
    return result
