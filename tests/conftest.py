"""Shared fixtures: both database backends, a running app, signed deliveries.

Every test that takes ``database_url`` (or anything built on it) runs twice: on a
SQLite file and on a fresh PostgreSQL database (``TEST_DATABASE_URL``'s server, or
an embedded one the run starts itself; see tests/_postgres.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests._postgres import create_database, drop_database, postgres_server
from webhook_service.store import Store


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base = request.getfixturevalue("postgres_base_url")
    url = await create_database(base)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(database_url)
    await store.connect()
    await store.migrate()
    try:
        yield store
    finally:
        await store.disconnect()
