"""Per-minute counters (table ``stats_minutes``, migration 8): what the console charts.

Every replica adds its own counts to the row of (minute, name) with an upsert that
adds, so a row holds the whole deployment's count for that minute whichever replicas
wrote to it, and two replicas adding at once both count (the database adds, not the
replicas: nothing is read and written back). Rows older than :data:`MINUTES_KEPT`
are pruned with the hourly retention pruning.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from webhook_service.store.connections import _Connections
from webhook_service.store.records import _time

#: How long per-minute counts are kept (docs/design.md, "What is recorded").
MINUTES_KEPT = timedelta(hours=24)

#: Every counter recorded (docs/design.md, "What is recorded"): the recorder adds to
#: them, the console lists each, counted or not.
MINUTE_COUNTERS = (
    "deliveries.applied",
    "deliveries.stale",
    "deliveries.duplicate",
    "deliveries.ignored",
    "deliveries.rejected",
    "deliveries.failed",
    "github.rest",
    "github.graphql",
)

#: One minute's counts of one counter: (the minute's start, the count).
Point = tuple[datetime, int]

# PostgreSQL and SQLite (3.24+) both read this upsert; ``excluded`` is the row offered.
_ADD = (
    "INSERT INTO stats_minutes (minute, name, value) VALUES ($1, $2, $3)"
    " ON CONFLICT (minute, name) DO UPDATE SET value = stats_minutes.value + excluded.value"
)


def minute_of(moment: datetime) -> datetime:
    """The start of ``moment``'s minute, in UTC: the key its counts are added under."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


class _Stats(_Connections):
    # -- per-minute counters ----------------------------------------------------

    async def add_minute_counts(self, moment: datetime, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (name -> how many more) to ``moment``'s minute. Zeros are left
        out; names go in a fixed order, so that two replicas adding to the same rows
        at once take the rows' locks in the same order (no deadlock on PostgreSQL)."""
        minute = minute_of(moment)
        rows = [(minute, name, value) for name, value in sorted(counts.items()) if value]
        if not rows:
            return
        async with self.connection() as conn:
            await conn.executemany(_ADD, rows)

    async def minute_counts(self, since: datetime) -> dict[str, list[Point]]:
        """Each counter's minutes from ``since``'s minute on, oldest first; a minute with
        nothing counted has no row (and is not listed)."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT minute, name, value FROM stats_minutes WHERE minute >= $1"
                " ORDER BY name, minute",
                minute_of(since),
            )
        series: dict[str, list[Point]] = {}
        for r in rows:
            series.setdefault(str(r["name"]), []).append((_time(r["minute"]), int(r["value"])))
        return series

    async def prune_minutes(self, before: datetime) -> int:
        """Delete the counts of minutes that began before ``before``; how many rows."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "DELETE FROM stats_minutes WHERE minute < $1 RETURNING name", before
            )
        return len(rows)
