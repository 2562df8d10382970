"""Ingest benchmark: N signed, realistic pull_request deliveries at concurrency C.

    .venv-dev/bin/python scripts/bench_ingest.py [--backend postgresql|sqlite|both]
        [-n N] [-c C] [--baselines sink,bare,probot,gidgethub,floor] [--rounds R]
        [--replicas R] [--json FILE]

Workload (``bench/deliveries.py``): N deliveries about N/4 PRs with realistic stories,
sent once each by wrk over C connections. Server under test: ``webhook-service serve``
(one uvicorn worker) on a scratch database per backend and round; then SIGKILL: every
2xx must be stored and applied, nothing else, each PR's row as its last delivery says.
Baselines storing nothing, same load: a wrk sink (the load generator's ceiling), bare
Starlette, Probot 14 (``probot run``, from npm; default if npm is present) and a
gidgethub + aiohttp bot, whose pull_request handlers must count every 2xx; and the
floor, which stores each delivery on PostgreSQL before its 2xx and does nothing else
(``bench/baselines.py``): what keeping the service's promise costs at the least, on the
same stack. Each round
runs every server, the order rotated; medians over rounds. ``--replicas R``: then R
PostgreSQL replicas on one database (SOCKETIO_MESSAGE_QUEUE: the local Redis if it
answers), one wrk each with C/R connections, against the one-replica median.
Targets (issue 19; 2-core machine, C = 16): PostgreSQL >= 1.0x Probot's rate in the same
run (>= 2,000/s without Probot) with p99 <= 20 ms; SQLite >= 0.8x (>= 800/s); peak RSS
<= 120 MB a process; every check above (replicas: all but the rate).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import statistics
import sys
from argparse import Namespace
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import load, report, scratch_db
from bench.deliveries import Verification, Workload, generate, verify
from bench.load import LoadResult
from bench.report import Outcome, Rows, log, verdict
from bench.servers import Sampler, Server, probot_version, redis_answers, service

TARGET_PG_RATE, TARGET_PG_P99_MS, TARGET_SQLITE_RATE, TARGET_RSS_MB = 2000.0, 20.0, 800.0, 120.0
TARGET_VS_PROBOT = {"postgresql": 1.0, "sqlite": 0.8}  # of its store-nothing median rate
DEFAULT_MESSAGE_QUEUE = "redis://127.0.0.1:6379/0"
#: The servers (baselines: ``servers.KINDS``) as printed.
LABELS = {"sink": "sink (ceiling)", "bare": "bare Starlette", "probot": "Probot", "gidgethub":
          "gidgethub+aiohttp", "floor": "floor (stores)", "postgresql": "service PostgreSQL",
          "sqlite": "service SQLite"}  # fmt: skip
BASELINES, DATABASES = ("sink", "bare", "probot", "gidgethub", "floor"), ("postgresql", "sqlite")


@dataclass(slots=True)
class Result:
    """A server's run (or R replicas'): its load, stored state or handler's count, RSS."""

    backend: str
    load: LoadResult
    parts: list[LoadResult]
    rss_mb: list[float]
    verification: Verification = field(default_factory=Verification)  # (the service's)
    handled: int | None = None

    @property
    def label(self) -> str:
        return self.backend if len(self.parts) == 1 else f"{self.backend} x{len(self.parts)}"

    def cpu_ms(self, cores: float) -> float:  # as CPU milliseconds per delivery
        return cores * self.load.wall * 1000 / self.load.answered if self.load.answered else 0.0


