"""Tests for webhook_service.core.payloads: bodies to JSON objects, JSON to snapshots."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from webhook_service.core.model import PRStatus
from webhook_service.core.payloads import (
    PR_EVENTS,
    PayloadError,
    decode_body,
    parse_delivery,
    parse_timestamp,
    snapshot_from_api,
)
from webhook_service.ingest.fixtures import RecordedDelivery, fixtures_root, iter_deliveries

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

DELIVERIES = list(iter_deliveries(fixtures_root()))
DELIVERY_IDS = [d.path.relative_to(fixtures_root()).as_posix() for d in DELIVERIES]


def _fixture(name: str) -> RecordedDelivery:
    for delivery, rel in zip(DELIVERIES, DELIVERY_IDS, strict=True):
        if rel == f"{name}.json":
            return delivery
    raise LookupError(name)


def _document(name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(_fixture(name).body)
    return document


def _utc(text: str) -> datetime:
    """An independent reading of GitHub's ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# -- decode_body -------------------------------------------------------------------------


def test_decode_json_object() -> None:
    body = _fixture("pull_request/opened").body
    assert decode_body(body, JSON) == orjson.loads(body)


def test_decode_form_encoded_payload_field() -> None:
    document = _document("pull_request/closed.merged")
    body = urlencode({"payload": orjson.dumps(document).decode()}).encode()
    assert b"payload=%7B" in body  # really percent-encoded, not raw JSON
    assert decode_body(body, FORM) == document


def test_decode_form_keeps_unicode_and_plus_signs() -> None:
    document = {"title": "café + crème", "n": 1}
    body = urlencode({"payload": orjson.dumps(document).decode()}).encode()
    assert decode_body(body, FORM) == document


def test_decode_form_ignores_other_fields() -> None:
    body = urlencode({"other": "x", "payload": '{"a": 1}'}).encode()
    assert decode_body(body, FORM) == {"a": 1}


def test_form_body_is_not_read_as_json() -> None:
    # A JSON body labelled form-encoded has no `payload=` field.
    with pytest.raises(PayloadError):
        decode_body(b'{"a": 1}', FORM)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        pytest.param(b"not json", JSON, "not valid JSON", id="json-garbage"),
        pytest.param(b"", JSON, "not valid JSON", id="json-empty"),
        pytest.param(b'{"a": 1', JSON, "not valid JSON", id="json-truncated"),
        pytest.param(b"[1, 2]", JSON, "not a JSON object", id="json-array"),
        pytest.param(b'"a string"', JSON, "not a JSON object", id="json-string"),
        pytest.param(b"42", JSON, "not a JSON object", id="json-number"),
        pytest.param(b"null", JSON, "not a JSON object", id="json-null"),
        pytest.param(b'{"a": "\xff\xfe"}', JSON, "not valid JSON", id="json-invalid-utf8"),
        pytest.param(b"other=1", FORM, "single 'payload' field", id="form-without-payload"),
        pytest.param(b"", FORM, "single 'payload' field", id="form-empty"),
        pytest.param(
            b"payload=%7B%7D&payload=%7B%7D", FORM, "single 'payload' field", id="form-two-payloads"
        ),
        pytest.param(b"payload=%7B%7D&&x", FORM, "form body is not valid", id="form-malformed"),
        pytest.param(b"payload=\xff\xfe", FORM, "form body is not valid", id="form-invalid-utf8"),
        pytest.param(b"payload=not+json", FORM, "not valid JSON", id="form-payload-not-json"),
        pytest.param(b"payload=%5B%5D", FORM, "not a JSON object", id="form-payload-array"),
    ],
)
def test_decode_body_errors(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_body(body, content_type)


def test_payload_error_is_a_value_error() -> None:
    # The receiver maps it to 400; callers catching ValueError also see it.
    assert issubclass(PayloadError, ValueError)


# -- parse_delivery over every recorded delivery -----------------------------------------


def test_every_pr_event_has_a_fixture() -> None:
    assert {d.event for d in DELIVERIES} >= PR_EVENTS


@pytest.mark.parametrize("delivery", DELIVERIES, ids=DELIVERY_IDS)
def test_parse_every_fixture(delivery: RecordedDelivery) -> None:
    content_type = delivery.header("Content-Type")
    assert content_type is not None
    document = decode_body(delivery.body, content_type)
    parsed = parse_delivery(delivery.guid, delivery.event, document)

    assert parsed.guid == delivery.guid
    assert parsed.event == delivery.event
    assert parsed.action == document.get("action")
    assert parsed.hook_id == document.get("hook_id")
    assert parsed.installation_id == document.get("installation", {}).get("id")
    assert parsed.repository == document.get("repository", {}).get("full_name")
    if delivery.event not in PR_EVENTS:
        assert parsed.snapshot is None
        return

    pr = document["pull_request"]
    snap = parsed.snapshot
    assert snap is not None
    assert snap.repository == document["repository"]["full_name"]
    assert snap.number == pr["number"]
    assert snap.updated_at == _utc(pr["updated_at"])
    assert snap.state == pr["state"]
    assert snap.title == pr["title"]
    assert snap.head_sha == pr["head"]["sha"]
    assert snap.head_ref == pr["head"]["ref"]
    assert snap.base_ref == pr["base"]["ref"]
    assert snap.github_id == pr["id"]
    assert snap.node_id == pr["node_id"]
    assert snap.url == pr["html_url"]
    assert snap.draft is bool(pr.get("draft"))
    if delivery.event == "pull_request":
        assert snap.merged is pr["merged"]
    else:
        # Review events carry no `merged`: the snapshot must not invent one.
        assert "merged" not in pr
        assert snap.merged is None


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("pull_request/opened", PRStatus.OPEN),
        ("pull_request/reopened", PRStatus.OPEN),
        ("pull_request/converted_to_draft", PRStatus.OPEN),
        ("pull_request/closed", PRStatus.CLOSED),
        ("pull_request/closed.with-organization", PRStatus.CLOSED),
        ("pull_request/closed.merged", PRStatus.MERGED),
        ("pull_request_review/submitted", PRStatus.OPEN),
        ("pull_request_review_comment/created", PRStatus.OPEN),
    ],
)
def test_fixture_status(name: str, status: PRStatus) -> None:
    delivery = _fixture(name)
    snap = parse_delivery(delivery.guid, delivery.event, _document(name)).snapshot
    assert snap is not None
    assert snap.status is status


