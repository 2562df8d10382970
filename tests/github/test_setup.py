"""From nothing to a registered GitHub App: setup page, callback, .env, and the App at work.

GitHub's side is the shipped fake: the web page the manifest form is posted to (which
confirms at once and redirects back, as GitHub does after the person clicks "Create"),
``POST /app-manifests/{code}/conversions``, and the App's installations.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the test extra

from tests.helpers import API_TOKEN, app_private_key, server_env
from tests.servers import ServerProcess, free_port
from webhook_service.config import load_settings, read_env_file
from webhook_service.github.setup import AppCredentials, manifest, registration_url, write_env
from webhook_service.testing import FakeGitHub

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP = (sys.executable, "-m", "webhook_service", "setup")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)


def form(page: str) -> tuple[str, str]:
    """The setup page's form: where it posts, and the manifest it posts."""
    action = re.search(r'<form action="([^"]+)"', page)
    value = re.search(r'name="manifest" value="([^"]+)"', page)
    assert action is not None and value is not None, page
    return html.unescape(action.group(1)), html.unescape(value.group(1))


def github_env(gh: FakeGitHub) -> dict[str, str]:
    """GitHub Enterprise Server settings that point at the fake (web and API)."""
    return {
        "GHE_HOST": gh.url.removeprefix("http://"),
        "GHE_PROTOCOL": "http",
        "GITHUB_API_URL": gh.url,
    }


async def served(client: httpx.AsyncClient, page: str) -> None:
    """Wait until ``page`` answers (a process starting up)."""

    async def answers() -> bool:
        try:
            return (await client.get(page)).is_success
        except httpx.HTTPError:
            return False

    await eventually(answers)


async def register(client: httpx.AsyncClient, setup_page: str) -> httpx.Response:
    """What the person does: open the page, press the button, confirm on GitHub."""
    page = await client.get(setup_page)
    assert page.status_code == 200, page.text
    action, document = form(page.text)
    created = await client.post(action, data={"manifest": document})
    assert created.status_code == 302, created.text
    return await client.get(created.headers["location"])


def test_the_manifest_is_deploy_app_yml() -> None:
    shipped = yaml.safe_load((REPO_ROOT / "deploy" / "app.yml").read_text())
    assert manifest("https://example.com", webhook_path="/webhooks/github") == shipped | {
        "redirect_url": "https://example.com/setup/callback"
    }
    assert shipped["redirect_url"] == "https://example.com/"  # deploy/README's manual flow


@pytest.mark.parametrize(
    ("github", "org", "url"),
    [
        ("https://github.com", None, "https://github.com/settings/apps/new"),
        ("https://github.com/", "acme", "https://github.com/organizations/acme/settings/apps/new"),
        ("https://ghe.example.com", None, "https://ghe.example.com/settings/apps/new"),
    ],
)
def test_registration_url(github: str, org: str | None, url: str) -> None:
    assert registration_url(github, org) == url


