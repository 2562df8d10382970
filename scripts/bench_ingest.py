"""Ingest benchmark: N signed, realistic pull_request deliveries at concurrency C.

    .venv-dev/bin/python scripts/bench_ingest.py [--backend postgresql|sqlite|both]
        [-n N] [-c C] [--prs P] [--keep]
        [--replicas R] [--message-queue URL|none]    (R > 1: --backend postgresql)

What one run does (everything on 127.0.0.1, bounded in count and time):

1. Generates N deliveries from the recorded fixtures (``fixtures/deliveries/
   pull_request``): P pull requests over a few repositories, each with a story
   (opened, possibly as a draft; pushes, labels, review requests, draft toggles,
   sometimes closed and reopened; finally merged, closed, or left open), with
   ``updated_at`` increasing along the story and ``state``/``merged``/``merged_at``/
   ``closed_at`` consistent with it. The deliveries of all PRs are interleaved in
   time order. Each body is the fixture re-serialised with two-space indentation
   (~28 KB, like the originals), signed with a per-run secret
   (``X-Hub-Signature-256``) and given its own ``X-GitHub-Delivery`` GUID.
2. Measures the load generator's ceiling: the same wrk load against a minimal
   asyncio/uvloop HTTP sink that answers without parsing the body.
3. Measures a bare Starlette endpoint (reads the body, answers 200 JSON) under the
   same uvicorn settings as ``webhook-service serve``, with the same load.
4. For each backend: a scratch database (PostgreSQL: a new database, dropped at the
   end; SQLite: a file in the temp dir), ``webhook-service serve`` on a free port,
   the load, the server's peak RSS (sampled every 50 ms, children included), then
   SIGKILL of the server and a check that every 2xx delivery is in
   ``webhook_deliveries`` with outcome ``applied`` (and nothing else is), that
   ``pull_requests`` has exactly P rows, and that each PR's row is as its last delivery
   says (status, draft, head SHA, ``updated_at``), whatever order they arrived in.
5. With ``--replicas R`` (R > 1, PostgreSQL only), after the one-replica run of step 4
   (the baseline, in the same run): R ``webhook-service serve`` processes on R loopback
   ports sharing one new scratch database and, as a deployment of several replicas
   would, one ``SOCKETIO_MESSAGE_QUEUE`` (``--message-queue``; by default the local
   Redis if it answers). The deliveries are dealt round-robin to R wrk processes, one
   per replica with C/R connections (the total concurrency stays C), all started at
   once; throughput is all answers / (last answer of any - first request of any), the
   latency percentiles are over every replica's requests, and each replica's share,
   peak RSS and CPU are reported too, then the ratio to the one-replica run. Writes of
   all replicas serialise on one PostgreSQL advisory lock (``store.connections._WRITER_LOCK``), so
   do not expect R times the rate, least of all with R processes on 2 cores. The R
   wrk processes drift apart a little, so some deliveries overtake an earlier one about
   the same PR (outcomes ``stale``/``terminal``): the final-state check covers that.
   The one-replica run has no message queue (a single replica is deployed without
   one); to measure what the queue alone costs, run ``--replicas 1 --message-queue
   URL``.

The load is wrk with ``scripts/bench_ingest.lua``: every delivery is sent exactly
once, by C keep-alive connections (closed loop), and the run stops when all N have
been answered. Throughput is N / (last answer - first request); latencies are those
of the individual requests (see the Lua file for why not wrk's histogram).

Targets (2-core machine, one uvicorn worker, C=16): PostgreSQL >= 2,000 deliveries/s
with p99 <= 50 ms; SQLite >= 800 deliveries/s; peak RSS <= 120 MB; every 2xx stored
and applied. The R-replica run has the same targets except the rate (the ratio to one
replica is the figure; peak RSS is each replica's). The exit status is 0 when every
target passes, 1 otherwise, 2 on a usage or setup error. Run ``--help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import itertools
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

MAX_DELIVERIES = 200_000
MAX_SECONDS = 120
MAX_REPLICAS = 4
DEFAULT_MESSAGE_QUEUE = "redis://127.0.0.1:6379/0"
WEBHOOK_PATH = "/webhooks/github"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_PG_RATE = 2000.0
TARGET_PG_P99_MS = 50.0
TARGET_SQLITE_RATE = 800.0
TARGET_RSS_MB = 120.0

REPO_ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path(__file__).resolve().with_name("bench_ingest.lua")
FIXTURES = REPO_ROOT / "fixtures" / "deliveries" / "pull_request"

#: Repositories the PRs are spread over (the octo-org ones use the
#: ``.with-organization`` fixture variants where there is one).
REPOSITORIES = (
    "Codertocat/Hello-World",
    "octo-org/octo-repo",
    "octo-org/api-server",
    "Codertocat/docs",
)
#: Fixture stem for each step of a story (``merged`` is a closed+merged delivery).
TEMPLATES = {
    "opened": "opened",
    "synchronize": "synchronize",
    "labeled": "labeled",
    "unlabeled": "unlabeled",
    "assigned": "assigned",
    "unassigned": "unassigned",
    "review_requested": "review_requested",
    "review_request_removed": "review_request_removed",
    "ready_for_review": "ready_for_review",
    "converted_to_draft": "converted_to_draft",
    "locked": "locked",
    "unlocked": "unlocked",
    "closed": "closed",
    "merged": "closed.merged",
    "reopened": "reopened",
}
#: Updates in the middle of a story, with their relative frequency.
UPDATES = (
    ("synchronize", 8),
    ("labeled", 3),
    ("review_requested", 3),
    ("assigned", 2),
    ("unlabeled", 1),
    ("unassigned", 1),
    ("review_request_removed", 1),
    ("converted_to_draft", 1),
    ("locked", 0.2),
    ("unlocked", 0.2),
)
EPOCH_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z
#: The timeline lasts N minutes (at least a day), so about one delivery arrives per
#: minute. The deliveries about one PR are 200 minutes to days apart (squeezed for very
#: long stories, which must fit in half the timeline), and every story ends within the
#: timeline: a few hundred other deliveries come between two about the same PR, so
#: they rarely overtake each other at C ~ 16 (as with GitHub, they can).
SECONDS_PER_DELIVERY = 60
MIN_GAP_SECONDS = 200 * 60
MEAN_EXTRA_GAP_SECONDS = 12 * 3600


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A setup step failed; the message says what to do."""


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


# -- workload ---------------------------------------------------------------------------


@dataclass(slots=True)
class _PR:
    repository: str
    number: int
    github_id: int
    created_at: int
    title: str
    head_ref: str
    draft: bool = False
    state: str = "open"
    merged: bool = False
    closed_at: int | None = None
    merged_at: int | None = None
    head_sha: str = ""
    commits: int = 1


@dataclass(frozen=True, slots=True)
class _Step:
    at: int
    pr: int
    seq: int
    kind: str  # a TEMPLATES key


@dataclass(slots=True)
class Workload:
    directory: Path
    manifest: Path
    requests: Path
    secret: str
    deliveries: int
    prs: int
    body_bytes: int
    actions: Counter[str]
    final_status: Counter[str]  # OPEN / CLOSED / MERGED, from the last step of each story
    transitions: int  # status changes along the stories (first sightings excluded)
    seconds: float
    #: (repository, number) -> what its last delivery says: (status, draft, head SHA,
    #: updated_at as epoch seconds); whatever order the deliveries arrive in, the stored
    #: row must end up so (older ones are stale, a merge is final and always last).
    expected: dict[tuple[str, int], tuple[str, bool, str, int]]


