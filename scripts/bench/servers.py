"""Servers under test on free loopback ports, and what they cost (RSS, CPU). A kind of
server is a command for a port and a readiness path: another server under test (another
bot framework as a baseline) is one more entry in ``KINDS``."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.report import BenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WEBHOOK_PATH = "/webhooks/github"


@dataclass(frozen=True)
class Kind:
    """``argv(port)``, ready once ``ready_path`` answers 200; it gets WEBHOOK_SECRET (and
    DATABASE_URL, if it stores) in its environment."""

    argv: Callable[[int], list[str]]
    ready_path: str = "/healthz"


def _baseline(which: str) -> Kind:
    return Kind(lambda port: [sys.executable, str(HERE / "baselines.py"), which, str(port)])


KINDS = {
    "webhook-service": Kind(lambda port: [sys.executable, "-m", "webhook_service", "serve",
                                          "--host", "127.0.0.1", "--port", str(port)], "/readyz"),
    "bare": _baseline("bare"),
    "sink": _baseline("sink"),
}  # fmt: skip
_ports: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never the same twice in one run."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _ports:
            _ports.add(port)
            return port


def python_env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (the code measured)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env | extra


class Server:
    """A server of one ``Kind`` on 127.0.0.1:port, stopped by :meth:`close`."""

    def __init__(self, kind: str, log: Path, env: dict[str, str], *, name: str = "") -> None:
        self.kind, self.name = KINDS[kind], name or kind
        self.port, self.log = free_port(), log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:  # cwd: no stray .env file is read
            self.proc = subprocess.Popen(
                self.kind.argv(self.port), env=python_env(**env), cwd=log.parent,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)  # fmt: skip
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            with contextlib.suppress(OSError), contextlib.closing(conn):
                conn.request("GET", self.kind.ready_path)
                if conn.getresponse().status == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"{self.name} was not ready within {timeout:.0f}s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def kill(self) -> None:
        """SIGKILL: nothing may depend on a graceful shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        stop(self.proc, 15)


def service(url: str, log: Path, secret: str, token: str, name: str, **env: str) -> Server:
    """``webhook-service serve`` on ``url`` (its WEBHOOK_SECRET and API_TOKEN)."""
    env |= {"WEBHOOK_SECRET": secret, "API_TOKEN": token, "DATABASE_URL": url,
            "LOG_LEVEL": "WARNING"}  # fmt: skip
    return Server("webhook-service", log, env, name=f"webhook-service ({name})")


def stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_answers(url: str) -> bool:
    """True if a Redis server at ``url``'s host and port answers PING (no AUTH tried)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1) as s:
            s.settimeout(1.0)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Sampler(threading.Thread):
    """A process tree's RSS (children included) every ``interval`` s; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        super().__init__(name="rss-sampler", daemon=True)
        self._proc, self._interval, self._halt = psutil.Process(pid), interval, threading.Event()
        self.peak = 0
        self.start()

    def sample(self) -> None:
        import psutil

        rss = 0
        with contextlib.suppress(psutil.Error):
            for proc in [self._proc, *self._proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss += int(proc.memory_info().rss)
        self.peak = max(self.peak, rss)

    def run(self) -> None:
        self.sample()
        while not self._halt.wait(self._interval):
            self.sample()
        self.sample()

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def cpu_seconds(pid: int | None) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times() if pid else None
    except psutil.Error:
        return 0.0
    return float(times.user + times.system) if times else 0.0


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine (guest time is in user time already)."""
    import psutil

    t = psutil.cpu_times()
    total = float(sum(t)) - float(getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0))
    idle = float(t.idle + getattr(t, "iowait", 0.0) + getattr(t, "steal", 0.0))
    return total - idle, total


def _postgres(database: str | None) -> dict[int, float]:
    """CPU seconds, by pid, of the PostgreSQL processes working for ``database``: its
    backends and its cluster's own (WAL writer, checkpointer...), not other databases'."""
    import psutil

    if database is None:
        return {}
    procs = [(p, " ".join(p.info["cmdline"] or [])) for p in
             psutil.process_iter(["name", "cmdline", "ppid"]) if p.info["name"] == "postgres"]
    ours = {p.pid for p, title in procs if f" {database} " in title}
    clusters = {p.info["ppid"] for p, _ in procs if p.pid in ours}
    times: dict[int, float] = {}
    for p, title in procs:
        with contextlib.suppress(psutil.Error):
            client = re.search(r"\(\d+\)|\[local\]", title)  # "host(port)" or "[local]"
            if p.pid in ours or (p.info["ppid"] in clusters and not client):
                t = p.cpu_times()
                times[p.pid] = float(t.user + t.system)
    return times


@dataclass(slots=True)
class Snapshot:
    """CPU seconds used so far by the machine, some processes and PostgreSQL."""

    at: float
    machine: tuple[float, float]
    pids: dict[int, float]
    postgres: dict[int, float]

    @classmethod
    def take(cls, pids: Iterable[int | None] = (), database: str | None = None) -> Snapshot:
        machine, pg = _machine(), _postgres(database)
        return cls(time.monotonic(), machine, {p: cpu_seconds(p) for p in pids if p}, pg)


@dataclass(slots=True)
class Cores:
    """Cores used on average between two snapshots."""

    machine: float = 0.0
    postgres: float = 0.0
    seconds: float = 0.0
    pids: dict[int, float] = field(default_factory=dict)

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> Cores:
        wall, spent = b.at - a.at, b.machine[1] - a.machine[1]
        if wall <= 0:
            return cls()
        share = (os.cpu_count() or 1) / spent if spent > 0 else 0.0
        return cls((b.machine[0] - a.machine[0]) * share,
                   sum(t - a.postgres.get(pid, 0.0) for pid, t in b.postgres.items()) / wall,
                   wall, {pid: (t - a.pids.get(pid, 0.0)) / wall for pid, t in b.pids.items()})