def bench(kind: str, args: Namespace, w: Workload, tmp: Path, replicas: int = 1,
          queue: str | None = None) -> Result:  # fmt: skip
    """The workload against a baseline, or the service on a backend's scratch database
    (``replicas`` of it: one wrk each, C/replicas connections, every replica-th delivery,
    all at once), whose every 2xx must be stored after SIGKILL."""
    ours, name = kind in DATABASES, kind if replicas == 1 else f"{kind}-x{replicas}"
    backend = "postgresql" if kind == "floor" else kind  # the floor stores on PostgreSQL
    run_dir, token = tmp / f"{name}.{secrets.token_hex(2)}", secrets.token_hex(16)
    env = {"SOCKETIO_MESSAGE_QUEUE": queue} if queue else {}
    if args.workers > 1:  # serve --workers W: Redis joins them
        env |= {"WORKERS": str(args.workers), "SOCKETIO_MESSAGE_QUEUE": DEFAULT_MESSAGE_QUEUE}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(scratch_db.scratch(backend, scratch_db.admin_url(), tmp,
                                  "bench_ingest", args.keep)) if backend in DATABASES else ""
        servers: list[Server] = []
        samplers: list[Sampler] = []
        try:
            for k in range(replicas):  # one after the other: each start-up migrates alone
                log_file = run_dir / f"server{k + 1}.log"
                servers.append(service(url, log_file, w.secret, token, f"{name}.{k + 1}", **env)
                               if ours else Server(kind, log_file, {"WEBHOOK_SECRET": w.secret,
                                                                    "DATABASE_URL": url}))
                stack.callback(servers[-1].close)
                samplers.append(Sampler(servers[-1].pid))
                servers[-1].wait_ready()
            log(f"{name}: server(s) ready on ports {[s.port for s in servers]}; sending load")
            shares = zip(servers, load.split(w, replicas, run_dir), strict=True)
            legs = [load.Leg(s.port, manifest, count, args.concurrency // replicas,
                             run_dir / f"wrk{k + 1}", s.pid)
                    for k, (s, (manifest, count)) in enumerate(shares)]  # fmt: skip
            whole, parts = load.run(args.wrk, w, legs,
                                    database=scratch_db.database_name(url) if url else None)
            handled = servers[0].handled()
        finally:
            peaks = [sampler.stop() / 2**20 for sampler in samplers]
        if not ours:
            return Result(kind, whole, parts, peaks, handled=handled)
        for server in servers:  # every 2xx must already be durable
            server.kill()
            if server.proc.returncode not in (0, -signal.SIGKILL):
                log(f"{server.name}: the server had exited with {server.proc.returncode}")
        log(f"{name}: verifying the database after SIGKILL of the server(s)")
        verification = verify(url, whole.ok_guids, w.expected)
    return Result(kind, whole, parts, peaks, verification)


Runs = list[Result]  # one server's rounds


def _rate(runs: Runs, pct: float = 0) -> float:  # median over rounds: rate or percentile
    return statistics.median(r.load.ms(pct) if pct else r.load.rate for r in runs)


