"""Ingest benchmark: N signed, realistic pull_request deliveries at concurrency C.

    .venv-dev/bin/python scripts/bench_ingest.py [--backend postgresql|sqlite|both]
        [-n N] [-c C] [--prs P] [--replicas R [--message-queue URL|none]] [--json FILE]

Workload: N deliveries about P = N/4 PRs over 4 repositories, rendered from the
recorded fixtures with realistic stories (open, update, close/merge; see
``bench/deliveries.py``), sent once each by wrk over C connections (closed loop).
Server under test: ``webhook-service serve`` (one uvicorn worker) on a scratch database
per backend; then SIGKILL, and every 2xx delivery must be stored and applied, nothing
else stored, and each PR's row as its last delivery says.
Baselines, same run, same load: a wrk sink (the load generator's ceiling) and a bare
Starlette endpoint under the same uvicorn settings. With ``--replicas R`` (PostgreSQL):
R replicas on one database and ``SOCKETIO_MESSAGE_QUEUE`` (the local Redis if it
answers), one wrk each with C/R connections, against the one-replica run.
Targets (2-core machine, C = 16): PostgreSQL >= 2,000 deliveries/s with p99 <= 50 ms;
SQLite >= 800/s; peak RSS <= 120 MB; every check above (replicas: all but the rate).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import sys
from argparse import Namespace
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import load, report, scratch_db
from bench.deliveries import REPOSITORIES, Verification, Workload, generate, verify
from bench.load import LoadResult
from bench.report import Outcome, Rows, log, verdict
from bench.servers import Sampler, Server, background_load, redis_answers

TARGET_PG_RATE, TARGET_PG_P99_MS, TARGET_SQLITE_RATE, TARGET_RSS_MB = 2000.0, 50.0, 800.0, 120.0
MAX_DELIVERIES, MAX_REPLICAS = 200_000, 4
DEFAULT_MESSAGE_QUEUE = "redis://127.0.0.1:6379/0"
#: The baselines (``servers.KINDS``) measured with the same load, and their labels.
REFERENCES = {"sink": "sink (ceiling)", "bare": "bare Starlette"}


@dataclass(slots=True)
class Replica:
    """One ``webhook-service serve`` of a run: its share of the load, memory and CPU."""

    port: int
    load: LoadResult  # with one replica, the whole load
    peak_rss_mb: float


@dataclass(slots=True)
class BackendResult:
    backend: str
    load: LoadResult
    verification: Verification
    seconds: float
    replicas: list[Replica]
    message_queue: str | None = None

    @property
    def label(self) -> str:
        n = len(self.replicas)
        return self.backend if n == 1 else f"{self.backend} x{n}"

    @property
    def peak_rss_mb(self) -> float:
        return max(r.peak_rss_mb for r in self.replicas)

    def each(self, fmt: Callable[[Replica], str]) -> str:
        return " / ".join(fmt(r) for r in self.replicas)


def bench_reference(kind: str, args: Namespace, workload: Workload, tmp: Path) -> LoadResult:
    """One baseline server with the whole load."""
    server = Server(kind, tmp / kind / "server.log", {"WEBHOOK_SECRET": workload.secret})
    try:
        server.wait_ready()
        log(f"{kind}: ready on port {server.port}; sending load")
        leg = load.Leg(server.port, workload.manifest, workload.deliveries, args.concurrency,
                       tmp / kind / "wrk", server.pid)  # fmt: skip
        return load.run(args.wrk, workload, [leg], target=kind, threads=args.threads,
                        max_seconds=args.max_seconds)[0]  # fmt: skip
    finally:
        server.close()


def bench_service(backend: str, args: Namespace, workload: Workload, tmp: Path,
                  replicas: int = 1, queue: str | None = None) -> BackendResult:  # fmt: skip
    """The workload against ``replicas`` servers on one scratch database, one wrk each
    (C/replicas connections, every replica-th delivery), all at once."""
    import time

    started = time.monotonic()
    name = backend if replicas == 1 else f"{backend}-x{replicas}"
    run_dir = tmp / name
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(scratch_db.scratch(
            backend, args.postgres_url, tmp, prefix="bench_ingest", keep=args.keep,
            settings=args.pg_set))  # fmt: skip
        env = {"WEBHOOK_SECRET": workload.secret, "API_TOKEN": secrets.token_hex(16),
               "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}  # fmt: skip
        if queue:
            env["SOCKETIO_MESSAGE_QUEUE"] = queue
        servers: list[Server] = []
        samplers: list[Sampler] = []
        try:
            # One after the other, so that each start-up (and migration) is alone.
            for k in range(replicas):
                suffix = "" if replicas == 1 else f".{k + 1}"
                servers.append(Server("webhook-service", run_dir / f"server{suffix}.log", env,
                                      name=f"webhook-service ({backend}{suffix})"))  # fmt: skip
                stack.callback(servers[-1].close)
                samplers.append(Sampler(servers[-1].pid))
                servers[-1].wait_ready()
            log(f"{name}: server(s) ready on ports {[s.port for s in servers]}; sending load")
            shares = zip(servers, load.split(workload, replicas, run_dir), strict=True)
            legs = [load.Leg(s.port, manifest, count, args.concurrency // replicas,
                             run_dir / ("wrk" if replicas == 1 else f"wrk.{k + 1}"), s.pid)
                    for k, (s, (manifest, count)) in enumerate(shares)]  # fmt: skip
            whole, parts = load.run(args.wrk, workload, legs, target=f"webhook-service/{name}",
                                    threads=args.threads, max_seconds=args.max_seconds,
                                    database=scratch_db.database_name(url))  # fmt: skip
        finally:
            peaks = [sampler.stop() for sampler in samplers]
        for server in servers:  # every 2xx must already be durable
            server.kill()
            if server.proc.returncode not in (0, -signal.SIGKILL):
                log(f"{server.name}: the server had exited with {server.proc.returncode}")
        log(f"{name}: verifying the database after SIGKILL of the server(s)")
        verification = verify(url, whole.ok_guids, workload.expected)
    return BackendResult(backend, whole, verification, time.monotonic() - started, [
        Replica(s.port, part, peak / 2**20)
        for s, part, peak in zip(servers, parts, peaks, strict=True)
    ], queue)  # fmt: skip


# -- the report ---------------------------------------------------------------------------


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))


def _ratio(r: BackendResult, one: BackendResult | None) -> str:
    if len(r.replicas) == 1 or one is None or not one.load.rate:
        return "-"
    return f"{r.load.rate / one.load.rate:.2f}"


def _header(w: Workload, args: Namespace, results: Sequence[BackendResult],
            refs: dict[str, LoadResult], pg: str | None, busy: float) -> None:  # fmt: skip
    print(f"\nbench_ingest: N={w.deliveries} deliveries, C={args.concurrency} connections (wrk -t "
          f"{args.threads}), P={w.prs} PRs over {len(REPOSITORIES)} repositories, bodies "
          f"{w.body_bytes / w.deliveries / 1024:.1f} KiB on average")
    print("  actions: " + ", ".join(f"{k} {v}" for k, v in w.actions.most_common()))
    print(f"  expected final PR status: {_counts(w.final_status)}; {w.transitions} status "
          "transitions after the first sighting")
    print(f"  machine: {os.cpu_count()} CPUs, {busy:.2f} cores busy before the run (other work: "
          "it competes with the benchmark); uvicorn: 1 worker (uvloop + httptools)")
    for r in results:
        if len(r.replicas) > 1 or r.message_queue:
            print(f"  {r.label}: SOCKETIO_MESSAGE_QUEUE {r.message_queue or 'none'}" + (
                f"; {len(r.replicas)} processes on one database, one wrk each (C/"
                f"{len(r.replicas)} connections, deliveries dealt round-robin), all at once"
                if len(r.replicas) > 1 else ""))  # fmt: skip
    if pg:
        print(f"  PostgreSQL: {pg}" + "".join(f", {s}" for s in args.pg_set))
    print("\nLoad generator (wrk + replay.lua), same requests, C connections:")
    for kind, ref in refs.items():
        print(f"  {REFERENCES[kind]:<16} {ref.rate:>8,.0f} deliveries/s  p50 {ref.ms(50):6.2f} ms"
              f"  p99 {ref.ms(99):6.2f} ms  wrk CPU {ref.wrk_cores:4.2f}  server CPU "
              f"{ref.server_cores:4.2f}  machine busy {ref.cpu.machine:4.2f}/{os.cpu_count()}  "
              f"{ref.ok} 2xx / {ref.not_ok} other" + ("" if ref.complete else "  INCOMPLETE"))


def _rows(w: Workload, results: Sequence[BackendResult], bare: LoadResult) -> Rows:
    single = {r.backend: r for r in results if len(r.replicas) == 1}
    figures: list[tuple[str, Callable[[BackendResult], str]]] = [
        ("deliveries/s", lambda r: f"{r.load.rate:,.0f}"),
        ("ack p50 (ms)", lambda r: f"{r.load.ms(50):.2f}"),
        ("ack p99 (ms)", lambda r: f"{r.load.ms(99):.2f}"),
        ("ack max (ms)", lambda r: f"{r.load.ms(100):.2f}"),
        ("peak RSS (MB)", lambda r: r.each(lambda x: f"{x.peak_rss_mb:.1f}")),
        ("bare Starlette deliv/s", lambda r: f"{bare.rate:,.0f}"),
        ("service / bare", lambda r: f"{r.load.rate / bare.rate:.2f}" if bare.rate else "-"),
        ("2xx / non-2xx", lambda r: f"{r.load.ok} / {r.load.not_ok}"),
        ("stored & applied", lambda r: f"{r.verification.applied} / {r.verification.rows}"),
        ("2xx missing / extra", lambda r: f"{r.verification.missing} / {r.verification.extra}"),
        ("pull_requests rows", lambda r: f"{r.verification.prs} (want {w.prs})"),
        ("PR final state wrong", lambda r: str(r.verification.wrong_prs)),
        ("server CPU (cores)", lambda r: r.each(lambda x: f"{x.load.server_cores:.2f}")),
        ("wrk CPU (cores)", lambda r: f"{r.load.wrk_cores:.2f}"),
        ("postgres CPU (cores)",
         lambda r: f"{r.load.cpu.postgres:.2f}" if r.backend == "postgresql" else "-"),
        ("machine busy (cores)", lambda r: f"{r.load.cpu.machine:.2f}"),
        ("load time (s)", lambda r: f"{r.load.seconds:.2f}"),
    ]  # fmt: skip
    if len(single) < len(results):
        figures.append(("vs one replica (rate)", lambda r: _ratio(r, single.get(r.backend))))
    return [(label, [cell(r) for r in results]) for label, cell in figures]


def _checks(w: Workload, r: BackendResult) -> dict[str, tuple[bool, str] | None]:
    """The targets of one run (None: not applicable); the rate is one replica's."""
    pg = r.backend == "postgresql"
    rate = TARGET_PG_RATE if pg else TARGET_SQLITE_RATE
    stored = r.load.complete and r.load.not_ok == 0 and r.verification.passed(r.load.ok, w.prs)
    return {
        "target deliveries/s": (r.load.rate >= rate and r.load.complete, f">= {rate:,.0f}")
        if len(r.replicas) == 1 else None,
        "target p99": (r.load.ms(99) <= TARGET_PG_P99_MS, f"<= {TARGET_PG_P99_MS:.0f} ms")
        if pg else None,
        "target peak RSS": (r.peak_rss_mb <= TARGET_RSS_MB, f"<= {TARGET_RSS_MB:.0f} MB"),
        "target 2xx stored+applied, PRs right": (stored, "all"),
    }  # fmt: skip


