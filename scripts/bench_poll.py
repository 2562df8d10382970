"""Poller benchmark at organization scale: this sync worker against the previous one.

    .venv-dev/bin/python scripts/bench_poll.py [--sizes 10:1000,1000:10000,5000:50000]
        [--scale 10] [--changes 80] [--idle-intervals 8] [--change-intervals 12]
        [--drain-intervals 4] [--first-sweep-cap 120] [--workers new,baseline]
        [--seed 1] [--postgres [ADMIN_URL]]

For each R:N in ``--sizes`` the parent process runs one ``FakeGitHub`` with N open PRs
spread evenly over R repositories of one owner (last updated 40 days ago), and runs two
pollers against it, one after the other, each in a process of its own
(``bench_poll_child.py``, so the RSS measured is the poller's alone), each with its own
token and a fresh database (a SQLite file; ``--postgres``: a scratch PostgreSQL one):

- **new**: this checkout's ``PRSyncWorker`` (discovery by GraphQL search, the spread
  sweep, the per-credential budget), built as the service builds it;
- **baseline**: today's per-repository sweep, the real code of commit c353fc9 (every
  repository listed with its ETag every cycle, unpaced, 5 at once): its
  ``webhook_service`` is extracted with ``git archive`` and the child runs with
  ``PYTHONPATH`` pointing there (the child checks which package it imported).

Per-PR polling (the original design, shown by earlier versions of this script) is
dropped: at 50,000 PRs it is 50,000 requests a cycle and says nothing new.

**Time scale** (``--scale`` s, default 10), so that the run stays bounded: GitHub's
minute is 60/s seconds here and its hour 3600/s. The fake's secondary limits keep
GitHub's points (900 REST, 2,000 GraphQL per credential, 100 concurrent) within a
``secondary_window`` of 60/s s; its primary limit is 12,500 REST and 5,000 GraphQL
points per 3600/s s (12,500: the most an App installation gets on github.com; a
token stands in for it, so the search scope is ``user:`` instead of ``org:``, at the
same cost); its search index lags 10/s s. Both workers get ``SYNC_INTERVAL`` = 60/s,
``SYNC_FULL_SWEEP_INTERVAL`` = 3600/s, ``SYNC_SEARCH_OVERLAP`` = 300/s and
``SYNC_MAX_CONCURRENCY`` = 5 (the baseline reads only the first and the last); the new
one plans for the scaled window (``GitHub(..., limits=Limits(window=60/s))``).
Figures are converted back: points per GitHub minute are points per scaled window,
durations are multiplied by s. PR timestamps are GitHub's (real seconds).

**Phases**, per worker, timed by the parent: (1) the worker's own loop starts
(``PRSyncWorker.start``); the first cycle sweeps everything; its end is awaited up to
``--first-sweep-cap`` scaled seconds (the baseline at R = 5,000 is refused and
slowed: it may not finish); then the next cycle, reported apart as "second cycle":
after a first sweep that took T it lists about R * T / 2P repositories (P the sweep
period) more than a steady cycle, those whose fixed place in the period fell after
their listing but within T; (2) ``--idle-intervals`` intervals with nothing changed,
the steady state;
(3) ``--changes`` PRs changed without a webhook (``update_pull``: pushes, retitles,
draft toggles, closes, merges, each PR once) at uniformly random moments over
``--change-intervals`` intervals, then up to ``--drain-intervals`` more for the last
ones. The delay of a change runs from the moment it was made in the fake to the
moment the child's store row carried its new ``updated_at`` (read every 50 ms); a
change not stored by then counts as never found. The changed PRs are then compared
field by field with the fake's.

**Measured** from the fake's request log (``RequestRecord.points/api/credential``,
``rate_cost``) per phase: requests per cycle, secondary points per minute (mean) and
the most in any one window (``max_window_points``), primary points per hour (a 304 is
free of it), secondary-limit refusals (a 403/429 that cost a primary point); the
child's peak RSS (sampled every 20 ms, and VmHWM).

**Targets** (issue 14), checked on the largest R for the new worker: zero
secondary-limit answers; idle cost at most 100 points a minute, REST and GraphQL
together, sweep included (the mean over the idle phase; the peak window is shown
too); p99 of the delay at most two intervals, at every R; peak RSS at the largest R
within 1.3x of the smallest R's; and, as a check of the bench itself, the store
matching the fake with no sync errors, at every R. The table is printed in Markdown.
Exit status: 0 when every target passes, 1 otherwise, 2 on a setup error.

The default run takes about 17 minutes on the project's 2-core machine (2026-12-06:
16.7 min, twice), most of it the phases' fixed lengths (about 2 minutes per poller) and
the baseline's first-sweep cap at R = 5,000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_poll_scale import (
    REPO_ROOT,
    BenchError,
    Plan,
    WorkerRun,
    baseline_tree,
    log,
    populate,
    run_worker,
)

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_SIZES = "10:1000,1000:10000,5000:50000"
MAX_PRS = 100_000
PRIMARY_REST = 12_500  # per hour: an App installation's ceiling on github.com
PRIMARY_GRAPHQL = 5_000
SEARCH_LAG = 10.0  # GitHub seconds before search sees a change
TARGET_IDLE_POINTS = 100  # a minute, REST and GraphQL, at the largest R
TARGET_DELAY_INTERVALS = 2.0  # p99
TARGET_RSS_RATIO = 1.3
WORKER_NAMES = {"new": "this worker", "baseline": "baseline (c353fc9)"}


# -- databases ------------------------------------------------------------------------------


async def _pg_admin(admin_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _database(args: argparse.Namespace, name: str, workdir: Path) -> AsyncIterator[str]:
    """A fresh database for one run: a SQLite file, or a scratch PostgreSQL database."""
    if args.postgres is None:
        yield f"sqlite:///{workdir / f'poller-{name}.db'}"
        return
    scratch = f"bench_poll_{os.getpid()}_{name.replace('-', '_')}_{secrets.token_hex(3)}"
    try:
        await _pg_admin(args.postgres, f'CREATE DATABASE "{scratch}"')
    except Exception as exc:
        raise BenchError(f"cannot create a scratch database via {args.postgres}: {exc}") from exc
    try:
        yield f"{args.postgres.rpartition('/')[0]}/{scratch}"
    finally:
        await _pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


# -- the report -----------------------------------------------------------------------------


def percentile(delays: Sequence[float | None], p: float) -> float:
    """Nearest rank; a change never found counts as infinitely late."""
    values = sorted(math.inf if d is None else d for d in delays)
    if not values:
        return math.nan
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _pair(values: dict[str, int], per: float) -> str:
    """REST + GraphQL, divided by ``per`` (cycles, minutes, hours)."""
    if not per or math.isnan(per):
        return "n/a"
    return f"{_n(values['rest'] / per)} + {_n(values['graphql'] / per)}"


def _delay(run: WorkerRun, plan: Plan) -> str:
    p50, p99 = percentile(run.delays, 50), percentile(run.delays, 99)

    def intervals(d: float) -> str:
        return "never" if math.isinf(d) else f"{d / plan.interval:.2f}"

    def github(d: float) -> str:
        return "-" if math.isinf(d) else _n(d * plan.scale)

    return f"{intervals(p50)} / {intervals(p99)} ({github(p50)} / {github(p99)} s)"


def _first(run: WorkerRun, plan: Plan) -> str:
    requests = _n(sum(run.first.requests.values()))
    if run.first_sweep is None:
        return f"not done in {plan.first_sweep_cap * plan.scale / 60:.0f} min ({requests} req)"
    return f"{run.first_sweep * plan.scale / 60:.1f} min ({requests} req)"


def cells(run: WorkerRun, plan: Plan) -> list[tuple[str, str]]:
    """The table's rows for one run: (label, value)."""
    idle, changed, whole = run.idle, run.changed, run.whole
    minutes = idle.seconds / plan.window  # GitHub minutes
    stored = sum(d is not None for d in run.delays)
    correct = "yes" if not run.mismatches else f"{len(run.mismatches)} PRs differ"
    return [
        ("first sweep: GitHub time (requests)", _first(run, plan)),
        ("second cycle: requests, REST + GraphQL", _pair(run.settle.requests, 1)),
        ("idle: cycles", f"{idle.cycles}"),
        ("idle: requests per cycle, REST + GraphQL", _pair(idle.requests, idle.cycles)),
        ("idle: points per minute, REST + GraphQL", _pair(idle.points, minutes)),
        ("idle: most points in one minute, REST + GraphQL", _pair(idle.peak, 1)),
        ("idle: requests per hour", _n(sum(idle.requests.values()) / minutes * 60)),
        ("idle: primary points per hour, REST + GraphQL", _pair(idle.primary, minutes / 60)),
        (
            "with changes: points per minute, REST + GraphQL",
            _pair(changed.points, changed.seconds / plan.window),
        ),
        ("primary points, whole run, REST + GraphQL", _pair(whole.primary, 1)),
        ("most REST points in one minute, whole run (limit 900)", _n(whole.peak["rest"])),
        (
            "secondary-limit answers, whole run (of requests)",
            f"{_n(whole.refusals)} (of {_n(sum(whole.requests.values()))})",
        ),
        ("missed change to stored row, p50 / p99: intervals (GitHub s)", _delay(run, plan)),
        ("changes stored / made", f"{stored} / {len(run.delays)}"),
        ("store matches the fake (changed PRs); sync errors", f"{correct}; {run.errors}"),
        ("poller peak RSS", f"{run.rss_peak / 2**20:.0f} MB"),
    ]


