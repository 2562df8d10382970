"""Ingest benchmark: N signed, realistic pull_request deliveries at concurrency C.

    .venv-dev/bin/python scripts/bench_ingest.py [--backend postgresql|sqlite|both]
        [-n N] [-c C] [--prs P] [--replicas R] [--json FILE]

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

import contextlib
import os
import secrets
import signal
import sys
import time
from argparse import Namespace
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import load, report, scratch_db
from bench.deliveries import Verification, Workload, generate, verify
from bench.load import LoadResult
from bench.report import Outcome, Rows, log, verdict
from bench.servers import Sampler, Server, redis_answers, service

TARGET_PG_RATE, TARGET_PG_P99_MS, TARGET_SQLITE_RATE, TARGET_RSS_MB = 2000.0, 50.0, 800.0, 120.0
DEFAULT_MESSAGE_QUEUE = "redis://127.0.0.1:6379/0"
#: The baselines (``servers.KINDS``) measured with the same load, and their labels.
REFERENCES = {"sink": "sink (ceiling)", "bare": "bare Starlette"}


@dataclass(slots=True)
class Result:
    """One run of the service: the whole load, and each replica's share and peak RSS."""

    backend: str
    load: LoadResult
    verification: Verification
    parts: list[LoadResult]
    rss_mb: list[float]
    seconds: float

    @property
    def label(self) -> str:
        return self.backend if len(self.parts) == 1 else f"{self.backend} x{len(self.parts)}"


def bench_reference(kind: str, args: Namespace, workload: Workload, tmp: Path) -> LoadResult:
    """One baseline server with the whole load."""
    server = Server(kind, tmp / kind / "server.log", {"WEBHOOK_SECRET": workload.secret})
    try:
        server.wait_ready()
        log(f"{kind}: ready on port {server.port}; sending load")
        leg = load.Leg(server.port, workload.manifest, workload.deliveries, args.concurrency,
                       tmp / kind / "wrk", server.pid)  # fmt: skip
        return load.run(args.wrk, workload, [leg], max_seconds=args.max_seconds)[0]
    finally:
        server.close()


def bench_service(backend: str, args: Namespace, w: Workload, tmp: Path, replicas: int = 1,
                  queue: str | None = None) -> Result:  # fmt: skip
    """The workload against ``replicas`` servers on one scratch database, one wrk each
    (C/replicas connections, every replica-th delivery), all at once."""
    started, name = time.monotonic(), backend if replicas == 1 else f"{backend}-x{replicas}"
    run_dir, token, env = tmp / name, secrets.token_hex(16), {}
    if queue:
        env["SOCKETIO_MESSAGE_QUEUE"] = queue
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(scratch_db.scratch(
            backend, args.postgres_url, tmp, "bench_ingest", args.keep))  # fmt: skip
        servers: list[Server] = []
        samplers: list[Sampler] = []
        try:
            for k in range(replicas):  # one after the other: each start-up migrates alone
                servers.append(service(url, run_dir / f"server{k + 1}.log", w.secret, token,
                                       f"{name}.{k + 1}", **env))  # fmt: skip
                stack.callback(servers[-1].close)
                samplers.append(Sampler(servers[-1].pid))
                servers[-1].wait_ready()
            log(f"{name}: server(s) ready on ports {[s.port for s in servers]}; sending load")
            shares = zip(servers, load.split(w, replicas, run_dir), strict=True)
            legs = [load.Leg(s.port, manifest, count, args.concurrency // replicas,
                             run_dir / f"wrk{k + 1}", s.pid)
                    for k, (s, (manifest, count)) in enumerate(shares)]  # fmt: skip
            whole, parts = load.run(args.wrk, w, legs, max_seconds=args.max_seconds,
                                    database=scratch_db.database_name(url))
        finally:
            peaks = [sampler.stop() / 2**20 for sampler in samplers]
        for server in servers:  # every 2xx must already be durable
            server.kill()
            if server.proc.returncode not in (0, -signal.SIGKILL):
                log(f"{server.name}: the server had exited with {server.proc.returncode}")
        log(f"{name}: verifying the database after SIGKILL of the server(s)")
        verification = verify(url, whole.ok_guids, w.expected)
    return Result(backend, whole, verification, parts, peaks, time.monotonic() - started)


