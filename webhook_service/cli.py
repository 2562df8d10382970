"""The command line: a thin layer over the functions the app and the tests call."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

from webhook_service import __version__
from webhook_service.config import (
    ConfigError,
    Settings,
    is_http_url,
    load_settings,
    read_env_file,
)
from webhook_service.ops import logs
from webhook_service.store import Store, StoreUnavailable

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from webhook_service.github.client import GitHub
    from webhook_service.reconciler import Reconciler


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"webhook-service: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(_log_level(settings, args), settings.log_format, _secret_values(settings))
    try:
        return _COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"webhook-service: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"webhook-service: database unavailable: {exc}", file=sys.stderr)
        return 1


#: What each subcommand runs: the same functions the app and the tests call.
_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": lambda s, a: _serve(s, host=a.host, port=a.port),
    "migrate": lambda s, a: asyncio.run(_migrate(s)),
    "sync": lambda s, a: asyncio.run(_sync(s, once=a.once)),
    "track": lambda s, a: asyncio.run(_track(s, a.target, a.task, as_json=a.json)),
    "tasks": lambda s, a: asyncio.run(_tasks(s, a.status, a.repository, as_json=a.json)),
    "create-pr": lambda s, a: asyncio.run(_create_pr(s, a)),
    "replay": lambda s, a: asyncio.run(_replay(s, a)),
    "record": lambda s, a: asyncio.run(_record(s, a)),
    "redeliver": lambda s, a: asyncio.run(_redeliver(s, a.guids)),
    "setup": lambda s, a: asyncio.run(_setup(s, a)),
    "stats": lambda s, a: _stats(s, a.url, as_json=a.json),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhook-service",
        description="Keep pull requests and tasks in sync with GitHub.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _service_commands(commands)
    _github_commands(commands)
    _delivery_commands(commands)
    for command in commands.choices.values():
        command.add_argument(
            "-v", "--verbose", action="count", default=0, help="log more (-v INFO, -vv DEBUG)"
        )
    return parser


_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _service_commands(commands: _Commands) -> None:
    serve = commands.add_parser("serve", help="run the HTTP + Socket.IO server")
    serve.add_argument("--host", help="interface to bind (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: PORT or 3000)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    tasks = commands.add_parser("tasks", help="list tasks")
    tasks.add_argument("--status", choices=_TASK_STATUSES, help="only tasks with this status")
    tasks.add_argument("--repository", type=_repository, help="only tasks of owner/name")
    tasks.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats = commands.add_parser("stats", help="the running service's /stats")
    stats.add_argument("--url", help="the service (default: http://HOST:PORT)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _github_commands(commands: _Commands) -> None:
    sync = commands.add_parser("sync", help="run the sync worker alone (no HTTP server)")
    sync.add_argument("--once", action="store_true", help="one full cycle, then exit")
    track = commands.add_parser("track", help="monitor one PR (MonitorPR): OWNER/REPO#N")
    track.add_argument("target", help="owner/repo#number")
    track.add_argument("--task", help="link the PR to this task id")
    track.add_argument("--json", action="store_true", help="print JSON instead of a table")
    create_pr = commands.add_parser(
        "create-pr", help="open the PR of a task's branch (or link its open one)"
    )
    create_pr.add_argument("task_id", metavar="TASK_ID")
    create_pr.add_argument("--title", help="the PR's title (default: the task's)")
    create_pr.add_argument("--body", help="the PR's description")
    create_pr.add_argument(
        "--base", help="the branch to merge into (default: the repository's default branch)"
    )
    create_pr.add_argument("--draft", action="store_true", help="open it as a draft")
    create_pr.add_argument("--json", action="store_true", help="print JSON instead of a table")
    setup = commands.add_parser(
        "setup", help="register a GitHub App from a manifest and write its settings to .env"
    )
    setup.add_argument("--org", help="register it for this organization (default: your user)")
    setup.add_argument(
        "--public-url",
        help="where GitHub and browsers reach the service (default: http://HOST:PORT)",
    )
    setup.add_argument(
        "--github-url", help="GitHub Enterprise Server's address (default: GHE_HOST or github.com)"
    )
    setup.add_argument("--port", type=int, help="the setup page's port (default: PORT or 3000)")
    setup.add_argument("--replace", action="store_true", help="replace a configured App")


def _delivery_commands(commands: _Commands) -> None:
    replay = commands.add_parser("replay", help="send recorded deliveries (fixtures) again")
    replay.add_argument("paths", nargs="+", metavar="PATH", help="files, directories, globs")
    replay.add_argument("--url", help="the receiver (default: http://HOST:PORT/WEBHOOK_PATH)")
    replay.add_argument("--secret", help="sign for this secret (default: WEBHOOK_SECRET)")
    replay.add_argument(
        "--offline", action="store_true", help="apply into DATABASE_URL directly, no HTTP"
    )
    replay.add_argument("--rate", type=float, help="deliveries per second at most")
    replay.add_argument("--new-guid", action="store_true", help="give each a fresh GUID")
    replay.add_argument("--order", choices=["name", "updated_at"], default="name")
    record = commands.add_parser("record", help="write stored deliveries out as fixtures")
    record.add_argument("--since", help="received at or after this ISO 8601 time")
    record.add_argument("--event", help="only this event (e.g. pull_request)")
    record.add_argument("--repository", help="only deliveries about owner/name")
    record.add_argument("--out", required=True, help="the directory to write to")
    redeliver = commands.add_parser(
        "redeliver", help="run stored deliveries through the core again"
    )
    redeliver.add_argument("guids", nargs="+", metavar="GUID")


_TASK_STATUSES = ("TODO", "IMPLEMENTING", "CODE_REVIEWING", "DONE", "CANCELLED")


def _repository(value: str) -> str:
    if value.count("/") != 1 or not all(value.split("/")):
        raise argparse.ArgumentTypeError(f"expected owner/name, got {value!r}")
    return value


def _log_level(settings: Settings, args: argparse.Namespace) -> str:
    """``serve`` logs at LOG_LEVEL; other commands print their result, and log only
    warnings unless LOG_LEVEL is set or ``-v`` given."""
    if args.verbose:
        return "INFO" if args.verbose == 1 else "DEBUG"
    explicit = "LOG_LEVEL" in os.environ or (
        Path(".env").is_file() and "LOG_LEVEL" in read_env_file(Path(".env"))
    )
    return settings.log_level if args.command == "serve" or explicit else "WARNING"


def _serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    import uvicorn

    from webhook_service.app import create_app

    app = create_app(settings)
    host, port = host or settings.host, port if port is not None else settings.port
    listener = _listen(host, port)
    try:
        # A database that cannot be used is one line here, not a traceback from the
        # lifespan (the service would not start anyway).
        asyncio.run(_check_database(settings))
    except BaseException:
        listener.close()
        raise
    # uvicorn drains on SIGTERM, then raises the signal again under the handler that
    # was in place before it ran. With the default one the process would end "killed
    # by SIGTERM" after a clean stop; with this one it exits 0.
    config = uvicorn.Config(
        app,
        log_config=None,  # our handlers (and secret scrubbing) apply to uvicorn too
        access_log=False,
        timeout_graceful_shutdown=8,
    )
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    url = f"http://{f'[{host}]' if ':' in host else host}:{listener.getsockname()[1]}"
    logger.info("serving on %s (dashboard %s/, webhooks %s%s)", url, url, url,
                settings.webhook_path)  # fmt: skip
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        signal.signal(signal.SIGTERM, previous)
        listener.close()
    return 0


#: The kernel send buffer of every accepted connection (inherited from the listening
#: socket). Linux would otherwise grow it to megabytes for a peer that stops reading:
#: megabytes of Socket.IO frames written, and copied, for a client that will never read
#: them, before the service can tell it is stuck (see realtime.MAX_BACKLOG).
SEND_BUFFER = 256 * 1024


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(_listen_problem(host, port, exc)) from None
    return sock


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"PORT: {host}:{port} is already in use (another webhook-service?); stop that"
            " process or choose another port with --port or PORT"
        )
    if exc.errno == errno.EACCES:
        return (
            f"PORT: no permission to listen on port {port} (ports below 1024 need root);"
            " choose a port above 1023 with --port or PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"HOST: cannot listen on {host!r} ({exc.strerror or exc}); use an address of this"
            " machine (127.0.0.1; 0.0.0.0 for every interface) with --host or HOST"
        )
    return f"HOST/PORT: cannot listen on {host}:{port}: {exc}"


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _open_store(settings: Settings, *, existing: bool = False) -> Store:
    """The store, connected and answering; a database that cannot be used is a
    :class:`ConfigError` naming ``DATABASE_URL`` and what to check. ``existing``: a
    SQLite file that is not there is one (connecting would create it)."""
    store = Store(settings.database_url.reveal())
    path = store.sqlite_path
    if existing and path is not None and not path.is_file():
        raise ConfigError(
            f"DATABASE_URL: {settings.safe_database_url()}: there is no such file here"
            f" ({Path.cwd()}); run from the service's directory, or set DATABASE_URL to"
            " its database"
        )
    folder = path.parent if path is not None else None
    if folder is not None and not folder.is_dir():
        raise ConfigError(
            f"DATABASE_URL: cannot use {settings.safe_database_url()}: the folder {folder}"
            " does not exist; create it, or name a file in an existing folder"
        )
    threads = set(threading.enumerate())
    try:
        await store.connect()
        await store.ping()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await store.disconnect()
        # aiosqlite stops the worker thread of a failed connection through the event
        # loop (Connection.stop() posts its result there): let it finish while the loop
        # is open, or it dies with a traceback once asyncio.run() has closed the loop.
        if store.sqlite_path is not None:
            for thread in set(threading.enumerate()) - threads:
                thread.join(timeout=2.0)
        raise ConfigError(_database_problem(settings, exc)) from None
    return store


def _database_problem(settings: Settings, exc: Exception) -> str:
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) and exc.__cause__ else exc
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if settings.database_url.reveal().startswith("sqlite"):
        check = "check that the file's folder exists and is writable"
    else:
        check = "check the host, port, database name, user and password, and that it runs"
    return f"DATABASE_URL: cannot use {settings.safe_database_url()}: {reason}; {check}"


async def _check_database(settings: Settings) -> None:
    store = await _open_store(settings)
    await store.disconnect()


async def _migrate(settings: Settings) -> int:
    store = await _open_store(settings)
    try:
        applied = await store.migrate()
        version = await store.schema_version()
    finally:
        await store.disconnect()
    print(f"applied {len(applied)} migration(s); schema version {version}")
    return 0


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Store]:
    """The service's database, for one command. Only ``serve`` and ``migrate`` create
    or change the schema: a database without it (a mistyped DATABASE_URL, a command run
    from another directory) is said so, not filled with empty tables."""
    from webhook_service.store.migrations import MIGRATIONS

    url = settings.safe_database_url()
    store = await _open_store(settings, existing=True)
    try:
        version = await store.schema_version()
        latest = MIGRATIONS[-1].version
        if version == 0:
            raise ConfigError(
                f"DATABASE_URL: {url} has no webhook-service tables; run `webhook-service"
                " migrate` (or serve), or set DATABASE_URL to the service's database"
            )
        if version < latest:
            raise ConfigError(
                f"DATABASE_URL: {url} is at schema version {version}, this release needs"
                f" {latest}: run `webhook-service migrate`"
            )
        yield store
    finally:
        await store.disconnect()


@asynccontextmanager
async def _reconciling(
    settings: Settings, store: Store, *, cleanup_on_merge: bool | None = None
) -> AsyncIterator[Reconciler]:
    """A running reconciler on ``store`` with the settings' rules; stopped (its queue
    applied) on exit. ``cleanup_on_merge`` overrides the setting."""
    from webhook_service.reconciler import Reconciler

    reconciler = Reconciler(
        store,
        task_branch_pattern=settings.task_branch_pattern,
        cleanup_on_merge=(
            settings.cleanup_on_merge if cleanup_on_merge is None else cleanup_on_merge
        ),
    )
    reconciler.start()
    try:
        yield reconciler
    finally:
        await reconciler.stop()


@asynccontextmanager
async def _github_work(
    settings: Settings, command: str
) -> AsyncIterator[tuple[Store, Reconciler, GitHub]]:
    """What a command that talks to GitHub and changes state needs. Its events are
    stored; a running ``serve`` emits them (its outbox sweep picks up events committed
    by any process), and runs the clean-up jobs it records."""
    import aiohttp

    from webhook_service.app import github_configured
    from webhook_service.github.client import GitHub

    if not github_configured(settings):
        raise ConfigError(f"{command} needs GITHUB_TOKEN, or APP_ID and PRIVATE_KEY")
    async with (
        _database(settings) as store,
        _reconciling(settings, store) as reconciler,
        aiohttp.ClientSession() as session,
    ):
        yield store, reconciler, GitHub(session, settings)


async def _sync(settings: Settings, *, once: bool) -> int:
    """The poller alone."""
    from webhook_service.store import Leadership
    from webhook_service.sync.poller import PRSyncWorker

    async with _github_work(settings, "the sync worker") as (store, reconciler, github):
        # A forced cycle runs here and now; a running poller polls only while it
        # leads, as a `serve` replica's would.
        leadership = None if once else Leadership(store)
        worker = PRSyncWorker(store, reconciler, github, settings, leadership=leadership)
        if once:
            stats = await worker.force_sync()
            print(json.dumps(stats, indent=2))
            return 0 if stats["error_count"] == 0 else 1
        await worker.start()
        try:
            await _until_signalled()
        finally:
            await worker.stop()
    return 0


async def _track(settings: Settings, target: str, task_id: str | None, *, as_json: bool) -> int:
    """MonitorPR from the command line: fetch the PR now, link it, keep polling it."""
    from webhook_service.api.views import pull_json
    from webhook_service.core.rules import Source
    from webhook_service.sync.poller import PRSyncWorker

    repository, sep, number = target.partition("#")
    if not sep or not number.isdigit() or repository.count("/") != 1:
        raise ConfigError(f"expected OWNER/REPO#NUMBER, got {target!r}")
    key = (repository, int(number))
    async with _github_work(settings, "track") as (store, reconciler, github):
        if task_id is not None and await store.get_task(task_id.lower()) is None:
            raise ConfigError(f"task {task_id} does not exist")
        await PRSyncWorker(store, reconciler, github, settings).sync_pull(key, authoritative=True)
        await store.monitor_pull(key)
        if task_id is not None:
            await reconciler.link(repository, key[1], task_id.lower(), Source.MANUAL)
        pr = await store.get_pull(*key)
    assert pr is not None
    row = pull_json(pr)
    columns = ["repository", "number", "status", "draft", "title", "task_id"]
    print(json.dumps(row, indent=2) if as_json else _table([row], columns))
    return 0


async def _create_pr(settings: Settings, args: argparse.Namespace) -> int:
    """The PR creator from the command line."""
    from webhook_service.api.views import created_json
    from webhook_service.tasks.creator import CreateError, create_pull_request

    try:
        async with _github_work(settings, "create-pr") as (store, reconciler, github):
            created = await create_pull_request(
                store=store,
                reconciler=reconciler,
                github=github,
                task_id=args.task_id.lower(),
                title=args.title,
                body=args.body,
                base=args.base,
                draft=args.draft,
            )
    except CreateError as exc:
        print(f"webhook-service: create-pr: {exc} (HTTP {exc.status})", file=sys.stderr)
        return 1
    result = created_json(created)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        row = {"created": result["created"], **result["pull_request"]}
        print(_table([row], ["created", "repository", "number", "status", "url", "task_id"]))
    return 0


async def _setup(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the setup page on loopback until GitHub sends the browser back."""
    import uvicorn
    from starlette.applications import Starlette

    from webhook_service.github.setup import SetupFlow, configured

    if configured(settings) and not args.replace:
        raise ConfigError(
            f"a GitHub App is configured already (APP_ID={settings.app_id}); pass --replace"
            " to register another"
        )
    if args.github_url:
        web = args.github_url.rstrip("/")
        if not is_http_url(web):
            raise ConfigError(f"--github-url must be an http(s) URL, got {web!r}")
        api = settings.github_api_url if web == "https://github.com" else f"{web}/api/v3"
        settings = dataclasses.replace(settings, github_url=web, github_api_url=api)
    port = args.port if args.port is not None else settings.port
    public_url = args.public_url or f"http://127.0.0.1:{port}"
    flow = SetupFlow(
        settings, env_file=Path(".env"), org=args.org, public_url=public_url, replace=args.replace
    )
    listener = _listen("127.0.0.1", port)
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=flow.routes()), log_config=None, access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    print(f"Open http://127.0.0.1:{port}/setup in a browser to register the GitHub App.")
    if not settings.webhook_proxy_url and urlsplit(public_url).hostname in (
        "127.0.0.1",
        "localhost",
    ):
        print(
            "(GitHub cannot deliver webhooks to this machine: set WEBHOOK_PROXY_URL to a"
            " smee.io channel first, or pass --public-url.)"
        )
    try:
        await flow.finished.wait()
        await asyncio.sleep(0.5)  # the page that says so reaches the browser
    finally:
        server.should_exit = True
        await serving
        listener.close()
    registered = flow.registered
    assert registered is not None
    print(f"Registered GitHub App {registered.slug} (APP_ID {registered.app_id}); .env written.")
    print(f"Install it: {registered.install_url}")
    print("Then start the service: scripts/serve (or webhook-service serve).")
    return 0


