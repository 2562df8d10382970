"""The command line: a thin layer over the functions the app and the tests call.

``main`` reads as parse, configure, run. The parser below is the whole command line at a
glance, grouped as the commands are: the service's (:mod:`.service`), GitHub's
(:mod:`.github`) and the deliveries' (:mod:`.deliveries`); ``_COMMANDS`` says which
function each subcommand runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit

from webhook_service import __version__
from webhook_service.cli import deliveries, github, service
from webhook_service.config import ConfigError, Settings, load_settings, read_env_file
from webhook_service.ops import logs
from webhook_service.store import StoreUnavailable


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
    "serve": lambda s, a: service.serve(
        s, host=a.host, port=a.port, workers=a.workers, secrets=_secret_values(s)
    ),
    "migrate": lambda s, a: asyncio.run(service.migrate(s)),
    "sync": lambda s, a: asyncio.run(github.sync(s, once=a.once)),
    "track": lambda s, a: asyncio.run(github.track(s, a.target, a.task, as_json=a.json)),
    "tasks": lambda s, a: asyncio.run(service.tasks(s, a.status, a.repository, as_json=a.json)),
    "create-pr": lambda s, a: asyncio.run(github.create_pr(s, a)),
    "replay": lambda s, a: asyncio.run(deliveries.replay(s, a)),
    "record": lambda s, a: asyncio.run(deliveries.record(s, a)),
    "redeliver": lambda s, a: asyncio.run(deliveries.redeliver(s, a.guids)),
    "setup": lambda s, a: asyncio.run(github.setup(s, a)),
    "stats": lambda s, a: service.stats(s, a.url, as_json=a.json),
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
    serve.add_argument(
        "--workers", type=_workers, help="processes sharing the port (default: WORKERS or 1)"
    )
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


def _workers(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 64, got {value!r}")
    return int(value)


def _log_level(settings: Settings, args: argparse.Namespace) -> str:
    """``serve`` logs at LOG_LEVEL; other commands print their result, and log only
    warnings unless LOG_LEVEL is set or ``-v`` given."""
    if args.verbose:
        return "INFO" if args.verbose == 1 else "DEBUG"
    explicit = "LOG_LEVEL" in os.environ or (
        Path(".env").is_file() and "LOG_LEVEL" in read_env_file(Path(".env"))
    )
    return settings.log_level if args.command == "serve" or explicit else "WARNING"


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
