"""Servers under test on free loopback ports, and what they cost (RSS, CPU). A kind of
server is a command for a port and a readiness path: another server under test (another
bot framework as a baseline) is one more entry in ``KINDS``."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import BenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WEBHOOK_PATH = "/webhooks/github"
PROBOT = "14"  # the major version installed from npm, cached between runs
PROBOT_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                   "webhook-service-bench", f"probot-{PROBOT}")  # fmt: skip


@dataclass(frozen=True)
class Kind:
    """``argv(port)`` with ``env(port)`` (and WEBHOOK_SECRET...), ready once ``ready_path``
    answers 200; a counting baseline serves how many deliveries it handled at ``count_path``."""

    argv: Callable[[int], list[str]]
    ready_path: str = "/healthz"
    count_path: str | None = None
    env: Callable[[int], dict[str, str]] = lambda port: {}


def _baseline(which: str) -> Kind:
    return Kind(lambda port: [sys.executable, str(HERE / "baselines.py"), which, str(port)],
                count_path="/count" if which == "gidgethub" else None)  # fmt: skip


def probot_version() -> str:
    """Probot from npm in PROBOT_HOME (installed on first use); its version."""
    package = PROBOT_HOME / "node_modules" / "probot" / "package.json"
    if not shutil.which("node") or not (package.exists() or shutil.which("npm")):
        raise BenchError("the probot baseline needs node and npm: install them or leave it out")
    if not package.exists():
        npm = subprocess.run(["npm", "install", "--prefix", str(PROBOT_HOME), "--no-audit",
                              "--no-fund", f"probot@{PROBOT}"], capture_output=True, text=True)
        if npm.returncode:
            raise BenchError(f"npm install probot@{PROBOT} failed:\n{npm.stdout}{npm.stderr}")
    return str(json.loads(package.read_text())["version"])


@functools.cache
def _throwaway_key() -> str:
    """A GitHub App private key for Probot's start-up (it never calls GitHub here)."""
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode()


KINDS = {
    "webhook-service": Kind(lambda port: [sys.executable, "-m", "webhook_service", "serve",
                                          "--host", "127.0.0.1", "--port", str(port)], "/readyz"),
    "bare": _baseline("bare"),
    "sink": _baseline("sink"),
    "gidgethub": _baseline("gidgethub"),
    "floor": _baseline("floor"),
    "probot": Kind(lambda port: ["node", str(PROBOT_HOME / "node_modules/probot/bin/probot.js"),
                                 "run", str(HERE / "probot_app.mjs")],
                   "/ping", "/count", lambda port: {
        "APP_ID": "1", "PRIVATE_KEY": _throwaway_key(), "WEBHOOK_PATH": WEBHOOK_PATH,
        "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "warn", "LOG_FORMAT": "json",
        "NODE_ENV": "production"}),
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
            self.proc = subprocess.Popen(self.kind.argv(self.port), cwd=log.parent,
                env=python_env(**self.kind.env(self.port) | env), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                if self.get(self.kind.ready_path)[0] == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"{self.name} was not ready within {timeout:.0f}s:\n{self.tail()}")

    def get(self, path: str) -> tuple[int, bytes]:
        with contextlib.closing(http.client.HTTPConnection("127.0.0.1", self.port, 10)) as conn:
            conn.request("GET", path)
            return (response := conn.getresponse()).status, response.read()

    def handled(self) -> int | None:
        """How many deliveries a counting baseline's handler ran for (None: it does not count)."""
        path = self.kind.count_path
        return None if path is None else int(json.loads(self.get(path)[1])["count"])

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def kill(self) -> None:
        """SIGKILL: nothing may depend on a graceful shutdown."""
        os.killpg(self.proc.pid, signal.SIGKILL)  # its session: serve's workers too
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
    proc.terminate()  # (no signal once it has been waited for)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    proc.kill()
    proc.wait()


def redis_answers(url: str) -> bool:
    """True if a Redis server at ``url`` answers PING."""
    import redis

    with contextlib.suppress(redis.RedisError):
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    return False


class Sampler(threading.Thread):
    """A server's RSS every 50 ms, until :meth:`stop`: the peak of its largest process
    (one process, or one of `serve --workers N`'s workers or their supervisor)."""

    def __init__(self, pid: int) -> None:
        import psutil

        super().__init__(daemon=True)
        self._proc, self._halt, self.peak = psutil.Process(pid), threading.Event(), 0
        self.start()

    def run(self) -> None:
        import psutil

        while True:
            last = self._halt.is_set()
            with contextlib.suppress(psutil.Error):
                for proc in [self._proc, *self._proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        self.peak = max(self.peak, int(proc.memory_info().rss))
            if last:
                return
            self._halt.wait(0.05)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def _cpu(proc: Any) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def cpu_seconds(pid: int) -> float:
    import psutil

    with contextlib.suppress(psutil.Error):  # with its workers (serve --workers)
        proc = psutil.Process(pid)
        return _cpu(proc) + sum(_cpu(c) for c in proc.children(recursive=True))
    return 0.0


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine (guest time is in user time already)."""
    import psutil

    t = psutil.cpu_times()
    total = float(sum(t)) - float(getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0))
    return total - float(t.idle + getattr(t, "iowait", 0.0) + getattr(t, "steal", 0.0)), total


def _postgres(database: str | None) -> dict[int, float]:
    """CPU seconds, by pid, of the PostgreSQL processes working for ``database``: its
    backends and its cluster's own (WAL writer, checkpointer...), not other databases'."""
    import psutil

    procs = [(p, " ".join(p.info["cmdline"] or [])) for p in
             psutil.process_iter(["name", "cmdline", "ppid"]) if p.info["name"] == "postgres"]
    ours = {p.pid for p, title in procs if database and f" {database} " in title}
    clusters = {p.info["ppid"] for p, _ in procs if p.pid in ours}
    times: dict[int, float] = {}
    for p, title in procs:  # a client backend's title has "host(port)" or "[local]"
        with contextlib.suppress(psutil.Error):
            if p.pid in ours or (p.info["ppid"] in clusters
                                 and not re.search(r"\(\d+\)|\[local\]", title)):
                times[p.pid] = _cpu(p)
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