async def _tasks(
    settings: Settings, status: str | None, repository: str | None, *, as_json: bool
) -> int:
    from webhook_service.api.views import task_json

    async with _database(settings) as store:
        tasks = await store.list_tasks(status=status, repository=repository)
    rows = [task_json(t) for t in tasks]
    columns = ["id", "status", "title", "repository", "branch", "updated_at"]
    print(json.dumps(rows, indent=2) if as_json else _table(rows, columns))
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    """Replay recorded deliveries; exits non-zero if any was bad or refused."""
    from webhook_service.ingest.replay import collect, replay_http, replay_offline

    deliveries, bad = collect(args.paths, args.order)
    progress = _Progress(len(deliveries))
    if args.offline:
        # Replaying recorded deliveries never queues the removal of a worktree.
        async with (
            _database(settings) as store,
            _reconciling(settings, store, cleanup_on_merge=False) as reconciler,
        ):
            summary = await replay_offline(
                deliveries, reconciler, new_guid=args.new_guid, progress=progress
            )
    else:
        secret = args.secret or (
            settings.webhook_secrets[0].reveal() if settings.webhook_secrets else None
        )
        if secret is None:
            raise ConfigError("replay over HTTP needs --secret or WEBHOOK_SECRET")
        url = args.url or f"http://{settings.host}:{settings.port}{settings.webhook_path}"
        summary = await replay_http(
            deliveries,
            url=url,
            secret=secret,
            rate=args.rate,
            new_guid=args.new_guid,
            progress=progress,
        )
    progress.finish()
    summary.bad[:0] = bad
    for line in summary.lines():
        print(line)
    return 0 if summary.ok else 1