def test_closed_merged_snapshot_fields() -> None:
    snap = parse_delivery("g", "pull_request", _document("pull_request/closed.merged")).snapshot
    assert snap is not None
    assert snap.merged is True
    assert snap.merged_at == _utc("2019-05-15T15:21:18Z")
    assert snap.closed_at == _utc("2019-05-15T15:21:18Z")


def test_draft_fixture_is_draft() -> None:
    document = _document("pull_request/converted_to_draft")
    snap = parse_delivery("g", "pull_request", document).snapshot
    assert snap is not None
    assert snap.draft is True


@pytest.mark.parametrize(
    "name",
    [
        "pull_request_review/submitted",
        "pull_request_review_comment/edited",
        "pull_request_review_thread/resolved",
    ],
)
def test_review_event_close_without_merged_at_is_unconfirmed(name: str) -> None:
    document = _document(name)
    document["pull_request"].update(
        state="closed", merged_at=None, closed_at="2019-05-15T15:30:00Z"
    )
    snap = parse_delivery("g", _fixture(name).event, document).snapshot
    assert snap is not None
    assert snap.merged is None
    assert snap.status is None


def test_review_event_with_merged_at_proves_a_merge() -> None:
    document = _document("pull_request_review/submitted")
    document["pull_request"].update(state="closed", merged_at="2019-05-15T15:30:00Z")
    snap = parse_delivery("g", "pull_request_review", document).snapshot
    assert snap is not None
    assert snap.status is PRStatus.MERGED


def test_pull_request_event_without_merged_field_is_authoritative() -> None:
    # A `pull_request` event (like the REST list endpoint) says "not merged" by a null
    # merged_at, so a close is a real close.
    document = _document("pull_request/closed")
    del document["pull_request"]["merged"]
    snap = parse_delivery("g", "pull_request", document).snapshot
    assert snap is not None
    assert snap.merged is False
    assert snap.status is PRStatus.CLOSED


def test_snapshot_from_api_merged_known_flag() -> None:
    pr = _document("pull_request/closed")["pull_request"]
    del pr["merged"]
    known = snapshot_from_api(pr, "o/r", merged_known=True)
    unknown = snapshot_from_api(pr, "o/r", merged_known=False)
    assert (known.status, unknown.status) == (PRStatus.CLOSED, None)
    assert known.repository == "o/r"


def test_null_optional_fields_are_accepted() -> None:
    document = _document("pull_request/opened")
    document["pull_request"].update(title=None, draft=None, head=None, closed_at=None)
    snap = parse_delivery("g", "pull_request", document).snapshot
    assert snap is not None
    assert (snap.title, snap.draft, snap.head_ref, snap.head_sha) == ("", False, None, None)


def _set_pr(key: str, value: Any) -> dict[str, Any]:
    document = _document("pull_request/opened")
    document["pull_request"][key] = value
    return document


def _del_pr(key: str) -> dict[str, Any]:
    document = _document("pull_request/opened")
    del document["pull_request"][key]
    return document


