"""Reading a request: its JSON body, its query parameters and cursors, the PR it names.

Each reader answers the value or raises :class:`~.errors.APIError` 400 saying which
field is wrong and what it must be, so handlers hold no parsing of their own.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from starlette.requests import Request

from webhook_service.api.errors import APIError

_Key = TypeVar("_Key")
#: A repository's full name: owner/name.
REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


async def json_body(request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise APIError(400, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise APIError(400, "the body must be a JSON object")
    return data


def pr_target(data: dict[str, Any]) -> tuple[str, int, str | None]:
    """The PR a body names (``{"repository", "number", "task_id"?}``), task id lowered."""
    repository, number, task_id = data.get("repository"), data.get("number"), data.get("task_id")
    if not isinstance(repository, str) or not REPO.fullmatch(repository):
        raise APIError(400, "'repository' must be owner/name")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 2**31:
        raise APIError(400, "'number' must be a positive integer")
    if task_id is not None and (not isinstance(task_id, str) or not is_uuid(task_id)):
        raise APIError(400, "'task_id' must be a task's UUID")
    return repository, number, task_id.lower() if task_id else None


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def query_repo(request: Request) -> str | None:
    repository = request.query_params.get("repository")
    if repository is not None and not REPO.fullmatch(repository):
        raise APIError(400, "repository must be owner/name")
    return repository


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise APIError(400, f"'{name}' must be a non-negative integer")
    return int(raw)


def page_limit(request: Request, *, default: int = 500, most: int = 5000) -> int:
    value = int_param(request, "limit", default)
    if not 1 <= value <= most:
        raise APIError(400, f"'limit' must be between 1 and {most}")
    return value


def cursor(request: Request, kind: str, parse: Callable[[Sequence[Any]], _Key]) -> _Key | None:
    """The key in ``?cursor=``, given out by this list (kind) earlier; 400 otherwise.
    (:func:`~.responses.encode_cursor` makes them.)"""
    raw = request.query_params.get("cursor")
    if raw is None:
        return None
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(decoded, list) or not decoded or decoded[0] != kind:
            raise ValueError(kind)
        return parse(decoded[1:])
    except (binascii.Error, ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
        raise APIError(
            400, f"'cursor' is not a cursor of /api/{kind}: pass back the one a page gave"
        ) from None


def time_key(key: Sequence[Any]) -> tuple[datetime, str]:
    """A ``(time, id)`` cursor key of the lists paged newest first (tasks, deliveries):
    an ISO 8601 time with its offset, and a text id."""
    match key:
        case [str(at), str(ident)]:
            parsed = datetime.fromisoformat(at)
            if parsed.tzinfo is None:
                raise ValueError(at)
            return parsed.astimezone(UTC), ident
    raise ValueError(key)
