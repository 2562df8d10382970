"""The receiver refuses every malformed request with a 4xx and writes nothing.

Each bad request is signed correctly whenever the defect is in the body or in a
header other than the signature, so that what is rejected is the defect itself.
The receiver checks, in order: Content-Length (413/400), Content-Type (415), body
size while streaming (413), the signature (401), the event and delivery headers
(400), then the body (400). Cases that combine defects expect the first check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from tests.helpers import (
    AUTH,
    SECRET,
    fixture,
    make_settings,
    payload,
    post_delivery,
    running_app,
    signed_headers,
)
from webhook_service.app import Service
from webhook_service.ingest.receiver import MAX_BODY_BYTES
from webhook_service.ingest.signature import sign

PATH = "/webhooks/github"
FORM = "application/x-www-form-urlencoded"
REPO = "Codertocat/Hello-World"

Content = bytes | AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class BadRequest:
    id: str
    status: int
    build: Callable[[], tuple[Content, dict[str, str]]]


# -- building blocks ------------------------------------------------------------------


def _opened(**pr_fields: Any) -> dict[str, Any]:
    return payload("pull_request/opened", **pr_fields)


def _dumps(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:  # integers beyond 64 bits, which JSON allows
        return json.dumps(document).encode()


def _valid() -> bytes:
    return _dumps(_opened())


def _signed(
    body: bytes,
    *,
    event: str = "pull_request",
    content_type: str = "application/json",
    drop: tuple[str, ...] = (),
    **replace: str,
) -> dict[str, str]:
    """Correct headers for ``body``; ``replace`` sets headers by their name with '_'."""
    headers = signed_headers(body, event)
    headers["Content-Type"] = content_type
    for name, value in replace.items():
        headers[name.replace("_", "-")] = value
    for name in drop:
        del headers[name]
    return headers


def _body_case(case_id: str, body: Callable[[], bytes], event: str = "pull_request") -> BadRequest:
    """A correctly signed JSON request whose body GitHub would never send (400)."""

    def build() -> tuple[Content, dict[str, str]]:
        raw = body()
        return raw, _signed(raw, event=event)

    return BadRequest(case_id, 400, build)


def _pr_case(case_id: str, **pr_fields: Any) -> BadRequest:
    return _body_case(case_id, lambda: _dumps(_opened(**pr_fields)))


def _without_pr_field(field: str) -> bytes:
    document = _opened()
    del document["pull_request"][field]
    return _dumps(document)


def _with_top_level(**fields: Any) -> bytes:
    document = _opened()
    document.update(fields)
    return _dumps(document)


def _without_top_level(field: str) -> bytes:
    document = _opened()
    del document[field]
    return _dumps(document)


def _header_case(
    case_id: str, status: int, *, drop: tuple[str, ...] = (), **replace: str
) -> BadRequest:
    def build() -> tuple[Content, dict[str, str]]:
        raw = _valid()
        return raw, _signed(raw, drop=drop, **replace)

    return BadRequest(case_id, status, build)


def _form_case(case_id: str, form: Callable[[], bytes]) -> BadRequest:
    def build() -> tuple[Content, dict[str, str]]:
        raw = form()
        return raw, _signed(raw, content_type=FORM)

    return BadRequest(case_id, 400, build)


def _sha1(body: bytes) -> str:
    return "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()


def _sha1_only() -> tuple[Content, dict[str, str]]:
    raw = _valid()
    headers = _signed(raw, drop=("X-Hub-Signature-256",))
    headers["X-Hub-Signature"] = _sha1(raw)
    return raw, headers


def _signed_for_other_body() -> tuple[Content, dict[str, str]]:
    raw = _valid()
    other = _dumps(_opened(state="closed"))
    return raw, _signed(raw, X_Hub_Signature_256=sign(other, secret=SECRET.encode()))


def _wrong_secret() -> tuple[Content, dict[str, str]]:
    raw = _valid()
    return raw, _signed(raw, X_Hub_Signature_256=sign(raw, secret=b"not the secret"))


def _truncated_signature() -> tuple[Content, dict[str, str]]:
    raw = _valid()
    return raw, _signed(raw, X_Hub_Signature_256=sign(raw, secret=SECRET.encode())[:-8])


def _signature_without_prefix() -> tuple[Content, dict[str, str]]:
    raw = _valid()
    return raw, _signed(
        raw, X_Hub_Signature_256=sign(raw, secret=SECRET.encode()).removeprefix("sha256=")
    )


def _unsigned_without_event_headers() -> tuple[Content, dict[str, str]]:
    raw = _valid()
    return raw, _signed(raw, drop=("X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery"))


def _content_type_case(case_id: str, content_type: str | None) -> BadRequest:
    def build() -> tuple[Content, dict[str, str]]:
        raw = _valid()
        headers = _signed(raw)
        if content_type is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = content_type
        return raw, headers

    return BadRequest(case_id, 415, build)


def _claimed_length(length: str) -> Callable[[], tuple[Content, dict[str, str]]]:
    """A small, signed body whose Content-Length header says ``length``."""

    def build() -> tuple[Content, dict[str, str]]:
        raw = _valid()
        return raw, _signed(raw, Content_Length=length)

    return build


_CHUNK = 1024 * 1024


def _streamed_over_limit() -> tuple[Content, dict[str, str]]:
    """A chunked body (no Content-Length) one byte over 25 MiB, correctly signed."""
    size = MAX_BODY_BYTES + 1
    mac = hmac.new(SECRET.encode(), digestmod=hashlib.sha256)
    chunk = b" " * _CHUNK
    for _ in range(size // _CHUNK):
        mac.update(chunk)
    mac.update(b" " * (size % _CHUNK))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(size // _CHUNK):
            yield chunk
        yield b" " * (size % _CHUNK)

    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": "streamed-over-limit",
        "X-Hub-Signature-256": "sha256=" + mac.hexdigest(),
    }
    return chunks(), headers


def _review_with_list_pr() -> bytes:
    document: dict[str, Any] = orjson.loads(fixture("pull_request_review/submitted").body)
    document["pull_request"] = [document["pull_request"]]
    return _dumps(document)


def _form(**fields: str) -> bytes:
    return urlencode(fields).encode()


# -- the cases ------------------------------------------------------------------------

BAD_REQUESTS: list[BadRequest] = [
    # The signature (401).
    _header_case("missing-signature", 401, drop=("X-Hub-Signature-256",)),
    _header_case("bad-signature", 401, X_Hub_Signature_256="sha256=" + "0" * 64),
    BadRequest("truncated-signature", 401, _truncated_signature),
    BadRequest("signature-for-another-body", 401, _signed_for_other_body),
    BadRequest("wrong-secret", 401, _wrong_secret),
    BadRequest("sha1-only-signature", 401, _sha1_only),
    _header_case("sha256-non-hex", 401, X_Hub_Signature_256="sha256=" + "z" * 64),
    _header_case("empty-signature-header", 401, X_Hub_Signature_256=""),
    BadRequest("signature-without-sha256-prefix", 401, _signature_without_prefix),
    BadRequest("unsigned-and-no-event-headers", 401, _unsigned_without_event_headers),
    # The event and delivery headers (400; checked after the signature).
    _header_case("missing-event-header", 400, drop=("X-GitHub-Event",)),
    _header_case("empty-event-header", 400, X_GitHub_Event=""),
    _header_case("missing-delivery-header", 400, drop=("X-GitHub-Delivery",)),
    _header_case("empty-delivery-header", 400, X_GitHub_Delivery=""),
    _header_case("blank-delivery-header", 400, X_GitHub_Delivery="   "),
    _header_case("over-long-delivery-id", 400, X_GitHub_Delivery="d" * 201),
    _header_case("over-long-event-name", 400, X_GitHub_Event="e" * 201),
    # Bodies that are not a JSON object (400).
    _body_case("malformed-json", lambda: b"{this is not json}"),
    _body_case("truncated-json", lambda: _valid()[: len(_valid()) // 2]),
    _body_case("trailing-garbage", lambda: _valid() + b"}"),
    _body_case("nan-literal", lambda: b'{"action": NaN}'),
    _body_case("json-array", lambda: b"[1, 2, 3]"),
    _body_case("json-string", lambda: b'"pull_request"'),
    _body_case("json-null", lambda: b"null"),
    _body_case("json-number", lambda: b"42"),
    _body_case("empty-body", lambda: b""),
    _body_case("body-not-utf8", lambda: b'{"action": "op\xff\xfeened"}'),
    _body_case("body-utf16", lambda: _valid().decode().encode("utf-16")),
    # JSON objects that are not a pull_request payload (400).
    _body_case("no-pull-request-object", lambda: _without_top_level("pull_request")),
    _body_case("pull-request-null", lambda: _with_top_level(pull_request=None)),
    _body_case("pull-request-is-list", lambda: _with_top_level(pull_request=[])),
    _body_case("review-pull-request-is-list", _review_with_list_pr, "pull_request_review"),
    _pr_case("number-as-string", number="2"),
    _pr_case("number-negative", number=-2),
    _pr_case("number-zero", number=0),
    _pr_case("number-as-bool", number=True),
    _pr_case("number-as-float", number=2.5),
    _pr_case("number-too-large", number=2**31),
    _body_case("number-missing", lambda: _without_pr_field("number")),
    _pr_case("state-invalid", state="merged"),
    _pr_case("state-not-string", state=1),
    _body_case("state-missing", lambda: _without_pr_field("state")),
    _body_case("updated-at-missing", lambda: _without_pr_field("updated_at")),
    _pr_case("updated-at-null", updated_at=None),
    _pr_case("updated-at-not-a-timestamp", updated_at="yesterday"),
    _pr_case("updated-at-without-timezone", updated_at="2019-05-15T15:20:33"),
    _pr_case("updated-at-as-epoch-number", updated_at=1557933633),
    _pr_case("merged-as-string", merged="false"),
    _pr_case("merged-at-not-a-timestamp", merged_at="soon"),
    _pr_case("closed-at-as-bool", closed_at=True),
    _pr_case("draft-as-string", draft="false"),
    _pr_case("title-as-number", title=7),
    _pr_case("head-not-an-object", head="changes"),
    _pr_case("head-ref-as-number", head={"ref": 5, "sha": "abc"}),
    _body_case("repository-missing", lambda: _without_top_level("repository")),
    _body_case("repository-is-string", lambda: _with_top_level(repository=REPO)),
    _body_case(
        "repository-full-name-not-string",
        lambda: _with_top_level(repository={"full_name": ["Codertocat", "Hello-World"]}),
    ),
    _body_case("action-not-string", lambda: _with_top_level(action=["opened"])),
    _body_case("installation-id-as-string", lambda: _with_top_level(installation={"id": "1"})),
    _body_case("hook-id-as-string", lambda: _with_top_level(hook_id="109948940")),
    _body_case("hook-id-beyond-int64", lambda: _with_top_level(hook_id=2**70)),
    _body_case("installation-id-beyond-int64", lambda: _with_top_level(installation={"id": 2**64})),
    _pr_case("pr-id-beyond-int64", id=2**63),
    _pr_case("updated-at-overflows-in-utc", updated_at="9999-12-31T23:59:59-10:00"),
    # Content types (415; checked before anything else but the length).
    _content_type_case("content-type-text-plain", "text/plain"),
    _content_type_case("content-type-multipart", "multipart/form-data; boundary=x"),
    _content_type_case("no-content-type", None),
    # Form-encoded bodies (400).
    _form_case("form-without-payload-field", lambda: _form(data=_valid().decode())),
    _form_case("form-payload-invalid-json", lambda: _form(payload="{not json")),
    _form_case("form-payload-json-array", lambda: _form(payload="[]")),
    _form_case(
        "form-two-payload-fields",
        lambda: _form(payload=_valid().decode()) + b"&" + _form(payload=_valid().decode()),
    ),
    _form_case("form-not-url-encoded", lambda: b"payload"),
    _form_case("form-not-utf8", lambda: b"payload=%7B%7D\xff"),
    # Size and length (413 / 400).
    BadRequest("content-length-over-25-mib", 413, _claimed_length(str(MAX_BODY_BYTES + 1))),
    BadRequest("streamed-body-over-25-mib", 413, _streamed_over_limit),
    BadRequest("content-length-not-a-number", 400, _claimed_length("abc")),
    BadRequest("content-length-negative", 400, _claimed_length("-1")),
]


async def _assert_nothing_written(service: Service, client: httpx.AsyncClient) -> None:
    pulls = await client.get("/api/pulls", headers=AUTH)
    assert pulls.status_code == 200
    assert pulls.json()["pulls"] == []
    events = await client.get("/api/events", headers=AUTH)
    assert events.status_code == 200
    assert events.json()["events"] == []
    assert await service.store.count_deliveries() == {}


def test_there_are_enough_distinct_cases() -> None:
    ids = [case.id for case in BAD_REQUESTS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 35


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c.id for c in BAD_REQUESTS])
async def test_bad_request_is_refused_and_nothing_is_written(
    database_url: str, case: BadRequest
) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        content, headers = case.build()
        response = await client.post(PATH, content=content, headers=headers)

        assert response.status_code == case.status, response.text
        assert 400 <= response.status_code < 500
        assert "error" in response.json()
        await _assert_nothing_written(service, client)


# -- odd but valid input is accepted ---------------------------------------------------


@pytest.mark.parametrize(
    "title",
    [
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",  # Hebrew (RTL)
        "\u0645\u0631\u062d\u0628\u0627 \u202eevil\u202c",  # Arabic with an RTL override
        "\U0001f680 ship it \U0001f468\u200d\U0001f469\u200d\U0001f467 \u2764\ufe0f",
        "tab \t newline \n bell \x07 del \x7f",
    ],
    ids=["hebrew", "arabic-rtl-override", "emoji-zwj", "control-characters"],
)
async def test_unusual_unicode_titles_are_stored_verbatim(database_url: str, title: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        response = await post_delivery(client, _opened(title=title), guid="unicode-1")

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "applied"
        pr = (await client.get(f"/api/pulls/{REPO}/2", headers=AUTH)).json()
        assert pr["title"] == title
        assert pr["status"] == "OPEN"
        stored = await service.store.get_delivery("unicode-1")
        assert stored is not None
        assert stored.body == _dumps(_opened(title=title))


@pytest.mark.parametrize(
    "escape",
    [b"\\ud800", b"\\udfff", b"\\u0000"],
    ids=["lone-high-surrogate", "lone-low-surrogate", "nul-character"],
)
async def test_json_escapes_a_text_column_cannot_hold_are_still_applied(
    database_url: str, escape: bytes
) -> None:
    # A lone surrogate escape is grammatical JSON (RFC 8259 section 7, 8.2) and so is
    # \u0000, yet neither can be stored as such in a PostgreSQL text column. The
    # delivery must still be stored and applied on both backends: never a 4xx, never
    # a 5xx (a 5xx would fail again on every redelivery).
    body = _dumps(_opened(title="before PLACEHOLDER after")).replace(b"PLACEHOLDER", escape)
    async with running_app(make_settings(database_url)) as (service, client):
        response = await post_delivery(client, body, guid="escape-1")

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "applied"
        pr = (await client.get(f"/api/pulls/{REPO}/2", headers=AUTH)).json()
        assert pr["status"] == "OPEN"
        assert pr["title"].startswith("before ")
        assert pr["title"].endswith(" after")
        stored = await service.store.get_delivery("escape-1")
        assert stored is not None
        assert stored.outcome == "applied"
        assert stored.body == body


# -- events that are not acted on, pings, duplicates, form bodies ----------------------


async def test_unknown_event_is_accepted_stored_as_ignored_and_not_applied(
    database_url: str,
) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        # Even a body that carries a pull_request object is not applied under another event.
        response = await post_delivery(client, _opened(), event="issues", guid="issues-1")

        assert response.status_code == 202
        assert response.json()["status"] == "ignored"
        stored = await service.store.get_delivery("issues-1")
        assert stored is not None
        assert (stored.event, stored.outcome) == ("issues", "ignored")
        assert await service.store.count_deliveries() == {"ignored": 1}
        assert (await client.get("/api/pulls", headers=AUTH)).json()["pulls"] == []
        assert (await client.get("/api/events", headers=AUTH)).json()["events"] == []


async def test_ping_is_answered_200_and_stored_as_ignored(database_url: str) -> None:
    recorded = fixture("ping/repo-hook")
    headers = {
        **recorded.headers,
        "X-Hub-Signature-256": sign(recorded.body, secret=SECRET.encode()),
    }
    async with running_app(make_settings(database_url)) as (service, client):
        response = await client.post(PATH, content=recorded.body, headers=headers)

        assert response.status_code == 200
        assert response.json()["status"] == "ignored"
        stored = await service.store.get_delivery(recorded.guid)
        assert stored is not None
        assert (stored.event, stored.outcome, stored.detail) == ("ping", "ignored", "ping")
        assert stored.hook_id == 109948940
        assert (await client.get("/api/pulls", headers=AUTH)).json()["pulls"] == []
        assert (await client.get("/api/events", headers=AUTH)).json()["events"] == []


async def test_duplicate_guid_after_apply_changes_nothing(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        first = await post_delivery(client, _opened(), guid="dup-1")
        assert (first.status_code, first.json()["status"]) == (200, "applied")
        events_before = (await client.get("/api/events", headers=AUTH)).json()["events"]
        assert len(events_before) == 1

        # The same delivery again, then the same GUID with a body that would close it.
        again = await post_delivery(client, _opened(), guid="dup-1")
        closing = await post_delivery(client, payload("pull_request/closed"), guid="dup-1")

        for response in (again, closing):
            assert response.status_code == 200
            assert response.json()["status"] == "duplicate"
        pr = (await client.get(f"/api/pulls/{REPO}/2", headers=AUTH)).json()
        assert pr["status"] == "OPEN"
        assert pr["last_delivery_id"] == "dup-1"
        events_after = (await client.get("/api/events", headers=AUTH)).json()["events"]
        assert events_after == events_before
        assert await service.store.count_deliveries() == {"applied": 1}
        stored = await service.store.get_delivery("dup-1")
        assert stored is not None
        assert stored.body == _dumps(_opened())


async def test_form_encoded_delivery_is_applied_like_json(database_url: str) -> None:
    form_body = _form(payload=_dumps(_opened()).decode())
    json_body = _dumps(payload("pull_request/closed.merged"))
    async with running_app(make_settings(database_url)) as (service, client):
        opened = await client.post(
            PATH, content=form_body, headers=_signed(form_body, content_type=FORM)
        )
        assert opened.status_code == 200, opened.text
        assert opened.json() == {
            "guid": opened.json()["guid"],
            "status": "applied",
            "outcome": "created",
        }
        merged = await post_delivery(client, json_body, guid="json-merged")
        assert (merged.status_code, merged.json()["outcome"]) == (200, "transitioned")

        pr = (await client.get(f"/api/pulls/{REPO}/2", headers=AUTH)).json()
        assert pr["status"] == "MERGED"
        events = (await client.get("/api/events", headers=AUTH)).json()["events"]
        assert [(e["old_status"], e["new_status"], e["sync_source"]) for e in events] == [
            (None, "OPEN", "monitor"),
            ("OPEN", "MERGED", "monitor"),
        ]
        stored = await service.store.get_delivery(opened.json()["guid"])
        assert stored is not None
        assert (stored.event, stored.action, stored.outcome) == (
            "pull_request",
            "opened",
            "applied",
        )
        assert stored.body == form_body
        assert stored.pr_number == 2


@pytest.mark.parametrize("content_type", ["application/json", FORM])
async def test_control_request_built_by_the_same_helpers_is_accepted(
    database_url: str, content_type: str
) -> None:
    # Every bad request above differs from this one in one defect only.
    raw = _valid() if content_type == "application/json" else _form(payload=_valid().decode())
    async with running_app(make_settings(database_url)) as (service, client):
        response = await client.post(
            PATH, content=raw, headers=_signed(raw, content_type=content_type)
        )

        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "created"
        assert await service.store.count_deliveries() == {"applied": 1}
