"""What differs between PostgreSQL and SQLite, and the driver connection that applies it:
SQL is written once with ``$n`` placeholders; :class:`_Dialect` adapts placeholders,
lists and values per backend."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_service.store.records import PRKey


class _Dialect:
    """What differs between PostgreSQL and SQLite, and nothing else."""

    name = "postgresql"
    _placeholder = re.compile(r"\$(\d+)")
    #: Appended to a claiming sub-select: rows another transaction is claiming are
    #: passed over instead of waited for. SQLite has one writer, so nothing to skip.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def sql(self, statement: str) -> str:
        return statement

    def value(self, value: Any) -> Any:
        return value

    def member(self, n: int, kind: str = "text") -> str:
        """``IN`` the list passed as parameter ``n`` (see :meth:`list_param`)."""
        return f"= ANY(${n}::{kind}[])"

    def keys(self, n: int) -> str:
        """A relation of (repository, number) pairs passed as one parameter."""
        return f"SELECT * FROM unnest(${n}::text[], ${n + 1}::int[])"

    def key_params(self, keys: Sequence[PRKey]) -> list[Any]:
        return [[k[0] for k in keys], [k[1] for k in keys]]

    def list_param(self, items: Sequence[Any]) -> Any:
        return list(items)


class _SQLiteDialect(_Dialect):
    name = "sqlite"
    skip_locked = ""

    _cast = re.compile(r"::\w+(\[\])?")

    def sql(self, statement: str) -> str:
        return self._placeholder.sub(r"?\1", self._cast.sub("", statement))

    def value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return _sqlite_time(value)
        return value

    def member(self, n: int, kind: str = "text") -> str:
        return f"IN (SELECT value FROM json_each(${n}))"

    def keys(self, n: int) -> str:
        return (
            f"SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(${n})"
        )

    def key_params(self, keys: Sequence[PRKey]) -> list[Any]:
        return [orjson.dumps([list(k) for k in keys]).decode()]

    def list_param(self, items: Sequence[Any]) -> Any:
        return orjson.dumps(list(items)).decode()


def _sqlite_time(value: datetime) -> str:
    # Fixed width, so that text order is time order.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


class Connection:
    """A driver connection with the dialect applied to statements and values."""

    def __init__(self, raw: Any, dialect: _Dialect) -> None:
        self.raw = raw
        self.dialect = dialect
        self.is_pg = dialect.name == "postgresql"

    def _args(self, args: Sequence[Any]) -> list[Any]:
        return [self.dialect.value(a) for a in args]

    async def execute(self, statement: str, *args: Any) -> None:
        sql = self.dialect.sql(statement)
        if self.is_pg:
            await self.raw.execute(sql, *args)
        else:
            await self.raw.execute(sql, self._args(args))

    async def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        sql = self.dialect.sql(statement)
        if self.is_pg:
            await self.raw.executemany(sql, rows)
        else:
            await self.raw.executemany(sql, [self._args(r) for r in rows])

    async def fetch(self, statement: str, *args: Any) -> list[Mapping[str, Any]]:
        sql = self.dialect.sql(statement)
        if self.is_pg:
            return list(await self.raw.fetch(sql, *args))
        async with self.raw.execute(sql, self._args(args)) as cursor:
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]

    async def fetchval(self, statement: str, *args: Any) -> Any:
        rows = await self.fetch(statement, *args)
        if not rows:
            return None
        return next(iter(rows[0].values()))