def _rows(w: Workload, results: Sequence[Result], bare: LoadResult) -> Rows:
    one = {r.backend: r.load.rate for r in results if len(r.parts) == 1}

    def each(values: Sequence[float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    figures: list[tuple[str, Callable[[Result], str]]] = [
        ("deliveries/s", lambda r: f"{r.load.rate:,.0f}"),
        ("ack p50 (ms)", lambda r: f"{r.load.ms(50):.2f}"),
        ("ack p99 (ms)", lambda r: f"{r.load.ms(99):.2f}"),
        ("peak RSS (MB)", lambda r: " / ".join(f"{mb:.1f}" for mb in r.rss_mb)),
        ("bare Starlette deliv/s", lambda r: f"{bare.rate:,.0f}"),
        ("service / bare", lambda r: f"{r.load.rate / bare.rate:.2f}" if bare.rate else "-"),
        ("2xx / other; stored, applied", lambda r: f"{r.load.ok} / {r.load.not_ok}; "
         f"{r.verification.rows}, {r.verification.applied}"),
        ("2xx missing / extra", lambda r: f"{r.verification.missing} / {r.verification.extra}"),
        ("PR rows; wrong final state", lambda r: f"{r.verification.prs} (want {w.prs}); "
         f"{r.verification.wrong_prs}"),
        ("server CPU (cores)", lambda r: each([p.server_cores for p in r.parts])),
        ("postgres CPU (cores)",
         lambda r: f"{r.load.cpu.postgres:.2f}" if r.backend == "postgresql" else "-"),
        ("machine busy (cores)", lambda r: f"{r.load.cpu.machine:.2f}"),
    ]  # fmt: skip
    if len(one) < len(results):
        figures.append(("vs one replica (rate)", lambda r: "-" if len(r.parts) == 1 or not one.get(
            r.backend) else f"{r.load.rate / one[r.backend]:.2f}"))  # fmt: skip
    return [(label, [cell(r) for r in results]) for label, cell in figures]


def _checks(w: Workload, r: Result) -> dict[str, tuple[bool, str] | None]:
    """The targets of one run (None: not applicable); the rate is one replica's."""
    pg = r.backend == "postgresql"
    rate = TARGET_PG_RATE if pg else TARGET_SQLITE_RATE
    stored = r.load.complete and r.load.not_ok == 0 and r.verification.passed(r.load.ok, w.prs)
    return {
        "target deliveries/s": (r.load.rate >= rate and r.load.complete, f">= {rate:,.0f}")
        if len(r.parts) == 1 else None,
        "target p99": (r.load.ms(99) <= TARGET_PG_P99_MS, f"<= {TARGET_PG_P99_MS:.0f} ms")
        if pg else None,
        "target peak RSS": (max(r.rss_mb) <= TARGET_RSS_MB, f"<= {TARGET_RSS_MB:.0f} MB"),
        "target 2xx stored+applied, PRs right": (stored, "all"),
    }  # fmt: skip


def report_all(w: Workload, args: Namespace, refs: dict[str, LoadResult],
               results: Sequence[Result], pg: str | None) -> Outcome:
    """Print the tables; whether every target passes, and the figures."""
    print(f"\nbench_ingest: N={w.deliveries} deliveries, C={args.concurrency} connections, "
          f"P={w.prs} PRs; {os.cpu_count()} CPUs; "
          f"1 uvicorn worker" + (f"; PostgreSQL: {pg}" if pg else ""))
    for r in results[len(args.backends):]:
        print(f"  {r.label}: SOCKETIO_MESSAGE_QUEUE {args.queue or 'none'}; one wrk each")
    for kind, ref in refs.items():
        print(f"  {REFERENCES[kind]:<16} {ref.rate:>8,.0f} deliveries/s  p99 {ref.ms(99):6.2f} ms"
              f"  {ref.ok} 2xx / {ref.not_ok} other" + ("" if ref.complete else "  INCOMPLETE"))
    passed, checks = True, dict[str, list[str]]()
    for i, r in enumerate(results):
        for label, check in _checks(w, r).items():
            cells = checks.setdefault(label, ["n/a"] * len(results))
            if check is not None:
                passed &= check[0]
                cells[i] = f"{verdict(check[0])} ({check[1]})"
    print()
    report.table([r.label for r in results], [*_rows(w, results, refs["bare"]), *checks.items()])
    print()
    for r in results:
        v = r.verification
        print(f"{r.label}: outcomes: {', '.join(f'{k} {n}' for k, n in sorted(v.details.items()))}"
              f"; run took {r.seconds:.1f}s")
        for example in v.wrong_examples:
            print(f"{r.label}: PR final state wrong: {example}")
    figures: dict[str, Any] = {k: {"rate": r.rate, "p99_ms": r.ms(99)} for k, r in refs.items()}
    for r in results:
        figures[r.label] = {"rate": r.load.rate, "p50_ms": r.load.ms(50), "p99_ms": r.load.ms(99),
                            "peak_rss_mb": max(r.rss_mb), "vs_bare": r.load.rate / refs["bare"].rate
                            if refs["bare"].rate else None}  # fmt: skip
    return passed, figures


def _parse(argv: Sequence[str] | None) -> Namespace:
    args = report.parse(__doc__, [
        ("--backend", ("both", "postgresql", "sqlite"), "the database(s)"),
        ("-n/--deliveries", 20_000, "N", (1, 200_000)),
        ("-c/--concurrency", 16, "C", (1, 1024)),
        ("--prs", 0, "P distinct pull requests (0: N/4)", (0, 200_000)),
        ("--replicas", 1, "R > 1 (PostgreSQL): after one replica, R on one database", (1, 4)),
        ("--max-seconds", load.MAX_SECONDS, "give up a load run after this long", (5, 120)),
        ("--seed", 1, "workload random seed"),
        ("--postgres-url", scratch_db.admin_url(), "where scratch databases are created "
         "(BENCH_POSTGRES_URL or the local server)"),
    ], argv, lambda a: [
        (a.prs > a.deliveries, "--prs must be at most N"),
        (a.replicas > 1 and a.backend != "postgresql", "--replicas R > 1 is PostgreSQL only: "
         "pass --backend postgresql (a SQLite file is not shared across replicas)"),
        (a.concurrency % a.replicas, "--replicas must divide -c (C/R connections each)"),
    ])  # fmt: skip
    args.prs = args.prs or max(1, args.deliveries // 4)
    args.backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    return args


def _queue() -> str | None:
    """The replicas' SOCKETIO_MESSAGE_QUEUE: the local Redis if it answers."""
    if redis_answers(DEFAULT_MESSAGE_QUEUE):
        return DEFAULT_MESSAGE_QUEUE
    log(f"no Redis answers at {DEFAULT_MESSAGE_QUEUE}: the replicas run without a message queue")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)

    def body(tmp: Path) -> Outcome:
        args.wrk = load.find_wrk()
        pg = scratch_db.durability(args.postgres_url) if "postgresql" in args.backends else None
        log(f"generating {args.deliveries} deliveries about {args.prs} PRs in {tmp}")
        w = generate(tmp, args.deliveries, args.prs, args.seed)
        refs = {kind: bench_reference(kind, args, w, tmp) for kind in REFERENCES}
        results = [bench_service(b, args, w, tmp) for b in args.backends]
        if args.replicas > 1:
            args.queue = _queue()
            results.append(bench_service("postgresql", args, w, tmp, args.replicas, args.queue))
        return report_all(w, args, refs, results, pg)

    return report.run("bench_ingest", args, body)


if __name__ == "__main__":
    sys.exit(main())
