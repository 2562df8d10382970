"""Versioned schema migrations, applied in order by ``Store.migrate``.

A migration is a list of statements written for PostgreSQL; the few words that differ
in SQLite are substituted by :meth:`Migration.statements`. Never edit a released
migration: add a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

# PostgreSQL spelling -> SQLite spelling.
_SQLITE_WORDS = {
    "BIGSERIAL PRIMARY KEY": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "TIMESTAMPTZ": "TEXT",
    "BYTEA": "BLOB",
    "BIGINT": "INTEGER",
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    _statements: tuple[str, ...]
    postgres_only: tuple[str, ...] = ()

    def statements(self, dialect: str) -> list[str]:
        if dialect == "postgresql":
            return [*self._statements, *self.postgres_only]
        out = []
        for statement in self._statements:
            for pg, lite in _SQLITE_WORDS.items():
                statement = statement.replace(pg, lite)
            out.append(statement)
        return out


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE tasks (
                id TEXT PRIMARY KEY,
                title TEXT NOT NULL,
                status TEXT NOT NULL,
                repository TEXT,
                branch TEXT,
                worktree_path TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX tasks_status ON tasks (status)",
            """CREATE TABLE pull_requests (
                id TEXT PRIMARY KEY,
                repository TEXT NOT NULL,
                number INTEGER NOT NULL,
                status TEXT NOT NULL,
                draft BOOLEAN NOT NULL,
                title TEXT NOT NULL,
                head_ref TEXT,
                head_sha TEXT,
                base_ref TEXT,
                url TEXT,
                node_id TEXT,
                github_id BIGINT,
                merged_at TIMESTAMPTZ,
                closed_at TIMESTAMPTZ,
                github_updated_at TIMESTAMPTZ NOT NULL,
                task_id TEXT REFERENCES tasks (id) ON DELETE SET NULL,
                last_source TEXT NOT NULL,
                last_delivery_id TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                UNIQUE (repository, number)
            )""",
            "CREATE INDEX pull_requests_task ON pull_requests (task_id)",
            "CREATE INDEX pull_requests_updated ON pull_requests (github_updated_at)",
            """CREATE TABLE webhook_deliveries (
                guid TEXT PRIMARY KEY,
                event TEXT NOT NULL,
                action TEXT,
                hook_id BIGINT,
                installation_id BIGINT,
                repository TEXT,
                pr_number INTEGER,
                headers TEXT NOT NULL,
                body BYTEA NOT NULL,
                received_at TIMESTAMPTZ NOT NULL,
                processed_at TIMESTAMPTZ,
                outcome TEXT NOT NULL,
                detail TEXT,
                attempts INTEGER NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at)",
            """CREATE TABLE events (
                id BIGSERIAL PRIMARY KEY,
                type TEXT NOT NULL,
                repository TEXT,
                task_id TEXT,
                payload TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                emitted_at TIMESTAMPTZ
            )""",
            "CREATE INDEX events_unemitted ON events (id) WHERE emitted_at IS NULL",
            "CREATE INDEX events_created ON events (created_at)",
            """CREATE TABLE refetch_requests (
                repository TEXT NOT NULL,
                number INTEGER NOT NULL,
                reason TEXT NOT NULL,
                requested_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (repository, number)
            )""",
        ),
        postgres_only=(
            # Stored bodies are ~28 KB of JSON: LZ4 compresses them several times faster
            # than the default pglz. Servers built without LZ4 keep pglz (see below).
            """DO $$ BEGIN
                ALTER TABLE webhook_deliveries ALTER COLUMN body SET COMPRESSION lz4;
            EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
                NULL;
            END $$""",
        ),
    ),
    Migration(
        2,
        "sync worker: tracked repositories, monitored pull requests, redeliveries",
        (
            """CREATE TABLE tracked_repositories (
                repository TEXT PRIMARY KEY,
                source TEXT NOT NULL,
                installation_id BIGINT,
                added_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE monitored_pulls (
                repository TEXT NOT NULL,
                number INTEGER NOT NULL,
                added_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (repository, number)
            )""",
            """CREATE TABLE redelivery_requests (
                guid TEXT PRIMARY KEY,
                hook TEXT NOT NULL,
                delivery_id BIGINT NOT NULL,
                requested_at TIMESTAMPTZ NOT NULL
            )""",
        ),
    ),
    Migration(
        3,
        "worktree clean-up jobs",
        (
            """CREATE TABLE cleanup_jobs (
                task_id TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
                worktree_path TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                next_attempt_at TIMESTAMPTZ NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX cleanup_jobs_due ON cleanup_jobs (status, next_attempt_at)",
        ),
    ),
    Migration(
        4,
        "replicas: outbox claims",
        (
            # Which replica's dispatcher is emitting an event, and until when; a claim
            # that runs out (its replica died) can be taken by another.
            "ALTER TABLE events ADD COLUMN claimed_by TEXT",
            "ALTER TABLE events ADD COLUMN claimed_until TIMESTAMPTZ",
        ),
    ),
    Migration(
        5,
        "clean-up jobs: what is left after the worktree was removed",
        (
            # Set when the worktree was removed but pruning or deleting its branch
            # failed: the retry finishes in this repository (the worktree is gone).
            "ALTER TABLE cleanup_jobs ADD COLUMN repository TEXT",
            "ALTER TABLE cleanup_jobs ADD COLUMN branch TEXT",
        ),
    ),
    Migration(
        6,
        "tasks: an index for paging newest first",
        (
            # GET /api/tasks pages by (created_at, id) descending (a keyset cursor);
            # pull_requests pages by its UNIQUE (repository, number), events by id.
            "CREATE INDEX tasks_created ON tasks (created_at, id)",
        ),
    ),
    Migration(
        7,
        "console: every observation and the core's decision, deliveries by PR",
        (
            # One row per observation the reconciler applied, from any source, written
            # in the same transaction as the change it made: a PR's timeline and what a
            # delivery changed. ``changes`` is JSON: the PR and task transitions, the
            # follow-ups requested (re-fetch, clean-up) and the ids of the events it
            # stored. Pruned with the deliveries (RETENTION_DAYS).
            """CREATE TABLE observations (
                id BIGSERIAL PRIMARY KEY,
                repository TEXT NOT NULL,
                number INTEGER NOT NULL,
                source TEXT NOT NULL,
                delivery_guid TEXT,
                observed_updated_at TIMESTAMPTZ,
                observed_status TEXT,
                outcome TEXT NOT NULL,
                changes TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX observations_pull ON observations (repository, number, id)",
            "CREATE INDEX observations_delivery ON observations (delivery_guid)",
            "CREATE INDEX observations_applied ON observations (applied_at)",
            # GET /api/deliveries pages newest first by (received_at, guid), filtered by
            # repository and number among others.
            "CREATE INDEX webhook_deliveries_page ON webhook_deliveries (received_at, guid)",
            """CREATE INDEX webhook_deliveries_pull
                ON webhook_deliveries (repository, pr_number, received_at)""",
        ),
    ),
    Migration(
        8,
        "console: per-minute counters for the health page's charts",
        (
            # One row per (minute, counter), added to by every replica (an upsert that
            # adds), so the charts cover the whole deployment. Kept 24 hours.
            """CREATE TABLE stats_minutes (
                minute TIMESTAMPTZ NOT NULL,
                name TEXT NOT NULL,
                value BIGINT NOT NULL,
                PRIMARY KEY (minute, name)
            )""",
        ),
    ),
    Migration(
        9,
        "deliveries: drop the index on received_at alone",
        # webhook_deliveries_page (received_at, guid) serves everything it did (the
        # time-range reads and the retention prune): one index less to write per
        # stored delivery.
        ("DROP INDEX IF EXISTS webhook_deliveries_received",),
    ),
)
