"""main: parse the command line, read the configuration, run; the answer printed alone."""

from __future__ import annotations

from pathlib import Path

from tests.cli.process import run


async def test_malformed_env_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WEBHOOK_SECRET=s\nAPI_TOKEN\n")
    code, _out, err = await run("serve", env={}, cwd=tmp_path)
    assert code == 2
    assert err.strip() == "webhook-service: configuration error: .env:2: expected KEY=value"


async def test_commands_print_their_result_only(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url}
    code, out, err = await run("migrate", env=env, cwd=tmp_path)
    assert code == 0 and out.startswith("applied ") and err == ""
    code, out, err = await run("tasks", env=env, cwd=tmp_path)
    assert (code, out, err) == (0, "(none)\n", "")  # no log lines around the answer
    other = {"DATABASE_URL": "sqlite:///./other.db"}
    code, _out, err = await run("migrate", "-v", env=other, cwd=tmp_path)
    assert code == 0 and "INFO    webhook_service.store: applied migration 1" in err  # asked for


async def test_bad_option_values_are_refused_with_the_allowed_ones(tmp_path: Path) -> None:
    code, out, err = await run("tasks", "--status", "bogus", env={}, cwd=tmp_path)
    assert code == 2 and out == ""
    assert "invalid choice: 'bogus'" in err
    assert "'TODO', 'IMPLEMENTING', 'CODE_REVIEWING', 'DONE', 'CANCELLED'" in err
    code, _out, err = await run("tasks", "--repository", "nope", env={}, cwd=tmp_path)
    assert code == 2 and "expected owner/name, got 'nope'" in err
