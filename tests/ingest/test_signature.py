"""Tests for webhook_service.ingest.signature: GitHub's X-Hub-Signature-256, nothing else."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from webhook_service.ingest.signature import SignatureError, sign, verify

# GitHub's documented test vector:
# https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
DOC_SECRET = b"It's a Secret to Everybody"
DOC_BODY = b"Hello, World!"
DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
DOC_HEX = DOC_SIGNATURE.removeprefix("sha256=")


@dataclass(frozen=True)
class Case:
    signature: str | None
    secrets: tuple[bytes, ...] = (DOC_SECRET,)
    body: bytes = DOC_BODY
    sha1: bool = False
    error: str | None = None  # a regex the SignatureError message must match; None: accepted


CASES: dict[str, Case] = {
    "documented-vector": Case(DOC_SIGNATURE),
    "wrong-secret": Case(DOC_SIGNATURE, secrets=(b"not the secret",), error="does not match"),
    "rotation-second-secret-matches": Case(
        DOC_SIGNATURE, secrets=(b"the new secret", DOC_SECRET, b"a third one")
    ),
    "rotation-no-secret-matches": Case(
        DOC_SIGNATURE, secrets=(b"the new secret", b"a third one"), error="does not match"
    ),
    "missing-header": Case(None, error="missing X-Hub-Signature-256"),
    "empty-header": Case("", error="missing X-Hub-Signature-256"),
    "sha1-only-refused": Case(None, sha1=True, error="sha1"),
    "sha1-present-but-sha256-wins": Case(DOC_SIGNATURE, sha1=True),
    "sha1-prefix-in-sha256-header": Case(
        "sha1=" + DOC_HEX[:40], error="malformed X-Hub-Signature-256"
    ),
    "no-prefix": Case(DOC_HEX, error="malformed"),
    "uppercase-prefix": Case("SHA256=" + DOC_HEX, error="malformed"),
    "truncated-hex": Case(DOC_SIGNATURE[:-1], error="malformed"),
    "extra-hex": Case(DOC_SIGNATURE + "0", error="malformed"),
    # GitHub always sends lowercase hex and the comparison is on the exact string, so an
    # uppercase digest (same bytes) is refused as a mismatch, not as malformed.
    "uppercase-hex-refused": Case("sha256=" + DOC_HEX.upper(), error="does not match"),
    "empty-secret-list-refuses": Case(DOC_SIGNATURE, secrets=(), error="does not match"),
    "body-changed-by-one-byte": Case(DOC_SIGNATURE, body=b"Hello, World?", error="does not match"),
    "body-with-extra-newline": Case(DOC_SIGNATURE, body=DOC_BODY + b"\n", error="does not match"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_verify(case: Case) -> None:
    if case.error is None:
        verify(case.body, signature=case.signature, secrets=case.secrets, sha1=case.sha1)
        return
    with pytest.raises(SignatureError, match=case.error):
        verify(case.body, signature=case.signature, secrets=case.secrets, sha1=case.sha1)


def test_sign_matches_documented_vector() -> None:
    assert sign(DOC_BODY, secret=DOC_SECRET) == DOC_SIGNATURE


def test_sign_depends_on_secret_and_body() -> None:
    reference = sign(DOC_BODY, secret=DOC_SECRET)
    assert sign(DOC_BODY, secret=DOC_SECRET + b"!") != reference
    assert sign(DOC_BODY + b" ", secret=DOC_SECRET) != reference


def test_sign_then_verify_round_trips_for_arbitrary_bytes() -> None:
    body = bytes(range(256)) * 3
    secret = "clé secrète".encode()
    verify(body, signature=sign(body, secret=secret), secrets=[secret], sha1=False)


def test_sha1_message_names_the_required_header() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify(DOC_BODY, signature=None, secrets=[DOC_SECRET], sha1=True)
    message = str(excinfo.value)
    assert "sha1" in message
    assert "X-Hub-Signature-256" in message
