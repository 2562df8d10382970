"""Debian's Chromium (``/usr/bin/chromium``, which scripts/test installs with apt-get),
driven by Playwright for Python with ``executable_path``: no browser is ever downloaded
(``playwright install`` is not used). A missing Chromium fails the tests that use it,
with a message saying so; it never skips them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from tests.helpers import AUTH, payload, post_delivery
from tests.servers import uvicorn_server
from webhook_service.config import Settings

CHROMIUM = Path(os.environ.get("DASHBOARD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 10_000  # every browser-side wait is bounded by this
expect.set_options(timeout=WAIT_MS)


def chromium_missing() -> bool:
    return not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK))


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if chromium_missing():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard test needs Debian's Chromium "
            "(`apt-get install -y chromium`; scripts/test installs it when run as root)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(browser: Browser, problems: list[str]) -> Page:
    """A fresh context (own localStorage) at 1280x800; page errors are collected."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return page


# -- the operator's console (tests/ops/test_console_*.py) ------------------------------

#: Where the console tests save their screenshots: artifacts/console/ (ignored by git),
#: or docs/console/ (what README shows) with UPDATE_SCREENSHOTS=1, so that a test run
#: does not change tracked files unless asked to.
SCREENSHOTS = (
    Path(__file__).resolve().parents[1]
    / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "artifacts")
    / "console"
)


async def sign_in(page: Page, url: str, token: str, route: str = "") -> None:
    """Open the console signed in (the token given once in the fragment), live, at
    ``route`` (``#/deliveries``, ...)."""
    await page.goto(f"{url}/#token={token}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    if route:
        await page.evaluate("(route) => { location.hash = route; }", route)


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar stays on top
    await page.screenshot(path=SCREENSHOTS / name, full_page=True)


@dataclass
class ConsoleScenario:
    """What ``console_scenario`` posted: a task, its PR opened and merged, a stale
    delivery, a duplicate, a draft whose title is markup, and a ping."""

    task_id: str
    opened: str
    merged: str
    stale: str
    draft: str
    ping: str


CONSOLE_REPO = "Codertocat/Hello-World"
HOSTILE_TITLE = '<img src=x onerror="window.__owned = true">WIP'


async def console_scenario(http: httpx.AsyncClient) -> ConsoleScenario:
    """Real deliveries, signed and posted, with every outcome the console colours."""
    task = await http.post(
        "/api/tasks",
        json={
            "title": "Update the README",
            "repository": CONSOLE_REPO,
            "branch": "docs",
            "worktree_path": "/nonexistent/worktrees/docs",
        },
    )
    assert task.status_code == 201, task.text
    task_id = task.json()["id"]
    head = {**payload("pull_request/opened")["pull_request"]["head"], "ref": f"task/{task_id}"}
    guids = {name: str(uuid.uuid4()) for name in ("opened", "merged", "stale", "draft", "ping")}
    posts = [
        (payload("pull_request/opened", head=head), "pull_request", guids["opened"]),
        (payload("pull_request/closed.merged", head=head), "pull_request", guids["merged"]),
        # The opening again, after the merge: older than what is stored.
        (payload("pull_request/opened", head=head), "pull_request", guids["stale"]),
        # The merge again, under the same GUID: a duplicate.
        (payload("pull_request/closed.merged", head=head), "pull_request", guids["merged"]),
        (
            payload("pull_request/opened", number=4, id=4, draft=True, title=HOSTILE_TITLE),
            "pull_request",
            guids["draft"],
        ),
        ({"zen": "Keep it logically awesome.", "hook_id": 1}, "ping", guids["ping"]),
    ]
    for document, event, guid in posts:
        answer = await post_delivery(http, document, event=event, guid=guid)
        assert answer.status_code < 300, answer.text
    return ConsoleScenario(task_id=task_id, **guids)


@dataclass
class ConsoleSession:
    """The app under uvicorn with ``console_scenario`` posted, an API client on it, and
    a Chromium page signed in to its console; the page's errors go to ``problems``."""

    url: str
    http: httpx.AsyncClient
    page: Page
    scenario: ConsoleScenario
    problems: list[str]


@asynccontextmanager
async def console_session(
    settings: Settings, token: str, route: str = ""
) -> AsyncIterator[ConsoleSession]:
    """A :class:`ConsoleSession`, signed in with ``token`` at ``route``."""
    problems: list[str] = []
    async with (
        uvicorn_server(settings) as (_service, url),
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as http,
        chromium() as browser,
    ):
        scenario = await console_scenario(http)
        page = await open_page(browser, problems)
        await sign_in(page, url, token, route)
        yield ConsoleSession(url, http, page, scenario, problems)
