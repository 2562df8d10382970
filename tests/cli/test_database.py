"""A command's database: one that cannot be used, is not there, or has no schema is said
so in one line naming DATABASE_URL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.cli.process import run


@pytest.mark.parametrize("command", [("migrate",), ("tasks",)])
async def test_commands_name_an_unusable_database(command: tuple[str, ...], tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://app:pw-9999@127.0.0.1:1/hooks"}
    code, _out, err = await run(*command, env=env, cwd=tmp_path)
    assert code == 2
    assert err.startswith(
        "webhook-service: DATABASE_URL: cannot use postgresql://app:***@127.0.0.1:1/hooks: "
    )
    assert "pw-9999" not in err
    assert len(err.strip().splitlines()) == 1, err


async def test_a_command_never_creates_a_database(tmp_path: Path) -> None:
    code, out, err = await run("tasks", env={}, cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("webhook-service: DATABASE_URL: sqlite:///./webhook-service.db:")
    assert "no such file here" in err
    assert await asyncio.to_thread(os.listdir, tmp_path) == []  # no empty database made


async def test_a_database_without_the_schema_is_said_so(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        empty = Path(database_url.removeprefix("sqlite:///"))
        await asyncio.to_thread(empty.write_bytes, b"")  # an empty file
    code, _out, err = await run("tasks", env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert code == 2
    assert "has no webhook-service tables; run `webhook-service migrate`" in err
