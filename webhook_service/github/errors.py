"""What can go wrong talking to GitHub, as one exception tree, and GitHub's error
answers read into it (docs: "Troubleshooting the REST API", "Client errors").

Whose fault it is shows in the type: :class:`GitHubValidationError` (a 422) and other
4xx are not retried; :class:`CredentialRejected` says which credential GitHub refused
and what to check.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import gidgethub


class GitHubError(Exception):
    """A GitHub API call failed; ``status`` is the HTTP status, if there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubValidationError(GitHubError):
    """A 422 "Validation Failed": ``errors`` are the messages of GitHub's ``errors[]``
    (a field error without a message reads ``"<field> <code>"``)."""

    def __init__(self, message: str, status: int, errors: Sequence[str]) -> None:
        super().__init__(message, status)
        self.errors = tuple(errors)

    @property
    def pull_request_exists(self) -> bool:
        """GitHub refused a second open pull request for the same head and base."""
        return any("pull request already exists" in e.lower() for e in self.errors)


class CredentialRejected(GitHubError):
    """GitHub refused the credential itself (401: a revoked or mistyped token, an App
    JWT signed with another App's key or naming another ``APP_ID``).

    Asking again with it cannot help: after the first 401, calls made with that
    credential fail at once with the same message, until the next cycle
    (:meth:`GitHub.new_cycle`). So a credential is tried at most once an interval, and
    every call it fails says the same thing, once (the worker logs distinct errors).
    """


class Stopped(Exception):
    """The client was closed while waiting (for a rate limit or a retry)."""


def validation_messages(errors: Any) -> list[str]:
    """The text of a 422's ``errors``: strings, or objects with a message or a field."""
    if isinstance(errors, str):
        return [errors]
    messages = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, str):
            messages.append(error)
        elif isinstance(error, Mapping):
            message = error.get("message")
            fallback = f"{error.get('field', error.get('resource', '?'))} {error.get('code', '')}"
            messages.append(str(message) if message else fallback.strip())
    return messages


def error_message(body: bytes) -> str:
    """The ``message`` of GitHub's JSON error body."""
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        document = json.loads(body)
        if isinstance(document, dict) and document.get("message"):
            return str(document["message"])
    return "no message"


def describe(exc: gidgethub.HTTPException) -> str:
    """``GitHub answered 404: Not Found``: an HTTP error, for messages."""
    message = " ".join(str(a) for a in exc.args if a) or "no message"
    return f"GitHub answered {exc.status_code}: {message}"
