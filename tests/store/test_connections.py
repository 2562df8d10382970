"""Connections: what the store refuses to open."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from webhook_service.store import Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_in_memory_sqlite_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        Store("sqlite:///:memory:")