def table(runs: Sequence[WorkerRun], plan: Plan) -> str:
    """Markdown: a row per metric, a column per (R, worker)."""
    header = [f"R = {_n(r.repos)}, N = {_n(r.prs)}: {WORKER_NAMES[r.worker]}" for r in runs]
    columns = [cells(run, plan) for run in runs]
    lines = ["| | " + " | ".join(header) + " |", "|---" + "|---:" * len(runs) + "|"]
    for i, (label, _) in enumerate(columns[0] if columns else []):
        lines.append("| " + " | ".join([label, *(column[i][1] for column in columns)]) + " |")
    for run in runs:
        if run.first_sweep is None:
            lines.append(
                f"\n{WORKER_NAMES[run.worker]} at R = {_n(run.repos)}: its first cycle had not "
                "ended when the cap was reached; the idle and change phases ran during it."
            )
    return "\n".join(lines)


@dataclass
class Check:
    ok: bool
    text: str


def checks(runs: Sequence[WorkerRun], plan: Plan) -> list[Check]:
    new = sorted((r for r in runs if r.worker == "new"), key=lambda r: r.repos)
    if not new:
        return [Check(False, "the new worker was not run")]
    small, large = new[0], new[-1]
    idle = sum(large.idle.points.values()) / (large.idle.seconds / plan.window)
    ratio = large.rss_peak / small.rss_peak
    found = [
        Check(
            large.whole.refusals == 0,
            f"R = {_n(large.repos)}: zero secondary-limit answers: {large.whole.refusals}",
        ),
        Check(
            idle <= TARGET_IDLE_POINTS,
            f"R = {_n(large.repos)}: idle cost <= {TARGET_IDLE_POINTS} points a minute (REST + "
            f"GraphQL, sweep included): {idle:.1f} (the most in one minute: "
            f"{sum(large.idle.peak.values())})",
        ),
        Check(
            small is not large and ratio <= TARGET_RSS_RATIO,
            f"peak RSS flat in R (within {TARGET_RSS_RATIO}x): {small.rss_peak / 2**20:.0f} MB "
            f"at R = {_n(small.repos)}, {large.rss_peak / 2**20:.0f} MB at "
            f"R = {_n(large.repos)}: {ratio:.2f}x",
        ),
    ]
    for run in new:
        p99 = percentile(run.delays, 99) / plan.interval
        found.append(
            Check(
                p99 <= TARGET_DELAY_INTERVALS,
                f"R = {_n(run.repos)}: a missed change stored within "
                f"{TARGET_DELAY_INTERVALS:g} intervals at p99: {p99:.2f}",
            )
        )
        found.append(
            Check(
                not run.mismatches and run.errors == 0,
                f"R = {_n(run.repos)} (check): the store matches the fake, no sync errors: "
                f"{len(run.mismatches)} mismatches, {run.errors} errors"
                + "".join(f"\n      {m}" for m in run.mismatches[:5]),
            )
        )
    return found