def test_write_env_keeps_what_env_held(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    old_key = app_private_key().strip()
    env_file.write_text(
        "# my settings\n"
        "DATABASE_URL=sqlite:///./mine.db  # a comment\n"
        "WEBHOOK_SECRET=old-secret\n"
        f'PRIVATE_KEY="{old_key}"\n'
        "API_TOKEN='kept token'\n"
    )
    credentials = AppCredentials(
        app_id="777",
        slug="my-app",
        html_url="https://github.com/apps/my-app",
        pem=app_private_key(),
        webhook_secret="new-secret",
        client_id="Iv1.abc",
        client_secret="s3cr3t with 'quotes'",
    )
    key_path = write_env(env_file, credentials)

    assert key_path == tmp_path / "my-app.private-key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    assert text.startswith("# my settings\nDATABASE_URL=sqlite:///./mine.db  # a comment\n")
    settings = load_settings({}, env_file=env_file)
    assert settings.app_id == "777"
    assert settings.private_key is not None and settings.private_key.reveal() == old_key
    assert [s.reveal() for s in settings.webhook_secrets] == ["new-secret", "old-secret"]
    assert settings.api_token is not None and settings.api_token.reveal() == "kept token"
    assert settings.database_url.reveal() == "sqlite:///./mine.db"
    assert "# PRIVATE_KEY=" in text  # the old inline key would win over the file: disabled
    assert read_env_file(env_file)["GITHUB_CLIENT_SECRET"] == "s3cr3t with 'quotes'"


async def test_from_nothing_to_a_synced_repository(database_url: str, tmp_path: Path) -> None:
    async with FakeGitHub(private_key_pem=app_private_key()) as gh:
        env = server_env(database_url, **github_env(gh), SYNC_INTERVAL="1")
        server = ServerProcess(env, tmp_path / "serve.log", cwd=tmp_path)
        await asyncio.to_thread(server.start)
        try:
            async with httpx.AsyncClient(timeout=20) as client:
                refused = await client.get(f"{server.url}/setup")
                assert refused.status_code == 401  # only the operator gets a state
                done = await register(client, f"{server.url}/setup?token={API_TOKEN}")
                assert done.status_code == 200, done.text
                assert "is registered" in done.text
                assert f"{gh.url}/apps/webhook-service/installations/new" in done.text
                (sent,) = gh.manifests.registered
                assert sent["hook_attributes"]["url"] == f"{server.url}/webhooks/github"
                assert sent["redirect_url"] == f"{server.url}/setup/callback"
                assert sent["default_permissions"] == {"pull_requests": "write", "metadata": "read"}
                replayed = await client.get(str(done.url))  # the same state, again
                assert replayed.status_code == 400
        finally:
            await asyncio.to_thread(server.stop)

        written = load_settings({}, env_file=tmp_path / ".env")
        assert written.app_id == gh.app_id
        key_file = tmp_path / "webhook-service.private-key.pem"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

        # The person installs the App; the service restarts with the new .env.
        gh.add_installation(42, ["octo/demo"], account="octo")
        gh.add_pull("octo/demo", 1, title="found by the App")
        again = ServerProcess(env, tmp_path / "serve2.log", cwd=tmp_path)
        await asyncio.to_thread(again.start)
        try:
            async with httpx.AsyncClient(timeout=20) as client:
                auth = {"Authorization": f"Bearer {API_TOKEN}"}

                async def synced() -> bool:
                    answer = await client.get(f"{again.url}/api/pulls", headers=auth)
                    return any(p["title"] == "found by the App" for p in answer.json()["pulls"])

                await eventually(synced)
                status = await client.get(f"{again.url}/setup?token={API_TOKEN}")
                assert "octo/demo" in status.text and f"id {gh.app_id}" in status.text
        finally:
            await asyncio.to_thread(again.stop)
        assert gh.tokens_issued >= 1  # the installation token


async def test_the_setup_command(tmp_path: Path) -> None:
    async with FakeGitHub(private_key_pem=app_private_key()) as gh:
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            *SETUP,
            "--port",
            str(port),
            cwd=tmp_path,
            env={**os.environ, **github_env(gh), "PYTHONPATH": str(REPO_ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with httpx.AsyncClient(timeout=20) as client:
                await served(client, f"http://127.0.0.1:{port}/setup")
                done = await register(client, f"http://127.0.0.1:{port}/setup")
                assert done.status_code == 200, done.text
            async with asyncio.timeout(20):
                out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
        assert process.returncode == 0, err
        assert f"Install it: {gh.url}/apps/webhook-service/installations/new" in out.decode()
        assert load_settings({}, env_file=tmp_path / ".env").app_id == gh.app_id

        # Again, with the App configured: refused unless told to replace it.
        again = await asyncio.create_subprocess_exec(
            *SETUP,
            cwd=tmp_path,
            env={**os.environ, **github_env(gh), "PYTHONPATH": str(REPO_ROOT)},
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            _, refused = await again.communicate()
        assert again.returncode == 2
        assert "a GitHub App is configured already" in refused.decode()
        assert "--replace" in refused.decode()
