"""Tests for the recorded-delivery fixtures and their loader."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from webhook_service.ingest.fixtures import (
    FixtureError,
    RecordedDelivery,
    fixtures_root,
    iter_deliveries,
    load_delivery,
    write_delivery,
)

ROOT = fixtures_root()
BODIES = sorted(ROOT.rglob("*.json"))

EXPECTED_EVENTS = {
    "check_suite",
    "installation",
    "installation_repositories",
    "ping",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "status",
}

EXPECTED_HEADER_NAMES = [
    "Accept",
    "Content-Type",
    "User-Agent",
    "X-GitHub-Delivery",
    "X-GitHub-Event",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-ID",
    "X-GitHub-Hook-Installation-Target-Type",
]

MERGED_KEYS = {"merged", "merged_at", "merged_by"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@cache
def _guid_counts() -> Counter[str]:
    return Counter(load_delivery(p).guid for p in BODIES)


def _json_object(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    assert isinstance(data, dict)
    return data


def test_event_directories_are_the_expected_set() -> None:
    dirs = {p.name for p in ROOT.iterdir() if p.is_dir()}
    assert dirs == EXPECTED_EVENTS
    for event in sorted(dirs):
        assert list((ROOT / event).glob("*.json")), f"{event}/ has no fixtures"


def test_every_headers_file_has_a_body() -> None:
    orphans = [_rel(p) for p in ROOT.rglob("*.headers") if not p.with_suffix(".json").is_file()]
    assert orphans == []


def test_iter_deliveries_returns_every_fixture_sorted() -> None:
    paths = [d.path for d in iter_deliveries(ROOT)]
    assert paths == BODIES


@pytest.mark.parametrize("body_path", BODIES, ids=[_rel(p) for p in BODIES])
def test_fixture(body_path: Path) -> None:
    delivery = load_delivery(body_path)
    rel = _rel(body_path)
    event_dir = body_path.parent.name

    assert list(delivery.headers) == EXPECTED_HEADER_NAMES
    assert delivery.header("content-type") == "application/json"
    assert delivery.event == event_dir
    assert delivery.header("x-github-event") == event_dir

    guid = uuid.UUID(delivery.guid)
    assert str(guid) == delivery.guid
    name = rel.removesuffix(".json")
    assert guid == uuid.uuid5(uuid.NAMESPACE_URL, "webhook-service-fixture:" + name)
    assert _guid_counts()[delivery.guid] == 1, "delivery GUID is not unique"

    payload = _json_object(delivery.body)
    target_type = delivery.header("X-GitHub-Hook-Installation-Target-Type")
    target_id = delivery.header("X-GitHub-Hook-Installation-Target-ID")
    if "installation" in payload:
        assert target_type == "integration"
        assert target_id == str(payload["installation"]["id"])
    elif "repository" in payload:
        assert target_type == "repository"
        assert target_id == str(payload["repository"]["id"])
    else:
        assert target_type == "organization"
        assert target_id == str(payload["organization"]["id"])
    assert delivery.header("X-GitHub-Hook-ID") == str(payload.get("hook_id", 109948940))

    if event_dir.startswith("pull_request"):
        pr = payload["pull_request"]
        assert isinstance(pr["number"], int)
        assert pr["state"] in {"open", "closed"}
        assert isinstance(pr["updated_at"], str)
        assert isinstance(payload["repository"]["full_name"], str)


def test_load_accepts_headers_path() -> None:
    body_path = ROOT / "pull_request" / "opened.json"
    by_body = load_delivery(body_path)
    by_headers = load_delivery(body_path.with_suffix(".headers"))
    assert by_headers == by_body
    assert by_headers.path == body_path


def test_guids_unique_across_fixtures() -> None:
    guids = [load_delivery(p).guid for p in BODIES]
    assert len(set(guids)) == len(BODIES)


def test_closed_merged_is_derived_from_closed() -> None:
    closed = _json_object(load_delivery(ROOT / "pull_request" / "closed.json").body)
    merged = _json_object(load_delivery(ROOT / "pull_request" / "closed.merged.json").body)

    pr = merged["pull_request"]
    assert pr["merged"] is True
    assert pr["merged_at"] == "2019-05-15T15:21:18Z" == pr["closed_at"]
    assert pr["merged_by"] == merged["sender"]
    assert pr["merged_by"]["login"] == "Codertocat"

    assert list(merged) == list(closed)
    for key in closed:
        if key != "pull_request":
            assert merged[key] == closed[key], key
    assert list(pr) == list(closed["pull_request"])
    differing = {k for k in pr if pr[k] != closed["pull_request"][k]}
    assert differing == MERGED_KEYS
    assert closed["pull_request"]["merged"] is False


def test_round_trip_is_byte_exact(tmp_path: Path) -> None:
    original = load_delivery(ROOT / "pull_request" / "closed.merged.json")
    written = write_delivery(
        tmp_path / "pull_request", "closed.merged", original.headers, original.body
    )
    assert written == tmp_path / "pull_request" / "closed.merged.json"
    assert written.read_bytes() == original.path.read_bytes()
    assert written.with_suffix(".headers").read_bytes() == (
        original.path.with_suffix(".headers").read_bytes()
    )
    again = load_delivery(written)
    assert again == RecordedDelivery(path=written, headers=original.headers, body=original.body)
    assert list(again.headers) == list(original.headers)


def test_missing_sidecar_raises_naming_the_file(tmp_path: Path) -> None:
    body = tmp_path / "pull_request" / "lonely.json"
    body.parent.mkdir()
    body.write_bytes(b"{}")
    with pytest.raises(FixtureError, match=r"lonely\.json"):
        load_delivery(body)
    with pytest.raises(FixtureError, match=r"lonely\.json"):
        list(iter_deliveries(tmp_path))


def test_malformed_header_line_raises_naming_the_file(tmp_path: Path) -> None:
    body = write_delivery(
        tmp_path, "bad", {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "x"}, b"{}"
    )
    sidecar = body.with_suffix(".headers")
    sidecar.write_bytes(sidecar.read_bytes() + b"this line has no colon\n")
    with pytest.raises(FixtureError, match=r"bad\.headers:3: malformed header line"):
        load_delivery(body)


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_required_header_raises(tmp_path: Path, missing: str) -> None:
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "x", "Accept": "*/*"}
    body = write_delivery(tmp_path, "req", headers, b"{}")
    sidecar = body.with_suffix(".headers")
    kept = [
        line
        for line in sidecar.read_text(encoding="utf-8").splitlines(keepends=True)
        if not line.startswith(missing + ":")
    ]
    sidecar.write_text("".join(kept), encoding="utf-8")
    with pytest.raises(FixtureError, match=rf"req\.headers: missing or empty {missing}"):
        load_delivery(body)


def test_header_lookup_is_case_insensitive() -> None:
    delivery = RecordedDelivery(
        path=Path("x.json"),
        headers={"x-github-event": "ping", "X-GITHUB-DELIVERY": "abc"},
        body=b"{}",
    )
    assert delivery.event == "ping"
    assert delivery.guid == "abc"
    assert delivery.header("X-GitHub-Event") == "ping"
    assert delivery.header("X-Missing") is None
