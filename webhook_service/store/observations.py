"""Recorded observations (table ``observations``): a pull request's timeline and what a
delivery changed. The reconciler writes them (:class:`~.unit_of_work.UnitOfWork`, in
the transaction that applied them); retention deletes them with the deliveries
(:meth:`~.deliveries._Deliveries.prune`)."""

from __future__ import annotations

from webhook_service.store.connections import _Connections
from webhook_service.store.pulls import _Where
from webhook_service.store.records import _OBSERVATION_COLUMNS, StoredObservation, _observation


class _Observations(_Connections):
    async def observations_of_pull(
        self, repository: str, number: int, *, limit: int = 50, before: int | None = None
    ) -> list[StoredObservation]:
        """The PR's observations newest first (by id: the order they were applied in);
        ``before`` is the last id of the previous page."""
        where = _Where()
        where.equal("repository", repository, "text")
        where.equal("number", number, "int4")
        if before is not None:
            where.add(f"id < {where.param(before)}::int8")
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_OBSERVATION_COLUMNS} FROM observations{where.sql}"
                f" ORDER BY id DESC LIMIT {where.param(limit)}",
                *where.args,
            )
        return [_observation(r) for r in rows]

    async def observations_of_delivery(self, guid: str) -> list[StoredObservation]:
        """What the delivery ``guid`` led to, in the order applied (a redelivery adds)."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_OBSERVATION_COLUMNS} FROM observations WHERE delivery_guid = $1"
                " ORDER BY id",
                guid,
            )
        return [_observation(r) for r in rows]

    async def was_observed(self, repository: str, number: int) -> bool:
        """Whether any observation of the PR is recorded (and not yet pruned)."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT 1 FROM observations WHERE repository = $1 AND number = $2 LIMIT 1",
                repository,
                number,
            )
        return bool(rows)
