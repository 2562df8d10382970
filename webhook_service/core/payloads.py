"""Turning GitHub JSON into :class:`~webhook_service.core.model.Snapshot` values.

Pure functions over bytes and mappings; anything that is not the shape GitHub documents
raises :class:`PayloadError` (HTTP 400 at the receiver, never retried).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson

from webhook_service.core.model import Snapshot

#: Events whose payload carries a pull request snapshot that feeds the core.
_T = TypeVar("_T")

PR_EVENTS = frozenset(
    {
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
    }
)


class PayloadError(ValueError):
    """The body is not the JSON GitHub documents for this event (HTTP 400)."""


#: Events that change which repositories a GitHub App installation covers.
INSTALLATION_EVENTS = frozenset({"installation", "installation_repositories"})


@dataclass(frozen=True, slots=True)
class RepositoryChange:
    """Repositories an installation gained or lost (the poller tracks them)."""

    installation_id: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified, parsed delivery: what the receiver stores and hands on."""

    guid: str
    event: str
    action: str | None
    hook_id: int | None
    installation_id: int | None
    repository: str | None
    snapshot: Snapshot | None = None  # set for PR_EVENTS
    repositories: RepositoryChange | None = None  # set for INSTALLATION_EVENTS


def decode_body(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON object of a delivery sent as ``application/json`` or form-encoded."""
    raw: bytes | str = body
    if content_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError("form body is not valid") from exc
        values = fields.get("payload")
        if not values or len(values) != 1:
            raise PayloadError("form body has no single 'payload' field")
        raw = values[0]
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses escaped lone surrogates ("\ud800"), which JSON allows.
        try:
            document = json.loads(raw if isinstance(raw, str) else raw.decode("utf-8"))
        except (ValueError, RecursionError):
            raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise PayloadError("body is not a JSON object")
    return document


def parse_delivery(
    guid: str, event: str, document: Mapping[str, Any], *, hook_id: int | None = None
) -> Delivery:
    """``hook_id`` is the ``X-GitHub-Hook-ID`` header; a ``hook_id`` in the body wins."""
    action = _opt(document, "action", str)
    hook_id = _opt(document, "hook_id", int) or hook_id
    installation = _opt(document, "installation", dict)
    installation_id = _opt(installation, "id", int) if installation is not None else None
    repo = _opt(document, "repository", dict)
    repository = _opt(repo, "full_name", str) if repo is not None else None
    snapshot = None
    if event in PR_EVENTS:
        if repository is None:
            raise PayloadError("'repository.full_name' is missing")
        pr = document.get("pull_request")
        if not isinstance(pr, dict):
            raise PayloadError("'pull_request' is missing or not an object")
        # Only `pull_request` events (and the REST API) carry `merged`; review events
        # do not, so a close they report is unconfirmed (see Snapshot.status).
        snapshot = snapshot_from_api(pr, repository, merged_known=event == "pull_request")
    change = None
    if event in INSTALLATION_EVENTS and installation_id is not None:
        change = _repository_change(event, action, installation_id, document)
    return Delivery(guid, event, action, hook_id, installation_id, repository, snapshot, change)


def _repository_change(
    event: str, action: str | None, installation_id: int, document: Mapping[str, Any]
) -> RepositoryChange | None:
    """https://docs.github.com/en/webhooks/webhook-events-and-payloads#installation"""
    if event == "installation":
        repos = _names(document, "repositories")
        if action in ("created", "new_permissions_accepted", "unsuspend"):
            return RepositoryChange(installation_id, added=repos)
        if action in ("deleted", "suspend"):
            return RepositoryChange(installation_id, removed=repos)
        return None
    return RepositoryChange(
        installation_id,
        added=_names(document, "repositories_added"),
        removed=_names(document, "repositories_removed"),
    )


def _names(document: Mapping[str, Any], key: str) -> tuple[str, ...]:
    items = document.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PayloadError(f"'{key}' is not a list of repositories")
    return tuple(_req(item, "full_name", str) for item in items)


def snapshot_from_api(pr: Mapping[str, Any], repository: str, *, merged_known: bool) -> Snapshot:
    """A snapshot from a webhook's or the REST API's pull request object.

    ``merged_known`` says whether the source is authoritative about merging: a
    ``pull_request`` webhook or ``GET .../pulls/{n}`` (``merged``), or the list endpoint
    (``merged_at`` is always present there). Review events are not.
    """
    state = _req(pr, "state", str)
    if state not in ("open", "closed"):
        raise PayloadError(f"'pull_request.state' is {state!r}, not open or closed")
    merged = _opt(pr, "merged", bool)
    merged_at = _time(pr, "merged_at", required=False)
    if merged is None and merged_known:
        merged = merged_at is not None
    head = _opt(pr, "head", dict) or {}
    base = _opt(pr, "base", dict) or {}
    updated_at = _time(pr, "updated_at", required=True)
    assert updated_at is not None
    return Snapshot(
        repository=repository,
        number=_number(pr),
        state=state,
        merged=merged,
        merged_at=merged_at,
        closed_at=_time(pr, "closed_at", required=False),
        updated_at=updated_at,
        draft=bool(_opt(pr, "draft", bool)),
        title=_opt(pr, "title", str) or "",
        head_ref=_opt(head, "ref", str),
        head_sha=_opt(head, "sha", str),
        base_ref=_opt(base, "ref", str),
        url=_opt(pr, "html_url", str),
        node_id=_opt(pr, "node_id", str),
        github_id=_opt(pr, "id", int),
    )


def snapshot_from_graphql(node: Mapping[str, Any]) -> Snapshot:
    """A snapshot from a GraphQL ``PullRequest`` node (the poller's search), which
    knows about merging as ``GET .../pulls/{n}`` does (``merged``, ``state: MERGED``)."""
    repository = (_opt(node, "repository", dict) or {}).get("nameWithOwner")
    if not isinstance(repository, str) or repository.count("/") != 1:
        raise PayloadError("'repository.nameWithOwner' is not owner/name")
    state = _req(node, "state", str)
    if state not in ("OPEN", "CLOSED", "MERGED"):
        raise PayloadError(f"'state' is {state!r}, not OPEN, CLOSED or MERGED")
    rest = {
        "number": node.get("number"),
        "state": "open" if state == "OPEN" else "closed",
        "merged": state == "MERGED" or node.get("merged") is True,
        "merged_at": node.get("mergedAt"),
        "closed_at": node.get("closedAt"),
        "updated_at": node.get("updatedAt"),
        "draft": node.get("isDraft"),
        "title": node.get("title"),
        "head": {"ref": node.get("headRefName"), "sha": node.get("headRefOid")},
        "base": {"ref": node.get("baseRefName")},
        "html_url": node.get("url"),
        "node_id": node.get("id"),
        "id": node.get("databaseId"),
    }
    return snapshot_from_api(rest, repository, merged_known=True)


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 timestamp as GitHub writes it, as an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PayloadError(f"{value!r} is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        raise PayloadError(f"{value!r} has no time zone")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise PayloadError(f"{value!r} is out of range in UTC") from exc


def _number(pr: Mapping[str, Any]) -> int:
    number = _req(pr, "number", int)
    if not 0 < number < 2**31:
        raise PayloadError("'pull_request.number' is out of range")
    return number


def _time(obj: Mapping[str, Any], key: str, *, required: bool) -> datetime | None:
    value = _req(obj, key, str) if required else _opt(obj, key, str)
    return None if value is None else parse_timestamp(value)


def _req(obj: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    value = _opt(obj, key, kind)
    if value is None:
        raise PayloadError(f"'{key}' is missing")
    return value


def _opt(obj: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int in Python; a JSON true is never a number here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(f"'{key}' is a {type(value).__name__}, not a {kind.__name__}")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:  # what the database holds
        raise PayloadError(f"'{key}' is out of range")
    if isinstance(value, str) and _UNSTORABLE.search(value):
        # Valid JSON, but neither PostgreSQL text nor UTF-8 can hold these.
        return _UNSTORABLE.sub("\ufffd", value)  # type: ignore[return-value]
    return value


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
