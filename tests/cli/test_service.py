"""The service's commands: serve (and its startup mistakes) and stats, as a user runs them."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.process import run
from tests.helpers import make_settings
from tests.servers import free_port, uvicorn_server


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
    "workers-zero": ({"WORKERS": "0"}, "WORKERS"),
    # Several workers: each client's events would come from one worker only.
    "workers-without-queue": ({"WORKERS": "2"}, "SOCKETIO_MESSAGE_QUEUE"),
    "workers-with-proxy": (
        {
            "WORKERS": "2",
            "WEBHOOK_PROXY_URL": "https://smee.io/x",
            "SOCKETIO_MESSAGE_QUEUE": "redis://127.0.0.1:9/0",
        },
        "WEBHOOK_PROXY_URL",
    ),
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


def test_serve_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "webhook_service", "serve"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "WEBHOOK_SECRET and API_TOKEN must be set" in result.stderr
