"""Tests for webhook_service.config: environment, .env file, defaults, secrets."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers import app_private_key
from webhook_service.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_TASK_BRANCH_PATTERN,
    ConfigError,
    Secret,
    Settings,
    load_settings,
    redact_url,
)

SECURE = {"WEBHOOK_SECRET": "whsec-one", "API_TOKEN": "api-token-value"}


def _load(**env: str) -> Settings:
    return load_settings(env, env_file=None)


def test_defaults() -> None:
    settings = _load()
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
    assert _load() == Settings()


def test_default_task_branch_pattern_extracts_task_id() -> None:
    task_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    match = _load().task_branch_pattern.match(f"task/{task_id}")
    assert match is not None
    assert match["task_id"] == task_id
    assert _load().task_branch_pattern.match("feature/foo") is None


def test_values_are_read() -> None:
    settings = _load(
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
    settings = _load(WEBHOOK_SECRET=" new-secret , old secret ,, third ")
    assert [s.reveal() for s in settings.webhook_secrets] == ["new-secret", "old secret", "third"]
    assert all(isinstance(s, Secret) for s in settings.webhook_secrets)


def test_webhook_secret_of_only_commas_is_no_secret() -> None:
    assert _load(WEBHOOK_SECRET=" , ,").webhook_secrets == ()


def test_blank_values_count_as_unset() -> None:
    settings = _load(API_TOKEN="   ", PORT="", WEBHOOK_PATH=" ")
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
    settings = _load(DEV_MODE=value)
    assert settings.dev_mode is True
    settings.check_secure()


@pytest.mark.parametrize("value", ["false", "0", "no", "off"])
def test_dev_mode_false_still_refuses(value: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        _load(DEV_MODE=value).check_secure()


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
    settings = _load(TASK_BRANCH_PATTERN=r"^(?P<task_id>\d+)-")
    match = settings.task_branch_pattern.match("42-fix-things")
    assert match is not None
    assert match["task_id"] == "42"


# -- .env file ---------------------------------------------------------------------------


def _write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_env_file_is_read(tmp_path: Path) -> None:
    path = _write_env(
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
    path = _write_env(
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
    path = _write_env(tmp_path, "PORT=4000\nWEBHOOK_SECRET=from-file\nHOST=file-host\n")
    settings = load_settings({"PORT": "5000", "WEBHOOK_SECRET": "from-env"}, env_file=path)
    assert settings.port == 5000
    assert [s.reveal() for s in settings.webhook_secrets] == ["from-env"]
    assert settings.host == "file-host"  # not in the environment: the file's value


def test_default_env_file_is_dot_env_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_env(tmp_path, "SYNC_BATCH_SIZE=7\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).sync_batch_size == 7


def test_missing_env_file_is_ignored(tmp_path: Path) -> None:
    assert load_settings({}, env_file=tmp_path / "absent.env") == Settings()


@pytest.mark.parametrize(
    "line", ["this is not a setting", "PORT", "WEBHOOK_SECRET='never closed"]
)
def test_malformed_env_file_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = _write_env(tmp_path, f"PORT=1\n{line}\nHOST=x\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=value"):
        load_settings({}, env_file=path)


def test_bad_value_from_env_file_names_variable(tmp_path: Path) -> None:
    path = _write_env(tmp_path, "PORT=eighty\n")
    with pytest.raises(ConfigError, match="PORT"):
        load_settings({}, env_file=path)


# -- private key and APP_ID ---------------------------------------------------------------

#: A real RSA key in PEM, as GitHub hands it out (the App's "Generate a private key").
PEM = app_private_key()
APP = {"APP_ID": "12345"}


def _key(settings: Settings) -> str:
    assert settings.private_key is not None
    return settings.private_key.reveal()


def test_private_key_literal_backslash_n_becomes_newlines() -> None:
    one_line = PEM.replace("\n", "\\n")
    assert "\n" not in one_line
    assert _key(_load(**APP, PRIVATE_KEY=one_line)) == PEM.strip()


def test_private_key_with_real_newlines_is_kept() -> None:
    assert _key(_load(**APP, PRIVATE_KEY=PEM)) == PEM.strip()


def test_private_key_may_be_base64_of_the_pem() -> None:
    # Probot (and kodiak) accept the .pem file base64-encoded: one line, no quoting.
    encoded = base64.b64encode(PEM.encode()).decode()
    assert _key(_load(**APP, PRIVATE_KEY=encoded)) == PEM.strip()


def test_private_key_from_env_file_with_escaped_newlines(tmp_path: Path) -> None:
    one_line = PEM.strip().replace("\n", "\\n")
    path = _write_env(tmp_path, f'APP_ID=1\nPRIVATE_KEY="{one_line}"\n')
    assert _key(load_settings({}, env_file=path)) == PEM.strip()


def test_private_key_from_env_file_on_several_lines(tmp_path: Path) -> None:
    path = _write_env(tmp_path, f'APP_ID=1\nPRIVATE_KEY="{PEM.strip()}"\nPORT=4000\n')
    settings = load_settings({}, env_file=path)
    assert _key(settings) == PEM.strip()
    assert settings.port == 4000  # the lines after the key are read too


def test_private_key_path_is_read(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(PEM)
    assert _key(_load(**APP, PRIVATE_KEY_PATH=str(key_file))) == PEM.strip()


def test_private_key_wins_over_private_key_path(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text("not even a key: never read")
    assert _key(_load(**APP, PRIVATE_KEY=PEM, PRIVATE_KEY_PATH=str(key_file))) == PEM.strip()


def test_unreadable_private_key_path_names_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"PRIVATE_KEY_PATH: cannot read .*missing\.pem"):
        _load(**APP, PRIVATE_KEY_PATH=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize(
    "key",
    [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabcdef\n"
        "-----END RSA PRIVATE KEY-----\n",
        PEM[:200],  # cut short
        "c2hvcnQ=",  # base64, but not of a PEM
        "ghp_this-is-a-token-not-a-key",
    ],
    ids=["garbled", "truncated", "base64-not-pem", "a-token"],
)
def test_malformed_private_key_refuses_to_start(key: str) -> None:
    # Before, each sync cycle logged a 40-line traceback while /health said healthy.
    with pytest.raises(ConfigError, match=r"^PRIVATE_KEY is not a readable RSA private key"):
        _load(**APP, PRIVATE_KEY=key)


def test_private_key_file_that_is_not_a_key_names_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text("hello\n")
    with pytest.raises(ConfigError, match=r"PRIVATE_KEY_PATH \(.*app\.pem\) is not a readable"):
        _load(**APP, PRIVATE_KEY_PATH=str(key_file))


def test_private_key_of_another_kind_is_refused() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ConfigError, match="PRIVATE_KEY is not an RSA key"):
        _load(**APP, PRIVATE_KEY=ec_pem)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APP_ID": "12345"}, "APP_ID is set but PRIVATE_KEY or PRIVATE_KEY_PATH is not"),
        ({"PRIVATE_KEY": PEM}, "PRIVATE_KEY is set but APP_ID is not"),
    ],
    ids=["app-id-alone", "key-alone"],
)
def test_app_id_and_key_come_together(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(**env)


def test_key_path_without_app_id_names_the_path_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(PEM)
    with pytest.raises(ConfigError, match="PRIVATE_KEY_PATH is set but APP_ID is not"):
        _load(PRIVATE_KEY_PATH=str(key_file))


# -- GitHub Enterprise Server -------------------------------------------------------------


def test_github_urls_default_to_github_com() -> None:
    settings = _load()
    assert (settings.github_url, settings.github_api_url) == (
        "https://github.com",
        "https://api.github.com",
    )


def test_ghe_host_sets_web_and_api_urls() -> None:
    settings = _load(GHE_HOST="github.example.com")
    assert settings.github_url == "https://github.example.com"
    assert settings.github_api_url == "https://github.example.com/api/v3"


def test_ghe_protocol_and_port() -> None:
    settings = _load(GHE_HOST="ghe.internal:8443", GHE_PROTOCOL="http")
    assert settings.github_api_url == "http://ghe.internal:8443/api/v3"


def test_github_api_url_wins_over_ghe_host_for_the_api() -> None:
    settings = _load(GHE_HOST="github.example.com", GITHUB_API_URL="http://127.0.0.1:9/")
    assert settings.github_api_url == "http://127.0.0.1:9"
    assert settings.github_url == "https://github.example.com"


# -- secrets stay hidden -----------------------------------------------------------------

SECRET_VALUES = {
    "WEBHOOK_SECRET": "whsec-alpha-1111,whsec-beta-2222",
    "API_TOKEN": "api-token-3333",
    "GITHUB_TOKEN": "ghp_token4444",
    "APP_ID": "12345",
    "PRIVATE_KEY": PEM.replace("\n", "\\n"),
    "DATABASE_URL": "postgresql://app:dbpass6666@db.internal:5432/hooks",
}
REVEALING = [
    "whsec-alpha-1111",
    "whsec-beta-2222",
    "api-token-3333",
    "ghp_token4444",
    PEM.splitlines()[5],  # a line of the key material
    "dbpass6666",
]


def test_repr_and_str_of_settings_hide_secrets() -> None:
    settings = load_settings(SECRET_VALUES, env_file=None)
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        for value in REVEALING:
            assert value not in text
    # The values are still there for the code that needs them.
    assert [s.reveal() for s in settings.webhook_secrets] == ["whsec-alpha-1111", "whsec-beta-2222"]
    assert settings.github_token is not None
    assert settings.github_token.reveal() == "ghp_token4444"


def test_repr_of_settings_hides_message_queue_password() -> None:
    # A Redis/AMQP URL with credentials is a secret too (DESIGN.md §8: "Secrets never
    # appear in logs or reprs").
    settings = _load(**SECURE, SOCKETIO_MESSAGE_QUEUE="redis://:mqpass7777@redis:6379/0")
    assert "mqpass7777" not in repr(settings)
    assert "mqpass7777" not in str(settings)


def test_secret_repr_str_and_format_hide_value() -> None:
    secret = Secret("hunter2-value")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert "hunter2" not in text
    assert secret.reveal() == "hunter2-value"


def test_secret_equality_compares_values() -> None:
    assert Secret("a-value") == Secret("a-value")
    assert Secret("a-value") != Secret("b-value")
    assert Secret("a-value") != "a-value"
    assert len({Secret("a-value"), Secret("a-value")}) == 1


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        (
            "postgresql://app:s3cr3t@db:5432/hooks",
            "postgresql://app:***@db:5432/hooks",
        ),
        ("postgresql://:s3cr3t@db/hooks", "postgresql://:***@db/hooks"),
        ("postgresql://app:p%40ss%3Aw@db/hooks", "postgresql://app:***@db/hooks"),
        ("postgresql://app@db/hooks", "postgresql://app@db/hooks"),
        ("sqlite:///./webhook-service.db", "sqlite:///./webhook-service.db"),
    ],
)
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe


def test_safe_database_url_masks_password() -> None:
    settings = _load(DATABASE_URL="postgresql://app:s3cr3t-pw@db:5432/hooks")
    assert settings.safe_database_url() == "postgresql://app:***@db:5432/hooks"
    assert settings.database_url.reveal() == "postgresql://app:s3cr3t-pw@db:5432/hooks"
