"""Configuration: every setting the service reads, in one place (DESIGN.md §8).

Values come from the environment, then a ``.env`` file in the working directory, then
the defaults below. Nothing is read at import time: call :func:`load_settings`.
Secrets are wrapped in :class:`Secret`, whose repr never shows the value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///./webhook-service.db"
DEFAULT_TASK_BRANCH_PATTERN = r"^task/(?P<task_id>[0-9a-fA-F-]{36})$"
#: Socket.IO batch frames a second, to all batch clients of a process together.
DEFAULT_FRAME_BUDGET = 500


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


class Secret:
    """A string that does not show itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    webhook_secrets: tuple[Secret, ...] = ()
    webhook_path: str = "/webhooks/github"
    api_token: Secret | None = None
    dev_mode: bool = False
    host: str = "127.0.0.1"
    port: int = 3000
    log_level: str = "INFO"
    log_format: str = "console"
    database_url: Secret = field(default_factory=lambda: Secret(DEFAULT_DATABASE_URL))
    retention_days: float = 7.0
    task_branch_pattern: re.Pattern[str] = re.compile(DEFAULT_TASK_BRANCH_PATTERN)
    # GitHub access (used by the poller and the PR creator).
    github_token: Secret | None = None
    github_api_url: str = "https://api.github.com"
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


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(environ: Mapping[str, str], *, env_file: Path | None = Path(".env")) -> Settings:
    """Build :class:`Settings` from ``environ`` over the ``env_file``'s values."""
    values = dict(read_env_file(env_file)) if env_file is not None and env_file.is_file() else {}
    values.update(environ)
    reader = _Reader(values)
    private_key = reader.text("PRIVATE_KEY")
    key_path = reader.text("PRIVATE_KEY_PATH")
    if private_key is None and key_path is not None:
        try:
            private_key = Path(key_path).read_text()
        except OSError as exc:
            raise ConfigError(f"PRIVATE_KEY_PATH: cannot read {key_path}: {exc}") from exc
    settings = Settings(
        webhook_secrets=tuple(Secret(s) for s in reader.csv("WEBHOOK_SECRET")),
        webhook_path=reader.text("WEBHOOK_PATH") or "/webhooks/github",
        api_token=reader.secret("API_TOKEN"),
        dev_mode=reader.boolean("DEV_MODE", False),
        host=reader.text("HOST") or "127.0.0.1",
        port=reader.integer("PORT", 3000, low=0, high=65535),
        log_level=(reader.text("LOG_LEVEL") or "INFO").upper(),
        log_format=reader.choice("LOG_FORMAT", ("console", "json"), "console"),
        database_url=Secret(reader.text("DATABASE_URL") or DEFAULT_DATABASE_URL),
        retention_days=reader.number("RETENTION_DAYS", 7.0, low=0.001),
        task_branch_pattern=reader.pattern("TASK_BRANCH_PATTERN", DEFAULT_TASK_BRANCH_PATTERN),
        github_token=reader.secret("GITHUB_TOKEN"),
        github_api_url=(reader.text("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
        github_repositories=tuple(_repository(r) for r in reader.csv("GITHUB_REPOSITORIES")),
        app_id=reader.text("APP_ID"),
        # PEMs pasted into one line with literal "\n" are accepted.
        private_key=Secret(private_key.replace("\\n", "\n")) if private_key else None,
        sync_interval=reader.number("SYNC_INTERVAL", 60.0, low=1.0),
        sync_batch_size=reader.integer("SYNC_BATCH_SIZE", 20, low=1, high=1000),
        sync_max_concurrency=reader.integer("SYNC_MAX_CONCURRENCY", 5, low=1, high=100),
        sync_timeout=reader.number("SYNC_TIMEOUT", 30.0, low=0.1),
        sync_retry_attempts=reader.integer("SYNC_RETRY_ATTEMPTS", 3, low=0, high=20),
        sync_retry_delay=reader.number("SYNC_RETRY_DELAY", 5.0, low=0.0),
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
    return settings


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines; ``#`` comments, ``export`` prefixes and quotes allowed."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


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


class _Reader:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def text(self, key: str) -> str | None:
        value = self._values.get(key, "").strip()
        return value or None

    def secret(self, key: str) -> Secret | None:
        value = self.text(key)
        return Secret(value) if value else None

    def csv(self, key: str) -> list[str]:
        return [item.strip() for item in (self.text(key) or "").split(",") if item.strip()]

    def boolean(self, key: str, default: bool) -> bool:
        value = self.text(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {value!r}")

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.text(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(f"{key} must be between {low} and {high}, got {number}")
        return number

    def number(self, key: str, default: float, *, low: float) -> float:
        value = self.text(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if not number >= low:
            raise ConfigError(f"{key} must be at least {low}, got {value!r}")
        return number

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = (self.text(key) or default).lower()
        if value not in options:
            raise ConfigError(f"{key} must be one of {', '.join(options)}, got {value!r}")
        return value

    def pattern(self, key: str, default: str) -> re.Pattern[str]:
        source = self.text(key) or default
        try:
            compiled = re.compile(source)
        except re.error as exc:
            raise ConfigError(f"{key} is not a valid regular expression: {exc}") from None
        if "task_id" not in compiled.groupindex:
            raise ConfigError(f"{key} must have a named group (?P<task_id>...)")
        return compiled
