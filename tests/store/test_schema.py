"""The schema on both backends: migrations apply once, however many replicas or
processes start at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import webhook_service.store.connections as store_connections
from tests.store.shared import connected_stores
from webhook_service.store import Store
from webhook_service.store.migrations import MIGRATIONS

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def test_migrations_apply_once(store: Store) -> None:
    assert await store.schema_version() == MIGRATIONS[-1].version
    assert await store.migrate() == []


def test_migrate_command(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "webhook_service", "migrate"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert f"applied {len(MIGRATIONS)} migration(s)" in first.stdout
    again = subprocess.run(run, env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "applied 0 migration(s)" in again.stdout


async def _migrate_at_once(database_url: str, count: int) -> list[int]:
    """Migrate one database from ``count`` stores at once: the versions applied, sorted.

    Every migration has ended, and every store is disconnected, when this returns or
    raises: a failure leaves no connection behind for the next test to trip on."""
    async with connected_stores(database_url, count) as stores:
        results = await asyncio.gather(*(s.migrate() for s in stores), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        assert await stores[0].schema_version() == MIGRATIONS[-1].version
    return sorted(v for r in results if not isinstance(r, BaseException) for v in r)


async def test_replicas_starting_at_once_migrate_once(database_url: str) -> None:
    """Several stores migrating one new database at the same moment: each waits for
    the others, and every migration is applied exactly once."""
    assert await _migrate_at_once(database_url, 4) == [m.version for m in MIGRATIONS]


# One replica: connects, says "ready", waits for the go on stdin, then sets up its first
# connection (as the CLI does before anything else) and migrates, printing the versions
# it applied.
_REPLICA = """
import asyncio, json, sys
from webhook_service.store import Store

async def main() -> None:
    store = Store(sys.argv[1])
    await store.connect()
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        await store.ping()
        print(json.dumps(await store.migrate()), flush=True)
    finally:
        await store.disconnect()

asyncio.run(main())
"""


async def test_processes_starting_at_once_migrate_once(database_url: str, tmp_path: Path) -> None:
    """Replicas are processes: six of them started on one new database at the same
    moment all succeed, and every migration is applied exactly once."""
    replicas: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(6):
            replicas.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-c", _REPLICA, database_url),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=tmp_path,
                )
            )

        async def ready(replica: asyncio.subprocess.Process) -> None:
            assert replica.stdout is not None and replica.stderr is not None
            line = await replica.stdout.readline()
            assert line == b"ready\n", (await replica.stderr.read()).decode()

        await asyncio.wait_for(asyncio.gather(*(ready(r) for r in replicas)), 120)
        for replica in replicas:  # go, all of them
            assert replica.stdin is not None
            replica.stdin.write(b"go\n")
            replica.stdin.close()
        outputs = await asyncio.wait_for(asyncio.gather(*(r.communicate() for r in replicas)), 120)
    finally:
        for replica in replicas:
            if replica.returncode is None:
                replica.kill()
                await replica.wait()
    failed = [err.decode() for r, (_, err) in zip(replicas, outputs, strict=True) if r.returncode]
    assert failed == []
    applied = sorted(v for out, _ in outputs for v in json.loads(out))
    assert applied == [m.version for m in MIGRATIONS]
    if database_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_migrators_wait_for_each_other_longer_than_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a migration taking longer than busy_timeout (here any: it is 0) makes the
    others wait, not fail, as PostgreSQL's advisory lock does."""
    monkeypatch.setattr(store_connections, "_SQLITE_BUSY_TIMEOUT", 0.0)
    url = f"sqlite:///{tmp_path / 'replicas.db'}"
    assert await _migrate_at_once(url, 4) == [m.version for m in MIGRATIONS]


async def test_a_new_sqlite_file_is_set_up_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    """A connection's set-up switches a new file to WAL: a read, then a write, which
    SQLite fails at once ("database is locked") while another connection writes,
    whatever busy_timeout says. It waits for the writer all the same."""
    path = tmp_path / "new.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("CREATE TABLE t (a INTEGER)")  # a database in rollback mode
        other.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        store = Store(f"sqlite:///{path}")
        await store.connect()
        ping = asyncio.create_task(store.ping())
        try:
            await asyncio.sleep(0.3)
            assert not ping.done()
            other.execute("COMMIT")
            await asyncio.wait_for(ping, 10)
        finally:
            if not ping.done():
                ping.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await ping
            await store.disconnect()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
