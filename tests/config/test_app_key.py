"""Tests for webhook_service.config.app_key: APP_ID and the App's private key."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.config.shared import PEM, load, write_env
from webhook_service.config import ConfigError, Settings, load_settings

# -- private key and APP_ID ---------------------------------------------------------------

APP = {"APP_ID": "12345"}


def _key(settings: Settings) -> str:
    assert settings.private_key is not None
    return settings.private_key.reveal()


def test_private_key_literal_backslash_n_becomes_newlines() -> None:
    one_line = PEM.replace("\n", "\\n")
    assert "\n" not in one_line
    assert _key(load(**APP, PRIVATE_KEY=one_line)) == PEM.strip()


def test_private_key_with_real_newlines_is_kept() -> None:
    assert _key(load(**APP, PRIVATE_KEY=PEM)) == PEM.strip()


def test_private_key_may_be_base64_of_the_pem() -> None:
    # Probot (and kodiak) accept the .pem file base64-encoded: one line, no quoting.
    encoded = base64.b64encode(PEM.encode()).decode()
    assert _key(load(**APP, PRIVATE_KEY=encoded)) == PEM.strip()


def test_private_key_from_env_file_with_escaped_newlines(tmp_path: Path) -> None:
    one_line = PEM.strip().replace("\n", "\\n")
    path = write_env(tmp_path, f'APP_ID=1\nPRIVATE_KEY="{one_line}"\n')
    assert _key(load_settings({}, env_file=path)) == PEM.strip()


def test_private_key_from_env_file_on_several_lines(tmp_path: Path) -> None:
    path = write_env(tmp_path, f'APP_ID=1\nPRIVATE_KEY="{PEM.strip()}"\nPORT=4000\n')
    settings = load_settings({}, env_file=path)
    assert _key(settings) == PEM.strip()
    assert settings.port == 4000  # the lines after the key are read too


def test_private_key_path_is_read(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(PEM)
    assert _key(load(**APP, PRIVATE_KEY_PATH=str(key_file))) == PEM.strip()


def test_private_key_wins_over_private_key_path(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text("not even a key: never read")
    assert _key(load(**APP, PRIVATE_KEY=PEM, PRIVATE_KEY_PATH=str(key_file))) == PEM.strip()


def test_unreadable_private_key_path_names_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"PRIVATE_KEY_PATH: cannot read .*missing\.pem"):
        load(**APP, PRIVATE_KEY_PATH=str(tmp_path / "missing.pem"))


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
        load(**APP, PRIVATE_KEY=key)


def test_private_key_file_that_is_not_a_key_names_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text("hello\n")
    with pytest.raises(ConfigError, match=r"PRIVATE_KEY_PATH \(.*app\.pem\) is not a readable"):
        load(**APP, PRIVATE_KEY_PATH=str(key_file))


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
        load(**APP, PRIVATE_KEY=ec_pem)


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
        load(**env)


def test_key_path_without_app_id_names_the_path_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(PEM)
    with pytest.raises(ConfigError, match="PRIVATE_KEY_PATH is set but APP_ID is not"):
        load(PRIVATE_KEY_PATH=str(key_file))
