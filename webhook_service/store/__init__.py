"""The one package that talks to the database (PostgreSQL or SQLite).

``databases`` owns the connections (asyncpg's pool, aiosqlite connections); the
statements go to the driver connection underneath it, in batches: one round trip per
statement kind for a whole group of deliveries (asyncpg pipelines ``executemany``;
aiosqlite runs it in one hop to its thread). SQL is written once with ``$n``
placeholders; :class:`~webhook_service.store.dialects._Dialect` adapts placeholders,
lists and values per backend.

Nothing else in the package imports ``databases``, ``asyncpg`` or ``aiosqlite``.

The modules, one concept each: ``availability`` (outages and their logging),
``dialects`` (PostgreSQL vs SQLite, the driver connection), ``records`` (records and
row mappings), ``connections`` (the pool, leases, the writing transaction),
``unit_of_work`` (a reconciling transaction's statements), ``schema`` (migrations),
``deliveries``, ``pulls`` (PRs, tasks, what the poller watches), ``outbox`` (events),
``jobs`` (clean-up jobs), ``leadership``, ``stats`` (per-minute counters).
:class:`Store` combines their parts.
"""

from __future__ import annotations

from webhook_service.store.availability import (
    UNAVAILABLE_ERRORS,
    Availability,
    StoreUnavailable,
    log_unavailable,
)
from webhook_service.store.connections import ConnectionLease, normalize_url
from webhook_service.store.deliveries import DeliveryKey, _Deliveries
from webhook_service.store.dialects import Connection
from webhook_service.store.jobs import ScheduledCleanup, _Jobs
from webhook_service.store.leadership import Leadership
from webhook_service.store.observations import _Observations
from webhook_service.store.outbox import CLAIM_LEASE, FRESH_EVENT, _Outbox
from webhook_service.store.pulls import _Pulls
from webhook_service.store.records import (
    Changes,
    CleanupJob,
    DeliveryRecord,
    DeliverySummary,
    ObservationDraft,
    PRKey,
    StoredEvent,
    StoredObservation,
    TaskKey,
    TaskRecord,
    utcnow,
)
from webhook_service.store.schema import _Schema
from webhook_service.store.stats import MINUTE_COUNTERS, MINUTES_KEPT, Point, _Stats, minute_of
from webhook_service.store.unit_of_work import UnitOfWork

__all__ = [
    "CLAIM_LEASE",
    "FRESH_EVENT",
    "MINUTES_KEPT",
    "MINUTE_COUNTERS",
    "UNAVAILABLE_ERRORS",
    "Availability",
    "Changes",
    "CleanupJob",
    "Connection",
    "ConnectionLease",
    "DeliveryKey",
    "DeliveryRecord",
    "DeliverySummary",
    "Leadership",
    "ObservationDraft",
    "PRKey",
    "Point",
    "ScheduledCleanup",
    "Store",
    "StoreUnavailable",
    "StoredEvent",
    "StoredObservation",
    "TaskKey",
    "TaskRecord",
    "UnitOfWork",
    "log_unavailable",
    "minute_of",
    "normalize_url",
    "utcnow",
]


class Store(_Schema, _Deliveries, _Pulls, _Outbox, _Jobs, _Stats, _Observations):
    """Connections, migrations and every query the service makes."""
