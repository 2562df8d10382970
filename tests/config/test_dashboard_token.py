"""DASHBOARD_TOKEN: optional, a secret, and refused where it would give a reader more
than reading (the same value as API_TOKEN, or no API_TOKEN to make it mean anything)."""

from __future__ import annotations

import pytest

from tests.config.shared import SECURE, load
from webhook_service.config import ConfigError, Secret


def test_unset_by_default() -> None:
    assert load(**SECURE).dashboard_token is None
    assert load(**SECURE, DASHBOARD_TOKEN="  ").dashboard_token is None  # empty is unset


def test_read_as_a_secret_that_does_not_show_itself() -> None:
    settings = load(**SECURE, DASHBOARD_TOKEN=" read-only-token ")
    assert settings.dashboard_token == Secret("read-only-token")
    assert "read-only-token" not in repr(settings)
    settings.check_secure()  # it is optional: serving needs only the other two


def test_the_same_value_as_api_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="DASHBOARD_TOKEN must differ from API_TOKEN"):
        load(**SECURE, DASHBOARD_TOKEN=SECURE["API_TOKEN"])


def test_without_api_token_it_is_refused_even_in_dev_mode() -> None:
    with pytest.raises(ConfigError, match="DASHBOARD_TOKEN needs API_TOKEN"):
        load(DEV_MODE="true", DASHBOARD_TOKEN="read-only-token")
