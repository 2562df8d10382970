"""Push benchmark: webhook POST -> Socket.IO event, and slow or stuck clients under load.

    .venv-dev/bin/python scripts/bench_push.py [--backend postgresql|sqlite|both]
        [--rate 200] [--seconds 20] [--clients 200] [--stuck 50] [--only push|slow]
        [--client-modes per-event,batch] [--push-replica [--message-queue URL]]

push: deliveries POSTed open loop at ``--rate``/s for ``--seconds`` (after ``--warmup``),
each a status change of one of 50 interleaved PRs (opened, closed, reopened, merged), so
one ``pr_status_change`` each, to ``--listeners`` Socket.IO clients. Target: push
latency (POST sent -> event received) p99 <= 50 ms on PostgreSQL; every delivery 2xx
and its event received by every listener (repeats counted, not failed).
slow: the bench_ingest workload (N = ``-n``, wrk at ``-c``) against a fresh server
each time, (a) with no client (the baseline), (b) with ``--clients`` per-event clients
and (c) with as many batch clients (``"batch": true``), ``--stuck`` of them raw
websockets that never read, the rest readers in a child process that must each receive
every stored event. Target: (c)/(a) >= 0.8 in deliveries/s (gates the exit status);
(b)/(a) is reported, not gated; every run's deliveries stored as bench_ingest checks.
``--push-replica``: two replicas on one database and Redis, wrk to one, clients to the
other, in every slow run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import time
from argparse import Namespace
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import load, push, report, scratch_db
from bench.clients import ReaderLog, Readers, StuckClient, stuck_queues
from bench.deliveries import Workload, generate, verify
from bench.report import Outcome, Rows, log, ms, percentile, verdict
from bench.servers import Cores, Sampler, Server, Snapshot, background_load

TARGET_PUSH_P99_MS, TARGET_SLOW_RATIO = 50.0, 0.8
CLIENT_MODES = {"per-event": "b", "batch": "c"}  # --client-modes name -> run label
COLUMNS = {None: "(a) no clients", "per-event": "(b) per-event clients",
           "batch": "(c) batch clients"}  # fmt: skip
MAX_PUSH_DELIVERIES, MAX_SLOW_DELIVERIES, MAX_CLIENTS = 60_000, 100_000, 1_000
Runs = list[push.SlowRun]  # (a), then the client runs


def _target_met(r: push.PushResult) -> bool:
    return bool(r.push_ms) and percentile(r.push_ms, 99) <= TARGET_PUSH_P99_MS


def _scratch(backend: str, args: Namespace, tmp: Path) -> contextlib.AbstractContextManager[str]:
    return scratch_db.scratch(backend, args.postgres_url, tmp, prefix="bench_push", keep=args.keep)


def bench_push(backend: str, args: Namespace, deliveries: Sequence[push.PushDelivery], secret: str,
               warmup: int, tmp: Path) -> push.PushResult:  # fmt: skip
    started, token = time.monotonic(), secrets.token_hex(16)
    with _scratch(backend, args, tmp) as url:
        server = push.start_server(url, tmp / f"push-{backend}", secret, token, backend)
        sampler = Sampler(server.pid)
        try:
            server.wait_ready()
            log(f"push/{backend}: server ready (pid {server.pid}); {len(deliveries)} deliveries "
                f"at {args.rate:g}/s ({warmup} warm-up), {args.listeners} listener(s)")
            database = scratch_db.database_name(url)
            before = Snapshot.take([server.pid], database)
            pushed = asyncio.run(
                push.push_load(server.port, token, deliveries, args.rate, args.listeners))
            cpu = Cores.between(before, Snapshot.take([server.pid], database))
        finally:
            peak = sampler.stop()
            server.close()
    return push.PushResult(backend, pushed, warmup, cpu, peak / 2**20, time.monotonic() - started)


def _start(stack: contextlib.ExitStack, url: str, run_dir: Path, secret: str, token: str,
           args: Namespace) -> tuple[Server, Server]:  # fmt: skip
    """The server wrk posts to, and the one clients use (another with --push-replica:
    events between them through Redis, in every run, so that (a) pays the same)."""
    queue = {"SOCKETIO_MESSAGE_QUEUE": args.message_queue, "SOCKETIO_CHANNEL": f"bench-{token}"}
    servers: list[Server] = []
    for name in ("server", "push") if args.push_replica else ("server",):
        env = queue if args.push_replica else {}
        servers.append(push.start_server(url, run_dir, secret, token, name, **env))
        stack.callback(servers[-1].close)
        servers[-1].wait_ready()  # one after the other: both migrate on start
    return servers[0], servers[-1]


def _clients(stack: contextlib.ExitStack, port: int, token: str, args: Namespace, run_dir: Path,
             mode: str | None, readers: int, stuck: int) -> tuple[Readers | None, set[int], int]:
    """The reading clients' process (and how many connected) and the stuck clients (their
    local ports)."""
    batch, reader, connected = mode == "batch", None, 0
    if readers:
        reader = Readers(port, token, readers, run_dir, args.reader_nice, batch=batch)
        stack.callback(reader.close)
        connected = int(reader.expect("ready", 120)[0])
    ports: set[int] = set()
    for _ in range(stuck):
        client = StuckClient(port, token, args.stuck_rcvbuf, batch=batch)
        stack.callback(client.close)
        ports.add(client.local_port)
    return reader, ports, connected


def bench_slow_run(label: str, backend: str, args: Namespace, w: Workload, changes: push.Changes,
                   tmp: Path, mode: str | None = None, readers: int = 0,
                   stuck: int = 0) -> push.SlowRun:
    """The ingest load against a fresh server with these clients (none for (a))."""
    started, token = time.monotonic(), secrets.token_hex(16)
    run_dir, tag = tmp / f"slow-{backend}-{label}", f"slow/{backend} ({label})"
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_scratch(backend, args, tmp))
        server, receiver = _start(stack, url, run_dir, w.secret, token, args)
        sampler = Sampler(server.pid)
        logs: list[ReaderLog] = []
        drain = 0.0
        try:
            reader, ports, connected = _clients(stack, receiver.port, token, args, run_dir, mode,
                                                readers, stuck)  # fmt: skip
            log(f"{tag}: server ready (pid {server.pid}), {connected} reading + {len(ports)} "
                f"stuck clients{f' ({mode})' if mode else ''}; sending load")
            watched = {"readers": reader.proc.pid if reader else None,
                       "push": receiver.pid if receiver is not server else None}  # fmt: skip
            before = Snapshot.take(watched.values())
            leg = load.Leg(server.port, w.manifest, w.deliveries, args.concurrency,
                           run_dir / "wrk", server.pid)  # fmt: skip
            whole, _ = load.run(args.wrk, w, [leg], target=f"webhook-service/{backend}/{label}",
                                max_seconds=args.max_seconds, sent_log=True,
                                database=scratch_db.database_name(url))  # fmt: skip
            cores = Cores.between(before, after := Snapshot.take(watched.values())).pids
            queues = stuck_queues(receiver.port, ports)
            events = push.fetch_events(url)
            if reader is not None:
                log(f"{tag}: load done; waiting for the readers to drain")
                logs, drain = reader.drain(len(events), args.drain_seconds)
            queues_end = stuck_queues(receiver.port, ports)
        finally:
            peak = sampler.stop()
        server.kill()
        receiver.kill()
        log(f"{tag}: verifying the database")
        verification = verify(url, whole.ok_guids)
    run = push.SlowRun(label, mode, readers, stuck, w.prs, whole, verification,
                  peak / 2**20,
                  {k: cores.get(pid, 0.0) for k, pid in watched.items() if pid}, len(events),
                  logs, connected, drain, (queues, queues_end),
                  time.monotonic() - started)  # fmt: skip
    return run.summarise(events, changes, push.read_sent(run_dir / "wrk" / "sent.txt"), after.at)


# -- the report ------------------------------------------------------------------------------


def report_push(results: Sequence[push.PushResult], args: Namespace) -> bool:
    if not results:
        return True
    print(f"\npush: webhook POST -> Socket.IO event, open loop at {args.rate:g} deliveries/s for "
          f"{args.seconds:g} s ({len(results[0].measured)} deliveries measured, after "
          f"{results[0].warmup} warm-up), {args.listeners} listener(s) (socketio.AsyncClient, "
          "websocket, same process as the sender); every delivery a status change (one "
          "pr_status_change each)")

    def ack(r: push.PushResult) -> list[float]:
        return [(r.load.acked[i] - r.load.sent[i]) * 1000 for i in r.measured if r.ok(i)]

    pcts = (("p50", 50), ("p99", 99), ("max", 100))
    rows: Rows = [(f"{kind} latency {name} (ms)", [ms(values(r), pct) for r in results])
                  for kind, values in (("push", lambda r: r.push_ms), ("ack", ack))
                  for name, pct in pcts]  # fmt: skip
    cells: list[tuple[str, Callable[[push.PushResult], str]]] = [
        ("2xx / other answers", lambda r: f"{len(ack(r))} / {len(r.measured) - len(ack(r))}"),
        ("events missing / duplicated", lambda r: f"{r.missing} / {r.duplicated}"),
        ("unexpected events", lambda r: str(r.load.unexpected)),
        ("listener disconnects", lambda r: str(r.load.disconnects)),
        ("server CPU (cores)", lambda r: f"{sum(r.cpu.pids.values()):.2f}"),
        ("postgres CPU (cores)",
         lambda r: f"{r.cpu.postgres:.2f}" if r.backend == "postgresql" else "-"),
        ("machine busy (cores)", lambda r: f"{r.cpu.machine:.2f} / {os.cpu_count()}"),
        ("server peak RSS (MB)", lambda r: f"{r.peak_rss_mb:.1f}"),
        ("target push p99", lambda r: f"{verdict(_target_met(r))} (<= {TARGET_PUSH_P99_MS:.0f} ms)"
         if r.backend == "postgresql" else "n/a"),
        ("every event received", lambda r: verdict(r.every_event())),
    ]  # fmt: skip
    report.table([r.backend for r in results],
                 [*rows, *((label, [cell(r) for r in results]) for label, cell in cells)])
    print()
    for r in results:
        errors = ", ".join(f"{k} {v}" for k, v in r.load.errors.items()) or "none"
        print(f"push/{r.backend}: client errors: {errors}; run took {r.seconds:.1f}s")
        if r.backend == "postgresql":
            print(f"{verdict(_target_met(r))}: push p99 {ms(r.push_ms, 99)} ms <= "
                  f"{TARGET_PUSH_P99_MS:.0f} ms at {args.rate:g}/s on PostgreSQL")
        print(f"{verdict(r.every_event())}: every delivery answered 2xx and its event received "
              f"by every listener ({r.missing} missing, {r.duplicated} repeats) ({r.backend})")
    return all(r.every_event() and (r.backend != "postgresql" or _target_met(r)) for r in results)


def _gate(r: push.SlowRun, a: push.SlowRun) -> str:
    met = r.ratio(a) >= TARGET_SLOW_RATIO
    if r.mode != "batch":
        return f"{'met' if met else 'not met'} (no gate)"
    return f"{verdict(met and a.complete() and r.complete())} (>= {TARGET_SLOW_RATIO})"


def _slow_rows(runs: Sequence[push.SlowRun], backend: str, args: Namespace) -> Rows:
    a, pg = runs[0], backend == "postgresql"
    cells: list[tuple[str, Callable[[push.SlowRun], str]]] = [
        ("deliveries/s", lambda r: f"{r.load.rate:,.0f}"),
        ("ack p50 (ms)", lambda r: f"{r.load.ms(50):.2f}"),
        ("ack p99 (ms)", lambda r: f"{r.load.ms(99):.2f}"),
        ("2xx / other", lambda r: f"{r.load.ok} / {r.load.not_ok}"),
        ("stored & applied", lambda r: f"{r.verification.applied} / {r.verification.rows}"),
        ("server CPU (cores)", lambda r: f"{r.load.server_cores:.2f}"),
        ("server CPU per delivery (ms)",
         lambda r: f"{r.load.server_cores * r.load.wall / max(1, r.load.answered) * 1000:.2f}"),
        ("postgres CPU (cores)", lambda r: f"{r.load.cpu.postgres:.2f}" if pg else "-"),
        ("readers CPU (cores)", lambda r: f"{r.cores['readers']:.2f}" if r.readers else "-"),
        ("push replica CPU (cores)", lambda r: f"{r.cores.get('push', 0.0):.2f}"),
        ("messages/s per reader (median)",
         lambda r: f"{statistics.median(r.messages_per_s):,.1f}" if r.messages_per_s else "-"),
        ("machine busy (cores)", lambda r: f"{r.load.cpu.machine:.2f} / {os.cpu_count()}"),
        ("server peak RSS (MB)", lambda r: f"{r.peak_rss_mb:.1f}"),
        ("ratio to (a)", lambda r: f"{r.ratio(a):.2f}" if r is not a else ""),
        (f"target >= {TARGET_SLOW_RATIO}", lambda r: _gate(r, a) if r is not a else ""),
    ]  # fmt: skip
    if not args.push_replica:
        cells = [c for c in cells if not c[0].startswith("push replica")]
    return [(label, [cell(r) for r in runs]) for label, cell in cells]


def report_slow(backend: str, runs: Sequence[push.SlowRun], args: Namespace) -> bool:
    a, clients = runs[0], runs[1:]
    topology = ("; TOPOLOGY: webhooks to one replica, every client on a second replica (same "
                f"database, events through {args.message_queue}), in every run")  # fmt: skip
    print(f"\nslow clients ({backend}): wrk closed loop C={args.concurrency}, N="
          f"{a.load.answered} bench_ingest deliveries; {a.events} pr_status_change events stored;"
          f" each client run: {args.clients - args.stuck} reading socketio.AsyncClients (one "
          f"child process, nice {args.reader_nice}) + {args.stuck} stuck raw websockets "
          f"(SO_RCVBUF {args.stuck_rcvbuf}) = {args.clients} clients, all of one kind"
          + (topology if args.push_replica else ""))
    for r in clients:
        print(f"  ({r.label}) {push.mode_kind(r.mode or '')}")
    report.table([COLUMNS[r.mode] for r in runs], _slow_rows(runs, backend, args))
    for r in clients:
        push.report_clients(r)
    passed = all(r.complete() for r in runs)
    print(f"\n{verdict(passed)}: every delivery answered 2xx and stored, in each run "
          f"({', '.join(f'({r.label})' for r in runs)}) ({backend})")
    for r in clients:  # the batch ratio gates; the per-event ratio is a figure
        met, gate = r.ratio(a) >= TARGET_SLOW_RATIO, r.mode == "batch"
        ok = met and a.complete() and r.complete()
        passed &= ok or not gate
        print(f"{verdict(ok) if gate else 'INFO'}: ({r.label}) {r.mode} clients ("
              f"{'gates the exit status' if gate else 'reported, does not gate'}): ingest with "
              f"{r.readers + r.stuck} clients ({r.stuck} stuck) at {r.ratio(a):.2f} x the rate "
              f"without clients ({r.load.rate:,.0f} vs {a.load.rate:,.0f} deliveries/s; target "
              f">= {TARGET_SLOW_RATIO}{'' if gate else ' met' if met else ' not met'}) ({backend})")
    if all(r.mode != "batch" for r in clients):
        print(f"NOTE: no batch clients run (--client-modes {args.client_modes}): the ingest "
              f"target (>= {TARGET_SLOW_RATIO} with batch clients) was not measured and does not "
              f"gate ({backend})")
    for r in clients:
        if r.readers:
            passed &= r.readers_ok()
            print(f"{verdict(r.readers_ok())}: ({r.label}) every reading {r.mode} client received"
                  f" every event ({r.full()}/{r.readers} clients complete) ({backend})")
    print(f"slow/{backend}: runs took " + ", ".join(f"({r.label}) {r.seconds:.1f}s" for r in runs))
    return passed


# -- the command line ------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> Namespace:
    parser = argparse.ArgumentParser(prog="bench_push.py", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--backend", choices=("postgresql", "sqlite", "both"), default="postgresql",
        help="(postgresql)")
    add("--only", choices=("push", "slow"), help="run one measurement")
    add("--rate", type=float, default=200.0, help="push: deliveries/s (200)")
    add("--seconds", type=float, default=20.0, help="push: measured seconds (20)")
    add("--warmup", type=float, default=1.0, help="push: seconds sent first, not measured (1)")
    add("--listeners", type=int, default=1, help="push: listening clients (1)")
    add("--clients", type=int, default=200, help="slow: clients in (b) and in (c) (200)")
    add("--stuck", type=int, default=50, help="slow: of which never read (50)")
    add("--client-modes", default=",".join(CLIENT_MODES), metavar="MODES", help="slow: the "
        "client runs besides (a): per-event = (b), reported; batch = (c), gates (%(default)s)")
    add("--push-replica", action="store_true", help="slow: two replicas on one PostgreSQL "
        "database and Redis: wrk posts to one, every client connects to the other")
    add("--message-queue", default="redis://127.0.0.1:6379/0", metavar="URL",
        help="slow, with --push-replica: the Redis both replicas use (%(default)s)")
    add("--stuck-rcvbuf", type=int, default=4096, help="slow: SO_RCVBUF of a stuck client (4096)")
    add("--reader-nice", type=int, default=0, help="slow: nice value of the readers' process (0)")
    add("-n", "--deliveries", type=int, default=10_000, help="slow: deliveries N (10000)")
    add("-c", "--concurrency", type=int, default=16, help="slow: wrk C (16)")
    add("--drain-seconds", type=float, default=180.0, help="slow: how long the readers may take "
        "after the load (180)")
    add("--max-seconds", type=int, default=load.MAX_SECONDS, help="slow: give up a load run "
        "after this long (120)")
    add("--seed", type=int, default=1, help="workload random seed (1)")
    add("--postgres-url", default=scratch_db.admin_url(),
        help="where to create the scratch databases (BENCH_POSTGRES_URL or %(default)s)")
    report.common_options(parser)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.client_modes.split(",") if m.strip()]
    args.modes = [m for m in CLIENT_MODES if m in modes]  # (b) before (c)
    rate, seconds, warmup = args.rate, args.seconds, args.warmup
    problems = [
        (not 1 <= rate <= 2000, "--rate must be between 1 and 2000"),
        (not (1 <= seconds <= 300 and 0 <= warmup <= 10), "--seconds: 1 to 300, --warmup: 0 to 10"),
        (rate * (seconds + warmup) > MAX_PUSH_DELIVERIES,
         f"--rate x (--seconds + --warmup) must be at most {MAX_PUSH_DELIVERIES:,}"),
        (not 1 <= args.listeners <= 20, "--listeners must be between 1 and 20"),
        (not modes or len(set(modes)) != len(modes) or bool(set(modes) - CLIENT_MODES.keys()),
         f"--client-modes must be a comma-separated subset of {','.join(CLIENT_MODES)}"),
        (args.push_replica and args.backend != "postgresql",
         "--push-replica needs --backend postgresql (replicas share PostgreSQL)"),
        (not 0 <= args.stuck <= args.clients <= MAX_CLIENTS,
         f"--clients must be between 0 and {MAX_CLIENTS}, --stuck at most --clients"),
        (not 1024 <= args.stuck_rcvbuf <= 2**24, "--stuck-rcvbuf must be between 1024 and 16 MiB"),
        (not 0 <= args.reader_nice <= 19, "--reader-nice must be between 0 and 19"),
        (not 1 <= args.deliveries <= MAX_SLOW_DELIVERIES,
         f"-n must be between 1 and {MAX_SLOW_DELIVERIES:,}"),
        (not 1 <= args.concurrency <= 1024, "-c must be between 1 and 1024"),
        (not 1 <= args.drain_seconds <= 600, "--drain-seconds must be between 1 and 600"),
        (not 5 <= args.max_seconds <= load.MAX_SECONDS, "--max-seconds must be between 5 and 120"),
    ]  # fmt: skip
    for failed, message in problems:
        if failed:
            parser.error(message)
    args.backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    return args


def _measure(args: Namespace, tmp: Path) -> tuple[list[push.PushResult], dict[str, Runs]]:
    pushed: list[push.PushResult] = []
    if args.only != "slow":
        secret, warmup = secrets.token_hex(16), round(args.rate * args.warmup)
        count = warmup + round(args.rate * args.seconds)
        log(f"generating {count} push deliveries")
        deliveries = push.generate_push(count, secret, args.seed)
        pushed = [bench_push(b, args, deliveries, secret, warmup, tmp) for b in args.backends]
    slow: dict[str, Runs] = {}
    if args.only != "push":
        log(f"generating {args.deliveries} ingest deliveries (bench_ingest workload)")
        w = generate(tmp, args.deliveries, max(1, args.deliveries // 4), args.seed)
        changes, readers = push.expected_events(w), args.clients - args.stuck
        for b in args.backends:
            slow[b] = [bench_slow_run("a", b, args, w, changes, tmp)] + [
                bench_slow_run(CLIENT_MODES[m], b, args, w, changes, tmp, m, readers, args.stuck)
                for m in args.modes]  # fmt: skip
    return pushed, slow


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)

    def body(tmp: Path) -> Outcome:
        args.wrk = load.find_wrk() if args.only != "push" else None
        pg = scratch_db.durability(args.postgres_url) if "postgresql" in args.backends else None
        busy = background_load()
        pushed, slow = _measure(args, tmp)
        print(f"\nbench_push: machine {os.cpu_count()} CPUs, {busy:.2f} cores busy before the run"
              " (it competes with the benchmark); server: webhook-service serve, 1 uvicorn worker"
              + (f"; PostgreSQL: {pg}" if pg else ""))
        passed = report_push(pushed, args)
        for b, runs in slow.items():
            passed &= report_slow(b, runs, args)
        figures: dict[str, Any] = {
            f"push/{r.backend}": {"p50_ms": percentile(r.push_ms, 50),
                                  "p99_ms": percentile(r.push_ms, 99), "missing": r.missing}
            for r in pushed
        }  # fmt: skip
        for b, runs in slow.items():
            figures[f"slow/{b}"] = {COLUMNS[r.mode]: {"rate": r.load.rate,
                                                      "ratio": r.ratio(runs[0])} for r in runs}
        return passed, figures

    return report.run("bench_push", args, body)


if __name__ == "__main__":
    sys.exit(main())