def _without_full_name(name: str) -> dict[str, Any]:
    document = _document(name)
    del document["repository"]["full_name"]
    return document


def _with_top(key: str, value: Any) -> dict[str, Any]:
    document = _document("pull_request/opened")
    document[key] = value
    return document


BAD_DOCUMENTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "number-as-string": ("pull_request", _set_pr("number", "2"), "'number' is a str"),
    "number-as-bool": ("pull_request", _set_pr("number", True), "'number' is a bool"),
    "number-as-float": ("pull_request", _set_pr("number", 2.0), "'number' is a float"),
    "number-zero": ("pull_request", _set_pr("number", 0), "out of range"),
    "number-too-big": ("pull_request", _set_pr("number", 2**31), "out of range"),
    "number-missing": ("pull_request", _del_pr("number"), "'number' is missing"),
    "state-weird": ("pull_request", _set_pr("state", "weird"), "'weird'"),
    "state-missing": ("pull_request", _del_pr("state"), "'state' is missing"),
    "updated_at-not-iso": ("pull_request", _set_pr("updated_at", "yesterday"), "ISO 8601"),
    "updated_at-no-timezone": (
        "pull_request",
        _set_pr("updated_at", "2019-05-15T15:20:33"),
        "no time zone",
    ),
    "updated_at-number": ("pull_request", _set_pr("updated_at", 1557933633), "'updated_at'"),
    "updated_at-missing": ("pull_request", _set_pr("updated_at", None), "'updated_at' is missing"),
    "merged_at-not-iso": ("pull_request", _set_pr("merged_at", "soon"), "ISO 8601"),
    "merged-as-string": ("pull_request", _set_pr("merged", "true"), "'merged' is a str"),
    "draft-as-string": ("pull_request", _set_pr("draft", "false"), "'draft' is a str"),
    "title-as-number": ("pull_request", _set_pr("title", 5), "'title' is a int"),
    "head-not-object": ("pull_request", _set_pr("head", "main"), "'head'"),
    "pull_request-list": ("pull_request", _with_top("pull_request", []), "not an object"),
    "pull_request-string": ("pull_request", _with_top("pull_request", "x"), "not an object"),
    "pull_request-missing": ("pull_request", _with_top("pull_request", None), "missing"),
    "repository-not-object": ("pull_request", _with_top("repository", "o/r"), "'repository'"),
    "repository-missing": ("pull_request", _with_top("repository", None), "full_name"),
    "missing-full_name": (
        "pull_request",
        _without_full_name("pull_request/opened"),
        "'repository.full_name' is missing",
    ),
    "review-missing-full_name": (
        "pull_request_review",
        _without_full_name("pull_request_review/submitted"),
        "'repository.full_name' is missing",
    ),
    "action-not-string": ("pull_request", _with_top("action", 1), "'action'"),
    "installation-id-string": (
        "pull_request",
        _with_top("installation", {"id": "1"}),
        "'id' is a str",
    ),
}


@pytest.mark.parametrize(
    ("event", "document", "message"), list(BAD_DOCUMENTS.values()), ids=list(BAD_DOCUMENTS)
)
def test_wrong_shapes_raise_payload_error(
    event: str, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_delivery("guid", event, copy.deepcopy(document))


def test_non_pr_event_needs_no_pull_request() -> None:
    parsed = parse_delivery("g", "ping", {"zen": "Keep it logically awesome.", "hook_id": 7})
    assert (parsed.snapshot, parsed.hook_id, parsed.repository) == (None, 7, None)


# -- parse_timestamp ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-05-15T15:20:33Z", datetime(2019, 5, 15, 15, 20, 33, tzinfo=UTC)),
        ("2019-05-15T15:20:33+00:00", datetime(2019, 5, 15, 15, 20, 33, tzinfo=UTC)),
        ("2019-05-15T17:20:33+02:00", datetime(2019, 5, 15, 15, 20, 33, tzinfo=UTC)),
        ("2019-05-15T10:20:33-05:00", datetime(2019, 5, 15, 15, 20, 33, tzinfo=UTC)),
        ("2019-05-15T15:20:33.250Z", datetime(2019, 5, 15, 15, 20, 33, 250000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_returns_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC
    assert parsed.utcoffset() == timedelta(0)
    # Same wall-clock fields as the UTC instant, not the offset's local time.
    assert (parsed.hour, parsed.minute) == (expected.hour, expected.minute)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ISO 8601"),
        ("2019-13-01T00:00:00Z", "ISO 8601"),
        ("15 May 2019", "ISO 8601"),
        ("2019-05-15T15:20:33", "no time zone"),
        ("2019-05-15", "no time zone"),
    ],
)
def test_parse_timestamp_errors(text: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_timestamp(text)