def _story(rng: random.Random, length: int) -> list[str]:
    """The steps of one PR's life: opened, updates, and (usually) an ending."""
    steps = ["opened"]
    draft = rng.random() < 0.2
    if draft:
        steps[0] = "opened-draft"
    if length == 1:
        return steps
    ends = rng.random() < 0.85
    middle = length - 1 - (1 if ends else 0)
    reopen_at = rng.randrange(middle - 1) if middle >= 3 and rng.random() < 0.1 else -1
    i = 0
    names = [u[0] for u in UPDATES]
    weights = [u[1] for u in UPDATES]
    while i < middle:
        if i == reopen_at:
            steps += ["closed", "reopened"]
            i += 2
            continue
        if draft and rng.random() < 0.4:
            kind = "ready_for_review"
        else:
            kind = rng.choices(names, weights)[0]
            if kind == "converted_to_draft" and draft:
                kind = "synchronize"
        draft = {"ready_for_review": False, "converted_to_draft": True}.get(kind, draft)
        steps.append(kind)
        i += 1
    if ends:
        # A draft cannot be merged; it can be closed.
        steps.append("merged" if not draft and rng.random() < 0.75 else "closed")
    return steps


def _lengths(rng: random.Random, n: int, p: int) -> list[int]:
    """P story lengths >= 1 summing to N, skewed (a few PRs get many deliveries)."""
    lengths = [1] * p
    if n > p:
        weights = [rng.lognormvariate(0.0, 0.8) for _ in range(p)]
        for index in rng.choices(range(p), weights, k=n - p):
            lengths[index] += 1
    return lengths


def _timestamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def _load_templates() -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    import orjson

    from webhook_service.ingest.fixtures import load_delivery

    templates: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
    for path in sorted(FIXTURES.glob("*.json")):
        delivery = load_delivery(path)
        templates[path.stem] = (orjson.loads(delivery.body), dict(delivery.headers))
    missing = sorted(set(TEMPLATES.values()) - set(templates))
    if missing:
        raise BenchError(f"fixtures missing under {FIXTURES}: {', '.join(missing)}")
    return templates


def _render(doc: dict[str, Any], pr: _PR, at: int, merged_by: Any) -> None:
    """Point the fixture ``doc`` at ``pr`` as it is at time ``at`` (in place)."""
    owner, name = pr.repository.split("/")
    api = f"https://api.github.com/repos/{pr.repository}"
    web = f"https://github.com/{pr.repository}"
    n = pr.number
    doc["number"] = n
    p = doc["pull_request"]
    p.update(
        url=f"{api}/pulls/{n}",
        id=pr.github_id,
        node_id=base64.b64encode(f"011:PullRequest{pr.github_id}".encode()).decode(),
        html_url=f"{web}/pull/{n}",
        diff_url=f"{web}/pull/{n}.diff",
        patch_url=f"{web}/pull/{n}.patch",
        issue_url=f"{api}/issues/{n}",
        commits_url=f"{api}/pulls/{n}/commits",
        review_comments_url=f"{api}/pulls/{n}/comments",
        comments_url=f"{api}/issues/{n}/comments",
        statuses_url=f"{api}/statuses/{pr.head_sha}",
        number=n,
        state=pr.state,
        title=pr.title,
        draft=pr.draft,
        created_at=_timestamp(pr.created_at),
        updated_at=_timestamp(at),
        closed_at=_timestamp(pr.closed_at) if pr.closed_at is not None else None,
        merged_at=_timestamp(pr.merged_at) if pr.merged_at is not None else None,
        merged=pr.merged,
        merged_by=merged_by if pr.merged else None,
        commits=pr.commits,
    )
    head = p["head"]
    head.update(ref=pr.head_ref, sha=pr.head_sha, label=f"{owner}:{pr.head_ref}")
    for side in (head, p["base"]):
        repo = side.get("repo")
        if isinstance(repo, dict):
            repo.update(full_name=pr.repository, name=name)
    repository = doc["repository"]
    repository.update(full_name=pr.repository, name=name, html_url=web, url=api)


def generate_workload(directory: Path, n: int, p: int, seed: int) -> Workload:
    """Write ``requests.bin`` and ``manifest.txt`` for N deliveries about P PRs."""
    import orjson

    from webhook_service.ingest.signature import sign

    started = time.monotonic()
    rng = random.Random(seed)
    templates = _load_templates()
    merged_by = templates["closed.merged"][0]["pull_request"]["merged_by"]
    secret = secrets.token_hex(16)

    prs: list[_PR] = []
    steps: list[_Step] = []
    final: Counter[str] = Counter()
    last_step: list[tuple[str, int]] = []  # per PR: final status, updated_at
    transitions = 0
    timeline = max(86_400, n * SECONDS_PER_DELIVERY)
    for index, length in enumerate(_lengths(rng, n, p)):
        repository = REPOSITORIES[index % len(REPOSITORIES)]
        number = index // len(REPOSITORIES) + 1
        kinds = _story(rng, length)
        gaps = [MIN_GAP_SECONDS + rng.expovariate(1 / MEAN_EXTRA_GAP_SECONDS) for _ in kinds[1:]]
        squeeze = min(1.0, timeline / 2 / sum(gaps)) if gaps else 1.0
        offsets = [0, *itertools.accumulate(max(1, int(g * squeeze)) for g in gaps)]
        created = EPOCH_2024 + rng.randrange(max(1, timeline - offsets[-1]))
        pr = _PR(
            repository=repository,
            number=number,
            github_id=300_000_000 + index,
            created_at=created,
            title=f"Change {number} in {repository}",
            head_ref=f"feature/{number}-{rng.getrandbits(24):06x}",
        )
        prs.append(pr)
        status = "OPEN"
        for seq, (kind, offset) in enumerate(zip(kinds, offsets, strict=True)):
            steps.append(_Step(created + offset, index, seq, kind))
            new_status = {"merged": "MERGED", "closed": "CLOSED"}.get(kind, "OPEN")
            if seq and new_status != status:
                transitions += 1
            status = new_status
        final[status] += 1
        last_step.append((status, created + offsets[-1]))
    steps.sort(key=lambda s: (s.at, s.pr, s.seq))

    manifest = directory / "manifest.txt"
    requests = directory / "requests.bin"
    actions: Counter[str] = Counter()
    offset = 0
    body_bytes = 0
    secret_bytes = secret.encode()
    with requests.open("wb") as out, manifest.open("w") as index_file:
        for step in steps:
            pr = prs[step.pr]
            kind = step.kind
            if kind == "opened-draft":
                kind = "opened"
                pr.draft = True
            _advance(pr, kind, step.at, rng)
            stem = TEMPLATES[kind]
            if pr.repository.startswith("octo-org/") and f"{stem}.with-organization" in templates:
                stem = f"{stem}.with-organization"
            doc, fixture_headers = templates[stem]
            _render(doc, pr, step.at, merged_by)
            body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
            guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            headers = {
                **fixture_headers,
                "X-GitHub-Delivery": guid,
                "X-Hub-Signature-256": sign(body, secret=secret_bytes),
                "Content-Length": str(len(body)),
            }
            chunk = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n" + body
            out.write(chunk)
            index_file.write(f"{offset} {len(chunk)} {guid}\n")
            offset += len(chunk)
            body_bytes += len(body)
            actions[doc["action"] + (".merged" if kind == "merged" else "")] += 1
    return Workload(
        directory=directory,
        manifest=manifest,
        requests=requests,
        secret=secret,
        deliveries=len(steps),
        prs=p,
        body_bytes=body_bytes,
        actions=actions,
        final_status=final,
        transitions=transitions,
        seconds=time.monotonic() - started,
        expected={
            (pr.repository, pr.number): (status, pr.draft, pr.head_sha, at)
            for pr, (status, at) in zip(prs, last_step, strict=True)
        },
    )