async def _record(settings: Settings, args: argparse.Namespace) -> int:
    from webhook_service.core.payloads import PayloadError, parse_timestamp
    from webhook_service.ingest.replay import record

    try:
        since = parse_timestamp(args.since) if args.since else None
    except PayloadError as exc:
        raise ConfigError(f"--since: {exc}") from None
    async with _database(settings) as store:
        written = await record(
            store, Path(args.out), since=since, event=args.event, repository=args.repository
        )
    for path in written:
        print(path)
    print(f"recorded {len(written)} deliveries in {args.out}", file=sys.stderr)
    return 0


async def _redeliver(settings: Settings, guids: Sequence[str]) -> int:
    from webhook_service.ingest.replay import redeliver

    async with _database(settings) as store, _reconciling(settings, store) as reconciler:
        report = await redeliver(store, reconciler, guids)
    rows = [{"guid": r.guid, "outcome": r.outcome, "events": r.events} for r in report]
    print(_table(rows, ["guid", "outcome", "events"]))
    known = {"created", "transitioned", "updated", "unchanged", "stale", "terminal", "ambiguous"}
    return 0 if all(r.outcome in known for r in report) else 1


class _Progress:
    """A one-line progress bar on stderr for long runs (only on a terminal)."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._shown = sys.stderr.isatty() and total >= 20

    def __call__(self, done: int) -> None:
        if self._shown:
            width = 30
            filled = width * done // max(self._total, 1)
            bar = "#" * filled + "." * (width - filled)
            print(f"\r[{bar}] {done}/{self._total}", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self._shown:
            print(file=sys.stderr)


def _stats(settings: Settings, url: str | None, *, as_json: bool) -> int:
    base = url or f"http://{settings.host}:{settings.port}"
    try:
        stats = _get_json(f"{base.rstrip('/')}/stats")
    except (OSError, ValueError) as exc:
        print(f"webhook-service: cannot read {base}/stats: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(stats, indent=2))
        return 0
    flat = [
        {"name": f"{prefix}{key}", "value": value}
        for prefix, section in (
            ("", stats),
            ("config.", stats.get("config", {})),
            ("monitor.", stats.get("monitor", {})),
        )
        for key, value in section.items()
        if not isinstance(value, dict)
    ]
    print(_table(flat, ["name", "value"]))
    return 0


def _get_json(url: str) -> dict[str, Any]:
    """GET a JSON object with the standard library (the CLI needs no HTTP client)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (checked)
            body = response.read()
    except urllib.error.HTTPError as exc:  # an answer all the same, e.g. 503 with JSON
        body = exc.read()
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("the answer is not a JSON object")
    return document


def _table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """A plain text table; an empty list says so."""
    if not rows:
        return "(none)"
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _secret_values(settings: Settings) -> list[str]:
    secrets = [s.reveal() for s in settings.webhook_secrets]
    for secret in (settings.api_token, settings.github_token, settings.private_key):
        if secret is not None:
            secrets.append(secret.reveal())
    for url in (settings.database_url, settings.socketio_message_queue):
        password = urlsplit(url.reveal()).password if url is not None else None
        if password:
            secrets.append(password)
    return secrets
