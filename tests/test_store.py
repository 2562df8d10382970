"""The store on both backends: migrations, retention, event ids, the outbox."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from webhook_service.core import EventDraft
from webhook_service.migrations import MIGRATIONS
from webhook_service.outbox import Dispatcher
from webhook_service.store import DeliveryRecord, Store, StoredEvent

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _delivery(guid: str, received_at: datetime) -> DeliveryRecord:
    return DeliveryRecord(
        guid=guid,
        event="ping",
        action=None,
        hook_id=1,
        installation_id=None,
        repository=None,
        pr_number=None,
        headers={"x-github-event": "ping"},
        body=b"{}",
        received_at=received_at,
        processed_at=received_at,
        outcome="ignored",
        detail="ping",
    )


def _draft(n: int) -> EventDraft:
    return EventDraft("pr_status_change", "o/r", None, {"type": "pr_status_change", "n": n})


async def test_migrations_apply_once(store: Store) -> None:
    assert await store.schema_version() == MIGRATIONS[-1].version
    assert await store.migrate() == []


async def test_prune_deletes_old_deliveries_and_emitted_events_only(store: Store) -> None:
    old, recent = NOW - timedelta(days=8), NOW - timedelta(days=1)
    async with store.transaction() as uow:
        await uow.save_deliveries([_delivery("old", old), _delivery("recent", recent)])
        emitted_old = await uow.insert_events([_draft(1)], old)
        await uow.insert_events([_draft(2)], old)  # never emitted: kept
        await uow.insert_events([_draft(3)], recent)
    await store.mark_emitted([emitted_old[0].id], old)

    assert await store.prune(NOW - timedelta(days=7)) == (1, 1)

    assert await store.get_delivery("old") is None
    assert await store.get_delivery("recent") is not None
    assert [e.payload["n"] for e in await store.events_since(0, 10)] == [2, 3]


async def test_event_ids_keep_increasing_after_every_event_is_pruned(store: Store) -> None:
    async with store.transaction() as uow:
        first = await uow.insert_events([_draft(1), _draft(2)], NOW - timedelta(days=30))
    await store.mark_emitted([e.id for e in first], NOW)
    await store.prune(NOW)
    assert await store.events_since(0, 10) == []
    async with store.transaction() as uow:
        later = await uow.insert_events([_draft(3)], NOW)
    assert later[0].id > first[-1].id


async def test_dispatcher_emits_events_committed_but_never_emitted(store: Store) -> None:
    """What a crash between commit and emit leaves behind is emitted on start."""
    async with store.transaction() as uow:
        stored = await uow.insert_events([_draft(n) for n in range(5)], NOW)
    emitted: list[StoredEvent] = []

    async def emit(event: StoredEvent) -> None:
        emitted.append(event)

    dispatcher = Dispatcher(store, emit, sweep_interval=0.05)
    dispatcher.start()
    try:
        for _ in range(200):
            if len(emitted) >= 5 and not await store.unemitted_events(0, 10):
                break
            await asyncio.sleep(0.01)
    finally:
        await dispatcher.stop()
    assert [e.id for e in emitted] == [e.id for e in stored]
    assert await store.unemitted_events(0, 10) == []


def test_in_memory_sqlite_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        Store("sqlite:///:memory:")


def test_migrate_command(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "webhook_service", "migrate"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert f"applied {len(MIGRATIONS)} migration(s)" in first.stdout
    again = subprocess.run(run, env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "applied 0 migration(s)" in again.stdout


def test_serve_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "webhook_service", "serve"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    assert "WEBHOOK_SECRET and API_TOKEN must be set" in result.stderr


async def test_replicas_starting_at_once_migrate_once(database_url: str) -> None:
    """Several processes migrating one new database at the same moment: each waits
    for the others, and every migration is applied exactly once."""
    stores = [Store(database_url) for _ in range(4)]
    for s in stores:
        await s.connect()
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
        applied = sorted(v for versions in results for v in versions)
        assert applied == [m.version for m in MIGRATIONS]
        assert await stores[0].schema_version() == MIGRATIONS[-1].version
    finally:
        for s in stores:
            await s.disconnect()