def _details(r: BackendResult, one: BackendResult | None) -> None:
    v, tag = r.verification, r.label
    print(f"{tag}: outcomes: {_counts(v.details)}")
    print(f"{tag}: stored PR status: {_counts(v.pr_status)}; run took {r.seconds:.1f}s")
    for example in v.wrong_examples:
        print(f"{tag}: PR final state wrong: {example}")
    for k, rep in enumerate(r.replicas if len(r.replicas) > 1 else [], 1):
        part = rep.load
        print(f"{tag}: replica {k} (port {rep.port}): {part.ok:,} of {part.answered:,} acknowledged"
              f" 2xx, {part.rate:,.0f} deliveries/s over its {part.seconds:.2f} s, p50 "
              f"{part.ms(50):.2f} ms, p99 {part.ms(99):.2f} ms, peak RSS {rep.peak_rss_mb:.1f} MB,"
              f" CPU {part.server_cores:.2f} cores" + ("" if part.complete else "  INCOMPLETE"))
    if len(r.replicas) > 1 and one is not None:
        print(f"{tag}: one replica, same workload, same run: {one.load.rate:,.0f} deliveries/s, "
              f"p99 {one.load.ms(99):.2f} ms -> {len(r.replicas)} replicas / 1 = {_ratio(r, one)}")


