"""Configuration: every setting the service reads, in one place (DESIGN.md §8).

Values come from the environment, then a ``.env`` file in the working directory, then
the defaults below. Nothing is read at import time: call :func:`load_settings`.
Secrets are wrapped in :class:`Secret`, whose repr never shows the value.

``.env`` is read by python-dotenv's parser (the syntax its users know: ``export``,
quotes, inline ``# comments`` after an unquoted value, multi-line quoted values), with
no ``${VAR}`` expansion: a secret is taken as written. Where Probot has a name for a
setting (``APP_ID``, ``PRIVATE_KEY``, ``WEBHOOK_SECRET``, ``GHE_HOST``...), it is used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv.parser import parse_stream

from webhook_service.config.app_key import app_credentials
from webhook_service.config.values import ConfigError, Reader, Secret, is_http_url, redact_url

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_FRAME_BUDGET",
    "DEFAULT_TASK_BRANCH_PATTERN",
    "ConfigError",
    "Secret",
    "Settings",
    "is_http_url",
    "load_settings",
    "read_env_file",
    "redact_url",
]

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///./webhook-service.db"
DEFAULT_TASK_BRANCH_PATTERN = r"^task/(?P<task_id>[0-9a-fA-F-]{36})$"
#: Socket.IO batch frames a second, to all batch clients of a process together.
DEFAULT_FRAME_BUDGET = 500

#: What load_settings reads through: tests/test_deploy.py swaps in a Reader that records
#: every name read, to know the settings without copying their list.
_Reader = Reader


@dataclass(frozen=True, slots=True)
class Settings:
    webhook_secrets: tuple[Secret, ...] = ()
    webhook_path: str = "/webhooks/github"
    #: A smee.io-compatible channel that forwards deliveries (development only).
    webhook_proxy_url: str | None = None
    api_token: Secret | None = None
    #: A read-only token: every GET under /api and the Socket.IO stream, nothing else.
    dashboard_token: Secret | None = None
    dev_mode: bool = False
    host: str = "127.0.0.1"
    port: int = 3000
    #: ``serve``'s processes on the one listening socket (``--workers``).
    workers: int = 1
    log_level: str = "INFO"
    log_format: str = "console"
    database_url: Secret = field(default_factory=lambda: Secret(DEFAULT_DATABASE_URL))
    retention_days: float = 7.0
    task_branch_pattern: re.Pattern[str] = re.compile(DEFAULT_TASK_BRANCH_PATTERN)
    # GitHub access (used by the poller and the PR creator).
    github_token: Secret | None = None
    github_api_url: str = "https://api.github.com"
    #: GitHub's web address (GitHub Enterprise Server: ``GHE_HOST``'s).
    github_url: str = "https://github.com"
    github_repositories: tuple[str, ...] = ()
    app_id: str | None = None
    private_key: Secret | None = None
    # Sync worker, as in the original design.
    sync_interval: float = 60.0
    sync_batch_size: int = 20
    sync_max_concurrency: int = 5
    sync_timeout: float = 30.0
    sync_retry_attempts: int = 3
    sync_retry_delay: float = 5.0
    #: The share of each GitHub rate limit (per credential) the poller plans to use.
    sync_budget_share: float = 0.8
    #: Every repository is listed at least this often (seconds), spread evenly.
    sync_full_sweep_interval: float = 3600.0
    #: How changes are found between sweeps: "search" (GraphQL) or "off".
    sync_discovery: str = "search"
    #: How far back each search reaches before the last one (the index's lag).
    sync_search_overlap: float = 300.0
    #: Repository webhooks whose failed deliveries the poller asks GitHub to redeliver.
    hook_ids: tuple[tuple[str, int], ...] = ()
    # Real-time push and side effects.
    socketio_message_queue: Secret | None = None  # may carry a password
    socketio_channel: str = "socketio"  # one per deployment sharing a Redis
    socketio_frame_budget: int = DEFAULT_FRAME_BUDGET
    worktree_root: Path | None = None
    cleanup_on_merge: bool = True
    cleanup_delete_branch: bool = False
    # Ingest tuning: how many concurrent deliveries one transaction may commit.
    ingest_batch_max: int = 64

    def safe_database_url(self) -> str:
        """The database URL with any password masked, for logs."""
        return redact_url(self.database_url.reveal())

    def check_secure(self) -> None:
        """Refuse to serve without the secrets, unless DEV_MODE says otherwise."""
        if self.dev_mode:
            return
        missing = [
            name
            for name, value in (
                ("WEBHOOK_SECRET", self.webhook_secrets),
                ("API_TOKEN", self.api_token),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} must be set (or DEV_MODE=true for an insecure "
                "local setup)"
            )


def load_settings(environ: Mapping[str, str], *, env_file: Path | None = Path(".env")) -> Settings:
    """Build :class:`Settings` from ``environ`` over the ``env_file``'s values."""
    values = dict(read_env_file(env_file)) if env_file is not None and env_file.is_file() else {}
    values.update(environ)
    reader = _Reader(values)
    github_url, github_api_url = _github_urls(reader)
    app_id, private_key = app_credentials(reader)
    settings = Settings(
        webhook_secrets=tuple(Secret(s) for s in reader.csv("WEBHOOK_SECRET")),
        webhook_path=reader.text("WEBHOOK_PATH") or "/webhooks/github",
        webhook_proxy_url=_http_url(reader, "WEBHOOK_PROXY_URL"),
        api_token=reader.secret("API_TOKEN"),
        dashboard_token=reader.secret("DASHBOARD_TOKEN"),
        dev_mode=reader.boolean("DEV_MODE", False),
        host=reader.text("HOST") or "127.0.0.1",
        port=reader.integer("PORT", 3000, low=0, high=65535),
        workers=reader.integer("WORKERS", 1, low=1, high=64),
        log_level=reader.choice("LOG_LEVEL", _LOG_LEVELS, "info").upper(),
        log_format=reader.choice("LOG_FORMAT", ("console", "json"), "console"),
        database_url=Secret(_database_url(reader)),
        retention_days=reader.number("RETENTION_DAYS", 7.0, low=0.001),
        task_branch_pattern=reader.pattern("TASK_BRANCH_PATTERN", DEFAULT_TASK_BRANCH_PATTERN),
        github_token=reader.secret("GITHUB_TOKEN"),
        github_api_url=github_api_url,
        github_url=github_url,
        github_repositories=tuple(_repository(r) for r in reader.csv("GITHUB_REPOSITORIES")),
        app_id=app_id,
        private_key=private_key,
        sync_interval=reader.number("SYNC_INTERVAL", 60.0, low=1.0),
        sync_batch_size=reader.integer("SYNC_BATCH_SIZE", 20, low=1, high=1000),
        sync_max_concurrency=reader.integer("SYNC_MAX_CONCURRENCY", 5, low=1, high=100),
        sync_timeout=reader.number("SYNC_TIMEOUT", 30.0, low=0.1),
        sync_retry_attempts=reader.integer("SYNC_RETRY_ATTEMPTS", 3, low=0, high=20),
        sync_retry_delay=reader.number("SYNC_RETRY_DELAY", 5.0, low=0.0),
        sync_budget_share=reader.number("SYNC_BUDGET_SHARE", 0.8, low=0.01, high=1.0),
        sync_full_sweep_interval=reader.number("SYNC_FULL_SWEEP_INTERVAL", 3600.0, low=1.0),
        sync_discovery=reader.choice("SYNC_DISCOVERY", ("search", "off"), "search"),
        sync_search_overlap=reader.number("SYNC_SEARCH_OVERLAP", 300.0, low=0.0),
        hook_ids=_hook_ids(reader.csv("HOOK_ID"), reader.csv("GITHUB_REPOSITORIES")),
        socketio_message_queue=reader.secret("SOCKETIO_MESSAGE_QUEUE"),
        socketio_channel=reader.text("SOCKETIO_CHANNEL") or "socketio",
        socketio_frame_budget=reader.integer(
            "SOCKETIO_FRAME_BUDGET", DEFAULT_FRAME_BUDGET, low=1, high=1_000_000
        ),
        worktree_root=Path(w) if (w := reader.text("WORKTREE_ROOT")) else None,
        cleanup_on_merge=reader.boolean("CLEANUP_ON_MERGE", True),
        cleanup_delete_branch=reader.boolean("CLEANUP_DELETE_BRANCH", False),
        ingest_batch_max=reader.integer("INGEST_BATCH_MAX", 64, low=1, high=1000),
    )
    if not settings.webhook_path.startswith("/"):
        raise ConfigError(f"WEBHOOK_PATH must start with '/', got {settings.webhook_path!r}")
    _check_dashboard_token(settings)
    return settings


