"""Ingest benchmark: N signed, realistic pull_request deliveries at concurrency C.

    .venv/bin/python scripts/bench_ingest.py [--backend postgresql|sqlite|both]
        [-n N] [-c C] [--prs P] [--keep]

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
   ``webhook_deliveries`` with outcome ``applied`` (and nothing else is), and that
   ``pull_requests`` has exactly P rows.

The load is wrk with ``scripts/bench_ingest.lua``: every delivery is sent exactly
once, by C keep-alive connections (closed loop), and the run stops when all N have
been answered. Throughput is N / (last answer - first request); latencies are those
of the individual requests (see the Lua file for why not wrk's histogram).

Targets (2-core machine, one uvicorn worker, C=16): PostgreSQL >= 2,000 deliveries/s
with p99 <= 50 ms; SQLite >= 800 deliveries/s; peak RSS <= 120 MB; every 2xx stored
and applied. The exit status is 0 when every target passes, 1 otherwise, 2 on a
usage or setup error. Run ``--help`` for the options.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

MAX_DELIVERIES = 200_000
MAX_SECONDS = 120
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

    from webhook_service.fixtures import load_delivery

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

    from webhook_service.signature import sign

    started = time.monotonic()
    rng = random.Random(seed)
    templates = _load_templates()
    merged_by = templates["closed.merged"][0]["pull_request"]["merged_by"]
    secret = secrets.token_hex(16)

    prs: list[_PR] = []
    steps: list[_Step] = []
    final: Counter[str] = Counter()
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
        if not self.latencies_us:
            return float("nan")
        ordered = sorted(self.latencies_us)
        rank = max(1, -(-len(ordered) * pct // 100))
        return ordered[int(rank) - 1] / 1000.0


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
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BENCH_MANIFEST": str(workload.manifest),
        "BENCH_REQUESTS": str(workload.requests),
        "BENCH_THREADS": str(threads),
        "BENCH_OUT": str(out_dir),
    }
    argv = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max_seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
    ]
    markers = [out_dir / f"done.{i}" for i in range(threads)]
    busy0, steal0, total0 = _machine_cpu()
    pg0 = _postgres_cpu(database)
    driver0 = time.process_time()
    server0 = _cpu_seconds(server_pid) if server_pid else 0.0
    started = time.monotonic()
    with (out_dir / "wrk.out").open("wb") as wrk_out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=wrk_out, stderr=subprocess.STDOUT
        )
        try:
            wrk_cpu = 0.0
            deadline = started + max_seconds + 15
            complete = False
            while time.monotonic() < deadline and proc.poll() is None:
                wrk_cpu = _cpu_seconds(proc.pid) or wrk_cpu
                if all(m.exists() for m in markers):
                    complete = True
                    break
                time.sleep(0.01)
            wall = time.monotonic() - started
            busy1, steal1, total1 = _machine_cpu()
            pg1 = _postgres_cpu(database)
            driver1 = time.process_time()
            server1 = _cpu_seconds(server_pid) if server_pid else 0.0
            wrk_cpu = _cpu_seconds(proc.pid) or wrk_cpu
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # wrk would sleep for the whole -d
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = out_dir / "results.txt"
    if not results.exists():
        output = (out_dir / "wrk.out").read_text(errors="replace")
        raise BenchError(f"wrk produced no results (status {proc.returncode}):\n{output}")
    ncpu = os.cpu_count() or 1
    result = _parse_results(results, target=target)
    result.complete = complete and result.answered == workload.deliveries
    result.wall = wall
    result.wrk_cores = wrk_cpu / wall
    result.driver_cores = (driver1 - driver0) / wall
    result.server_cores = (server1 - server0) / wall
    share = ncpu / (total1 - total0) if total1 > total0 else 0.0
    result.machine_cores = (busy1 - busy0) * share
    result.steal_cores = (steal1 - steal0) * share
    result.postgres_cores = sum(t - pg0.get(pid, 0.0) for pid, t in pg1.items()) / wall
    return result


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

    def passed(self, ok_responses: int, prs: int) -> bool:
        return (
            self.rows == ok_responses == self.applied
            and self.missing == 0
            and self.extra == 0
            and self.prs == prs
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
    return v


def verify_postgres(url: str, ok_guids: Sequence[str]) -> Verification:
    import asyncpg

    async def run() -> Verification:
        conn = await asyncpg.connect(url)
        try:
            deliveries = await conn.fetch("SELECT guid, outcome, detail FROM webhook_deliveries")
            prs = await conn.fetch("SELECT status, COUNT(*) AS n FROM pull_requests GROUP BY 1")
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
        )

    return asyncio.run(run())


def verify_sqlite(path: Path, ok_guids: Sequence[str]) -> Verification:
    db = sqlite3.connect(path)
    try:
        deliveries = db.execute("SELECT guid, outcome, detail FROM webhook_deliveries").fetchall()
        prs = db.execute("SELECT status, COUNT(*) FROM pull_requests GROUP BY 1").fetchall()
        events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        db.close()
    return _summarise(Verification(), deliveries, prs, int(events), ok_guids)


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
class BackendResult:
    backend: str
    load: LoadResult
    peak_rss_mb: float
    idle_rss_mb: float
    verification: Verification
    seconds: float


def bench_backend(
    backend: str,
    args: argparse.Namespace,
    wrk: str,
    workload: Workload,
    tmp: Path,
    threads: int,
) -> BackendResult:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            url = stack.enter_context(scratch_postgres(args.postgres_url, args.keep, args.pg_set))
        else:
            url = f"sqlite:///{tmp / 'bench.db'}"
        port = _free_port()
        env = {
            **_python_env(),
            "WEBHOOK_SECRET": workload.secret,
            "API_TOKEN": secrets.token_hex(16),
            "DATABASE_URL": url,
            "LOG_LEVEL": "WARNING",
        }
        run_dir = tmp / backend
        run_dir.mkdir()
        server = Server(
            f"webhook-service ({backend})",
            _service_argv(port),
            port=port,
            env=env,
            log=run_dir / "server.log",
        )
        stack.callback(server.close)
        sampler = Sampler(server.pid)
        sampler.start()
        try:
            server.wait_ready("/readyz")
            idle = sampler.sample()
            _log(f"{backend}: server ready on port {port} (pid {server.pid}); sending load")
            load = run_wrk(
                wrk,
                workload,
                target=f"webhook-service/{backend}",
                port=port,
                connections=args.concurrency,
                threads=threads,
                max_seconds=args.max_seconds,
                out_dir=run_dir / "wrk",
                server_pid=server.pid,
                database=url.rpartition("/")[2] if backend == "postgresql" else None,
            )
        finally:
            peak = sampler.stop()
        # Nothing may rely on a graceful shutdown: every 2xx must already be durable.
        server.kill()
        if server.proc.returncode not in (0, -signal.SIGKILL):
            _log(f"{backend}: the server had exited with {server.proc.returncode}")
        _log(f"{backend}: verifying the database after SIGKILL of the server")
        if backend == "postgresql":
            verification = verify_postgres(url, load.ok_guids)
        else:
            verification = verify_sqlite(tmp / "bench.db", load.ok_guids)
    return BackendResult(
        backend=backend,
        load=load,
        peak_rss_mb=peak / 2**20,
        idle_rss_mb=idle / 2**20,
        verification=verification,
        seconds=time.monotonic() - started,
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

    columns = [r.backend for r in results]
    width = 22
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[str]) -> None:
        rows.append((label, values))

    row("deliveries/s", [_fmt_rate(r.load.rate) for r in results])
    row("ack p50 (ms)", [f"{r.load.percentile_ms(50):.2f}" for r in results])
    row("ack p99 (ms)", [f"{r.load.percentile_ms(99):.2f}" for r in results])
    row("ack max (ms)", [f"{r.load.percentile_ms(100):.2f}" for r in results])
    row("wrk-corrected p99 (ms)", [f"{r.load.wrk_p99_us / 1000:.2f}" for r in results])
    row("peak RSS (MB)", [f"{r.peak_rss_mb:.1f}" for r in results])
    row("RSS when ready (MB)", [f"{r.idle_rss_mb:.1f}" for r in results])
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
    row("events rows", [str(r.verification.events) for r in results])
    row("server CPU (cores)", [f"{r.load.server_cores:.2f}" for r in results])
    row("wrk CPU (cores)", [f"{r.load.wrk_cores:.2f}" for r in results])
    row("driver CPU (cores)", [f"{r.load.driver_cores:.2f}" for r in results])
    row(
        "postgres CPU (cores)",
        [f"{r.load.postgres_cores:.2f}" if r.backend == "postgresql" else "-" for r in results],
    )
    row("machine busy (cores)", [f"{r.load.machine_cores:.2f}" for r in results])
    row("stolen by hypervisor", [f"{r.load.steal_cores:.2f}" for r in results])
    row("load time (s)", [f"{r.load.seconds:.2f}" for r in results])

    checks: dict[str, list[str]] = {}
    for i, r in enumerate(results):
        pg = r.backend == "postgresql"
        rate_target = TARGET_PG_RATE if pg else TARGET_SQLITE_RATE
        r_checks: dict[str, tuple[bool, str] | None] = {
            "target deliveries/s": (
                r.load.rate >= rate_target and r.load.complete,
                f">= {rate_target:,.0f}",
            ),
            "target p99": (
                (r.load.percentile_ms(99) <= TARGET_PG_P99_MS, f"<= {TARGET_PG_P99_MS:.0f} ms")
                if pg
                else None
            ),
            "target peak RSS": (r.peak_rss_mb <= TARGET_RSS_MB, f"<= {TARGET_RSS_MB:.0f} MB"),
            "target 2xx stored+applied": (
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
        print(f"{r.backend}: outcomes: {details}")
        print(f"{r.backend}: stored PR status: {statuses}; run took {r.seconds:.1f}s")
        print(f"{r.backend}: deliveries answered per second: {_timeline(r.load.per_second)}")
        if r.verification.seq_scans:
            scans = ", ".join(
                f"{table} {n} ({rows / 1e6:.1f}M rows read)"
                for table, (n, rows) in r.verification.seq_scans.items()
            )
            print(f"{r.backend}: sequential scans during the run: {scans}")
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
        results = [bench_backend(b, args, wrk, workload, tmp, threads) for b in backends]
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
