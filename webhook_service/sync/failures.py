"""What a cycle reports of what went wrong: one line per failure, so that one
repository (or scope, or hook) failing never stops the others.

A rejected credential fails every call made with it in the same words: its line is the
same whatever the call, and the cycle reports it once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from webhook_service.core.payloads import PayloadError
from webhook_service.github.errors import CredentialRejected, GitHubError, Stopped
from webhook_service.store import StoreUnavailable

logger = logging.getLogger(__name__)


def failures(labels: Sequence[str], outcomes: Sequence[object]) -> list[str]:
    """The error lines of ``asyncio.gather(..., return_exceptions=True)``'s outcomes,
    each labelled; :class:`Stopped` (the client closed) is raised, not reported."""
    errors = []
    for label, outcome in zip(labels, outcomes, strict=True):
        if isinstance(outcome, Stopped):
            raise outcome
        if isinstance(outcome, (GitHubError, StoreUnavailable, PayloadError)):
            errors.append(failure(label, outcome))
        elif isinstance(outcome, BaseException):
            errors.append(f"{label}: unexpected {outcome!r}")
            logger.error("sync of %s failed", label, exc_info=outcome)
    return errors


def failure(label: str, exc: Exception) -> str:
    """An error line; a rejected credential's is the same for every call it failed."""
    return str(exc) if isinstance(exc, CredentialRejected) else f"{label}: {exc}"
