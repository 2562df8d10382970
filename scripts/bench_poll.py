"""Poller benchmark: what the sync worker costs GitHub, against the fake GitHub.

    .venv-dev/bin/python scripts/bench_poll.py [--prs N] [--repos R] [--changed K]
        [--also-changed K2] [--also-n N2] [--hour-changes H] [--postgres [URL]]

Everything runs on 127.0.0.1. The parent process runs ``FakeGitHub``
(``webhook_service.testing.fake_github``) with N pull requests spread evenly over R
repositories; each poller runs in a child process of its own (this script with
``--child``), so the resident set size measured is the poller's alone. For N and,
unless ``--also-n 0``, for N2 (default 20,000), with a fresh database each time:

1. Our poller: ``PRSyncWorker`` with ``GitHub``, ``Reconciler`` and ``Store`` built
   from ``load_settings`` (a token, GITHUB_REPOSITORIES = the R repositories,
   SYNC_MAX_CONCURRENCY=5, SQLite file by default), one ``force_sync()`` per cycle:
   the first full sweep; an idle cycle; K changed PRs (``update_pull`` on K random,
   never-changed open PRs: pushes, retitles, draft toggles, closes, merges) and a
   cycle, after which the stored rows must equal the fake's (status, title, head SHA,
   draft, ``updated_at``); an idle cycle; the same with K2; the same with max(K, K2)
   retitles all in one repository (capped by its PR count: the pagination worst
   case); then a simulated hour: 3600 / interval cycles with H changes at random
   cycles.
2. Per-PR polling, the original design: one unconditional ``GET /repos/{o}/{r}/
   pulls/{n}`` per tracked PR per cycle at the same concurrency (aiohttp, JSON
   parsed, no database writes, so its wall time is a lower bound): an idle cycle and
   one after K changes.
3. Per-PR polling with an ETag per PR (not the original design; shown for fairness):
   a priming cycle, an idle cycle and one after K changes.

Requests and rate-limit points come from the fake's request log (``rate_cost``: a 304
costs nothing). Wall time, CPU time and RSS (sampled every 5 ms, plus the process's
lifetime peak) are measured in the poller's process. Each poller has its own token,
and the fake's primary limit is raised so that per-PR polling is never throttled.

Rate-limit points per hour at the default interval (60 s, 60 cycles): ours is the sum
over the simulated hour (H changes at random cycles); unconditional per-PR polling is
its measured points per cycle x 60; the ETag variant is modelled from its measured
idle and changed cycles (60 x idle points + H x points per changed PR).

Targets (the issue's, at N=1,000, R=10; checked at every N run): an idle cycle costs
<= R requests and 0 points; K changed PRs cost <= R + ceil(K/100) requests (each
change step above); >= 100x
fewer points per hour than per-PR polling; RSS flat in N (peak at N2 within 1.3x of
the peak at N); and the store matches the fake after every change. Exit status: 0
when every target passes, 1 otherwise, 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import resource
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webhook_service.testing.fake_github import FakeGitHub, RequestRecord

MAX_PRS = 50_000
MAX_REPOS = 1_000
MAX_HOUR_CYCLES = 600
OP_TIMEOUT = 900.0  # seconds one child operation may take
FAKE_RATE_LIMIT = 1_000_000_000  # per token and window: per-PR polling is never throttled
GITHUB_RATE_LIMIT = 5_000  # GitHub's primary limit per token and hour, for the notes
CONCURRENCY = 5
PER_PAGE = 100
VERIFY_SAMPLE = 500  # PRs compared field by field after the first sweep
TARGET_POINTS_RATIO = 100.0
TARGET_RSS_RATIO = 1.3
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
MARK = "@@bench_poll "  # prefix of the children's answers on stdout
CHANGE_KINDS = ("push", "push", "retitle", "draft", "close", "merge")

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent


class BenchError(Exception):
    """A setup or child-process failure: the run cannot go on (exit status 2)."""


# -- measurements -----------------------------------------------------------------------


@dataclass
class Phase:
    """One measured step of one poller."""

    label: str
    requests: int = 0
    points: int = 0
    wall: float = 0.0  # seconds, measured in the poller's process
    cpu: float = 0.0  # the poller process's CPU seconds
    rss_peak: int = 0  # bytes, during the step
    where: str = ""  # where the requests went
    errors: int = 0  # errors the poller reported (sync errors, or non-2xx/304 answers)
    note: str = ""
    cycles: int = 1
    max_wall: float = 0.0


@dataclass
class PollerRun:
    name: str
    phases: list[Phase] = field(default_factory=list)
    rss_start: int = 0  # after start-up, before the first cycle
    rss_lifetime_peak: int = 0  # VmHWM: the peak since the process started
    rss_steady_peak: int = 0  # the highest sampled RSS over the cycles after the first
    mismatches: list[str] = field(default_factory=list)
    verified: int = 0
    change_steps: list[tuple[str, int]] = field(default_factory=list)  # (label, K)

    def phase(self, label: str) -> Phase:
        for phase in self.phases:
            if phase.label == label:
                return phase
        raise KeyError(label)


@dataclass
class ScaleResult:
    n: int
    repos: int
    k: int
    k2: int
    hour_changes: int
    cycles_per_hour: int
    setup_seconds: float
    ours: PollerRun
    plain: PollerRun
    conditional: PollerRun
    seconds: float = 0.0


def _where(records: Sequence[RequestRecord]) -> str:
    """A compact account of requests: endpoint, page (p1 or later) and status, counted."""
    counts: Counter[str] = Counter()
    last_page: dict[int, int] = {}  # status -> the highest list page after the first
    for record in records:
        parts = record.path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "repos" and parts[3] == "pulls":
            page = int(record.query.get("page", "1"))
            kind = "list p1" if page == 1 else "list p2+"
            if page > 1:
                last_page[record.status] = max(page, last_page.get(record.status, 0))
        elif len(parts) == 5 and parts[0] == "repos" and parts[3] == "pulls":
            kind = "get PR" + (" (If-None-Match)" if record.conditional else "")
        else:
            kind = f"{record.method} {record.path}"
        counts[f"{kind} {record.status}"] += 1

    def label(key: str) -> str:
        if not key.startswith("list p2+ "):
            return key
        status = int(key.rpartition(" ")[2])
        pages = "p2" if last_page[status] == 2 else f"p2-p{last_page[status]}"
        return f"list {pages} {status}"

    return ", ".join(f"{label(kind)} x{n:,}" for kind, n in sorted(counts.items()))


def _measure(phase: Phase, records: Sequence[RequestRecord]) -> Phase:
    phase.requests = len(records)
    phase.points = sum(record.rate_cost for record in records)
    phase.where = _where(records)
    return phase


# -- the children: pollers in processes of their own ------------------------------------


class _RssSampler:
    """Samples this process's RSS every ``interval`` seconds while a step runs."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._active = threading.Event()
        self._lock = threading.Lock()
        self._peak = 0
        threading.Thread(target=self._run, name="rss-sampler", daemon=True).start()

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while True:
            self._active.wait()
            rss = self.rss()
            with self._lock:
                self._peak = max(self._peak, rss)
            time.sleep(self._interval)

    def begin(self) -> None:
        with self._lock:
            self._peak = self.rss()
        self._active.set()

    def end(self) -> int:
        self._active.clear()
        rss = self.rss()
        with self._lock:
            self._peak = max(self._peak, rss)
            return self._peak


