"""The GitHub App's credentials, ``APP_ID`` and its private key: the key's forms (PEM,
one line with ``\\n``, base64, a file) brought to PEM and loaded once with
``cryptography``, so that a key GitHub could never accept is found at start."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from webhook_service.config.values import ConfigError, Reader, Secret


def app_credentials(reader: Reader) -> tuple[str | None, Secret | None]:
    """``APP_ID`` and the App's private key, both or neither.

    The key comes from ``PRIVATE_KEY`` (PEM; with literal ``\\n`` for newlines, as
    one-line environments need; or base64 of the PEM, as Probot accepts) or else from
    the file ``PRIVATE_KEY_PATH``. It is checked here, so that a key GitHub could
    never accept stops the start with one line instead of failing every sync cycle.
    """
    app_id = reader.text("APP_ID")
    if app_id is not None and not app_id.isdigit():
        raise ConfigError(
            f"APP_ID must be the App's numeric id (its settings page: 'App ID'), got {app_id!r}"
        )
    source, text = "PRIVATE_KEY", reader.text("PRIVATE_KEY")
    key_path = reader.text("PRIVATE_KEY_PATH")
    if text is None and key_path is not None:
        source = f"PRIVATE_KEY_PATH ({key_path})"
        try:
            text = Path(key_path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"PRIVATE_KEY_PATH: cannot read {key_path}: {exc}; point it at the .pem file"
                " GitHub let you download from the App's settings"
            ) from exc
    if (app_id is None) != (text is None):
        given, missing = (
            ("APP_ID", "PRIVATE_KEY or PRIVATE_KEY_PATH")
            if text is None
            else ("PRIVATE_KEY" if source == "PRIVATE_KEY" else "PRIVATE_KEY_PATH", "APP_ID")
        )
        raise ConfigError(
            f"{given} is set but {missing} is not: a GitHub App needs both (or unset {given})"
        )
    if text is None:
        return None, None
    pem = _pem(text)
    _check_private_key(pem, source)
    return app_id, Secret(pem)


def _pem(text: str) -> str:
    text = text.strip()
    if "-----BEGIN" not in text:
        try:
            decoded = base64.b64decode("".join(text.split()), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return text  # neither PEM nor base64: _check_private_key says so
        if "-----BEGIN" in decoded:
            text = decoded.strip()
    # PEMs pasted into one line with literal "\n" are accepted.
    return text.replace("\\n", "\n").strip()


def _check_private_key(pem: str, source: str) -> None:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{source} is not a readable RSA private key ({reason}); use the App's .pem"
            " file as GitHub gave it (PEM, or that file's contents base64-encoded)"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"{source} is not an RSA key: GitHub Apps sign with RSA (RS256)")