def read_env_file(path: Path) -> dict[str, str]:
    """A ``.env`` file's ``KEY=value`` bindings, as python-dotenv reads them (no
    ``${VAR}`` expansion). A line it cannot read is an error naming the file and line:
    a setting silently dropped would be worse."""
    values: dict[str, str] = {}
    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error or (binding.key is not None and binding.value is None):
                raise ConfigError(f"{path}:{binding.original.line}: expected KEY=value")
            if binding.key is not None and binding.value is not None:
                values[binding.key] = binding.value
    return values


def _check_dashboard_token(settings: Settings) -> None:
    """DASHBOARD_TOKEN is read-only, so it must not be the token that may write, and it
    means nothing without API_TOKEN (the API then asks for no token at all): either
    would give a reader more than the operator meant, so both are refused."""
    if settings.dashboard_token is None:
        return
    if settings.api_token is None:
        raise ConfigError(
            "DASHBOARD_TOKEN needs API_TOKEN: without API_TOKEN the API asks for no token"
        )
    if settings.dashboard_token == settings.api_token:
        raise ConfigError(
            "DASHBOARD_TOKEN must differ from API_TOKEN (it is the read-only one; the same"
            " value would also be allowed to write)"
        )


_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _database_url(reader: _Reader) -> str:
    url = reader.text("DATABASE_URL") or DEFAULT_DATABASE_URL
    scheme = urlsplit(url).scheme
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            f"DATABASE_URL must start with sqlite:/// or postgresql://, got {redact_url(url)!r}"
            f" (e.g. {DEFAULT_DATABASE_URL} or postgresql://user@host:5432/db)"
        )
    if scheme == "sqlite" and (":memory:" in url or not urlsplit(url).path.strip("/")):
        raise ConfigError(
            f"DATABASE_URL: SQLite needs a file (an in-memory database is one per"
            f" connection), e.g. {DEFAULT_DATABASE_URL}"
        )
    return url