def _mid(runs: Runs) -> Result:  # the round with the median rate
    return sorted(runs, key=lambda r: r.load.rate)[len(runs) // 2]


def _rows(w: Workload, columns: Sequence[Runs], refs: dict[str, Runs]) -> Rows:
    one = {runs[0].backend: _rate(runs) for runs in columns if len(runs[0].parts) == 1}

    def cpu(cores: Callable[[Result], float]) -> Callable[[Runs], str]:
        return lambda rs: f"{cores(_mid(rs)):.2f} ({_mid(rs).cpu_ms(cores(_mid(rs))):.3f} ms)"

    figures: list[tuple[str, Callable[[Runs], str]]] = [
        ("ack p50 / p99 (ms)", lambda runs: f"{_rate(runs, 50):.2f} / {_rate(runs, 99):.2f}"),
        ("peak RSS (MB), largest process", lambda runs: " / ".join(f"{max(mb):.1f}" for mb in
                                                 zip(*(r.rss_mb for r in runs), strict=True))),
        *[(f"vs {LABELS[k]}", lambda runs, k=k: f"{_rate(runs) / _rate(refs[k]):.2f}"
           if _rate(refs[k]) else "-") for k in refs],
        ("2xx/other; stored,applied", lambda runs: f"{sum(r.load.ok for r in runs)}/"
         f"{sum(r.load.not_ok for r in runs)}; {sum(r.verification.rows for r in runs)},"
         f"{sum(r.verification.applied for r in runs)}"),
        ("2xx missing / extra", lambda runs: " ".join(
            f"{r.verification.missing}/{r.verification.extra}" for r in runs)),
        (f"PR rows (want {w.prs}); wrong", lambda runs: " ".join(
            f"{r.verification.prs};{r.verification.wrong_prs}" for r in runs)),
        ("server CPU cores (per deliv)", cpu(lambda r: sum(p.server_cores for p in r.parts))),
        ("postgres CPU cores (per deliv)", cpu(lambda r: r.load.cpu.postgres)),
        ("machine busy (cores)", lambda runs: f"{_mid(runs).load.cpu.machine:.2f}"),
    ]  # fmt: skip
    if len(one) < len(columns):
        figures.append(("vs one replica (rate)", lambda runs: "-" if len(runs[0].parts) == 1 or not
                        one.get(runs[0].backend) else f"{_rate(runs) / one[runs[0].backend]:.2f}"))
    return [(label, [cell(runs) for runs in columns]) for label, cell in figures]


def _checks(w: Workload, runs: Runs, probot: float | None) -> dict[str, tuple[bool, str] | None]:
    """Targets (None: n/a): median rate (one replica's; a share of Probot's median when it
    ran) and p99; every round's RSS, rows."""
    pg, r = runs[0].backend == "postgresql", runs[0]
    share = TARGET_VS_PROBOT[r.backend]
    rate = share * probot if probot else TARGET_PG_RATE if pg else TARGET_SQLITE_RATE
    stored = all(r.load.complete and r.load.not_ok == 0 and r.verification.passed(r.load.ok, w.prs)
                 for r in runs)  # fmt: skip
    return {
        "target deliveries/s": (_rate(runs) >= rate and all(r.load.complete for r in runs),
                                f">= {rate:,.0f}" + (f", {share:.1f}x Probot" if probot else ""))
        if len(r.parts) == 1 else None,
        "target p99": (_rate(runs, 99) <= TARGET_PG_P99_MS, f"<= {TARGET_PG_P99_MS:.0f} ms")
        if pg else None,
        "target peak RSS": (max(max(r.rss_mb) for r in runs) <= TARGET_RSS_MB,
                            f"<= {TARGET_RSS_MB:.0f} MB"),
        "target 2xx stored+applied, PRs right": (stored, "all rounds"),
    }  # fmt: skip


def _baseline(runs: Runs) -> tuple[bool, str]:
    """Every round answered 2xx with the GUID; the handler (if it counts) ran once per 2xx."""
    ok = all(r.load.complete and not r.load.not_ok and r.handled in (None, r.load.ok)
             and len(r.load.latencies_us) == r.load.answered for r in runs)  # fmt: skip
    handled = [r.handled for r in runs if r.handled is not None]
    return ok, f"{verdict(ok)}: {'/'.join(f'{r.load.ok}' for r in runs)} 2xx" + (
        f", handler ran {'/'.join(map(str, handled))}" if handled else "")


def report_all(w: Workload, args: Namespace, refs: dict[str, Runs], columns: Sequence[Runs],
               pg: str | bool) -> Outcome:  # fmt: skip
    """Print the tables; whether every target passes, and the figures."""
    print(f"\nbench_ingest: N={w.deliveries} deliveries, C={args.concurrency} connections, "
          f"P={w.prs} PRs; {os.cpu_count()} CPUs; workers={args.workers}; {args.rounds} rounds, "
          f"order rotated from {' '.join(args.order)}" + (f"; PostgreSQL: {pg}" if pg else ""))
    print(f"load average (1/5/15 min) before {args.load_before}, after "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}" + (f"; replicas: one wrk each, "
          f"SOCKETIO_MESSAGE_QUEUE {args.queue or 'none'}" if args.replicas > 1 else ""))
    passed, figures = True, dict[str, Any]()
    print("\nmedians over the rounds; RSS, CPU of the median round; the check:")
    for key, runs in [*refs.items(), *((r[0].label, r) for r in columns)]:
        m, label = _mid(runs), LABELS.get(key, key)
        print(f"  {label:<23}{_rate(runs):>8,.0f}/s  p99 {_rate(runs, 99):6.2f} ms  rounds "
              f"{'/'.join(f'{r.load.rate:.0f}' for r in runs):<17} {max(m.rss_mb):5.1f} MB  CPU "
              f"{m.cpu_ms(m.load.server_cores):.3f} ms/delivery", end="")
        if key in refs and m.load.cpu.postgres:  # the floor's database
            print(f" + PostgreSQL {m.cpu_ms(m.load.cpu.postgres):.3f} ms", end="")
        figures[key] = {"rate": _rate(runs), "p99_ms": _rate(runs, 99), "rounds": [
                        r.load.rate for r in runs], "peak_rss_mb": max(m.rss_mb),
                        "cpu_ms_per_delivery": m.cpu_ms(m.load.server_cores)}  # fmt: skip
        if key in refs:
            ok, text = _baseline(runs)
            passed &= ok
            print(f"  {text}", end="")
        else:
            figures[key] |= {f"vs_{k}": _rate(runs) / _rate(ref) for k, ref in refs.items()}
            figures[key]["postgres_cpu_ms_per_delivery"] = m.cpu_ms(m.load.cpu.postgres)
        print()
    checks = dict[str, list[str]]()
    for i, runs in enumerate(columns):
        probot = _rate(refs["probot"]) if "probot" in refs else None
        for label, check in _checks(w, runs, probot).items():
            cells = checks.setdefault(label, ["n/a"] * len(columns))
            if check is not None:
                passed &= check[0]
                cells[i] = f"{verdict(check[0])} ({check[1]})"
    print()
    report.table([runs[0].label for runs in columns], [*_rows(w, columns, refs), *checks.items()])
    print()
    for r in (r for runs in columns for r in runs):
        for example in r.verification.wrong_examples:
            print(f"{r.label}: PR final state wrong: {example}")
    return passed, figures