def _advance(pr: _PR, kind: str, at: int, rng: random.Random) -> None:
    """Apply one step of the story to the PR's state."""
    if kind in ("opened", "synchronize") or not pr.head_sha:
        pr.head_sha = _sha(rng)
        if kind == "synchronize":
            pr.commits += 1
    if kind == "ready_for_review":
        pr.draft = False
    elif kind == "converted_to_draft":
        pr.draft = True
    elif kind == "closed":
        pr.state, pr.closed_at = "closed", at
    elif kind == "merged":
        pr.state, pr.closed_at, pr.merged_at, pr.merged = "closed", at, at, True
    elif kind == "reopened":
        pr.state, pr.closed_at = "open", None


# -- processes ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _http_status(port: int, path: str) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()
    except OSError:
        return None


class Server:
    """A server subprocess on 127.0.0.1:port, stopped by :meth:`close`."""

    def __init__(
        self, name: str, argv: Sequence[str], *, port: int, env: dict[str, str], log: Path
    ) -> None:
        self.name = name
        self.port = port
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                list(argv),
                env=env,
                cwd=log.parent,  # no stray .env file is read
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}"
                )
            if _http_status(self.port, path) == 200:
                return
            time.sleep(0.1)
        raise BenchError(f"{self.name} was not ready within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: nothing may depend on a graceful shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Sampler(threading.Thread):
    """Samples a process tree's RSS every ``interval`` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        import psutil

        self._proc = psutil.Process(pid)
        self._interval = interval
        self._halt = threading.Event()
        self.peak = 0
        self.samples = 0
        self.sample()

    def sample(self) -> int:
        import psutil

        rss = 0
        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                rss += int(proc.memory_info().rss)
        self.peak = max(self.peak, rss)
        self.samples += 1
        return rss

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            self.sample()

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.sample()
        return self.peak


def _cpu_seconds(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _machine_cpu() -> tuple[float, float, float]:
    """(busy, stolen, total) CPU seconds of the whole machine so far.

    "Stolen" is time the hypervisor gave to other guests (a noisy neighbour)."""
    import psutil

    t = psutil.cpu_times()
    # On Linux, guest time is already included in user time.
    total = float(sum(t)) - float(getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0))
    idle = float(t.idle + getattr(t, "iowait", 0.0))
    steal = float(getattr(t, "steal", 0.0))
    return total - idle - steal, steal, total


def _background_load(seconds: float = 1.0) -> float:
    """How many cores other work keeps busy right now (the benchmark competes with it)."""
    busy0, _, total0 = _machine_cpu()
    time.sleep(seconds)
    busy1, _, total1 = _machine_cpu()
    ncpu = os.cpu_count() or 1
    return (busy1 - busy0) / (total1 - total0) * ncpu if total1 > total0 else 0.0


def _postgres_cpu(database: str | None) -> dict[int, float]:
    """CPU seconds, by pid, of the PostgreSQL processes working for ``database``: its
    backends and its cluster's own processes (WAL writer, checkpointer, autovacuum...),
    not the backends of other databases."""
    import psutil

    if database is None:
        return {}
    procs: list[tuple[Any, str]] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres":
            procs.append((proc, " ".join(proc.info["cmdline"] or [])))
    ours = {p.pid for p, title in procs if f" {database} " in title}
    clusters = set()
    for proc, _ in procs:
        if proc.pid in ours:
            with contextlib.suppress(psutil.Error):
                clusters.add(proc.ppid())
    times: dict[int, float] = {}
    for proc, title in procs:
        with contextlib.suppress(psutil.Error):
            client = re.search(r"\(\d+\)|\[local\]", title)  # "host(port)" or "[local]"
            aux = proc.ppid() in clusters and not client
            if proc.pid in ours or aux:
                t = proc.cpu_times()
                times[proc.pid] = float(t.user + t.system)
    return times


# -- load -------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadResult:
    target: str
    complete: bool
    sent: int
    answered: int
    unmatched: int
    statuses: Counter[int]
    latencies_us: list[int]
    ok_guids: list[str]
    seconds: float  # first request to last answer
    per_second: list[int]  # answers in each second since the first request (per thread)
    wrk_p50_us: int
    wrk_p99_us: int
    socket_errors: dict[str, int]
    wrk_cores: float
    driver_cores: float  # this script (polling, RSS sampling)
    server_cores: float
    postgres_cores: float
    machine_cores: float
    steal_cores: float
    wall: float
    first_us: int  # the first request and the last answer, on CLOCK_MONOTONIC (us)
    last_us: int

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> int:
        return sum(v for k, v in self.statuses.items() if 200 <= k < 300)

    @property
    def not_ok(self) -> int:
        return self.answered - self.ok

    def percentile_ms(self, pct: float) -> float:
        """Nearest-rank percentile of the per-request latencies, in ms."""
        return percentile(sorted(self.latencies_us), pct) / 1000.0


@dataclass(frozen=True, slots=True)
class Leg:
    """One wrk process: its share of the workload (a manifest), against one server."""

    port: int
    manifest: Path
    deliveries: int
    connections: int
    out_dir: Path
    server_pid: int | None = None


def run_wrk(
    wrk: str,
    workload: Workload,
    *,
    target: str,
    port: int,
    connections: int,
    threads: int,
    max_seconds: int,
    out_dir: Path,
    server_pid: int | None = None,
    database: str | None = None,
) -> LoadResult:
    """One closed-loop pass over the whole workload; returns when all N are answered."""
    leg = Leg(port, workload.manifest, workload.deliveries, connections, out_dir, server_pid)
    total, _ = run_wrk_legs(
        wrk,
        workload,
        [leg],
        target=target,
        threads=threads,
        max_seconds=max_seconds,
        database=database,
    )
    return total


def run_wrk_legs(
    wrk: str,
    workload: Workload,
    legs: Sequence[Leg],
    *,
    target: str,
    threads: int,
    max_seconds: int,
    database: str | None = None,
) -> tuple[LoadResult, list[LoadResult]]:
    """One wrk process per leg, all at once; returns when every leg has all its answers.

    Returns the whole (answers, latencies and server CPU added up; its ``seconds`` run
    from the first request of any leg to the last answer of any, on the one monotonic
    clock every wrk reads) and each leg's own result (``seconds`` its own first request
    to last answer; ``server_cores`` and ``wrk_cores`` its own, over the whole run).
    Machine, PostgreSQL and driver CPU are only in the whole."""
    procs: list[subprocess.Popen[bytes]] = []
    markers: list[list[Path]] = []
    argvs: list[tuple[list[str], dict[str, str]]] = []
    for leg in legs:
        leg.out_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "BENCH_MANIFEST": str(leg.manifest),
            "BENCH_REQUESTS": str(workload.requests),
            "BENCH_THREADS": str(threads),
            "BENCH_OUT": str(leg.out_dir),
        }
        argv = [
            wrk,
            "-t",
            str(threads),
            "-c",
            str(leg.connections),
            "-d",
            f"{max_seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(LUA_SCRIPT),
            f"http://127.0.0.1:{leg.port}{WEBHOOK_PATH}",
        ]
        argvs.append((argv, env))
        markers.append([leg.out_dir / f"done.{i}" for i in range(threads)])
    busy0, steal0, total0 = _machine_cpu()
    pg0 = _postgres_cpu(database)
    driver0 = time.process_time()
    servers0 = [_cpu_seconds(leg.server_pid) if leg.server_pid else 0.0 for leg in legs]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        for leg, (argv, env) in zip(legs, argvs, strict=True):
            wrk_out = stack.enter_context((leg.out_dir / "wrk.out").open("wb"))
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=wrk_out, stderr=subprocess.STDOUT
            )
            procs.append(proc)
            stack.callback(_reap, proc)
        wrk_cpu = [0.0] * len(legs)
        finished: list[bool | None] = [None] * len(legs)  # None: running; True: all answered
        deadline = started + max_seconds + 15
        while time.monotonic() < deadline and None in finished:
            for i, proc in enumerate(procs):
                if finished[i] is not None:
                    continue
                wrk_cpu[i] = _cpu_seconds(proc.pid) or wrk_cpu[i]
                if all(m.exists() for m in markers[i]):
                    finished[i] = True
                elif proc.poll() is not None:
                    finished[i] = False  # wrk gave up (or failed) before every answer
            time.sleep(0.01)
        wall = time.monotonic() - started
        busy1, steal1, total1 = _machine_cpu()
        pg1 = _postgres_cpu(database)
        driver1 = time.process_time()
        servers1 = [_cpu_seconds(leg.server_pid) if leg.server_pid else 0.0 for leg in legs]
        for i, proc in enumerate(procs):
            wrk_cpu[i] = _cpu_seconds(proc.pid) or wrk_cpu[i]
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # wrk would sleep for the whole -d
        for proc in procs:
            proc.wait(timeout=30)
    results: list[LoadResult] = []
    for i, leg in enumerate(legs):
        path = leg.out_dir / "results.txt"
        if not path.exists():
            output = (leg.out_dir / "wrk.out").read_text(errors="replace")
            raise BenchError(f"wrk produced no results (status {procs[i].returncode}):\n{output}")
        name = target if len(legs) == 1 else f"{target} #{i + 1}"
        result = _parse_results(path, target=name)
        result.complete = bool(finished[i]) and result.answered == leg.deliveries
        result.wall = wall
        result.wrk_cores = wrk_cpu[i] / wall
        result.server_cores = (servers1[i] - servers0[i]) / wall
        results.append(result)
    total = results[0] if len(results) == 1 else _merge_loads(target, results)
    total.complete = all(r.complete for r in results) and total.answered == workload.deliveries
    ncpu = os.cpu_count() or 1
    total.driver_cores = (driver1 - driver0) / wall
    share = ncpu / (total1 - total0) if total1 > total0 else 0.0
    total.machine_cores = (busy1 - busy0) * share
    total.steal_cores = (steal1 - steal0) * share
    total.postgres_cores = sum(t - pg0.get(pid, 0.0) for pid, t in pg1.items()) / wall
    return total, results


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _merge_loads(target: str, parts: Sequence[LoadResult]) -> LoadResult:
    """The legs of one run as one: counts and latencies added up, the time from the
    first request of any to the last answer of any. (wrk's own corrected percentiles
    cannot be merged: the worst leg's are kept.)"""
    first = min((p.first_us for p in parts if p.first_us), default=0)
    last = max((p.last_us for p in parts if p.last_us), default=0)
    per_second: Counter[int] = Counter()
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for p in parts:
        shift = (p.first_us - first) // 1_000_000 if p.first_us else 0
        for second, answers in enumerate(p.per_second):
            per_second[second + shift] += answers
        statuses.update(p.statuses)
        errors.update(p.socket_errors)
    return LoadResult(
        target=target,
        complete=all(p.complete for p in parts),
        sent=sum(p.sent for p in parts),
        answered=sum(p.answered for p in parts),
        unmatched=sum(p.unmatched for p in parts),
        statuses=statuses,
        latencies_us=[us for p in parts for us in p.latencies_us],
        ok_guids=[g for p in parts for g in p.ok_guids],
        seconds=(last - first) / 1e6 if first and last else 0.0,
        per_second=[per_second[i] for i in range(max(per_second, default=-1) + 1)],
        wrk_p50_us=max(p.wrk_p50_us for p in parts),
        wrk_p99_us=max(p.wrk_p99_us for p in parts),
        socket_errors=dict(errors),
        wrk_cores=sum(p.wrk_cores for p in parts),
        driver_cores=0.0,
        server_cores=sum(p.server_cores for p in parts),
        postgres_cores=0.0,
        machine_cores=0.0,
        steal_cores=0.0,
        wall=max(p.wall for p in parts),
        first_us=first,
        last_us=last,
    )


def _parse_results(path: Path, *, target: str) -> LoadResult:
    statuses: Counter[int] = Counter()
    per_second: Counter[int] = Counter()
    latencies: list[int] = []
    ok_guids: list[str] = []
    sent = answered = unmatched = 0
    first: list[int] = []
    last: list[int] = []
    errors: dict[str, int] = {}
    wrk_p50 = wrk_p99 = 0
    with path.open() as lines:
        for line in lines:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "lat":
                latencies.append(int(float(rest)))
            elif kind == "ok":
                ok_guids.append(rest)
            elif kind == "status":
                code, count = rest.split()
                statuses[int(code)] += int(count)
            elif kind == "second":
                second, answers = (int(v) for v in rest.split())
                per_second[second] += answers
            elif kind == "thread":
                _, _share, t_sent, t_answered, t_unmatched, t_first, t_last = map(int, rest.split())
                sent += t_sent
                answered += t_answered
                unmatched += t_unmatched
                if t_first:
                    first.append(t_first)
                if t_last:
                    last.append(t_last)
            elif kind == "summary":
                values = [int(v) for v in rest.split()]
                errors = dict(
                    zip(("connect", "read", "write", "status", "timeout"), values[3:], strict=True)
                )
            elif kind == "wrk_latency":
                wrk_p50, wrk_p99 = (int(v) for v in rest.split()[:2])
    seconds = (max(last) - min(first)) / 1e6 if first and last else 0.0
    return LoadResult(
        target=target,
        complete=False,
        sent=sent,
        answered=answered,
        unmatched=unmatched,
        statuses=statuses,
        latencies_us=latencies,
        ok_guids=ok_guids,
        seconds=seconds,
        per_second=[per_second[i] for i in range(max(per_second, default=-1) + 1)],
        wrk_p50_us=wrk_p50,
        wrk_p99_us=wrk_p99,
        socket_errors={k: v for k, v in errors.items() if k != "status"},
        wrk_cores=0.0,
        driver_cores=0.0,
        server_cores=0.0,
        postgres_cores=0.0,
        machine_cores=0.0,
        steal_cores=0.0,
        wall=0.0,
        first_us=min(first, default=0),
        last_us=max(last, default=0),
    )


# -- the servers under test ---------------------------------------------------------------


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _self_argv(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _service_argv(port: int) -> list[str]:
    script = Path(sys.executable).with_name("webhook-service")
    if script.exists():
        return [str(script), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, "-m", "webhook_service", "serve", "--host", "127.0.0.1", "--port",
            str(port)]  # fmt: skip


@contextlib.contextmanager
def running(server: Server, ready_path: str) -> Iterator[Server]:
    try:
        server.wait_ready(ready_path)
        yield server
    finally:
        server.close()


def serve_bare(port: int) -> int:
    """The baseline: a Starlette endpoint that reads the body and answers 200 JSON,
    under the same uvicorn settings as ``webhook-service serve``."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def webhook(request: Request) -> Response:
        body = await request.body()
        return JSONResponse(
            {"guid": request.headers.get("x-github-delivery", ""), "bytes": len(body)}
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=8,
    )
    return 0


class _SinkProtocol(asyncio.Protocol):
    """Answers each request as soon as its bytes are in; echoes X-GitHub-Delivery."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            guid = b""
            for line in bytes(self._buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-github-delivery":
                    guid = value.strip()
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            del self._buffer[:total]
            body = b'{"guid":"' + guid + b'","status":"ok"}'
            assert self._transport is not None
            self._transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )


def serve_sink(port: int) -> int:
    """The load generator's ceiling: the cheapest possible server (uvloop, no parsing)."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_SinkProtocol, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())
    return 0


def _redis_answers(url: str) -> bool:
    """True if a Redis server at ``url``'s host and port answers PING (no AUTH tried)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), 1.0
        ) as s:
            s.settimeout(1.0)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _message_queue(option: str | None) -> str | None:
    """The replicas' SOCKETIO_MESSAGE_QUEUE: the option's, or the local Redis if up."""
    if option is not None:
        return None if option.lower() == "none" else option
    if _redis_answers(DEFAULT_MESSAGE_QUEUE):
        return DEFAULT_MESSAGE_QUEUE
    _log(f"no Redis answers at {DEFAULT_MESSAGE_QUEUE}: the replicas run without a message queue")
    return None


# -- databases ----------------------------------------------------------------------------


@dataclass(slots=True)
class Verification:
    rows: int = 0
    applied: int = 0
    details: Counter[str] = field(default_factory=Counter)
    missing: int = 0  # 2xx GUIDs not stored as applied
    extra: int = 0  # stored GUIDs that got no 2xx
    prs: int = 0
    pr_status: Counter[str] = field(default_factory=Counter)
    events: int = 0
    seq_scans: dict[str, tuple[int, int]] = field(default_factory=dict)  # PostgreSQL only
    wrong_prs: int = 0  # rows whose status/draft/head/updated_at are not the last delivery's
    wrong_examples: list[str] = field(default_factory=list)

    def passed(self, ok_responses: int, prs: int) -> bool:
        return (
            self.rows == ok_responses == self.applied
            and self.missing == 0
            and self.extra == 0
            and self.prs == prs
            and self.wrong_prs == 0
        )


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _pg_admin(admin_url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def scratch_postgres(admin_url: str, keep: bool, settings: Sequence[str] = ()) -> Iterator[str]:
    """A new, empty database; ``settings`` (NAME=VALUE) become its defaults."""
    name = f"bench_ingest_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        _pg_admin(admin_url, f'CREATE DATABASE "{name}"')
        for setting in settings:
            key, _, value = setting.partition("=")
            quoted = value.replace("'", "''")
            _pg_admin(admin_url, f"ALTER DATABASE \"{name}\" SET {key} = '{quoted}'")
    except Exception as exc:
        with contextlib.suppress(Exception):
            _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        raise BenchError(f"cannot create a scratch database via {admin_url}: {exc}") from exc
    try:
        yield _with_database(admin_url, name)
    finally:
        if keep:
            _log(f"kept PostgreSQL database {name}")
        else:
            _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _summarise(
    v: Verification,
    delivery_rows: list[tuple[str, str, str | None]],
    pr_rows: list[tuple[str, int]],
    events: int,
    ok_guids: Sequence[str],
    final_rows: list[tuple[str, int, str, bool, str, int]],
    expected: dict[tuple[str, int], tuple[str, bool, str, int]],
) -> Verification:
    ok = set(ok_guids)
    applied = {g for g, outcome, _ in delivery_rows if outcome == "applied"}
    stored = {g for g, _, _ in delivery_rows}
    v.rows = len(delivery_rows)
    v.applied = len(applied)
    v.details = Counter(f"{outcome}/{detail}" for _, outcome, detail in delivery_rows)
    v.missing = len(ok - applied)
    v.extra = len(stored - ok)
    v.pr_status = Counter({status: count for status, count in pr_rows})
    v.prs = sum(v.pr_status.values())
    v.events = events
    final = {(repo, number): (s, draft, sha, at) for repo, number, s, draft, sha, at in final_rows}
    for key, want in sorted(expected.items()):
        got = final.get(key)
        if got != want:
            v.wrong_prs += 1
            if len(v.wrong_examples) < 3:
                v.wrong_examples.append(f"{key[0]}#{key[1]}: stored {got}, want {want}")
    return v


def _epoch(value: Any) -> int:
    """A stored timestamp (datetime from asyncpg, ISO text from SQLite) in epoch seconds."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return int(value.timestamp())


def verify_postgres(
    url: str, ok_guids: Sequence[str], workload: Workload | None = None
) -> Verification:
    """Counts; with ``workload``, also each PR's final state (``Workload.expected``)."""
    import asyncpg

    async def run() -> Verification:
        conn = await asyncpg.connect(url)
        try:
            deliveries = await conn.fetch("SELECT guid, outcome, detail FROM webhook_deliveries")
            prs = await conn.fetch("SELECT status, COUNT(*) AS n FROM pull_requests GROUP BY 1")
            final = await conn.fetch(
                "SELECT repository, number, status, draft, head_sha, github_updated_at"
                " FROM pull_requests"
            )
            events = await conn.fetchval("SELECT COUNT(*) FROM events")
            scans = await conn.fetch(
                "SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables"
                " WHERE seq_tup_read > 0 ORDER BY seq_tup_read DESC"
            )
        finally:
            await conn.close()
        verification = Verification(
            seq_scans={
                str(r["relname"]): (int(r["seq_scan"]), int(r["seq_tup_read"])) for r in scans
            }
        )
        return _summarise(
            verification,
            [(str(r["guid"]), str(r["outcome"]), r["detail"]) for r in deliveries],
            [(str(r["status"]), int(r["n"])) for r in prs],
            int(events),
            ok_guids,
            [(str(r[0]), int(r[1]), str(r[2]), bool(r[3]), str(r[4]), _epoch(r[5])) for r in final],
            workload.expected if workload else {},
        )

    return asyncio.run(run())


def verify_sqlite(
    path: Path, ok_guids: Sequence[str], workload: Workload | None = None
) -> Verification:
    """As :func:`verify_postgres`."""
    db = sqlite3.connect(path)
    try:
        deliveries = db.execute("SELECT guid, outcome, detail FROM webhook_deliveries").fetchall()
        prs = db.execute("SELECT status, COUNT(*) FROM pull_requests GROUP BY 1").fetchall()
        events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        final = db.execute(
            "SELECT repository, number, status, draft, head_sha, github_updated_at"
            " FROM pull_requests"
        ).fetchall()
    finally:
        db.close()
    final_rows = [
        (str(r[0]), int(r[1]), str(r[2]), bool(r[3]), str(r[4]), _epoch(r[5])) for r in final
    ]
    return _summarise(
        Verification(),
        deliveries,
        prs,
        int(events),
        ok_guids,
        final_rows,
        workload.expected if workload else {},
    )


def _pg_settings(admin_url: str) -> str:
    import asyncpg

    async def run() -> str:
        conn = await asyncpg.connect(admin_url)
        try:
            values = [
                f"{name}={await conn.fetchval(f'SHOW {name}')}"
                for name in ("fsync", "synchronous_commit", "wal_sync_method")
            ]
        finally:
            await conn.close()
        return ", ".join(values)

    return asyncio.run(run())


# -- one backend ------------------------------------------------------------------------


@dataclass(slots=True)
class Replica:
    """One ``webhook-service serve`` of a run: its share of the load, memory and CPU."""

    port: int
    load: LoadResult  # with one replica, the run's (the whole load)
    peak_rss_mb: float
    idle_rss_mb: float


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
        """The largest replica's peak."""
        return max(r.peak_rss_mb for r in self.replicas)

    def each(self, fmt: Callable[[Replica], str]) -> str:
        return " / ".join(fmt(r) for r in self.replicas)


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _split_manifest(workload: Workload, parts: int, directory: Path) -> list[tuple[Path, int]]:
    """Deliveries k, k+parts, k+2*parts, ... for part k (as a load balancer's round robin
    would spread them): one manifest each, pointing into the same requests file."""
    if parts == 1:
        return [(workload.manifest, workload.deliveries)]
    paths = [directory / f"manifest.{k + 1}.txt" for k in range(parts)]
    counts = [0] * parts
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(path.open("w")) for path in paths]
        with workload.manifest.open() as lines:
            for index, line in enumerate(lines):
                outs[index % parts].write(line)
                counts[index % parts] += 1
    return list(zip(paths, counts, strict=True))


def bench_backend(
    backend: str,
    args: argparse.Namespace,
    wrk: str,
    workload: Workload,
    tmp: Path,
    threads: int,
    *,
    replicas: int = 1,
    message_queue: str | None = None,
) -> BackendResult:
    """The workload against ``replicas`` servers sharing one scratch database: with more
    than one, one wrk per replica with C/replicas connections and every replica-th
    delivery, all at once (with ``message_queue`` as SOCKETIO_MESSAGE_QUEUE)."""
    started = time.monotonic()
    name = backend if replicas == 1 else f"{backend}-x{replicas}"
    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            url = stack.enter_context(scratch_postgres(args.postgres_url, args.keep, args.pg_set))
        else:
            url = f"sqlite:///{tmp / 'bench.db'}"
        env = {
            **_python_env(),
            "WEBHOOK_SECRET": workload.secret,
            "API_TOKEN": secrets.token_hex(16),
            "DATABASE_URL": url,
            "LOG_LEVEL": "WARNING",
        }
        if message_queue:
            env["SOCKETIO_MESSAGE_QUEUE"] = message_queue
        run_dir = tmp / name
        run_dir.mkdir()
        servers: list[Server] = []
        samplers: list[Sampler] = []
        try:
            # One after the other, so that each replica's start-up is measured alone
            # (started at once they wait for each other's migration: Store.migrate).
            for k, port in enumerate(_free_ports(replicas)):
                suffix = "" if replicas == 1 else f".{k + 1}"
                server = Server(
                    f"webhook-service ({backend}{suffix})",
                    _service_argv(port),
                    port=port,
                    env=env,
                    log=run_dir / f"server{suffix}.log",
                )
                stack.callback(server.close)
                servers.append(server)
                samplers.append(Sampler(server.pid))
                samplers[-1].start()
                server.wait_ready("/readyz")
            idle = [sampler.sample() for sampler in samplers]
            where = ", ".join(f"port {s.port} (pid {s.pid})" for s in servers)
            _log(f"{name}: {replicas} server(s) ready on {where}; sending load")
            legs = [
                Leg(
                    port=server.port,
                    manifest=manifest,
                    deliveries=count,
                    connections=args.concurrency // replicas,
                    out_dir=run_dir / ("wrk" if replicas == 1 else f"wrk.{k + 1}"),
                    server_pid=server.pid,
                )
                for k, (server, (manifest, count)) in enumerate(
                    zip(servers, _split_manifest(workload, replicas, run_dir), strict=True)
                )
            ]
            load, parts = run_wrk_legs(
                wrk,
                workload,
                legs,
                target=f"webhook-service/{name}",
                threads=threads,
                max_seconds=args.max_seconds,
                database=url.rpartition("/")[2] if backend == "postgresql" else None,
            )
        finally:
            peaks = [sampler.stop() for sampler in samplers]
        # Nothing may rely on a graceful shutdown: every 2xx must already be durable.
        for server in servers:
            server.kill()
            if server.proc.returncode not in (0, -signal.SIGKILL):
                _log(f"{server.name}: the server had exited with {server.proc.returncode}")
        _log(f"{name}: verifying the database after SIGKILL of the server(s)")
        if backend == "postgresql":
            verification = verify_postgres(url, load.ok_guids, workload)
        else:
            verification = verify_sqlite(tmp / "bench.db", load.ok_guids, workload)
    return BackendResult(
        backend=backend,
        load=load,
        verification=verification,
        seconds=time.monotonic() - started,
        replicas=[
            Replica(port=s.port, load=part, peak_rss_mb=peak / 2**20, idle_rss_mb=i / 2**20)
            for s, part, peak, i in zip(servers, parts, peaks, idle, strict=True)
        ],
        message_queue=message_queue,
    )


def bench_reference(
    name: str,
    argv: list[str],
    port: int,
    args: argparse.Namespace,
    wrk: str,
    workload: Workload,
    tmp: Path,
    threads: int,
) -> LoadResult:
    run_dir = tmp / name
    run_dir.mkdir()
    server = Server(name, argv, port=port, env=_python_env(), log=run_dir / "server.log")
    with running(server, "/healthz"):
        _log(f"{name}: ready on port {port}; sending load")
        return run_wrk(
            wrk,
            workload,
            target=name,
            port=port,
            connections=args.concurrency,
            threads=threads,
            max_seconds=args.max_seconds,
            out_dir=run_dir / "wrk",
            server_pid=server.pid,
        )


# -- report -----------------------------------------------------------------------------


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def _timeline(per_second: Sequence[int]) -> str:
    """Answers in each whole second of the run (the last, partial second is left out)."""
    full = list(per_second[:-1]) if len(per_second) > 1 else list(per_second)
    if len(full) > 40:  # keep the line short: averages over equal slices
        step = len(full) / 40
        full = [
            round(
                sum(full[int(i * step) : int((i + 1) * step)])
                / (int((i + 1) * step) - int(i * step))
            )
            for i in range(40)
        ]
    return " ".join(str(v) for v in full)


def _ratio(r: BackendResult, one: BackendResult | None) -> str:
    if len(r.replicas) == 1 or one is None or not one.load.rate:
        return "-"
    return f"{r.load.rate / one.load.rate:.2f}"


def _report_replicas(r: BackendResult, one: BackendResult | None) -> None:
    """Each replica's share, then the whole against one replica in the same run."""
    print()
    for k, replica in enumerate(r.replicas, 1):
        part = replica.load
        print(
            f"{r.label}: replica {k} (port {replica.port}): {part.ok:,} of {part.answered:,}"
            f" acknowledged 2xx, {_fmt_rate(part.rate)} deliveries/s over its"
            f" {part.seconds:.2f} s, p50 {part.percentile_ms(50):.2f} ms,"
            f" p99 {part.percentile_ms(99):.2f} ms, peak RSS {replica.peak_rss_mb:.1f} MB,"
            f" CPU {part.server_cores:.2f} cores" + ("" if part.complete else "  INCOMPLETE")
        )
    total = r.load
    print(
        f"{r.label}: total {_fmt_rate(total.rate)} deliveries/s ({total.answered:,} answered"
        f" in {total.seconds:.2f} s, first request to last answer), p50"
        f" {total.percentile_ms(50):.2f} ms, p99 {total.percentile_ms(99):.2f} ms (all"
        f" replicas' requests), server CPU {total.server_cores:.2f} + PostgreSQL"
        f" {total.postgres_cores:.2f} cores"
    )
    if one is not None:
        print(
            f"{r.label}: one replica, same workload, same run: {_fmt_rate(one.load.rate)}"
            f" deliveries/s, p99 {one.load.percentile_ms(99):.2f} ms, CPU"
            f" {one.load.server_cores:.2f} + PostgreSQL {one.load.postgres_cores:.2f} cores"
            f" -> {len(r.replicas)} replicas / 1 replica = {_ratio(r, one)}"
        )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(
    workload: Workload,
    args: argparse.Namespace,
    threads: int,
    sink: LoadResult,
    bare: LoadResult,
    results: Sequence[BackendResult],
    pg_settings: str | None,
    background: float,
) -> bool:
    """Print the tables; True if every target passes."""
    all_pass = True
    print()
    print(
        f"bench_ingest: N={workload.deliveries} deliveries, C={args.concurrency} connections "
        f"(wrk -t {threads}), P={workload.prs} PRs over {len(REPOSITORIES)} repositories, "
        f"bodies {workload.body_bytes / workload.deliveries / 1024:.1f} KiB on average"
    )
    print(
        "  actions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(workload.actions.items(), key=lambda i: -i[1]))
    )
    print(
        "  expected final PR status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(workload.final_status.items()))
        + f"; {workload.transitions} status transitions after the first sighting"
    )
    print(
        f"  machine: {os.cpu_count()} CPUs, {background:.2f} cores busy before the run "
        "(other work: it competes with the benchmark); uvicorn: 1 worker (uvloop + httptools)"
    )
    for r in results:
        if len(r.replicas) == 1 and r.message_queue:
            print(f"  {r.label}: SOCKETIO_MESSAGE_QUEUE {r.message_queue}")
        if len(r.replicas) > 1:
            n = len(r.replicas)
            print(
                f"  {r.label}: {n} webhook-service processes on one database, one wrk each "
                f"(C/{n} = {args.concurrency // n} connections, deliveries dealt round-robin), "
                f"all at once; SOCKETIO_MESSAGE_QUEUE {r.message_queue or 'none'} (the one "
                "replica runs without one, as it is deployed)"
            )
    if pg_settings:
        extra = "".join(f", {s}" for s in args.pg_set)
        print(f"  PostgreSQL: {pg_settings}{extra}")
    print()
    print("Load generator (wrk + bench_ingest.lua), same requests, C connections:")
    for label, ref in (("sink (ceiling)", sink), ("bare Starlette", bare)):
        print(
            f"  {label:<16} {_fmt_rate(ref.rate):>8} deliveries/s"
            f"  p50 {ref.percentile_ms(50):6.2f} ms"
            f"  p99 {ref.percentile_ms(99):6.2f} ms  wrk CPU {ref.wrk_cores:4.2f} cores"
            f" (+{ref.driver_cores:4.2f} driver)  "
            f"server CPU {ref.server_cores:4.2f}  machine busy {ref.machine_cores:4.2f}/"
            f"{os.cpu_count()} (+{ref.steal_cores:4.2f} stolen)  {ref.ok} 2xx / {ref.not_ok} other"
            + ("" if ref.complete else "  INCOMPLETE")
        )
    print()

    columns = [r.label for r in results]
    single = {r.backend: r for r in results if len(r.replicas) == 1}
    width = 22
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[str]) -> None:
        rows.append((label, values))

    row("deliveries/s", [_fmt_rate(r.load.rate) for r in results])
    row("ack p50 (ms)", [f"{r.load.percentile_ms(50):.2f}" for r in results])
    row("ack p99 (ms)", [f"{r.load.percentile_ms(99):.2f}" for r in results])
    row("ack max (ms)", [f"{r.load.percentile_ms(100):.2f}" for r in results])
    row("wrk-corrected p99 (ms)", [f"{r.load.wrk_p99_us / 1000:.2f}" for r in results])
    row("peak RSS (MB)", [r.each(lambda x: f"{x.peak_rss_mb:.1f}") for r in results])
    row("RSS when ready (MB)", [r.each(lambda x: f"{x.idle_rss_mb:.1f}") for r in results])
    row("bare Starlette deliv/s", [_fmt_rate(bare.rate) for _ in results])
    row("service / bare", [f"{r.load.rate / bare.rate:.2f}" if bare.rate else "-" for r in results])
    row("2xx / non-2xx", [f"{r.load.ok} / {r.load.not_ok}" for r in results])
    row(
        "socket errors",
        [str(sum(r.load.socket_errors.values())) for r in results],
    )
    row("stored & applied", [f"{r.verification.applied} / {r.verification.rows}" for r in results])
    row(
        "2xx missing / extra",
        [f"{r.verification.missing} / {r.verification.extra}" for r in results],
    )
    row("pull_requests rows", [f"{r.verification.prs} (want {workload.prs})" for r in results])
    row("PR final state wrong", [str(r.verification.wrong_prs) for r in results])
    row("events rows", [str(r.verification.events) for r in results])
    row("server CPU (cores)", [r.each(lambda x: f"{x.load.server_cores:.2f}") for r in results])
    row("wrk CPU (cores)", [f"{r.load.wrk_cores:.2f}" for r in results])
    row("driver CPU (cores)", [f"{r.load.driver_cores:.2f}" for r in results])
    row(
        "postgres CPU (cores)",
        [f"{r.load.postgres_cores:.2f}" if r.backend == "postgresql" else "-" for r in results],
    )
    row("machine busy (cores)", [f"{r.load.machine_cores:.2f}" for r in results])
    row("stolen by hypervisor", [f"{r.load.steal_cores:.2f}" for r in results])
    row("load time (s)", [f"{r.load.seconds:.2f}" for r in results])
    if len(single) < len(results):
        row("vs one replica (rate)", [_ratio(r, single.get(r.backend)) for r in results])

    checks: dict[str, list[str]] = {}
    for i, r in enumerate(results):
        pg = r.backend == "postgresql"
        rate_target = TARGET_PG_RATE if pg else TARGET_SQLITE_RATE
        r_checks: dict[str, tuple[bool, str] | None] = {
            # The targets are for one replica; the ratio row tells what more bring.
            "target deliveries/s": (
                (r.load.rate >= rate_target and r.load.complete, f">= {rate_target:,.0f}")
                if len(r.replicas) == 1
                else None
            ),
            "target p99": (
                (r.load.percentile_ms(99) <= TARGET_PG_P99_MS, f"<= {TARGET_PG_P99_MS:.0f} ms")
                if pg
                else None
            ),
            "target peak RSS": (r.peak_rss_mb <= TARGET_RSS_MB, f"<= {TARGET_RSS_MB:.0f} MB"),
            "target 2xx stored+applied, PRs right": (
                r.load.complete
                and r.load.not_ok == 0
                and r.verification.passed(r.load.ok, workload.prs),
                "all",
            ),
        }
        for label, check in r_checks.items():
            cells = checks.setdefault(label, ["n/a"] * len(results))
            if check is not None:
                ok, goal = check
                all_pass &= ok
                cells[i] = f"{_verdict(ok)} ({goal})"
    rows.extend(checks.items())

    label_width = max(len(label) for label, _ in rows) + 2
    print(" " * label_width + "".join(f"{c:>{width}}" for c in columns))
    for label, values in rows:
        print(f"{label:<{label_width}}" + "".join(f"{v:>{width}}" for v in values))
    print()
    for r in results:
        details = ", ".join(f"{k} {v}" for k, v in sorted(r.verification.details.items()))
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r.verification.pr_status.items()))
        print(f"{r.label}: outcomes: {details}")
        print(f"{r.label}: stored PR status: {statuses}; run took {r.seconds:.1f}s")
        for example in r.verification.wrong_examples:
            print(f"{r.label}: PR final state wrong: {example}")
        print(f"{r.label}: deliveries answered per second: {_timeline(r.load.per_second)}")
        if r.verification.seq_scans:
            scans = ", ".join(
                f"{table} {n} ({rows / 1e6:.1f}M rows read)"
                for table, (n, rows) in r.verification.seq_scans.items()
            )
            print(f"{r.label}: sequential scans during the run: {scans}")
    for r in results:
        if len(r.replicas) > 1:
            _report_replicas(r, single.get(r.backend))
    print()
    print(f"OVERALL: {_verdict(all_pass)}")
    return all_pass


