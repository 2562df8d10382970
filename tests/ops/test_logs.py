"""Tests for webhook_service.ops.logs: console and JSON output, secrets scrubbed."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest

from webhook_service.ops import logs
from webhook_service.store import Availability

SECRET = "whsec-rotating-0001"
OTHER_SECRET = "api-token-0002"
MASK = "**********"


class Configure(Protocol):
    def __call__(self, fmt: str, secrets: Sequence[str] = ...) -> None: ...


@pytest.fixture
def configure(capsys: pytest.CaptureFixture[str]) -> Iterator[Configure]:
    """``logs.configure`` with our secrets, writing to capsys's stderr; undone afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level

    def run(fmt: str, secrets: Sequence[str] = (SECRET, OTHER_SECRET)) -> None:
        logs.configure("INFO", fmt, secrets)
        capsys.readouterr()  # start from an empty capture

    try:
        yield run
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def _json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    entries = []
    for line in _lines(capsys):
        entry = orjson.loads(line)  # every line is one complete JSON document
        assert isinstance(entry, dict)
        entries.append(entry)
    return entries


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secret_in_message_and_argument_is_replaced(
    fmt: str, configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(fmt)
    log = logging.getLogger("webhook_service.test")
    log.info(f"secret in the message: {SECRET}")
    log.info("secret in an argument: %s and %s", SECRET, OTHER_SECRET)
    log.warning("embedded %s", f"prefix-{SECRET}-suffix")
    lines = _lines(capsys)
    assert len(lines) == 3
    output = "\n".join(lines)
    assert SECRET not in output
    assert OTHER_SECRET not in output
    assert f"secret in the message: {MASK}" in lines[0]
    assert f"secret in an argument: {MASK} and {MASK}" in lines[1]
    assert f"embedded prefix-{MASK}-suffix" in lines[2]


def test_json_is_one_object_per_line_with_extra_fields(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("json")
    log = logging.getLogger("webhook_service.ingest.receiver")
    log.info("delivery %s applied", "abc", extra={"guid": "g-123", "event": "pull_request"})
    log.warning("token was %s", SECRET, extra={"guid": "g-456"})
    log.debug("below the level")
    first, second = _json_lines(capsys)
    assert first["message"] == "delivery abc applied"
    assert first["level"] == "info"
    assert first["logger"] == "webhook_service.ingest.receiver"
    assert first["guid"] == "g-123"
    assert first["event"] == "pull_request"
    assert isinstance(first["time"], str)
    assert second["message"] == f"token was {MASK}"
    assert second["level"] == "warning"
    assert second["guid"] == "g-456"
    assert "event" not in second
    # No LogRecord internals leak into the entry.
    assert {"args", "msg", "levelno", "pathname"}.isdisjoint(first)


def test_console_line_has_level_logger_message_and_extras(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("console")
    logging.getLogger("webhook_service.ingest.receiver").info(
        "delivery %s applied", "abc", extra={"guid": "g-123"}
    )
    (line,) = _lines(capsys)
    assert "INFO" in line
    assert "webhook_service.ingest.receiver: delivery abc applied" in line
    assert line.endswith(" guid=g-123")


def test_level_filters_lower_records(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("console")
    log = logging.getLogger("webhook_service.test")
    log.debug("hidden")
    log.info("shown")
    lines = _lines(capsys)
    assert len(lines) == 1
    assert "shown" in lines[0]


def test_configure_replaces_previous_handlers(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("console")
    configure("json")
    logging.getLogger("webhook_service.test").info("once")
    (entry,) = _json_lines(capsys)  # one handler, not two
    assert entry["message"] == "once"


def test_short_secrets_are_not_scrubbed(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    # Scrubbing a 1-3 character "secret" would mangle every line; such values are ignored.
    configure("console", ["abc", "a-long-secret"])
    logging.getLogger("t").info("abc and a-long-secret")
    assert f"abc and {MASK}" in capsys.readouterr().err


def test_longer_secret_is_scrubbed_before_its_prefix(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("console", ["token", "token-extended"])
    logging.getLogger("t").info("value=token-extended")
    err = capsys.readouterr().err
    assert f"value={MASK}\n" in err
    assert "extended" not in err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secret_in_exception_traceback_is_replaced(
    fmt: str, configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    # DESIGN.md §8: secrets never appear in logs. An exception text is the usual leak
    # (a client error quoting the credential it was given).
    configure(fmt)
    try:
        raise RuntimeError(f"authentication failed for {SECRET}")
    except RuntimeError:
        logging.getLogger("webhook_service.test").exception("call failed")
    err = capsys.readouterr().err
    assert "call failed" in err
    assert "RuntimeError" in err
    assert SECRET not in err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secret_in_extra_field_is_replaced(
    fmt: str, configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(fmt)
    logging.getLogger("webhook_service.test").info("request", extra={"url": f"x?t={SECRET}"})
    err = capsys.readouterr().err
    assert "request" in err
    assert SECRET not in err


async def test_delivery_and_pr_lines_carry_guid_repository_and_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import make_settings, payload, post_delivery, running_app

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("DEBUG", "json", [])
        async with running_app(make_settings(f"sqlite:///{tmp_path / 'l.db'}")) as (_s, client):
            await post_delivery(client, payload("pull_request/opened"), guid="guid-1")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    about = [line for line in lines if line.get("guid") == "guid-1"]
    assert about, "the delivery was logged"
    for line in about:
        assert (line["repository"], line["pr"]) == ("Codertocat/Hello-World", 2)
    assert any(line["message"] == "pr_status_change: None -> OPEN" for line in about)


def _pool_floor_record() -> logging.LogRecord:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        exc_info = sys.exc_info()
    return logging.getLogger("asyncpg.pool").makeRecord(
        "asyncpg.pool",
        logging.WARNING,
        "pool.py",
        571,
        "Failed to restore the pool connection floor; retrying",
        (),
        exc_info,
    )


def test_asyncpg_reconnect_attempts_are_one_line_and_quiet_during_a_reported_outage() -> None:
    """asyncpg logs a traceback per reconnect attempt while PostgreSQL is away: one line
    instead, and nothing once the store has reported the outage itself."""
    pool = logging.getLogger("asyncpg.pool")
    record = _pool_floor_record()
    assert pool.filter(record)
    assert record.exc_info is None
    assert record.getMessage() == (
        "Failed to restore the pool connection floor; retrying: "
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    other = pool.makeRecord("asyncpg.pool", logging.WARNING, "pool.py", 1, "other", (), None)
    assert pool.filter(other)

    availability = Availability()
    availability.answered()  # it answered once: what follows is an outage
    exc = availability.failed("cannot connect to the database: refused")
    try:
        assert exc.reported and availability.down
        assert not pool.filter(_pool_floor_record())  # the outage is logged already
        assert pool.filter(other)
    finally:
        availability.answered()
    assert not availability.down
    assert pool.filter(_pool_floor_record())


def test_a_database_that_never_answered_is_no_outage(caplog: pytest.LogCaptureFixture) -> None:
    # A store that cannot be used at all is reported by whoever connects (the CLI: one
    # line naming DATABASE_URL), not as the start of an outage.
    availability = Availability()
    with caplog.at_level(logging.DEBUG, logger="webhook_service.store"):
        exc = availability.failed("cannot connect to the database: refused")
    assert not exc.reported
    assert not availability.down
    assert caplog.records == []
    availability.answered()
    assert availability.failed("gone").reported and availability.down