def _parse(argv: Sequence[str] | None) -> Namespace:
    args = report.parse(__doc__, [
        ("--backend", ("both", "postgresql", "sqlite"), "the database(s)"),
        ("-n/--deliveries", 20_000, "N", (1, 200_000)),
        ("-c/--concurrency", 16, "C", (1, 1024)),
        ("--baselines", "sink,bare," + "probot," * bool(shutil.which("npm")) + "gidgethub,floor",
         "servers measured beside it"),
        ("--rounds", 3, "R rounds of every server, in rotated order", (1, 9)),
        ("--replicas", 1, "R > 1 (PostgreSQL): after the rounds, R on one database", (1, 4)),
        ("--workers", 1, "W > 1: each service serves with --workers W", (1, 8)),
    ], argv, lambda a: [
        (a.replicas > 1 and a.backend != "postgresql", "--replicas R > 1 is PostgreSQL only: "
         "pass --backend postgresql (a SQLite file is not shared across replicas)"),
        (a.concurrency % a.replicas, "--replicas must divide -c (C/R connections each)"),
        (not set(a.baselines.split(",")) <= set(BASELINES),
         f"--baselines: a comma-separated list of {', '.join(BASELINES)}"),
    ])  # fmt: skip
    args.backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    args.baselines = list(dict.fromkeys(args.baselines.split(",")))
    args.order, args.queue = [*args.baselines, *args.backends], None
    args.load_before = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)

    def body(tmp: Path) -> Outcome:
        args.wrk = load.find_wrk()
        if "probot" in args.baselines:
            LABELS["probot"] = f"Probot {probot_version()}"
        pg = "postgresql" in args.backends and scratch_db.durability(scratch_db.admin_url())
        log(f"generating {args.deliveries} deliveries in {tmp}")
        w = generate(tmp, args.deliveries, max(1, args.deliveries // 4), 1)
        runs: dict[str, Runs] = {name: [] for name in args.order}
        for i in range(args.rounds):
            for name in args.order[i % len(args.order):] + args.order[: i % len(args.order)]:
                log(f"round {i + 1}: {name}")
                runs[name].append(bench(name, args, w, tmp))
        columns = [runs[b] for b in args.backends]
        if args.replicas > 1:
            args.queue = DEFAULT_MESSAGE_QUEUE if redis_answers(DEFAULT_MESSAGE_QUEUE) else None
            columns.append([bench("postgresql", args, w, tmp, args.replicas, args.queue)])
        return report_all(w, args, {k: runs[k] for k in args.baselines}, columns, pg)

    return report.run("bench_ingest", args, body)


if __name__ == "__main__":
    sys.exit(main())
