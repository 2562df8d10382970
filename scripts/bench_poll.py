"""Poller benchmark at organization scale: this sync worker against the previous one.

Workload, per R:N: a FakeGitHub with N open PRs over R repositories, its time scaled by
s (GitHub's minute: 60/s seconds). Per worker, in a process with its own token and SQLite
database: the first sweep, the cycle after it, idle intervals, then changes without a
webhook at random moments, each timed to the stored row (figures in GitHub time).
Baseline, same run: the poller of c353fc9 (every repository every cycle, unpaced, 5 at
once). Targets, this worker: at the largest R no secondary-limit answer and <= 100 points
a minute idle; a missed change's p99 <= 2 intervals at every R; peak RSS at the largest R
<= 1.3x the smallest's; the store matching the fake, no sync errors. Default: ~17 min.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import report, scratch_db
from bench.poll import FIRST_SWEEP_CAP, Plan, WorkerRun, baseline_tree, populate, run_worker
from bench.report import Outcome, log, percentile, verdict
from bench.servers import REPO_ROOT

MAX_PRS = 100_000
PRIMARY_REST, PRIMARY_GRAPHQL = 12_500, 5_000  # an hour: an App installation's ceiling
SEARCH_LAG = 10.0  # GitHub seconds before search sees a change
TARGET_IDLE_POINTS, TARGET_DELAY_INTERVALS, TARGET_RSS_RATIO = 100, 2.0, 1.3
WORKER_NAMES = {"new": "this worker", "baseline": "baseline (c353fc9)"}


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _pair(values: dict[str, int], per: float = 1) -> str:
    """REST + GraphQL, divided by ``per`` (cycles, minutes, hours)."""
    ok = per and not math.isnan(per)
    return f"{_n(values['rest'] / per)} + {_n(values['graphql'] / per)}" if ok else "n/a"


def cells(run: WorkerRun, plan: Plan) -> list[tuple[str, str]]:
    """The table's rows for one run: (label, value)."""
    idle, whole, minutes = run.idle, run.whole, run.idle.seconds / plan.window  # GitHub's
    p50, p99 = (percentile(run.delays, pct) for pct in (50, 99))
    intervals = ["never" if math.isinf(d) else f"{d / plan.window:.2f}" for d in (p50, p99)]
    github = ["-" if math.isinf(d) else _n(d * plan.scale) for d in (p50, p99)]
    first = (f"{run.first_sweep * plan.scale / 60:.1f} min" if run.first_sweep is not None
             else f"not done in {FIRST_SWEEP_CAP * plan.scale / 60:.0f} min")  # fmt: skip
    correct = "yes" if not run.mismatches else f"{len(run.mismatches)} PRs differ"
    return [
        ("first sweep: GitHub time (requests)", f"{first} ({_n(sum(run.first.requests.values()))}"
         " req)"),
        ("second cycle: requests, REST + GraphQL", _pair(run.settle.requests)),
        ("idle: cycles", f"{idle.cycles}"),
        ("idle: requests per cycle, REST + GraphQL", _pair(idle.requests, idle.cycles)),
        ("idle: points per minute, REST + GraphQL", _pair(idle.points, minutes)),
        ("idle: most points in one minute, REST + GraphQL", _pair(idle.peak)),
        ("idle: requests per hour", _n(sum(idle.requests.values()) / minutes * 60)),
        ("idle: primary points per hour, REST + GraphQL", _pair(idle.primary, minutes / 60)),
        ("with changes: points per minute, REST + GraphQL",
         _pair(run.changed.points, run.changed.seconds / plan.window)),
        ("primary points, whole run, REST + GraphQL", _pair(whole.primary)),
        ("most REST points in one minute, whole run (limit 900)", _n(whole.peak["rest"])),
        ("secondary-limit answers, whole run (of requests)",
         f"{_n(whole.refusals)} (of {_n(sum(whole.requests.values()))})"),
        ("missed change to stored row, p50 / p99: intervals (GitHub s)",
         f"{intervals[0]} / {intervals[1]} ({github[0]} / {github[1]} s)"),
        ("changes stored / made", f"{sum(d is not None for d in run.delays)} / {len(run.delays)}"),
        ("store matches the fake (changed PRs); sync errors", f"{correct}; {run.errors}"),
        ("poller peak RSS", f"{run.rss_peak / 2**20:.0f} MB"),
    ]  # fmt: skip