def _http_url(reader: _Reader, key: str) -> str | None:
    url = reader.text(key)
    if url is not None and not is_http_url(url):
        raise ConfigError(f"{key} must be an http(s) URL, got {url!r}")
    return url


def _github_urls(reader: _Reader) -> tuple[str, str]:
    """GitHub's web and API base URLs: github.com's, or a GitHub Enterprise Server's
    (``GHE_HOST``, ``GHE_PROTOCOL``: Probot's names). ``GITHUB_API_URL``, when set, is
    the API's (a local fake, a proxy)."""
    web, api = "https://github.com", "https://api.github.com"
    host = reader.text("GHE_HOST")
    protocol = reader.choice("GHE_PROTOCOL", ("https", "http"), "https")
    if host is not None:
        if "/" in host or not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", host):
            raise ConfigError(
                f"GHE_HOST must be a host name such as github.example.com (no scheme or path),"
                f" got {host!r}"
            )
        web = f"{protocol}://{host}"
        api = f"{web}/api/v3"
    api = (reader.text("GITHUB_API_URL") or api).rstrip("/")
    if not is_http_url(api):
        raise ConfigError(f"GITHUB_API_URL must be an http(s) URL, got {api!r}")
    return web, api


def _hook_ids(entries: list[str], repositories: list[str]) -> tuple[tuple[str, int], ...]:
    """``owner/name:id`` entries, or one bare id when one repository is configured."""
    hooks = []
    for entry in entries:
        repository, sep, hook_id = entry.rpartition(":")
        if not sep:
            if len(repositories) != 1:
                raise ConfigError(
                    "HOOK_ID: a bare hook id needs exactly one GITHUB_REPOSITORIES entry;"
                    " write owner/name:id"
                )
            repository = repositories[0]
        if not hook_id.isdigit():
            raise ConfigError(f"HOOK_ID: {entry!r} is not owner/name:id")
        hooks.append((_repository(repository), int(hook_id)))
    return tuple(hooks)


def _repository(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"GITHUB_REPOSITORIES: {name!r} is not owner/name")
    return name
