"""Stored PRs and tasks as the API reads them, and what the poller watches: tracked
repositories, monitored PRs and re-fetch requests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from webhook_service.core.model import PullRequest
from webhook_service.store.connections import _Connections
from webhook_service.store.records import (
    _PR_COLUMNS,
    _TASK_COLUMNS,
    PRKey,
    TaskKey,
    TaskRecord,
    _pull,
    _task_record,
    utcnow,
)
from webhook_service.store.unit_of_work import UnitOfWork


class _Pulls(_Connections):
    # -- reads for the API ----------------------------------------------------

    async def list_pulls(
        self,
        *,
        repository: str | None = None,
        status: str | None = None,
        limit: int = 500,
        after: PRKey | None = None,
    ) -> list[PullRequest]:
        """Stored PRs in (repository, number) order: a unique key that never changes,
        so paging by ``after`` (the last key of the previous page) neither repeats nor
        skips a row, whatever is inserted or updated meanwhile."""
        where = _Where()
        where.equal("repository", repository, "text")
        where.equal("status", status, "text")
        if after is not None:
            where.add(
                f"(repository, number) > ({where.param(after[0])}::text,"
                f" {where.param(after[1])}::int4)"
            )
            if after[0] == repository:  # the same, in a form SQLite's planner uses too
                where.add(f"number > {where.param(after[1])}::int4")
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_PR_COLUMNS} FROM pull_requests{where.sql}"
                f" ORDER BY repository, number LIMIT {where.param(limit)}",
                *where.args,
            )
        return [_pull(r) for r in rows]

    async def get_pull(self, repository: str, number: int) -> PullRequest | None:
        async with self.connection() as conn:
            prs = await UnitOfWork(conn).load_pulls([(repository, number)])
        return prs.get((repository, number))

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        repository: str | None = None,
        limit: int = 500,
        after: TaskKey | None = None,
    ) -> list[TaskRecord]:
        """Tasks newest first: (created_at, id) descending, a unique key that never
        changes; ``after`` is the last key of the previous page (see list_pulls)."""
        where = _Where()
        where.equal("status", status, "text")
        where.equal("repository", repository, "text")
        where.before("created_at", "id", after)
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_TASK_COLUMNS} FROM tasks{where.sql}"
                f" ORDER BY created_at DESC, id DESC LIMIT {where.param(limit)}",
                *where.args,
            )
        return [_task_record(r) for r in rows]

    async def get_task(self, task_id: str) -> TaskRecord | None:
        async with self.connection() as conn:
            rows = await conn.fetch(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
        return _task_record(rows[0]) if rows else None

    async def create_task(self, task: TaskRecord) -> None:
        async with self.connection() as conn:
            await conn.execute(
                "INSERT INTO tasks (id, title, status, repository, branch, worktree_path,"
                " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                task.id,
                task.title,
                str(task.status),
                task.repository,
                task.branch,
                task.worktree_path,
                task.created_at,
                task.updated_at,
            )

    # -- what the poller watches ----------------------------------------------

    async def tracked_repositories(self) -> dict[str, int | None]:
        """Repositories added by installations (or by hand): name -> installation id."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT repository, installation_id FROM tracked_repositories ORDER BY repository"
            )
        return {str(r["repository"]): r["installation_id"] for r in rows}

    async def track_repositories(
        self, repositories: Sequence[str], *, source: str, installation_id: int | None
    ) -> None:
        async with self.connection() as conn:
            await conn.executemany(
                "INSERT INTO tracked_repositories (repository, source, installation_id, added_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (repository) DO UPDATE"
                " SET source = excluded.source, installation_id = excluded.installation_id",
                [(r, source, installation_id, utcnow()) for r in repositories],
            )

    async def untrack_repositories(self, repositories: Sequence[str]) -> None:
        async with self.connection() as conn:
            await conn.executemany(
                "DELETE FROM tracked_repositories WHERE repository = $1",
                [(r,) for r in repositories],
            )

    async def monitored_pulls(self) -> list[PRKey]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT repository, number FROM monitored_pulls ORDER BY repository, number"
            )
        return [(str(r["repository"]), int(r["number"])) for r in rows]

    async def active_repositories(self, since: datetime) -> set[str]:
        """Repositories the poller sweeps more often: a PR updated at or after
        ``since``, an open PR a task owns, or a PR monitored by hand."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT repository FROM pull_requests WHERE github_updated_at >= $1"
                " OR (status = 'OPEN' AND task_id IS NOT NULL)"
                " UNION SELECT repository FROM monitored_pulls",
                since,
            )
        return {str(r["repository"]) for r in rows}

    async def monitor_pull(self, key: PRKey) -> None:
        async with self.connection() as conn:
            await conn.execute(
                "INSERT INTO monitored_pulls (repository, number, added_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (repository, number) DO NOTHING",
                key[0],
                key[1],
                utcnow(),
            )

    async def pending_refetches(self, limit: int) -> list[PRKey]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT repository, number FROM refetch_requests ORDER BY requested_at LIMIT $1",
                limit,
            )
        return [(str(r["repository"]), int(r["number"])) for r in rows]

    async def clear_refetch(self, key: PRKey, requested_before: datetime) -> None:
        """Forget a re-fetch request, unless it was asked again meanwhile."""
        async with self.connection() as conn:
            await conn.execute(
                "DELETE FROM refetch_requests"
                " WHERE repository = $1 AND number = $2 AND requested_at <= $3",
                key[0],
                key[1],
                requested_before,
            )


class _Where:
    """A WHERE clause built from the filters given (None: no filter), so that each
    combination is its own statement, planned with the indexes it can use."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self._conditions: list[str] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self._conditions.append(condition)

    def equal(self, column: str, value: Any, kind: str) -> None:
        if value is not None:
            self.add(f"{column} = {self.param(value)}::{kind}")

    def before(self, at: str, key: str, after: tuple[Any, str] | None) -> None:
        """Keyset paging newest first: the rows after ``after`` (the previous page's last
        ``(at, key)``), ``at`` a timestamp column and ``key`` a text one."""
        if after is not None:
            self.add(
                f"({at}, {key}) < ({self.param(after[0])}::timestamptz,"
                f" {self.param(after[1])}::text)"
            )

    @property
    def sql(self) -> str:
        return f" WHERE {' AND '.join(self._conditions)}" if self._conditions else ""