def report_all(w: Workload, args: Namespace, refs: dict[str, LoadResult],
               results: Sequence[BackendResult], pg: str | None, busy: float) -> Outcome:
    """Print the tables; whether every target passes, and the figures."""
    _header(w, args, results, refs, pg, busy)
    rows = _rows(w, results, refs["bare"])
    passed = True
    checks: dict[str, list[str]] = {}
    for i, r in enumerate(results):
        for label, check in _checks(w, r).items():
            cells = checks.setdefault(label, ["n/a"] * len(results))
            if check is not None:
                passed &= check[0]
                cells[i] = f"{verdict(check[0])} ({check[1]})"
    print()
    report.table([r.label for r in results], [*rows, *checks.items()])
    print()
    single = {r.backend: r for r in results if len(r.replicas) == 1}
    for r in results:
        _details(r, single.get(r.backend))
    figures: dict[str, Any] = {k: {"rate": r.rate, "p99_ms": r.ms(99)} for k, r in refs.items()}
    for r in results:
        figures[r.label] = {"rate": r.load.rate, "p50_ms": r.load.ms(50), "p99_ms": r.load.ms(99),
                            "peak_rss_mb": r.peak_rss_mb, "vs_bare": r.load.rate / refs["bare"].rate
                            if refs["bare"].rate else None}  # fmt: skip
    return passed, figures