def _max_rss() -> int:
    """This process's peak RSS in bytes since it exec'd this program.

    VmHWM belongs to the current address space; ``ru_maxrss`` does not do here: Linux
    carries it over ``execve`` from the forked copy of the parent (the fake GitHub).
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _reply(message: Mapping[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def _serve(handlers: Mapping[str, Handler]) -> None:
    """Answer the parent's operations (one JSON line each) until "quit" or EOF."""
    sampler = _RssSampler()
    _reply({"op": "ready", "rss": sampler.rss(), "max_rss": _max_rss()})
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        op: dict[str, Any] = json.loads(line)
        if op["op"] == "quit":
            _reply({"op": "quit", "rss": sampler.rss(), "max_rss": _max_rss()})
            return
        sampler.begin()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            result = await handlers[op["op"]](op)
        except Exception as exc:
            sampler.end()
            logging.getLogger("bench_poll").exception("operation %s failed", op["op"])
            _reply({"op": op["op"], "failed": repr(exc)})
            continue
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        peak = sampler.end()
        _reply(
            result
            | {"op": op["op"], "wall": wall, "cpu": cpu, "rss_peak": peak}
            | {"rss": sampler.rss(), "max_rss": _max_rss()}
        )


def _stamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _child_ours(config: Mapping[str, Any]) -> None:
    """Our poller: PRSyncWorker over GitHub, Reconciler and Store, as the service builds it."""
    import aiohttp

    from webhook_service.config import load_settings
    from webhook_service.github import GitHub
    from webhook_service.reconciler import Reconciler
    from webhook_service.store import Store
    from webhook_service.sync import PRSyncWorker

    settings = load_settings(
        {
            "GITHUB_TOKEN": config["token"],
            "GITHUB_API_URL": config["api_url"],
            "GITHUB_REPOSITORIES": ",".join(config["repositories"]),
            "DATABASE_URL": config["database_url"],
            "SYNC_MAX_CONCURRENCY": str(config["concurrency"]),
        },
        env_file=None,
    )
    store = Store(settings.database_url.reveal())
    await store.connect()
    try:
        await store.migrate()
        reconciler = Reconciler(
            store,
            task_branch_pattern=settings.task_branch_pattern,
            batch_max=settings.ingest_batch_max,
        )
        reconciler.start()
        try:
            async with aiohttp.ClientSession() as session:
                worker = PRSyncWorker(store, reconciler, GitHub(session, settings), settings)

                async def cycle(op: dict[str, Any]) -> dict[str, Any]:
                    before = worker.get_stats()
                    after = await worker.force_sync()
                    return {
                        "errors": after["error_count"] - before["error_count"],
                        "last_error": after["last_error"],
                        "observations": after["observations"] - before["observations"],
                        "api_calls": after["api_calls"] - before["api_calls"],
                        "not_modified": after["not_modified"] - before["not_modified"],
                    }

                async def verify(op: dict[str, Any]) -> dict[str, Any]:
                    mismatches = []
                    for want in op["expect"]:
                        got = await store.get_pull(want["repository"], want["number"])
                        label = f"{want['repository']}#{want['number']}"
                        if got is None:
                            mismatches.append(f"{label}: not in the store")
                            continue
                        have = {
                            "status": got.status.value,
                            "title": got.title,
                            "head_sha": got.head_sha,
                            "draft": got.draft,
                            "updated_at": _stamp(got.github_updated_at),
                        }
                        for name, value in have.items():
                            if value != want[name]:
                                mismatches.append(f"{label}: {name} {value!r} != {want[name]!r}")
                    async with store.connection() as conn:
                        rows = int(await conn.fetchval("SELECT COUNT(*) FROM pull_requests"))
                    return {"mismatches": mismatches, "rows": rows}

                await _serve({"cycle": cycle, "verify": verify})
        finally:
            await reconciler.stop()
    finally:
        await store.disconnect()