# -- the command line -----------------------------------------------------------------------


def _sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        r, _, n = part.partition(":")
        if not (r.isdigit() and n.isdigit() and 1 <= int(r) <= int(n) <= MAX_PRS):
            raise argparse.ArgumentTypeError(f"R:N with 1 <= R <= N <= {MAX_PRS:,}, not {part!r}")
        sizes.append((int(r), int(n)))
    return sizes


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Poller benchmark (see the module docstring).")
    add = parser.add_argument
    add("--sizes", type=_sizes, default=_sizes(DEFAULT_SIZES), help=f"R:N,... ({DEFAULT_SIZES})")
    add("--scale", type=float, default=10.0, help="time scale s (10: a minute is 6 s)")
    add("--changes", type=int, default=80, help="changes per run (80)")
    add("--idle-intervals", type=int, default=8, help="idle phase, intervals (8)")
    add("--change-intervals", type=int, default=12, help="changes spread over (12)")
    add("--drain-intervals", type=int, default=4, help="wait for the last change (4)")
    add("--first-sweep-cap", type=float, default=120.0, help="scaled seconds (120)")
    add("--workers", default="new,baseline", help="new,baseline (both)")
    add("--seed", type=int, default=1)
    add(
        "--postgres", nargs="?", const=DEFAULT_ADMIN_URL, default=None, metavar="ADMIN_URL",
        help=f"a scratch PostgreSQL database via ADMIN_URL ({DEFAULT_ADMIN_URL})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    workers = args.workers.split(",")
    if not workers or set(workers) - set(WORKER_NAMES):
        parser.error("--workers: new and/or baseline")
    if not 1 <= args.scale <= 60 or min(args.idle_intervals, args.change_intervals) < 1:
        parser.error("--scale between 1 and 60; phases of at least one interval")
    if any(2 * args.changes > n for _, n in args.sizes) or args.changes < 1:
        parser.error("--changes must be >= 1 and at most N / 2")
    return args


async def _main(args: argparse.Namespace, plan: Plan) -> int:
    from webhook_service.testing.fake_github import FakeGitHub

    started = time.monotonic()
    s = args.scale
    runs: list[WorkerRun] = []
    with tempfile.TemporaryDirectory(prefix="bench_poll_") as tmp:
        workdir = Path(tmp)
        roots = {"new": REPO_ROOT, "baseline": baseline_tree(workdir)}
        for repos, prs in args.sizes:
            async with FakeGitHub(
                rate_limit=PRIMARY_REST, graphql_rate_limit=PRIMARY_GRAPHQL,
                rate_window=3600 / s, secondary_window=60 / s, search_lag=SEARCH_LAG / s,
            ) as fake:  # fmt: skip
                t0 = time.monotonic()
                keys = populate(fake, repos, prs)
                log(f"R={repos:,} N={prs:,}: fake ready in {time.monotonic() - t0:.1f}s")
                rng = random.Random(f"{args.seed}-{repos}-{prs}")
                pool = rng.sample(keys, 2 * args.changes)
                for i, worker in enumerate(args.workers.split(",")):
                    async with _database(args, f"{worker}-{repos}", workdir) as url:
                        t0 = time.monotonic()
                        run = await run_worker(
                            plan, fake, worker=worker, keys=keys,
                            to_change=pool[i * args.changes : (i + 1) * args.changes],
                            database_url=url, workdir=workdir, package_root=roots[worker],
                        )  # fmt: skip
                    log(f"R={repos:,} {worker}: {time.monotonic() - t0:.0f}s")
                    runs.append(run)
    print(table(runs, plan))
    found = checks(runs, plan)
    print("\nTargets")
    for check in found:
        print(f"  {'PASS' if check.ok else 'FAIL'}  {check.text}")
    passed = all(check.ok for check in found)
    elapsed = time.monotonic() - started
    print(f"\n{'ALL PASS' if passed else 'SOME FAIL'}; the run took {elapsed / 60:.1f} min")
    return 0 if passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    plan = Plan(
        args.scale, args.changes, args.idle_intervals, args.change_intervals,
        args.drain_intervals, args.first_sweep_cap, args.seed,
    )  # fmt: skip
    try:
        return asyncio.run(_main(args, plan))
    except BenchError as exc:
        print(f"bench_poll: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