# -- the command line ---------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_ingest.py", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--backend", choices=("postgresql", "sqlite", "both"), default="both", help="(both)")
    add("-n", "--deliveries", type=int, default=20_000, help="N (20000)")
    add("-c", "--concurrency", type=int, default=16, help="C (16)")
    add("--prs", type=int, help="P distinct pull requests (N/4)")
    add("--threads", type=int, default=1, help="wrk threads (1); must divide C. One keeps the "
        "deliveries in order (with 2, about 1%% overtake an earlier one about the same PR)")
    add("--max-seconds", type=int, default=load.MAX_SECONDS, help="give up a load run after this "
        "long (120, the most)")
    add("--seed", type=int, default=1, help="workload random seed (1)")
    add("--postgres-url", default=scratch_db.admin_url(),
        help="where to create the scratch database (BENCH_POSTGRES_URL or %(default)s)")
    add("--pg-set", action="append", default=[], metavar="NAME=VALUE",
        help="a setting of the scratch database (ALTER DATABASE ... SET); repeatable")
    add("--replicas", type=int, default=1, metavar="R", help=f"(1) R > 1 (PostgreSQL, at most "
        f"{MAX_REPLICAS}): after the one-replica run, R replicas on one database, one wrk each")
    add("--message-queue", metavar="URL", help="the replicas' SOCKETIO_MESSAGE_QUEUE or 'none' "
        f"({DEFAULT_MESSAGE_QUEUE} if it answers); with --replicas 1: what the queue costs")
    report.common_options(parser)
    args = parser.parse_args(argv)
    n, c, r = args.deliveries, args.concurrency, args.replicas
    args.prs = args.prs if args.prs is not None else max(1, n // 4)
    args.backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    problems = [
        (not 1 <= n <= MAX_DELIVERIES, f"-n must be between 1 and {MAX_DELIVERIES:,}"),
        (not 1 <= c <= 1024, "-c must be between 1 and 1024"),
        (not 1 <= args.prs <= n, "--prs must be between 1 and N"),
        (args.threads < 1 or c % args.threads, "--threads must divide -c"),
        (not 5 <= args.max_seconds <= load.MAX_SECONDS, "--max-seconds must be between 5 and 120"),
        (not all(re.fullmatch(r"[a-z_][a-z0-9_.]*=[^\x00]*", s) for s in args.pg_set),
         "--pg-set wants NAME=VALUE"),
        (not 1 <= r <= MAX_REPLICAS, f"--replicas must be between 1 and {MAX_REPLICAS}"),
        (r > 1 and args.backends != ["postgresql"], "--replicas R > 1 is PostgreSQL only: pass "
         "--backend postgresql (a SQLite file is not shared across replicas)"),
        (r > 1 and bool(c % r or (c // r) % args.threads), "--replicas must divide -c, and "
         "--threads C/R (each replica's wrk gets C/R connections)"),
    ]  # fmt: skip
    for failed, message in problems:
        if failed:
            parser.error(message)
    return args


def _queue(option: str | None) -> str | None:
    """The replicas' SOCKETIO_MESSAGE_QUEUE: the option's, or the local Redis if up."""
    if option is not None:
        return None if option.lower() == "none" else option
    if redis_answers(DEFAULT_MESSAGE_QUEUE):
        return DEFAULT_MESSAGE_QUEUE
    log(f"no Redis answers at {DEFAULT_MESSAGE_QUEUE}: the replicas run without a message queue")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)

    def body(tmp: Path) -> Outcome:
        args.wrk = load.find_wrk()
        pg = scratch_db.durability(args.postgres_url) if "postgresql" in args.backends else None
        busy = background_load()
        log(f"generating {args.deliveries} deliveries about {args.prs} PRs in {tmp}")
        w = generate(tmp, args.deliveries, args.prs, args.seed)
        log(f"generated {w.requests.stat().st_size / 2**20:.0f} MiB in {w.seconds:.1f}s")
        refs = {kind: bench_reference(kind, args, w, tmp) for kind in REFERENCES}
        # One replica: a message queue only if asked for (what it alone costs).
        one = _queue(args.message_queue) if args.replicas == 1 and args.message_queue else None
        results = [bench_service(b, args, w, tmp, queue=one) for b in args.backends]
        if args.replicas > 1:
            queue = _queue(args.message_queue)
            results.append(bench_service("postgresql", args, w, tmp, args.replicas, queue))
        return report_all(w, args, refs, results, pg, busy)

    return report.run("bench_ingest", args, body)


if __name__ == "__main__":
    sys.exit(main())
