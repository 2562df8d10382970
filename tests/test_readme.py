"""The README's client examples, run as written (URL and token aside) against a live
server: the Python one in a child process, the JavaScript ones in Chromium with the
vendored socket.io client. Each prints its changes (the subscribed ones: nothing of
other repositories), and after its connection drops (a relay the test cuts) it resumes
with ``since``, subscribed again, with no gap and no repeat."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, Page

from tests.browser import chromium, open_page
from tests.helpers import API_TOKEN, make_settings, payload, post_delivery
from tests.servers import TcpProxy, uvicorn_server
from webhook_service.app import Service

README = Path(__file__).resolve().parent.parent / "README.md"
REPO = "Codertocat/Hello-World"  # the repository the examples subscribe to: the fixtures'


def code_block(after: str, language: str) -> str:
    """The first ``language`` code block of the README after the line ``after``."""
    text = README.read_text()
    start = text.index(f"\n{after}\n")
    start = text.index("\n", text.index(f"```{language}\n", start)) + 1
    return text[start : text.index("```", start)]


def _as_written(code: str, url: str) -> str:
    """The example with the service's URL and token in place of the README's."""
    assert code.count("http://127.0.0.1:3000") == 1, "one URL to point at the server"
    assert code.count('"change-me"') >= 1, "the token"
    return code.replace("http://127.0.0.1:3000", url).replace('"change-me"', repr(API_TOKEN))


def _delivery(action: str, repository: str, number: int, second: int) -> dict[str, Any]:
    document = payload(
        f"pull_request/{action}", number=number, updated_at=f"2026-12-04T10:00:{second:02d}Z"
    )
    document["repository"]["full_name"] = repository
    return document


def _clients(service: Service) -> list[Any]:
    return list(service.stream._manager.clients.values())


def _subscriptions(service: Service) -> list[list[str]]:
    return sorted(sorted(client.subscriptions) for client in _clients(service))


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(15):
        while not condition():  # noqa: ASYNC110 (the server's state, polled)
            await asyncio.sleep(0.02)


async def test_the_readme_python_client_prints_its_repository_and_resumes(
    database_url: str, tmp_path: Path
) -> None:
    code = code_block("Python:", "python")
    subscribed = {f"repository:{REPO}"}
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        # The example connects through a relay the test can cut, as a network would.
        proxy = TcpProxy("127.0.0.1", int(url.rsplit(":", 1)[1]))
        await proxy.start()
        script = tmp_path / "client.py"
        script.write_text(_as_written(code, f"http://127.0.0.1:{proxy.port}"))
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


async def _page_with_socketio(browser: Browser, url: str) -> tuple[Page, list[str], list[str]]:
    """A page of the service's (so another origin than the relay the example connects
    through) with the vendored socket.io client loaded; what it logs, and its errors."""
    problems: list[str] = []
    page = await open_page(browser, problems)
    logged: list[str] = []
    page.on("console", lambda m: logged.append(m.text) if m.type == "log" else None)
    await page.goto(f"{url}/healthz")
    await page.add_script_tag(url=f"{url}/static/vendor/socket.io/socket.io.min.js")
    return page, logged, problems


def _script(code: str) -> str:
    """An ES module's code as a classic script: ``io`` is the vendored client's global."""
    lines = code.splitlines()
    assert lines[0] == 'import { io } from "socket.io-client";', lines[0]
    return "\n".join(lines[1:])


async def _logged(logged: list[str], count: int) -> list[str]:
    await _until(lambda: len(logged) >= count)
    await asyncio.sleep(0.2)  # anything more would show up now
    return logged[:]


async def test_the_readme_javascript_clients_print_their_events_and_resume(
    database_url: str,
) -> None:
    per_event = _script(code_block("JavaScript (socket.io-client 4):", "js"))
    # The batch example reuses the first one's lastSeen.
    batched = "let lastSeen = 0;\n" + code_block(
        "The same with batches (`batch: true`): one handler for every kind of event.", "js"
    )
    both = [[], [f"repository:{REPO}"]]  # the batch client's (everything) and the other's
    async with (
        uvicorn_server(make_settings(database_url)) as (service, url),
        chromium() as browser,
        httpx.AsyncClient(base_url=url) as http,
    ):
        proxy = TcpProxy("127.0.0.1", int(url.rsplit(":", 1)[1]))
        await proxy.start()
        try:
            relay = f"http://127.0.0.1:{proxy.port}"
            page_a, logged_a, problems_a = await _page_with_socketio(browser, url)
            page_b, logged_b, problems_b = await _page_with_socketio(browser, url)
            await page_a.add_script_tag(content=_as_written(per_event, relay))
            await page_b.add_script_tag(content=_as_written(batched, relay))
            await _until(lambda: _subscriptions(service) == both)

            await post_delivery(http, _delivery("opened", "other/repo", 8, 1))
            await post_delivery(http, _delivery("opened", REPO, 7, 1))
            await _logged(logged_a, 1)
            await _logged(logged_b, 2)

            await proxy.cut()
            await _until(lambda: not _clients(service))
            await post_delivery(http, _delivery("closed", REPO, 7, 2))  # missed live
            await proxy.start()
            await _logged(logged_a, 2)
            await _logged(logged_b, 3)
            await _until(lambda: _subscriptions(service) == both)
            await post_delivery(http, _delivery("reopened", REPO, 7, 3))
            assert await _logged(logged_a, 3) == [
                f"{REPO} 7 null -> OPEN",
                f"{REPO} 7 OPEN -> CLOSED",
                f"{REPO} 7 CLOSED -> OPEN",
            ]
            ids = [event.id for event in await service.store.events_since(0, 100)]
            assert await _logged(logged_b, 4) == [f"pr_status_change {i}" for i in ids]
            assert not [p for p in problems_a + problems_b if p.startswith("page error")]
        finally:
            await proxy.close()