async def _child_per_pr(config: Mapping[str, Any]) -> None:
    """The original design: one GET per tracked PR per cycle (optionally with ETags)."""
    import aiohttp
    import orjson

    base = config["api_url"]
    keys = [(str(repo), int(number)) for repo, number in config["pulls"]]
    concurrency = int(config["concurrency"])
    etags: dict[str, str] | None = {} if config["conditional"] else None
    headers = {
        "Authorization": f"token {config['token']}",
        "Accept": "application/vnd.github+json",
        "User-Agent": "bench-poll-per-pr",
    }
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def cycle(op: dict[str, Any]) -> dict[str, Any]:
            statuses: Counter[int] = Counter()
            todo = iter(keys)

            async def fetch() -> None:
                for repository, number in todo:
                    url = f"{base}/repos/{repository}/pulls/{number}"
                    sent = headers
                    if etags is not None and url in etags:
                        sent = headers | {"If-None-Match": etags[url]}
                    async with session.get(url, headers=sent) as response:
                        body = await response.read()
                        statuses[response.status] += 1
                        if response.status == 200:
                            orjson.loads(body)  # the original design applied the body
                            if etags is not None and "ETag" in response.headers:
                                etags[url] = response.headers["ETag"]

            await asyncio.gather(*(fetch() for _ in range(concurrency)))
            errors = sum(n for status, n in statuses.items() if status not in (200, 304))
            return {"errors": errors, "statuses": {str(s): n for s, n in statuses.items()}}

        await _serve({"cycle": cycle})


def child_main(kind: str, config_path: str) -> int:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    config: dict[str, Any] = json.loads(Path(config_path).read_text())
    runners = {"ours": _child_ours, "per-pr": _child_per_pr}
    asyncio.run(runners[kind](config))
    return 0


