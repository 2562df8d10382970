"""The closed-loop load: wrk with ``replay.lua`` sends every delivery of a workload
exactly once over C keep-alive connections and stops when all are answered. Legs (one
wrk each, say one per replica) run at once, on the one monotonic clock every wrk reads.
Throughput is answers / (last answer - first request); latencies are each request's."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.deliveries import Workload
from bench.report import BenchError, percentile
from bench.servers import WEBHOOK_PATH, Cores, Snapshot

LUA = Path(__file__).resolve().with_name("replay.lua")
MAX_SECONDS = 120


def find_wrk() -> str:
    if wrk := shutil.which("wrk"):
        return wrk
    raise BenchError("wrk is not on PATH; install it, e.g. `apt-get install -y wrk`")


@dataclass(slots=True)
class LoadResult:
    complete: bool = False  # every delivery answered
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_us: list[int] = field(default_factory=list)
    ok_guids: list[str] = field(default_factory=list)
    first_us: int = 0  # the first request and the last answer, CLOCK_MONOTONIC (us)
    last_us: int = 0
    server_cores: float = 0.0
    cpu: Cores = field(default_factory=Cores)  # machine, PostgreSQL
    wall: float = 0.0

    @property
    def rate(self) -> float:
        seconds = (self.last_us - self.first_us) / 1e6 if self.first_us and self.last_us else 0.0
        return self.answered / seconds if seconds > 0 else 0.0

    @property
    def ok(self) -> int:
        return sum(v for k, v in self.statuses.items() if 200 <= k < 300)

    @property
    def not_ok(self) -> int:
        return self.answered - self.ok

    def ms(self, pct: float) -> float:
        """Nearest-rank percentile of the per-request latencies, in ms."""
        return percentile(self.latencies_us, pct) / 1000.0


@dataclass(frozen=True, slots=True)
class Leg:
    """One wrk process: its share of the workload (a manifest), against one server."""

    port: int
    manifest: Path
    deliveries: int
    connections: int
    out_dir: Path
    server_pid: int | None = None


def split(workload: Workload, parts: int, directory: Path) -> list[tuple[Path, int]]:
    """Deliveries k, k+parts, ... for part k, as a round-robin balancer deals them."""
    if parts == 1:
        return [(workload.manifest, workload.deliveries)]
    paths = [directory / f"manifest.{k + 1}.txt" for k in range(parts)]
    with contextlib.ExitStack() as stack, workload.manifest.open() as lines:
        outs = [stack.enter_context(path.open("w")) for path in paths]
        for index, line in enumerate(lines):
            outs[index % parts].write(line)
    return [(p, len(range(k, workload.deliveries, parts))) for k, p in enumerate(paths)]


def run(wrk: str, workload: Workload, legs: Sequence[Leg], *, max_seconds: int = MAX_SECONDS,
        database: str | None = None, sent_log: bool = False,
        ) -> tuple[LoadResult, list[LoadResult]]:  # fmt: skip
    """One wrk per leg, all at once, until every leg has all its answers: the whole (from
    the first request of any leg to the last answer of any; machine and PostgreSQL CPU)
    and each leg (with its own server's CPU)."""
    procs: list[subprocess.Popen[bytes]] = []
    before = Snapshot.take([leg.server_pid for leg in legs], database)
    with contextlib.ExitStack() as stack:
        for leg in legs:
            leg.out_dir.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "BENCH_MANIFEST": str(leg.manifest), "BENCH_OUT": str(leg.out_dir),
                   "BENCH_REQUESTS": str(workload.requests)} | ({"BENCH_SENT_LOG": "1"} if sent_log
                                                               else {})  # fmt: skip
            argv = [wrk, "-t", "1", "-c", str(leg.connections), "-d", f"{max_seconds}s",
                    "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{leg.port}{WEBHOOK_PATH}"]
            out = stack.enter_context((leg.out_dir / "wrk.out").open("wb"))
            procs.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=out))  # fmt: skip
            stack.callback(procs[-1].kill)  # if still running: wrk would sleep the whole -d
        finished = [False] * len(legs)
        while time.monotonic() < before.at + max_seconds + 15 and not all(finished):
            finished = [(leg.out_dir / "done").exists() for leg in legs]
            if any(p.poll() is not None and not f for p, f in zip(procs, finished, strict=True)):
                break  # a wrk gave up (or failed) before every answer
            time.sleep(0.01)
        after = Snapshot.take([leg.server_pid for leg in legs], database)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    cores = Cores.between(before, after)
    parts = [_parse(leg.out_dir, procs[i]) for i, leg in enumerate(legs)]
    for part, leg, done in zip(parts, legs, finished, strict=True):
        part.complete = done and part.answered == leg.deliveries
        part.wall, part.server_cores = cores.seconds, cores.pids.get(leg.server_pid or 0, 0.0)
    whole = parts[0] if len(parts) == 1 else _merge(parts)
    whole.complete = all(p.complete for p in parts) and whole.answered == workload.deliveries
    whole.cpu = cores
    return whole, parts


def _merge(parts: Sequence[LoadResult]) -> LoadResult:
    """The legs as one, from the first request of any to the last answer of any."""
    return LoadResult(
        False, sum(p.answered for p in parts), sum((p.statuses for p in parts), Counter()),
        [x for p in parts for x in p.latencies_us], [g for p in parts for g in p.ok_guids],
        min((p.first_us for p in parts if p.first_us), default=0), max(p.last_us for p in parts),
        sum(p.server_cores for p in parts), wall=max(p.wall for p in parts))


def _parse(out_dir: Path, proc: subprocess.Popen[bytes]) -> LoadResult:
    """replay.lua's results.txt."""
    if not (path := out_dir / "results.txt").exists():
        output = (out_dir / "wrk.out").read_text(errors="replace")
        raise BenchError(f"wrk produced no results (status {proc.returncode}):\n{output}")
    r = LoadResult()
    with path.open() as lines:
        for line in lines:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "lat":
                r.latencies_us.append(int(float(rest)))
            elif kind == "ok":
                r.ok_guids.append(rest)
            elif kind == "status":
                code, count = rest.split()
                r.statuses[int(code)] += int(count)
            elif kind == "span":
                r.answered, r.first_us, r.last_us = map(int, rest.split())
    return r
