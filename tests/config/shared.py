"""What the config tests share: settings loaded from a given environment alone, a
``.env`` file written for a test, the secrets that make serving allowed, an App's key."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import app_private_key
from webhook_service.config import Settings, load_settings

SECURE = {"WEBHOOK_SECRET": "whsec-one", "API_TOKEN": "api-token-value"}
#: A real RSA key in PEM, as GitHub hands it out (the App's "Generate a private key").
PEM = app_private_key()


def load(**env: str) -> Settings:
    return load_settings(env, env_file=None)


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path