# -- the parent: the fake GitHub, the children, the scenario -------------------------------


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data))


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Child:
    """A poller process; :meth:`call` sends one operation and waits for its answer."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.ready: dict[str, Any] = {}

    @classmethod
    async def spawn(cls, name: str, kind: str, config: Mapping[str, Any], workdir: Path) -> Child:
        log = workdir / f"{name}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        config_path = workdir / f"{name}.json"
        _write_json(config_path, config)
        argv = [sys.executable, str(SCRIPT), "--child", kind, "--config", str(config_path)]
        with _open_log(log) as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=workdir,  # no stray .env file
                env=env,
                limit=1 << 22,
            )
        child = cls(name, proc, log)
        try:
            child.ready = await child._answer("ready", 120.0)
        except BaseException:
            await child.close()
            raise
        return child

    async def _answer(self, op: str, seconds: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = await asyncio.wait_for(
                    self.proc.stdout.readline(), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                raise BenchError(
                    f"{self.name}: no answer to {op!r} within {seconds:.0f}s\n{_tail(self.log)}"
                ) from None
            if not line:
                await self.proc.wait()
                raise BenchError(
                    f"{self.name} exited ({self.proc.returncode}) during {op!r}:\n{_tail(self.log)}"
                )
            text = line.decode(errors="replace")
            if text.startswith(MARK):
                answer: dict[str, Any] = json.loads(text[len(MARK) :])
                if "failed" in answer:
                    raise BenchError(
                        f"{self.name}: {op!r} failed: {answer['failed']}\n{_tail(self.log)}"
                    )
                return answer

    async def call(self, op: str, **params: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._answer(op, OP_TIMEOUT)

    async def quit(self) -> dict[str, Any]:
        answer = await self.call("quit")
        await self.close()
        return answer

    async def close(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 15.0)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _expected(fake: FakeGitHub, repository: str, number: int) -> dict[str, Any]:
    pull = fake.pull(repository, number)
    if pull["merged"]:
        status = "MERGED"
    elif pull["state"] == "closed":
        status = "CLOSED"
    else:
        status = "OPEN"
    return {
        "repository": repository,
        "number": number,
        "status": status,
        "title": pull["title"],
        "head_sha": pull["head"]["sha"],
        "draft": pull["draft"],
        "updated_at": pull["updated_at"],
    }


def _change(fake: FakeGitHub, key: tuple[str, int], kind: str, rng: random.Random) -> None:
    """One realistic change of an open PR; ``updated_at`` moves forward."""
    repository, number = key
    if kind == "push":
        fake.update_pull(repository, number, head_sha=secrets.token_hex(20))
    elif kind == "retitle":
        fake.update_pull(repository, number, title=f"Retitled {rng.randrange(10**9)}")
    elif kind == "draft":
        fake.update_pull(repository, number, draft=not fake.pull(repository, number)["draft"])
    elif kind == "close":
        fake.update_pull(repository, number, state="closed")
    elif kind == "merge":
        fake.update_pull(repository, number, merged=True)
    else:
        raise ValueError(kind)


class Scenario:
    """One N: the fake with its PRs, and the pollers run against it one after another."""

    def __init__(self, args: argparse.Namespace, n: int, workdir: Path) -> None:
        self.args = args
        self.n = n
        self.workdir = workdir
        self.repos = [f"bench-org/repo-{i:03d}" for i in range(args.repos)]
        self.pulls = [(self.repos[i % args.repos], i // args.repos + 1) for i in range(n)]
        self.rng = random.Random(args.seed * 1_000_003 + n)
        # Disjoint, never-changed open PRs for our poller's change steps.
        fresh = args.changed + args.also_changed + args.hour_changes
        self._fresh = iter(self.rng.sample(self.pulls, fresh))
        self.tokens = {name: "ghp_" + secrets.token_hex(18) for name in ("ours", "plain", "cond")}
        self.cycles_per_hour = max(1, round(3600.0 / args.interval))

    def change_fresh(self, fake: FakeGitHub, count: int) -> list[tuple[str, int]]:
        changed = []
        for _ in range(count):
            key = next(self._fresh)
            _change(fake, key, self.rng.choice(CHANGE_KINDS), self.rng)
            changed.append(key)
        return changed

    async def run(self, fake: FakeGitHub, database_url: str) -> ScaleResult:
        started = time.monotonic()
        for token in self.tokens.values():
            fake.add_token(token)
        t0 = time.perf_counter()
        for repository, number in self.pulls:
            fake.add_pull(repository, number)
        setup = time.perf_counter() - t0
        _log(f"N={self.n:,}: {self.n:,} PRs in the fake ({setup:.1f}s); our poller")
        ours = await self._ours(fake, database_url)
        _log(f"N={self.n:,}: per-PR polling (unconditional)")
        plain = await self._per_pr(fake, conditional=False)
        _log(f"N={self.n:,}: per-PR polling (with ETags)")
        conditional = await self._per_pr(fake, conditional=True)
        a = self.args
        result = ScaleResult(
            self.n, a.repos, a.changed, a.also_changed, a.hour_changes,
            self.cycles_per_hour, setup, ours, plain, conditional,
        )  # fmt: skip
        result.seconds = time.monotonic() - started
        return result

    async def _step(self, child: Child, fake: FakeGitHub, label: str) -> Phase:
        fake.reset_requests()
        answer = await child.call("cycle")
        phase = _measure(Phase(label), list(fake.requests))
        phase.wall = phase.max_wall = float(answer["wall"])
        phase.cpu = float(answer["cpu"])
        phase.rss_peak = int(answer["rss_peak"])
        phase.errors = int(answer["errors"])
        if answer.get("errors") and answer.get("last_error"):
            phase.note = f"last error: {answer['last_error']}"
        return phase

    async def _verify(
        self, child: Child, fake: FakeGitHub, run: PollerRun, keys: Sequence[tuple[str, int]]
    ) -> int:
        expect = [_expected(fake, repository, number) for repository, number in keys]
        answer = await child.call("verify", expect=expect)
        run.mismatches += list(answer["mismatches"])
        run.verified += len(expect)
        return int(answer["rows"])

    async def _ours(self, fake: FakeGitHub, database_url: str) -> PollerRun:
        a = self.args
        config = {
            "token": self.tokens["ours"],
            "api_url": fake.url,
            "repositories": self.repos,
            "database_url": database_url,
            "concurrency": CONCURRENCY,
        }
        run = PollerRun("ours")
        child = await Child.spawn(f"ours-{self.n}", "ours", config, self.workdir)
        try:
            run.rss_start = int(child.ready["rss"])
            sweep = await self._step(child, fake, "first sweep")
            run.phases.append(sweep)
            sample = self.rng.sample(self.pulls, min(VERIFY_SAMPLE, self.n))
            rows = await self._verify(child, fake, run, sample)
            if rows != self.n:
                run.mismatches.append(f"after the first sweep: {rows:,} rows, not {self.n:,}")
            run.phases.append(await self._step(child, fake, "idle"))
            for k in (a.changed, a.also_changed):
                if k <= 0:
                    continue
                changed = self.change_fresh(fake, k)
                await self._change_step(child, fake, run, f"K={k} changed", changed)
            # The worst case for pagination: the largest K, all in one repository
            # (retitles: valid whatever the PR's state), capped by its PR count.
            repository = self.repos[0]
            numbers = [number for repo, number in self.pulls if repo == repository]
            k_one = min(max(a.changed, a.also_changed), len(numbers))
            concentrated = [(repository, number) for number in self.rng.sample(numbers, k_one)]
            for key in concentrated:
                _change(fake, key, "retitle", self.rng)
            await self._change_step(child, fake, run, f"K={k_one} in one repo", concentrated)
            run.phases.append(await self._hour(child, fake, run))
            steady = [p.rss_peak for p in run.phases[1:]]
            run.rss_steady_peak = max(steady, default=0)
            answer = await child.quit()
            peaks = [p.rss_peak for p in run.phases]
            run.rss_lifetime_peak = max([int(answer["max_rss"]), *peaks])
        finally:
            await child.close()
        return run

    async def _change_step(
        self,
        child: Child,
        fake: FakeGitHub,
        run: PollerRun,
        label: str,
        changed: Sequence[tuple[str, int]],
    ) -> None:
        """A cycle after ``changed`` were changed, the store check, and an idle cycle."""
        run.phases.append(await self._step(child, fake, label))
        run.change_steps.append((label, len(changed)))
        await self._verify(child, fake, run, changed)
        idle = "idle after " + label.removesuffix(" changed")
        run.phases.append(await self._step(child, fake, idle))

    async def _hour(self, child: Child, fake: FakeGitHub, run: PollerRun) -> Phase:
        """``cycles_per_hour`` cycles with ``hour_changes`` changes at random cycles."""
        cycles, changes = self.cycles_per_hour, self.args.hour_changes
        at = Counter(self.rng.randrange(cycles) for _ in range(changes))
        hour = Phase(f"hour: {cycles} cycles, {changes} changes", cycles=cycles)
        changed: list[tuple[str, int]] = []
        walls: list[float] = []
        where: Counter[str] = Counter()
        for cycle in range(cycles):
            changed += self.change_fresh(fake, at[cycle])
            step = await self._step(child, fake, f"hour cycle {cycle}")
            hour.requests += step.requests
            hour.points += step.points
            hour.cpu += step.cpu
            hour.errors += step.errors
            hour.rss_peak = max(hour.rss_peak, step.rss_peak)
            walls.append(step.wall)
            for part in step.where.split(", "):
                if part:
                    kind, _, count = part.rpartition(" x")
                    where[kind] += int(count.replace(",", ""))
            hour.note = hour.note or step.note
        hour.wall = sum(walls)
        hour.max_wall = max(walls)
        hour.where = ", ".join(f"{kind} x{n:,}" for kind, n in sorted(where.items()))
        if changed:
            await self._verify(child, fake, run, changed)
        return hour

    async def _per_pr(self, fake: FakeGitHub, *, conditional: bool) -> PollerRun:
        name = "cond" if conditional else "plain"
        config = {
            "token": self.tokens[name],
            "api_url": fake.url,
            "pulls": self.pulls,
            "concurrency": CONCURRENCY,
            "conditional": conditional,
        }
        run = PollerRun(name)
        child = await Child.spawn(f"per-pr-{name}-{self.n}", "per-pr", config, self.workdir)
        try:
            run.rss_start = int(child.ready["rss"])
            if conditional:
                run.phases.append(await self._step(child, fake, "priming (first ETags)"))
            run.phases.append(await self._step(child, fake, "idle"))
            for key in self.rng.sample(self.pulls, self.args.changed):
                _change(fake, key, "retitle", self.rng)
            run.phases.append(await self._step(child, fake, f"K={self.args.changed} changed"))
            run.rss_steady_peak = max(p.rss_peak for p in run.phases)
            answer = await child.quit()
            peaks = [p.rss_peak for p in run.phases]
            run.rss_lifetime_peak = max([int(answer["max_rss"]), *peaks])
        finally:
            await child.close()
        return run


# -- databases ----------------------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _pg_admin(admin_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _database(args: argparse.Namespace, n: int, workdir: Path) -> AsyncIterator[str]:
    """A fresh database for one N: a SQLite file, or a scratch PostgreSQL database."""
    if args.postgres is None:
        yield f"sqlite:///{workdir / f'poller-{n}.db'}"
        return
    name = f"bench_poll_{os.getpid()}_{n}_{secrets.token_hex(3)}"
    try:
        await _pg_admin(args.postgres, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        raise BenchError(f"cannot create a scratch database via {args.postgres}: {exc}") from exc
    try:
        yield _with_database(args.postgres, name)
    finally:
        await _pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the report ---------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[bench_poll] {message}", file=sys.stderr, flush=True)


def _mb(value: int) -> str:
    return f"{value / 2**20:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """Columns aligned: the first ``left`` columns and the "where" column flush left."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            flush_left = i < left or header[i].startswith("where")
            out.append(cell.ljust(width) if flush_left else cell.rjust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _phase_rows(run: PollerRun) -> list[list[str]]:
    rows = []
    for p in run.phases:
        wall = f"{p.wall * 1000:,.1f}"
        if p.cycles > 1:
            wall = f"{p.wall / p.cycles * 1000:,.1f} avg, {p.max_wall * 1000:,.1f} max"
        where = p.where + (f"; {p.note}" if p.note else "")
        rows.append(
            [
                p.label,
                f"{p.requests:,}",
                f"{p.points:,}",
                wall,
                f"{p.cpu * 1000:,.0f}",
                _mb(p.rss_peak),
                str(p.errors),
                where,
            ]
        )
    return rows


_PHASE_HEADER = [
    "step",
    "requests",
    "points",
    "wall ms",
    "cpu ms",
    "RSS MB",
    "errors",
    "where the requests went",
]


def _per_hour(result: ScaleResult) -> dict[str, tuple[int, int]]:
    """(requests, points) per hour at the interval, per poller (see the module docs)."""
    hour = result.ours.phases[-1]
    k = max(1, result.k)
    plain_idle = result.plain.phase("idle")
    cond_idle = result.conditional.phase("idle")
    cond_changed = result.conditional.phase(f"K={result.k} changed")
    per_change = cond_changed.points / k
    cph = result.cycles_per_hour
    return {
        "ours": (hour.requests, hour.points),
        "plain": (plain_idle.requests * cph, plain_idle.points * cph),
        "cond": (
            cond_idle.requests * cph,
            cond_idle.points * cph + round(result.hour_changes * per_change),
        ),
    }


def report_scale(result: ScaleResult, backend: str) -> str:
    n, r, k = result.n, result.repos, result.k
    out = [
        "",
        f"=== N={n:,} PRs over R={r} repositories ({n // r:,} per repository), "
        f"{backend}, concurrency {CONCURRENCY} ===",
        f"(fake GitHub set up in {result.setup_seconds:.1f}s; this N took {result.seconds:.1f}s)",
        "",
        "Our poller: PRSyncWorker.force_sync() per cycle (list per repository, sort=updated, ETag)",
        _table(_PHASE_HEADER, _phase_rows(result.ours), left=1),
        f"RSS: {_mb(result.ours.rss_start)} MB after start-up, peak "
        f"{_mb(result.ours.rss_lifetime_peak)} MB over the process's life (first sweep "
        f"included), {_mb(result.ours.rss_steady_peak)} MB over the cycles after it",
        "(wall ms includes the fake's time to answer: it renders a whole list page to"
        " compute its ETag, even for a 304; cpu ms is the poller's process alone)",
        f"Store check: {result.ours.verified:,} PRs compared with the fake, "
        f"{len(result.ours.mismatches)} mismatch(es)"
        + "".join(f"\n  {m}" for m in result.ours.mismatches[:10]),
        "",
        "Per-PR polling, the original design: unconditional GET /repos/{o}/{r}/pulls/{n} "
        "per tracked PR",
        _table(_PHASE_HEADER, _phase_rows(result.plain), left=1),
        f"RSS peak {_mb(result.plain.rss_lifetime_peak)} MB (HTTP and JSON only, no database)",
        "",
        "Per-PR polling with an ETag per PR (NOT the original design; for fairness)",
        _table(_PHASE_HEADER, _phase_rows(result.conditional), left=1),
        f"RSS peak {_mb(result.conditional.rss_lifetime_peak)} MB (HTTP and JSON only, no "
        "database)",
        "",
    ]
    ours, plain, cond = result.ours, result.plain, result.conditional
    changed = f"K={k} changed"

    def cells(label: str, pick: Callable[[PollerRun], str]) -> list[str]:
        return [label, pick(ours), pick(plain), pick(cond)]

    hourly = _per_hour(result)
    cph = result.cycles_per_hour
    side = [
        cells("idle cycle: requests", lambda run: f"{run.phase('idle').requests:,}"),
        cells("idle cycle: rate-limit points", lambda run: f"{run.phase('idle').points:,}"),
        cells(f"{changed}: requests", lambda run: f"{run.phase(changed).requests:,}"),
        cells(f"{changed}: rate-limit points", lambda run: f"{run.phase(changed).points:,}"),
        cells("idle cycle: wall ms", lambda run: f"{run.phase('idle').wall * 1000:,.1f}"),
        cells(f"{changed}: wall ms", lambda run: f"{run.phase(changed).wall * 1000:,.1f}"),
        cells("peak RSS MB", lambda run: _mb(run.rss_lifetime_peak)),
        cells(f"requests per hour ({cph} cycles)", lambda run: f"{hourly[run.name][0]:,}"),
        cells(
            f"rate-limit points per hour ({result.hour_changes} changes)",
            lambda run: f"{hourly[run.name][1]:,}",
        ),
    ]
    out += [
        "Side by side",
        _table(["", "ours", "per-PR", "per-PR + ETag"], side, left=1),
        f"(per hour: ours = measured over {cph} simulated cycles; per-PR = measured points "
        f"per cycle x {cph}; per-PR + ETag = {cph} x idle points + {result.hour_changes} x "
        f"points per changed PR, measured. GitHub's primary limit is {GITHUB_RATE_LIMIT:,} "
        "points per token per hour; the fake's was raised so per-PR polling ran unthrottled.)",
    ]
    return "\n".join(out)


@dataclass
class Check:
    ok: bool
    text: str


def checks_for(result: ScaleResult) -> list[Check]:
    n, r = result.n, result.repos
    ours = result.ours
    tag = f"N={n:,} R={r}"
    found: list[Check] = []
    idle = [p for p in ours.phases if p.label == "idle" or p.label.startswith("idle after")]
    worst = max(idle, key=lambda p: (p.requests, p.points))
    found.append(
        Check(
            worst.requests <= r,
            f"{tag}: idle cycle <= R = {r} requests: worst of {len(idle)} idle cycles "
            f"{worst.requests:,} ({worst.label})",
        )
    )
    found.append(
        Check(
            worst.points == 0,
            f"{tag}: idle cycle costs 0 rate-limit points: worst {worst.points:,}",
        )
    )
    for label, k in ours.change_steps:
        phase = ours.phase(label)
        bound = r + math.ceil(k / PER_PAGE)
        found.append(
            Check(
                phase.requests <= bound,
                f"{tag}: {label}: <= R + ceil(K/100) = {bound} requests: "
                f"{phase.requests:,} (rate-limit points: {phase.points:,})",
            )
        )
    hourly = _per_hour(result)
    ours_points, plain_points = hourly["ours"][1], hourly["plain"][1]
    ratio = plain_points / ours_points if ours_points else math.inf
    found.append(
        Check(
            ratio >= TARGET_POINTS_RATIO,
            f"{tag}: >= {TARGET_POINTS_RATIO:.0f}x fewer rate-limit points per hour than "
            f"per-PR polling: {plain_points:,} vs {ours_points:,} = {ratio:,.0f}x",
        )
    )
    errors = sum(p.errors for p in ours.phases)
    found.append(
        Check(
            not ours.mismatches and errors == 0,
            f"{tag}: store matches the fake after every change, no sync errors: "
            f"{len(ours.mismatches)} mismatch(es) in {ours.verified:,} PRs checked, "
            f"{errors} sync error(s)",
        )
    )
    return found


def rss_check(small: ScaleResult, large: ScaleResult) -> list[Check]:
    a, b = small.ours.rss_lifetime_peak, large.ours.rss_lifetime_peak
    sa, sb = small.ours.rss_steady_peak, large.ours.rss_steady_peak
    ratio = b / a if a else math.inf
    steady = sb / sa if sa else math.inf
    return [
        Check(
            ratio <= TARGET_RSS_RATIO,
            f"RSS flat in N (peak within {TARGET_RSS_RATIO}x): our poller's peak RSS "
            f"{_mb(a)} MB at N={small.n:,}, {_mb(b)} MB at N={large.n:,} = {ratio:.2f}x "
            f"(after the first sweep: {_mb(sa)} vs {_mb(sb)} MB = {steady:.2f}x)",
        )
    ]


# -- the command line ---------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Poller benchmark against the fake GitHub (see the module docstring)."
    )
    parser.add_argument("--prs", type=int, default=1000, help="tracked PRs N (default 1000)")
    parser.add_argument("--repos", type=int, default=10, help="repositories R (default 10)")
    parser.add_argument("--changed", type=int, default=50, help="changed PRs K (default 50)")
    parser.add_argument(
        "--also-changed", type=int, default=250, help="a second K (default 250; 0: skip)"
    )
    parser.add_argument(
        "--also-n",
        type=int,
        default=20000,
        help="a second N, for RSS flatness (default 20000; 0: skip)",
    )
    parser.add_argument(
        "--hour-changes",
        type=int,
        default=50,
        help="PR changes in the simulated hour (default 50)",
    )
    parser.add_argument(
        "--interval", type=float, default=60.0, help="poll interval in seconds (default 60)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_ADMIN_URL,
        default=None,
        metavar="ADMIN_URL",
        help=f"use a scratch PostgreSQL database (created and dropped via ADMIN_URL, "
        f"default {DEFAULT_ADMIN_URL}) instead of a SQLite file",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return args
    sizes = [args.prs] + ([args.also_n] if args.also_n else [])
    if not 1 <= args.repos <= MAX_REPOS:
        parser.error(f"--repos must be between 1 and {MAX_REPOS}")
    for n in sizes:
        if not args.repos <= n <= MAX_PRS:
            parser.error(f"N must be between R ({args.repos}) and {MAX_PRS:,}, got {n}")
    if args.changed < 1 or args.also_changed < 0 or args.hour_changes < 0:
        parser.error("--changed must be >= 1; --also-changed and --hour-changes >= 0")
    needed = args.changed + args.also_changed + args.hour_changes
    if needed > min(sizes):
        parser.error(f"K + K2 + hour changes ({needed}) exceed N ({min(sizes)})")
    if not 3600.0 / MAX_HOUR_CYCLES <= args.interval <= 3600.0:
        parser.error(f"--interval must be between {3600 / MAX_HOUR_CYCLES:g} and 3600 s")
    return args


async def _main(args: argparse.Namespace) -> int:
    from webhook_service.testing.fake_github import FakeGitHub

    started = time.monotonic()
    sizes = [args.prs] + ([args.also_n] if args.also_n and args.also_n != args.prs else [])
    backend = "PostgreSQL (scratch database)" if args.postgres else "SQLite file"
    results: list[ScaleResult] = []
    with tempfile.TemporaryDirectory(prefix="bench_poll_") as tmp:
        workdir = Path(tmp)
        for n in sizes:
            async with (
                FakeGitHub(rate_limit=FAKE_RATE_LIMIT) as fake,
                _database(args, n, workdir) as database_url,
            ):
                result = await Scenario(args, n, workdir).run(fake, database_url)
            results.append(result)
            print(report_scale(result, backend), flush=True)
    checks = [check for result in results for check in checks_for(result)]
    if len(results) > 1:
        checks += rss_check(results[0], results[1])
    else:
        checks.append(Check(False, "RSS flat in N: not measured (--also-n 0)"))
    print("\nTargets")
    for check in checks:
        print(f"  {'PASS' if check.ok else 'FAIL'}  {check.text}")
    elapsed = time.monotonic() - started
    passed = all(check.ok for check in checks)
    print(f"\n{'ALL PASS' if passed else 'SOME FAIL'}; the run took {elapsed:.1f}s", flush=True)
    return 0 if passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.child is not None:
        return child_main(args.child, args.config)
    try:
        return asyncio.run(_main(args))
    except BenchError as exc:
        print(f"bench_poll: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
