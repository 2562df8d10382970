"""Scratch databases, so that no run sees another's rows: a PostgreSQL database created
from an admin URL and dropped after the run, or a SQLite file; and plain queries on
either (the benchmarks check what the server stored, after it is gone)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bench.report import BenchError, log

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
T = TypeVar("T")


def _pg(url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(connection)`` on a fresh event loop in a thread: usable from async code too."""

    async def run() -> T:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def admin_url() -> str:
    """Where scratch databases are created from: BENCH_POSTGRES_URL, or the local server."""
    return os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL)


def query(url: str, statement: str) -> list[tuple[Any, ...]]:
    """All rows of ``statement`` on either backend, as tuples."""
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return [tuple(row) for row in db.execute(statement).fetchall()]
    return [tuple(row) for row in _pg(url, lambda conn: conn.fetch(statement))]


def _admin(url: str, statement: str) -> None:
    _pg(url, lambda conn: conn.execute(statement))


def database_name(url: str) -> str | None:
    """The PostgreSQL database's name (its backends' process titles carry it)."""
    return None if url.startswith("sqlite:") else url.rpartition("/")[2]


@contextlib.contextmanager
def scratch(backend: str, admin_url: str, tmp: Path, prefix: str, keep: bool = False,
            ) -> Iterator[str]:  # fmt: skip
    """A new, empty database's URL (a SQLite file under ``tmp``)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'{name}.db'}"
        return
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    try:
        _admin(admin_url, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        with contextlib.suppress(Exception):
            _admin(admin_url, drop)
        raise BenchError(f"cannot create a scratch database via {admin_url}: {exc}") from exc
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        log(f"kept PostgreSQL database {name}") if keep else _admin(admin_url, drop)


def durability(admin_url: str) -> str:
    """The cluster's fsync settings, printed beside the figures they shape."""
    async def show(conn: Any) -> str:
        return ", ".join([f"{n}={await conn.fetchval(f'SHOW {n}')}"
                          for n in ("fsync", "synchronous_commit", "wal_sync_method")])

    try:
        return _pg(admin_url, show)
    except Exception as exc:  # a setup error: exit status 2
        raise BenchError(f"cannot reach PostgreSQL at {admin_url}: {exc}") from exc
