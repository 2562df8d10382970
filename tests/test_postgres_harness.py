"""Self-test of the PostgreSQL test harness (tests/_postgres.py)."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests._postgres import (
    ENV_URL,
    create_database,
    drop_database,
    postgres_server,
)


@pytest.mark.asyncio
async def test_embedded_server_create_query_drop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    with postgres_server() as base_url:
        assert base_url.startswith("postgresql://postgres@127.0.0.1:")

        url = await create_database(base_url)
        name = url.rsplit("/", 1)[1]
        assert url != base_url

        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert await conn.fetchval("SELECT current_database()") == name
            assert await conn.fetchval("SHOW server_encoding") == "UTF8"
            assert await conn.fetchval("SHOW fsync") == "on"
        finally:
            await conn.close()

        # An open session must not prevent the drop.
        lingering = await asyncpg.connect(url)
        await drop_database(url)
        await lingering.close()

        base = await asyncpg.connect(base_url)
        try:
            exists = await base.fetchval(
                "SELECT count(*) FROM pg_database WHERE datname = $1", name
            )
        finally:
            await base.close()
        assert exists == 0

    # Leaving the context stops the server.
    with pytest.raises(OSError):
        await asyncpg.connect(base_url, timeout=5)


def test_uses_test_database_url_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://someone@127.0.0.1:1/somedb"
    monkeypatch.setenv(ENV_URL, url)
    with postgres_server() as base_url:
        assert base_url == url


@pytest.mark.asyncio
async def test_drop_database_refuses_foreign_names() -> None:
    with pytest.raises(ValueError, match="refusing to drop"):
        await drop_database("postgresql://postgres@127.0.0.1:1/test")
