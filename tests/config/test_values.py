"""Tests for webhook_service.config.values: secrets stay hidden, URLs are redacted."""

from __future__ import annotations

import pytest

from tests.config.shared import PEM, SECURE, load
from webhook_service.config import Secret, load_settings, redact_url

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
    settings = load(**SECURE, SOCKETIO_MESSAGE_QUEUE="redis://:mqpass7777@redis:6379/0")
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
    settings = load(DATABASE_URL="postgresql://app:s3cr3t-pw@db:5432/hooks")
    assert settings.safe_database_url() == "postgresql://app:***@db:5432/hooks"
    assert settings.database_url.reveal() == "postgresql://app:s3cr3t-pw@db:5432/hooks"