# -- main -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_ingest.py",
        description="Benchmark webhook ingestion (see the module docstring).",
    )
    parser.add_argument(
        "--backend", choices=("postgresql", "sqlite", "both"), default="both", help="(both)"
    )
    parser.add_argument("-n", "--deliveries", type=int, default=20_000, help="N (20000)")
    parser.add_argument("-c", "--concurrency", type=int, default=16, help="C (16)")
    parser.add_argument("--prs", type=int, help="P distinct pull requests (N/4)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (1); must divide C. One thread keeps the deliveries in order "
        "(with 2, the threads drift hundreds of deliveries apart and about 1%% of "
        "deliveries overtake an earlier one about the same PR); it is far from saturated",
    )
    parser.add_argument(
        "--max-seconds",
        type=int,
        default=MAX_SECONDS,
        help=f"give up a load run after this long ({MAX_SECONDS}, the maximum)",
    )
    parser.add_argument("--seed", type=int, default=1, help="workload random seed (1)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL),
        help="a PostgreSQL database to create the scratch database from "
        "(BENCH_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the scratch PostgreSQL database (ALTER DATABASE ... SET), "
        "e.g. plan_cache_mode=force_custom_plan; repeatable",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help=f"(1) with N > 1 (PostgreSQL only, at most {MAX_REPLICAS}): after the usual "
        "one-replica run, N webhook-service processes on one scratch database take the same "
        "workload, one wrk each with C/N connections and every Nth delivery, all at once; "
        "the report compares the two runs",
    )
    parser.add_argument(
        "--message-queue",
        metavar="URL",
        help="SOCKETIO_MESSAGE_QUEUE of the N replicas, or 'none' (default: "
        f"{DEFAULT_MESSAGE_QUEUE} if it answers PING, else none). The one-replica run has "
        "none, unless this is given with --replicas 1 (to measure what the queue costs)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir and the scratch database"
    )
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--sink-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.bare_server is not None:
        return serve_bare(args.bare_server)
    if args.sink_server is not None:
        return serve_sink(args.sink_server)

    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "bench_ingest: error: wrk is not installed (or not on PATH); install it, e.g.\n"
            "    sudo apt-get install -y wrk        (Debian/Ubuntu)\n"
            "    brew install wrk                   (macOS)",
            file=sys.stderr,
        )
        return 2
    n, c = args.deliveries, args.concurrency
    if not 1 <= n <= MAX_DELIVERIES:
        parser.error(f"-n must be between 1 and {MAX_DELIVERIES:,}")
    if not 1 <= c <= 1024:
        parser.error("-c must be between 1 and 1024")
    prs = args.prs if args.prs is not None else max(1, n // 4)
    if not 1 <= prs <= n:
        parser.error("--prs must be between 1 and N")
    threads = args.threads
    if threads < 1 or c % threads:
        parser.error("--threads must divide -c (wrk gives each thread C/T connections)")
    if not 5 <= args.max_seconds <= MAX_SECONDS:
        parser.error(f"--max-seconds must be between 5 and {MAX_SECONDS}")
    for setting in args.pg_set:
        if not re.fullmatch(r"[a-z_][a-z0-9_.]*=[^\x00]*", setting):
            parser.error(f"--pg-set wants NAME=VALUE, got {setting!r}")
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    replicas = args.replicas
    if not 1 <= replicas <= MAX_REPLICAS:
        parser.error(f"--replicas must be between 1 and {MAX_REPLICAS}")
    if replicas > 1:
        if backends != ["postgresql"]:
            parser.error(
                "--replicas N > 1 is PostgreSQL only: pass --backend postgresql (replicas "
                "share one database server; a SQLite file is not shared across replicas)"
            )
        if c % replicas or (c // replicas) % threads:
            parser.error(
                "--replicas must divide -c, and --threads must divide C/N (each replica's "
                "wrk gets C/N connections, so the total stays C)"
            )

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest."))
    try:
        pg_settings = _pg_settings(args.postgres_url) if "postgresql" in backends else None
        background = _background_load()
        if background > 0.2:
            _log(f"warning: the machine is already busy ({background:.2f} cores): noisy figures")
        _log(f"generating {n} deliveries about {prs} PRs in {tmp}")
        workload = generate_workload(tmp, n, prs, args.seed)
        _log(
            f"generated {workload.requests.stat().st_size / 2**20:.0f} MiB of requests "
            f"in {workload.seconds:.1f}s"
        )
        port = _free_port()
        sink = bench_reference(
            "sink", _self_argv("--sink-server", str(port)), port, args, wrk, workload, tmp, threads
        )
        port = _free_port()
        bare = bench_reference(
            "bare", _self_argv("--bare-server", str(port)), port, args, wrk, workload, tmp, threads
        )
        # With one replica, a message queue only if asked for (what it alone costs).
        single_queue = None
        if replicas == 1 and args.message_queue is not None:
            single_queue = _message_queue(args.message_queue)
        results = [
            bench_backend(b, args, wrk, workload, tmp, threads, message_queue=single_queue)
            for b in backends
        ]
        if replicas > 1:
            queue = _message_queue(args.message_queue)
            results.append(
                bench_backend(
                    "postgresql",
                    args,
                    wrk,
                    workload,
                    tmp,
                    threads,
                    replicas=replicas,
                    message_queue=queue,
                )
            )
        passed = report(workload, args, threads, sink, bare, results, pg_settings, background)
        print(f"total time: {time.monotonic() - started:.1f}s")
        return 0 if passed else 1
    except BenchError as exc:
        print(f"bench_ingest: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            _log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
