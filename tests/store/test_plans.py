"""The reconciler's connection (``Store.lease(keyed=True)``) on PostgreSQL: each of its
statements is planned once for the session, and a plan made while the tables are empty
finds rows through their indexes, as it must once they hold millions of rows. (SQLite
plans each statement as it runs: nothing to check there.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests._postgres import create_database, drop_database
from tests.store.shared import delivery, draft
from webhook_service.core.payloads import RepositoryChange
from webhook_service.store import Changes, Connection, Store, utcnow

PR = ("octo/two", 2)
TABLES = ("pull_requests", "webhook_deliveries", "tasks", "events", "tracked_repositories")


@pytest.fixture
async def store(postgres_base_url: str) -> AsyncIterator[Store]:
    url = await create_database(postgres_base_url)
    store = Store(url)
    try:
        await store.connect()
        await store.migrate()
        yield store
        await store.disconnect()
    finally:
        await drop_database(url)


async def run_a_batch(store: Store, conn: Connection) -> None:
    """Every statement a reconciling batch may run, on empty tables."""
    async with store.unit_of_work(conn, pulls=[PR]) as uow:
        await uow.load(["guid-1"], [PR])
        await uow.load_tasks(["task-1"])
        await uow.save_deliveries([delivery("guid-1")])
        await uow.insert_events([draft(1)], utcnow())
        installation = RepositoryChange(1, added=("octo/new",), removed=("octo/old",))
        changes = Changes(
            repositories=[installation], cleanups=["task-1"], duplicates=["guid-1"]
        )
        await uow.write(changes, utcnow())


async def prepared(conn: Connection) -> list[dict[str, Any]]:
    """The statements this session prepared on the service's tables (not the driver's
    own): text, parameter types, plans made."""
    rows = await conn.fetch(
        "SELECT statement, parameter_types::text[] AS types, generic_plans, custom_plans"
        " FROM pg_prepared_statements WHERE statement ~ $1",
        f"(FROM|INTO|UPDATE) ({'|'.join(TABLES)})\\M",
    )
    return [dict(row) for row in rows]


async def scans(conn: Connection, statement: str, types: list[str]) -> set[tuple[str, str]]:
    """The tables ``statement``'s generic plan reads with a sequential scan."""
    await conn.execute(f"PREPARE checked AS {statement}")
    try:
        nulls = ", ".join(f"NULL::{t}" for t in types)  # a generic plan: any values do
        arguments = f"({nulls})" if types else ""
        plan = await conn.fetch(f"EXPLAIN (FORMAT JSON) EXECUTE checked{arguments}")
    finally:
        await conn.execute("DEALLOCATE checked")
    found: set[tuple[str, str]] = set()

    def walk(node: dict[str, Any]) -> None:
        if node["Node Type"] == "Seq Scan":
            found.add((node["Node Type"], node["Relation Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(orjson.loads(plan[0]["QUERY PLAN"])[0]["Plan"])
    return found


async def test_the_reconcilers_statements_are_planned_once_and_never_scan_a_table(
    store: Store,
) -> None:
    lease = store.lease(keyed=True)
    try:
        conn = await lease.get()
        for _ in range(3):
            await run_a_batch(store, conn)
        statements = await prepared(conn)
        # The loads (PRs and GUIDs, tasks), the write, the clean-ups asked for, the
        # repositories tracked and untracked, the duplicates counted.
        assert len(statements) == 7, [s["statement"][:40] for s in statements]
        for s in statements:
            # Each ran on every batch (the write three times).
            assert s["generic_plans"] >= 3 and s["custom_plans"] == 0, s["statement"]
            assert await scans(conn, s["statement"], s["types"]) == set(), s["statement"]
    finally:
        await lease.drop()


async def test_without_it_a_plan_made_on_empty_tables_scans_them(store: Store) -> None:
    """Why ``enable_seqscan = off`` goes with the generic plans: without it, the plans
    made while the tables are empty read them whole, and would go on doing so."""
    async with store.connection() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await run_a_batch(store, conn)
        found = set()
        for s in await prepared(conn):
            found |= await scans(conn, s["statement"], s["types"])
        await conn.execute("RESET ALL")
    assert {table for _, table in found} >= {"pull_requests", "webhook_deliveries"}
