"""The README's Python client example, run as written (URL and token aside) against a
live server: it prints its repository's changes, nothing of other repositories, and
after its connection drops it resumes with ``since``, subscribed again, with no gap
and no repeat."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import API_TOKEN, make_settings, payload, post_delivery
from tests.servers import TcpProxy, uvicorn_server
from webhook_service.app import Service

README = Path(__file__).resolve().parent.parent / "README.md"
REPO = "owner/name"  # the repository the example subscribes to


def python_client_example() -> str:
    text = README.read_text()
    start = text.index("Python:\n\n```python\n")
    start = text.index("\n", text.index("```python", start)) + 1
    return text[start : text.index("```", start)]


def _delivery(action: str, repository: str, number: int, second: int) -> dict[str, Any]:
    document = payload(
        f"pull_request/{action}", number=number, updated_at=f"2026-12-04T10:00:{second:02d}Z"
    )
    document["repository"]["full_name"] = repository
    return document


def _clients(service: Service) -> list[Any]:
    return list(service.stream._manager.clients.values())


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(15):
        while not condition():  # noqa: ASYNC110 (the server's state, polled)
            await asyncio.sleep(0.02)


async def test_the_readme_python_client_prints_its_repository_and_resumes(
    database_url: str, tmp_path: Path
) -> None:
    code = python_client_example()
    assert code.count("http://127.0.0.1:3000") == 1 and code.count('"change-me"') == 1
    subscribed = {f"repository:{REPO}"}
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        # The example connects through a relay the test can cut, as a network would.
        proxy = TcpProxy("127.0.0.1", int(url.rsplit(":", 1)[1]))
        await proxy.start()
        script = tmp_path / "client.py"
        script.write_text(
            code.replace("http://127.0.0.1:3000", f"http://127.0.0.1:{proxy.port}").replace(
                '"change-me"', repr(API_TOKEN)
            )
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None

        async def line() -> list[str]:
            async with asyncio.timeout(15):
                return (await proc.stdout.readline()).decode().split()  # type: ignore[union-attr]

        try:
            await _until(lambda: [c.subscriptions for c in _clients(service)] == [subscribed])
            async with httpx.AsyncClient(base_url=url) as http:
                await post_delivery(http, _delivery("opened", "other/repo", 8, 1))
                await post_delivery(http, _delivery("opened", REPO, 7, 1))
                assert await line() == [REPO, "7", "None", "->", "OPEN"]

                # The network drops; meanwhile a change the client cannot get live.
                await proxy.cut()
                await _until(lambda: not _clients(service))
                await post_delivery(http, _delivery("closed", REPO, 7, 2))
                await proxy.start()
                # It reconnects by itself, resumes from the last event and subscribes again.
                assert await line() == [REPO, "7", "OPEN", "->", "CLOSED"]
                await _until(lambda: [c.subscriptions for c in _clients(service)] == [subscribed])

                await post_delivery(http, _delivery("opened", "other/repo", 9, 3))
                await post_delivery(http, _delivery("reopened", REPO, 7, 3))
                # Next: the live event, no repeat of the resumed one, nothing of other/repo.
                assert await line() == [REPO, "7", "CLOSED", "->", "OPEN"]
        finally:
            proc.kill()
            await proc.wait()
            await proxy.close()
