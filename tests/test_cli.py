"""The command line: track, tasks and stats, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from tests.helpers import AUTH, make_settings, running_app
from tests.servers import free_port, uvicorn_server
from webhook_service.testing import FakeGitHub


async def run(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webhook_service",
        *args,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_track_fetches_links_and_monitors_a_pr(database_url: str, tmp_path: Path) -> None:
    async with FakeGitHub() as github:
        github.add_token("tok")
        github.add_pull("x/y", 5, title="Faster gears", head_ref="gears")
        async with running_app(make_settings(database_url)) as (service, client):
            task_id = (await client.post("/api/tasks", json={"title": "t"}, headers=AUTH)).json()[
                "id"
            ]
            env = {
                "DATABASE_URL": database_url,
                "GITHUB_TOKEN": "tok",
                "GITHUB_API_URL": github.url,
            }
            code, out, err = await run(
                "track", "x/y#5", "--task", task_id, "--json", env=env, cwd=tmp_path
            )
            assert code == 0, err
            pr = json.loads(out)
            assert (pr["repository"], pr["number"], pr["status"]) == ("x/y", 5, "OPEN")
            assert pr["task_id"] == task_id
            assert await service.store.monitored_pulls() == [("x/y", 5)]
            task = (await client.get(f"/api/tasks/{task_id}", headers=AUTH)).json()
            assert task["status"] == "CODE_REVIEWING"

            code, out, err = await run("tasks", env=env, cwd=tmp_path)
            assert code == 0, err
            header, row = out.splitlines()
            assert header.split() == ["ID", "STATUS", "TITLE", "REPOSITORY", "BRANCH", "UPDATED_AT"]
            assert row.startswith(f"{task_id}  CODE_REVIEWING")

            code, _out, err = await run("track", "not-a-target", env=env, cwd=tmp_path)
            assert code == 2 and "OWNER/REPO#NUMBER" in err


async def test_stats_reads_the_running_service(database_url: str, tmp_path: Path) -> None:
    async with uvicorn_server(make_settings(database_url)) as (_service, url):
        code, out, err = await run(
            "stats", "--url", url, env={"DATABASE_URL": database_url}, cwd=tmp_path
        )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VALUE"]
    assert any(line.split() == ["running", "False"] for line in lines)
    assert any(line.startswith("monitor.deliveries_received") for line in lines)


async def test_stats_says_when_the_service_is_not_there(tmp_path: Path) -> None:
    code, _out, err = await run(
        "stats", "--url", "http://127.0.0.1:9", env={"DATABASE_URL": "sqlite:///x.db"}, cwd=tmp_path
    )
    assert code == 1
    assert "cannot read http://127.0.0.1:9/stats" in err


async def test_create_pr_over_the_api_and_the_command_line(
    database_url: str, tmp_path: Path
) -> None:
    async with FakeGitHub() as github:
        github.add_token("tok")
        github.add_repository("x/y")
        settings = make_settings(
            database_url, GITHUB_TOKEN="tok", GITHUB_API_URL=github.url, GITHUB_REPOSITORIES="x/y"
        )
        async with running_app(settings) as (_service, client):
            tasks = []
            for branch in ("feature-a", "feature-b"):
                body = {"title": f"Do {branch}", "repository": "x/y", "branch": branch}
                response = await client.post("/api/tasks", json=body, headers=AUTH)
                tasks.append(response.json()["id"])

            path = f"/api/tasks/{tasks[0]}/pull-request"
            first = await client.post(path, json={"draft": True}, headers=AUTH)
            assert first.status_code == 200, first.text
            assert first.json()["created"] is True
            pr = first.json()["pull_request"]
            assert (pr["repository"], pr["task_id"], pr["draft"]) == ("x/y", tasks[0], True)
            again = await client.post(path, headers=AUTH)
            assert again.json()["created"] is False
            assert again.json()["pull_request"]["number"] == pr["number"]
            bad = await client.post(path, json={"draft": "yes"}, headers=AUTH)
            assert bad.status_code == 400

            env = {
                "DATABASE_URL": database_url,
                "GITHUB_TOKEN": "tok",
                "GITHUB_API_URL": github.url,
            }
            code, out, err = await run("create-pr", tasks[1], "--json", env=env, cwd=tmp_path)
            assert code == 0, err
            result = json.loads(out)
            assert result["created"] is True
            assert result["pull_request"]["task_id"] == tasks[1]
            task = (await client.get(f"/api/tasks/{tasks[1]}", headers=AUTH)).json()
            assert task["status"] == "CODE_REVIEWING"
        assert len(github.pulls("x/y")) == 2


# -- startup mistakes: one line that names the setting, exit 2, no traceback ------------

STARTUP_MISTAKES = {
    "database-refused": ({"DATABASE_URL": "postgresql://u@127.0.0.1:1/test"}, "DATABASE_URL"),
    "database-folder-missing": ({"DATABASE_URL": "sqlite:///./no/dir/x.db"}, "DATABASE_URL"),
    "database-scheme": ({"DATABASE_URL": "mysql://db/hooks"}, "DATABASE_URL"),
    "database-in-memory": ({"DATABASE_URL": "sqlite:///:memory:"}, "DATABASE_URL"),
    "key-file-unreadable": (
        {"APP_ID": "1", "PRIVATE_KEY_PATH": "./missing.pem"},
        "PRIVATE_KEY_PATH",
    ),
    "key-malformed": ({"APP_ID": "1", "PRIVATE_KEY": "not a key"}, "PRIVATE_KEY"),
    "app-id-without-key": ({"APP_ID": "1"}, "APP_ID"),
    "interval": ({"SYNC_INTERVAL": "soon"}, "SYNC_INTERVAL"),
    "log-level": ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    "host-not-here": ({"HOST": "192.0.2.1"}, "HOST"),  # TEST-NET-1: never this machine's
    "no-secrets": ({"WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET"),
}


@pytest.mark.parametrize("mistake", list(STARTUP_MISTAKES))
async def test_startup_mistake_is_one_line_naming_the_setting(
    mistake: str, tmp_path: Path
) -> None:
    env, setting = STARTUP_MISTAKES[mistake]
    base = {"WEBHOOK_SECRET": "s", "API_TOKEN": "t", "PORT": str(free_port())}
    code, out, err = await run("serve", env={**base, **env}, cwd=tmp_path)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("webhook-service: ")
    assert setting in err
    assert out == ""


async def test_port_in_use_is_one_line_naming_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"WEBHOOK_SECRET": "s", "API_TOKEN": "t", "PORT": str(port)}
        code, _out, err = await run("serve", env=env, cwd=tmp_path)
    assert code == 2
    assert err.strip() == (
        f"webhook-service: PORT: 127.0.0.1:{port} is already in use (another"
        " webhook-service?); stop that process or choose another port with --port or PORT"
    )


async def test_malformed_env_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WEBHOOK_SECRET=s\nAPI_TOKEN\n")
    code, _out, err = await run("serve", env={}, cwd=tmp_path)
    assert code == 2
    assert err.strip() == "webhook-service: configuration error: .env:2: expected KEY=value"


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


# -- plain answers ---------------------------------------------------------------------


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


async def test_serve_logs_where_it_listens(tmp_path: Path) -> None:
    port = free_port()
    env = {"WEBHOOK_SECRET": "s", "API_TOKEN": "t", "PORT": str(port), "SYNC_INTERVAL": "60"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webhook_service", "serve",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}, cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await process.stderr.readline()).decode()
                assert line, "serve exited"
                if "serving on" in line:
                    break
    finally:
        process.terminate()
        await process.wait()
    url = f"http://127.0.0.1:{port}"
    assert f"serving on {url} (dashboard {url}/, webhooks {url}/webhooks/github)" in line
