"""Push benchmark: webhook POST -> Socket.IO event, and slow or stuck clients under load.

push: deliveries POSTed open loop at --rate/s for --seconds (after 1 s not measured),
each a status change of one of 50 interleaved PRs, to a Socket.IO listener. Target:
push latency (POST sent -> event received) p99 <= 50 ms on PostgreSQL; every delivery
2xx and its event received (repeats counted, not failed).
slow: the bench_ingest workload (N = -n, wrk at -c) against a fresh server each time:
(a) no client (the baseline), (b) --clients per-event clients, (c) as many batch clients
("batch": true); --stuck of them raw websockets that never read, the rest readers that
must each receive every stored event. Target: (c)/(a) >= 0.8 in deliveries/s ((b)/(a)
reported, not gated); every delivery stored as bench_ingest checks. --push-replica: a
second replica on the same database and Redis takes every client, wrk the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import sys
from argparse import Namespace
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import load, push, report, scratch_db
from bench.clients import Readers, StuckClient, established
from bench.deliveries import Workload, generate, verify
from bench.report import Outcome, log, ms, percentile, verdict
from bench.servers import Cores, Server, Snapshot, service

TARGET_PUSH_P99_MS, TARGET_SLOW_RATIO = 50.0, 0.8
WARMUP_SECONDS, DRAIN_SECONDS = 1.0, 180.0  # push: not measured; slow: the readers' drain
COLUMNS = {None: "(a) no clients", "per-event": "(b) per-event clients",
           "batch": "(c) batch clients"}  # fmt: skip


def _target_met(r: push.PushLoad) -> bool:  # percentile is nan, failing, when none
    return r.backend != "postgresql" or percentile(r.push_ms(), 99) <= TARGET_PUSH_P99_MS


def _scratch(backend: str, args: Namespace, tmp: Path) -> contextlib.AbstractContextManager[str]:
    return scratch_db.scratch(backend, args.postgres_url, tmp, "bench_push", args.keep)


def bench_push(backend: str, args: Namespace, deliveries: Sequence[push.PushDelivery],
               secret: str, tmp: Path) -> push.PushLoad:  # fmt: skip
    token = secrets.token_hex(16)
    pushed = push.PushLoad(backend, len(deliveries), round(args.rate * WARMUP_SECONDS))
    with _scratch(backend, args, tmp) as url, contextlib.closing(
            service(url, tmp / f"push-{backend}.log", secret, token, backend)) as server:
        server.wait_ready()
        log(f"push/{backend}: {len(deliveries)} deliveries at {args.rate:g}/s")
        asyncio.run(push.push_load(server.port, token, deliveries, args.rate, pushed))
    return pushed


def bench_slow_run(label: str, backend: str, args: Namespace, w: Workload, changes: push.Changes,
                   tmp: Path, mode: str | None = None, readers: int = 0,
                   stuck: int = 0) -> push.SlowRun:  # fmt: skip
    """The ingest load against a fresh server with these clients (none for (a))."""
    token, run = secrets.token_hex(16), push.SlowRun(label, mode, readers, stuck, w.prs)
    run_dir, tag = tmp / f"slow-{backend}-{label}", f"slow/{backend} ({label})"
    with contextlib.ExitStack() as stack:
        url, servers = stack.enter_context(_scratch(backend, args, tmp)), list[Server]()
        for name in ("server", "push")[: 1 + args.push_replica]:  # wrk's; the clients'
            env = {"SOCKETIO_MESSAGE_QUEUE": args.message_queue,
                   "SOCKETIO_CHANNEL": f"bench-{token}"} if args.push_replica else {}  # fmt: skip
            servers.append(stack.enter_context(contextlib.closing(
                service(url, run_dir / f"{name}.log", w.secret, token, name, **env))))  # fmt: skip
            servers[-1].wait_ready()  # one after the other: both migrate on start
        server, receiver = servers[0], servers[-1]
        reader, ports, batch = None, set[int](), mode == "batch"
        if readers:
            reader = stack.enter_context(contextlib.closing(
                Readers(receiver.port, token, readers, run_dir, batch)))  # fmt: skip
            run.connected = int(reader.expect("ready", 120)[0])
        for _ in range(stuck):
            ports.add(stack.enter_context(contextlib.closing(
                StuckClient(receiver.port, token, batch=batch))).local_port)  # fmt: skip
        log(f"{tag}: server ready (pid {server.pid}), {run.connected} reading + {len(ports)} "
            f"stuck clients{f' ({mode})' if mode else ''}; sending load")
        before = Snapshot.take([pid := reader.proc.pid if reader else None])
        leg = load.Leg(server.port, w.manifest, w.deliveries, args.concurrency,
                       run_dir / "wrk", server.pid)  # fmt: skip
        run.load, _ = load.run(args.wrk, w, [leg], sent_log=True,
                               database=scratch_db.database_name(url))
        run.readers_cores = Cores.between(before, Snapshot.take([pid])).pids.get(pid or 0, 0.0)
        still = established(receiver.port, ports)
        events = push.fetch_events(url)
        if reader is not None:
            log(f"{tag}: load done; waiting for the readers to drain")
            run.logs = reader.drain(len(events), DRAIN_SECONDS)
        run.still_connected = (still, established(receiver.port, ports))
        server.kill()
        receiver.kill()
        log(f"{tag}: verifying the database")
        run.verification = verify(url, run.load.ok_guids)
    run.summarise(events, changes, run_dir / "wrk" / "sent.txt")
    return run


def report_push(results: Sequence[push.PushLoad], args: Namespace) -> bool:
    print(f"\npush: open loop at {args.rate:g}/s, {results[0].n - results[0].warmup} measured"
          " (each one pr_status_change), one socketio.AsyncClient listener in the sender")
    cells: list[tuple[str, Callable[[push.PushLoad], str]]] = [
        ("push latency p50 / p99 / max (ms)",
         lambda r: " / ".join(ms(r.push_ms(), pct) for pct in (50, 99, 100))),
        ("ack latency p50 / p99 (ms)", lambda r: f"{ms(r.ack_ms(), 50)} / {ms(r.ack_ms(), 99)}"),
        ("2xx / other answers", lambda r: f"{len(r.ack_ms())} / {r.not_ok}"),
        ("events missing / repeated / unexpected",
         lambda r: f"{r.missing} / {sum(len(g) - 1 for g in r.received.values())} / "
         f"{r.unexpected}"),
        ("target push p99", lambda r: f"{verdict(_target_met(r))} (<= {TARGET_PUSH_P99_MS:.0f} ms)"
         if r.backend == "postgresql" else "n/a"),
        ("every event received", lambda r: verdict(r.every_event())),
    ]  # fmt: skip
    report.table([r.backend for r in results], [(k, [c(r) for r in results]) for k, c in cells])
    return all(r.every_event() and _target_met(r) for r in results)


def report_slow(backend: str, runs: Sequence[push.SlowRun], args: Namespace) -> bool:
    from webhook_service.config import DEFAULT_FRAME_BUDGET
    from webhook_service.push.stream import BATCH_INTERVAL

    a, budget = runs[0], int(os.environ.get("SOCKETIO_FRAME_BUDGET", DEFAULT_FRAME_BUDGET))
    print(f"\nslow clients ({backend}): wrk C={args.concurrency}, N={a.load.answered}; "
          f"{args.clients - args.stuck} readers + {args.stuck} stuck; (c) a frame per "
          f"{BATCH_INTERVAL:g} s at most, {budget:,}/s to all batch clients together"
          + (f"; clients on a second replica ({args.message_queue})" if args.push_replica else ""))

    def readers(figure: Callable[[push.SlowRun], str]) -> Callable[[push.SlowRun], str]:
        return lambda r: figure(r) if r.readers else "-"

    cells: list[tuple[str, Callable[[push.SlowRun], str]]] = [
        ("deliveries/s", lambda r: f"{r.load.rate:,.0f}"),
        ("2xx / other; stored", lambda r: f"{r.load.ok} / {r.load.not_ok}; {r.verification.rows}"),
        ("server CPU per delivery (ms)",
         lambda r: f"{r.load.server_cores * r.load.wall / max(1, r.load.answered) * 1000:.2f}"),
        ("machine busy (cores)", lambda r: f"{r.load.cpu.machine:.2f} / {os.cpu_count()}"),
        ("readers CPU (cores)", readers(lambda r: f"{r.readers_cores:.2f}")),
        ("messages/s per reader (median)",
         readers(lambda r: f"{statistics.median(r.messages_per_s or [0]):,.1f}")),
        ("reader receive p50 / p99 (ms)",
         readers(lambda r: f"{ms(r.latencies_ms, 50)} / {ms(r.latencies_ms, 99)}")),
        ("readers with every event", readers(lambda r: f"{r.full()} / {r.readers}")),
        ("stuck still connected (load/drain)", lambda r: f"{r.still_connected[0]} / "
         f"{r.still_connected[1]} of {r.stuck}" if r.stuck else "-"),
        ("ratio to (a)", lambda r: f"{r.ratio(runs[0]):.2f}" if r is not runs[0] else ""),
    ]  # fmt: skip
    report.table([COLUMNS[r.mode] for r in runs], [(k, [c(r) for r in runs]) for k, c in cells])
    passed = all(r.complete() for r in runs)
    print(f"\n{verdict(passed)}: every delivery answered 2xx and stored, in each run ({backend})")
    for r in runs[1:]:  # the batch ratio gates; the per-event ratio is a figure
        met, gate = r.ratio(a) >= TARGET_SLOW_RATIO, r.mode == "batch"
        ok = met and a.complete() and r.complete()
        passed &= (ok or not gate) and r.readers_ok()
        print(f"{verdict(ok) if gate else 'INFO'}: ({r.label}) ingest with {r.readers + r.stuck} "
              f"{r.mode} clients at {r.ratio(a):.2f} x the rate without ({r.load.rate:,.0f} vs "
              f"{a.load.rate:,.0f}/s; target >= {TARGET_SLOW_RATIO}"
              f"{'' if gate else ', not gated: met' if met else ', not gated: not met'})")
        if r.readers:
            print(f"{verdict(r.readers_ok())}: ({r.label}) every reading client received every "
                  f"event ({r.full()}/{r.readers})")
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    args = report.parse(__doc__, [
        ("--backend", ("postgresql", "sqlite", "both"), "the database(s)"),
        ("--rate", 200.0, "push: deliveries/s", (1, 2000)),
        ("--seconds", 20.0, "push: measured seconds", (1, 300)),
        ("--clients", 200, "slow: clients in (b) and in (c)", (0, 1000)),
        ("--stuck", 50, "slow: of which never read", (0, 1000)),
        ("--push-replica", False, "slow: two replicas on one PostgreSQL database and Redis: "
         "wrk posts to one, every client connects to the other"),
        ("--message-queue", "redis://127.0.0.1:6379/0", "slow, with --push-replica: their Redis"),
        ("-n/--deliveries", 10_000, "slow: deliveries N", (1, 100_000)),
        ("-c/--concurrency", 16, "slow: wrk C", (1, 1024)),
        ("--seed", 1, "workload random seed"),
        ("--postgres-url", scratch_db.admin_url(), "where scratch databases are created "
         "(BENCH_POSTGRES_URL or the local server)"),
    ], argv, lambda a: [
        (a.rate * (a.seconds + WARMUP_SECONDS) > 60_000, "--rate x (--seconds + 1) must be at "
         "most 60,000"),
        (a.push_replica and a.backend != "postgresql",
         "--push-replica needs --backend postgresql (replicas share PostgreSQL)"),
        (a.stuck > a.clients, "--stuck must be at most --clients"),
    ])  # fmt: skip
    args.backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]

    def body(tmp: Path) -> Outcome:
        args.wrk = load.find_wrk()
        pg = scratch_db.durability(args.postgres_url) if "postgresql" in args.backends else None
        secret, count = secrets.token_hex(16), round(args.rate * (WARMUP_SECONDS + args.seconds))
        deliveries = push.generate_push(count, secret, args.seed)
        pushed = [bench_push(b, args, deliveries, secret, tmp) for b in args.backends]
        log(f"generating {args.deliveries} ingest deliveries (bench_ingest workload)")
        w = generate(tmp, args.deliveries, max(1, args.deliveries // 4), args.seed)
        changes, readers = push.expected_events(w), args.clients - args.stuck
        slow = {b: [bench_slow_run("a", b, args, w, changes, tmp)] + [
            bench_slow_run(label, b, args, w, changes, tmp, mode, readers, args.stuck)
            for label, mode in (("b", "per-event"), ("c", "batch"))] for b in args.backends}
        print(f"\nbench_push: {os.cpu_count()} CPUs; "
              "webhook-service serve, 1 uvicorn worker" + (f"; PostgreSQL: {pg}" if pg else ""))
        passed = report_push(pushed, args)
        for b, runs in slow.items():
            passed &= report_slow(b, runs, args)
        return passed, {f"push/{r.backend}": {
            "p50_ms": percentile(r.push_ms(), 50), "p99_ms": percentile(r.push_ms(), 99),
            "missing": r.missing} for r in pushed} | {f"slow/{b}": {COLUMNS[r.mode]: {
                "rate": r.load.rate, "ratio": r.ratio(runs[0])} for r in runs}
            for b, runs in slow.items()}  # fmt: skip

    return report.run("bench_push", args, body)


if __name__ == "__main__":
    sys.exit(main())
