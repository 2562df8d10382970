"""Webhook signatures: HMAC-SHA256 of the raw body, as GitHub computes them.

https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
Sans-I/O: bytes in, a value out or :class:`SignatureError`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

_PREFIX = "sha256="


class SignatureError(Exception):
    """The delivery is not signed by any secret we hold (HTTP 401)."""


def sign(body: bytes, *, secret: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, *, signature: str | None, secrets: Sequence[bytes], sha1: bool) -> None:
    """Raise :class:`SignatureError` unless ``signature`` matches one of ``secrets``.

    ``sha1`` says whether the legacy ``X-Hub-Signature`` header was present, only to
    give a clearer error: sha1 signatures are never accepted. Every secret is tried,
    so a secret can be rotated without losing deliveries; the comparison is
    constant-time.
    """
    if not signature:
        if sha1:
            raise SignatureError("only a sha1 signature was sent; X-Hub-Signature-256 is required")
        raise SignatureError("missing X-Hub-Signature-256 header")
    if not signature.startswith(_PREFIX) or len(signature) != len(_PREFIX) + 64:
        raise SignatureError("malformed X-Hub-Signature-256 header")
    matched = False
    for secret in secrets:
        # No early exit: the time taken does not tell which secret matched.
        matched |= hmac.compare_digest(sign(body, secret=secret), signature)
    if not matched:
        raise SignatureError("signature does not match")
