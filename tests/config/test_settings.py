"""Tests for webhook_service.config: environment, .env file, defaults, refusals, GitHub's
addresses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.config.shared import PEM, SECURE, load, write_env
from webhook_service.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_TASK_BRANCH_PATTERN,
    ConfigError,
    Secret,
    Settings,
    load_settings,
)


def test_defaults() -> None:
    settings = load()
    assert settings.webhook_secrets == ()
    assert settings.webhook_path == "/webhooks/github"
    assert settings.api_token is None
    assert settings.dev_mode is False
    assert (settings.host, settings.port) == ("127.0.0.1", 3000)
    assert (settings.log_level, settings.log_format) == ("INFO", "console")
    assert (
        settings.database_url.reveal() == DEFAULT_DATABASE_URL == "sqlite:///./webhook-service.db"
    )
    assert settings.retention_days == 7.0
    assert settings.task_branch_pattern.pattern == DEFAULT_TASK_BRANCH_PATTERN
    assert settings.github_token is None
    assert settings.github_api_url == "https://api.github.com"
    assert settings.github_repositories == ()
    assert settings.app_id is None
    assert settings.private_key is None
    assert settings.sync_interval == 60.0
    assert settings.sync_batch_size == 20
    assert settings.sync_max_concurrency == 5
    assert settings.sync_timeout == 30.0
    assert settings.sync_retry_attempts == 3
    assert settings.sync_retry_delay == 5.0
    assert settings.socketio_message_queue is None
    assert settings.worktree_root is None
    assert settings.ingest_batch_max == 64


def test_load_settings_matches_dataclass_defaults() -> None:
    assert load() == Settings()


def test_default_task_branch_pattern_extracts_task_id() -> None:
    task_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    match = load().task_branch_pattern.match(f"task/{task_id}")
    assert match is not None
    assert match["task_id"] == task_id
    assert load().task_branch_pattern.match("feature/foo") is None


def test_values_are_read() -> None:
    settings = load(
        WEBHOOK_PATH="/hooks",
        HOST="192.0.2.10",
        PORT="8080",
        LOG_LEVEL="debug",
        LOG_FORMAT="JSON",
        GITHUB_API_URL="https://ghe.example.com/api/v3/",
        GITHUB_REPOSITORIES="octo/one, octo/two.js",
        APP_ID="12345",
        PRIVATE_KEY=PEM,
        SYNC_INTERVAL="2.5",
        SYNC_BATCH_SIZE="50",
        SYNC_MAX_CONCURRENCY="10",
        SYNC_TIMEOUT="4",
        SYNC_RETRY_ATTEMPTS="0",
        SYNC_RETRY_DELAY="0",
        SOCKETIO_MESSAGE_QUEUE="redis://localhost:6379/0",
        WORKTREE_ROOT="/srv/worktrees",
        RETENTION_DAYS="14",
        DEV_MODE="yes",
    )
    assert settings.webhook_path == "/hooks"
    assert (settings.host, settings.port) == ("192.0.2.10", 8080)
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings.github_api_url == "https://ghe.example.com/api/v3"
    assert settings.github_repositories == ("octo/one", "octo/two.js")
    assert settings.app_id == "12345"
    assert settings.sync_interval == 2.5
    assert settings.sync_batch_size == 50
    assert settings.sync_max_concurrency == 10
    assert settings.sync_timeout == 4.0
    assert settings.sync_retry_attempts == 0
    assert settings.sync_retry_delay == 0.0
    assert settings.socketio_message_queue == Secret("redis://localhost:6379/0")
    assert settings.worktree_root == Path("/srv/worktrees")
    assert settings.retention_days == 14.0
    assert settings.dev_mode is True


def test_webhook_secret_comma_list_with_spaces() -> None:
    settings = load(WEBHOOK_SECRET=" new-secret , old secret ,, third ")
    assert [s.reveal() for s in settings.webhook_secrets] == ["new-secret", "old secret", "third"]
    assert all(isinstance(s, Secret) for s in settings.webhook_secrets)


def test_webhook_secret_of_only_commas_is_no_secret() -> None:
    assert load(WEBHOOK_SECRET=" , ,").webhook_secrets == ()


def test_blank_values_count_as_unset() -> None:
    settings = load(API_TOKEN="   ", PORT="", WEBHOOK_PATH=" ")
    assert settings.api_token is None
    assert settings.port == 3000
    assert settings.webhook_path == "/webhooks/github"


# -- refusing to start -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "missing", "present"),
    [
        pytest.param({}, ["WEBHOOK_SECRET", "API_TOKEN"], [], id="neither"),
        pytest.param({"API_TOKEN": "tok-123"}, ["WEBHOOK_SECRET"], ["API_TOKEN"], id="no-secret"),
        pytest.param(
            {"WEBHOOK_SECRET": "whsec-1"}, ["API_TOKEN"], ["WEBHOOK_SECRET"], id="no-api-token"
        ),
        pytest.param(
            {"WEBHOOK_SECRET": " , ", "API_TOKEN": "tok-123"},
            ["WEBHOOK_SECRET"],
            ["API_TOKEN"],
            id="secret-list-empty",
        ),
        pytest.param(
            {"WEBHOOK_SECRET": "whsec-1", "API_TOKEN": "tok", "DEV_MODE": "false"},
            [],
            [],
            id="both-set",
        ),
    ],
)
def test_check_secure(env: dict[str, str], missing: list[str], present: list[str]) -> None:
    settings = load_settings(env, env_file=None)
    if not missing:
        settings.check_secure()
        return
    with pytest.raises(ConfigError) as excinfo:
        settings.check_secure()
    message = str(excinfo.value)
    for name in missing:
        assert name in message
    for name in present:
        assert name not in message
    assert "DEV_MODE" in message  # says how to run insecurely on purpose


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on"])
def test_dev_mode_allows_starting_without_secrets(value: str) -> None:
    settings = load(DEV_MODE=value)
    assert settings.dev_mode is True
    settings.check_secure()


@pytest.mark.parametrize("value", ["false", "0", "no", "off"])
def test_dev_mode_false_still_refuses(value: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        load(DEV_MODE=value).check_secure()


# -- bad values name their variable -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "80.5"),
        ("PORT", "-1"),
        ("PORT", "65536"),
        ("DEV_MODE", "maybe"),
        ("DEV_MODE", "2"),
        ("SYNC_INTERVAL", "fast"),
        ("SYNC_INTERVAL", "0.5"),
        ("SYNC_INTERVAL", "nan"),
        ("SYNC_TIMEOUT", "0"),
        ("SYNC_RETRY_DELAY", "-1"),
        ("RETENTION_DAYS", "0"),
        ("RETENTION_DAYS", "a week"),
        ("SYNC_BATCH_SIZE", "0"),
        ("SYNC_BATCH_SIZE", "ten"),
        ("SYNC_MAX_CONCURRENCY", "101"),
        ("SYNC_RETRY_ATTEMPTS", "21"),
        ("INGEST_BATCH_MAX", "0"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "LOUD"),
        ("DATABASE_URL", "mysql://db/hooks"),
        ("DATABASE_URL", "webhook-service.db"),
        ("GITHUB_API_URL", "api.github.com"),
        ("GHE_HOST", "https://github.example.com"),
        ("GHE_HOST", "github.example.com/api/v3"),
        ("GHE_PROTOCOL", "ftp"),
        ("APP_ID", "my-app"),
        ("TASK_BRANCH_PATTERN", r"^task/(.+)$"),
        ("TASK_BRANCH_PATTERN", r"^task/(?P<id>.+)$"),
        ("TASK_BRANCH_PATTERN", r"^task/(?P<task_id>.+"),
        ("WEBHOOK_PATH", "webhooks/github"),
        ("GITHUB_REPOSITORIES", "octo/one,not-a-repo"),
        ("GITHUB_REPOSITORIES", "octo/one/extra"),
    ],
)
def test_bad_value_raises_config_error_naming_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(name)):
        load_settings({**SECURE, name: value}, env_file=None)


def test_custom_task_branch_pattern() -> None:
    settings = load(TASK_BRANCH_PATTERN=r"^(?P<task_id>\d+)-")
    match = settings.task_branch_pattern.match("42-fix-things")
    assert match is not None
    assert match["task_id"] == "42"


# -- .env file ---------------------------------------------------------------------------


def test_env_file_is_read(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        "# a comment\n"
        "\n"
        "WEBHOOK_SECRET=from-file\n"
        "export API_TOKEN='quoted token'\n"
        'PORT="4000"\n'
        "  LOG_FORMAT = json  \n",
    )
    settings = load_settings({}, env_file=path)
    assert [s.reveal() for s in settings.webhook_secrets] == ["from-file"]
    assert settings.api_token is not None
    assert settings.api_token.reveal() == "quoted token"
    assert settings.port == 4000
    assert settings.log_format == "json"


def test_env_file_inline_comments_quotes_and_multiline_values(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        "WEBHOOK_SECRET=abc # note\n"  # an inline comment is not part of the value
        "API_TOKEN='tok # not a comment'\n"
        "SOCKETIO_CHANNEL=a#b\n"  # no space before '#': part of the value
        'TASK_BRANCH_PATTERN="^task/(?P<task_id>[0-9a-f-]{36})$"\n'
        "GITHUB_REPOSITORIES='octo/one,\n  octo/two'\n"  # quoted: may span lines
        "DATABASE_URL=sqlite:///./${HOME}.db\n",  # no ${VAR} expansion
    )
    settings = load_settings({}, env_file=path)
    assert [s.reveal() for s in settings.webhook_secrets] == ["abc"]
    assert settings.api_token == Secret("tok # not a comment")
    assert settings.socketio_channel == "a#b"
    assert settings.task_branch_pattern.pattern == "^task/(?P<task_id>[0-9a-f-]{36})$"
    assert settings.github_repositories == ("octo/one", "octo/two")
    assert settings.database_url.reveal() == "sqlite:///./${HOME}.db"


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    path = write_env(tmp_path, "PORT=4000\nWEBHOOK_SECRET=from-file\nHOST=file-host\n")
    settings = load_settings({"PORT": "5000", "WEBHOOK_SECRET": "from-env"}, env_file=path)
    assert settings.port == 5000
    assert [s.reveal() for s in settings.webhook_secrets] == ["from-env"]
    assert settings.host == "file-host"  # not in the environment: the file's value


def test_default_env_file_is_dot_env_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(tmp_path, "SYNC_BATCH_SIZE=7\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).sync_batch_size == 7


def test_missing_env_file_is_ignored(tmp_path: Path) -> None:
    assert load_settings({}, env_file=tmp_path / "absent.env") == Settings()


@pytest.mark.parametrize(
    "line", ["this is not a setting", "PORT", "WEBHOOK_SECRET='never closed"]
)
def test_malformed_env_file_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = write_env(tmp_path, f"PORT=1\n{line}\nHOST=x\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=value"):
        load_settings({}, env_file=path)


def test_bad_value_from_env_file_names_variable(tmp_path: Path) -> None:
    path = write_env(tmp_path, "PORT=eighty\n")
    with pytest.raises(ConfigError, match="PORT"):
        load_settings({}, env_file=path)


# -- GitHub Enterprise Server -------------------------------------------------------------


def test_github_urls_default_to_github_com() -> None:
    settings = load()
    assert (settings.github_url, settings.github_api_url) == (
        "https://github.com",
        "https://api.github.com",
    )


def test_ghe_host_sets_web_and_api_urls() -> None:
    settings = load(GHE_HOST="github.example.com")
    assert settings.github_url == "https://github.example.com"
    assert settings.github_api_url == "https://github.example.com/api/v3"


def test_ghe_protocol_and_port() -> None:
    settings = load(GHE_HOST="ghe.internal:8443", GHE_PROTOCOL="http")
    assert settings.github_api_url == "http://ghe.internal:8443/api/v3"


def test_github_api_url_wins_over_ghe_host_for_the_api() -> None:
    settings = load(GHE_HOST="github.example.com", GITHUB_API_URL="http://127.0.0.1:9/")
    assert settings.github_api_url == "http://127.0.0.1:9"
    assert settings.github_url == "https://github.example.com"