def checks(runs: Sequence[WorkerRun], plan: Plan) -> list[tuple[bool, str]]:
    new = sorted((r for r in runs if r.worker == "new"), key=lambda r: r.repos)
    small, large = new[0], new[-1]
    idle = sum(large.idle.points.values()) / (large.idle.seconds / plan.window)
    ratio = large.rss_peak / small.rss_peak
    mb = [f"{r.rss_peak / 2**20:.0f}" for r in (small, large)]
    found = [
        (large.whole.refusals == 0,
         f"R = {_n(large.repos)}: zero secondary-limit answers: {large.whole.refusals}"),
        (idle <= TARGET_IDLE_POINTS, f"R = {_n(large.repos)}: idle cost <= {TARGET_IDLE_POINTS} "
         f"points a minute (REST + GraphQL, sweep included): {idle:.1f} (the most in one minute: "
         f"{sum(large.idle.peak.values())})"),
        (small is not large and ratio <= TARGET_RSS_RATIO, f"peak RSS flat in R (within "
         f"{TARGET_RSS_RATIO}x): {mb[0]} MB at R = {_n(small.repos)}, {mb[1]} MB at R = "
         f"{_n(large.repos)}: {ratio:.2f}x"),
    ]  # fmt: skip
    for run in new:
        p99 = percentile(run.delays, 99) / plan.window
        found.append((p99 <= TARGET_DELAY_INTERVALS, f"R = {_n(run.repos)}: a missed change "
                      f"stored within {TARGET_DELAY_INTERVALS:g} intervals at p99: {p99:.2f}"))
        examples = "".join(f"\n      {m}" for m in run.mismatches[:5])
        found.append((not run.mismatches and run.errors == 0, f"R = {_n(run.repos)} (check): the "
                      f"store matches the fake, no sync errors: {len(run.mismatches)} mismatches, "
                      f"{run.errors} errors{examples}"))
    return found


def _sizes(text: str) -> list[tuple[int, int]] | None:
    """R:N,... (1 <= R <= N <= MAX_PRS), or None."""
    with contextlib.suppress(ValueError):
        sizes = [(int(r), int(n)) for r, n in (part.split(":") for part in text.split(","))]
        return sizes if all(1 <= r <= n <= MAX_PRS for r, n in sizes) else None
    return None


async def _measure(args: argparse.Namespace, plan: Plan, workdir: Path) -> list[WorkerRun]:
    from webhook_service.testing.fake_github import FakeGitHub

    s, runs, roots = args.scale, [], {"new": REPO_ROOT, "baseline": baseline_tree(workdir)}
    for repos, prs in args.sizes:
        async with FakeGitHub(rate_limit=PRIMARY_REST, graphql_rate_limit=PRIMARY_GRAPHQL,
                              rate_window=3600 / s, secondary_window=60 / s,
                              search_lag=SEARCH_LAG / s) as fake:  # fmt: skip
            keys = populate(fake, repos, prs)
            pool = random.Random(f"{args.seed}-{repos}-{prs}").sample(keys, 2 * args.changes)
            for i, worker in enumerate(WORKER_NAMES):
                name = f"bench_poll_{worker}_{repos}"
                with scratch_db.scratch("sqlite", "", workdir, name, args.keep) as url:
                    t0 = time.monotonic()
                    runs.append(await run_worker(
                        plan, fake, worker=worker, keys=keys, database_url=url, workdir=workdir,
                        to_change=pool[i * args.changes : (i + 1) * args.changes],
                        package_root=roots[worker]))  # fmt: skip
                log(f"R={repos:,} {worker}: {time.monotonic() - t0:.0f}s")
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = report.parse(__doc__, [
        ("--sizes", "10:1000,1000:10000,5000:50000", "R:N,..."),
        ("--scale", 10.0, "time scale s (10: a minute is 6 s)", (1, 60)),
        ("--changes", 80, "changes per run", (1, MAX_PRS)),
        ("--idle-intervals", 8, "idle phase, intervals", (1, 1000)),
        ("--change-intervals", 12, "changes spread over, intervals", (1, 1000)),
        ("--seed", 1, "random seed"),
    ], argv, lambda a: [
        (_sizes(a.sizes) is None, f"--sizes: R:N,... with 1 <= R <= N <= {MAX_PRS:,}"),
        (any(2 * a.changes > n for _, n in _sizes(a.sizes) or []), "--changes: at most N / 2"),
    ])  # fmt: skip
    args.sizes = _sizes(args.sizes)
    plan = Plan(args.scale, args.changes, args.idle_intervals, args.change_intervals, args.seed)

    def body(tmp: Path) -> Outcome:
        runs = asyncio.run(_measure(args, plan, tmp))
        columns = [cells(run, plan) for run in runs]
        header = [f"R = {_n(r.repos)}, N = {_n(r.prs)}: {WORKER_NAMES[r.worker]}" for r in runs]
        rows = [(label, [c[i][1] for c in columns]) for i, (label, _) in enumerate(columns[0])]
        print(report.markdown(header, rows) + "\n\nTargets")
        for ok, text in (found := checks(runs, plan)):
            print(f"  {verdict(ok)}  {text}")
        return all(ok for ok, _ in found), dict(zip(header, map(dict, columns), strict=True))

    return report.run("bench_poll", args, body)


if __name__ == "__main__":
    sys.exit(main())
