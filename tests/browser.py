"""Debian's Chromium (``/usr/bin/chromium``, which scripts/test installs with apt-get),
driven by Playwright for Python with ``executable_path``: no browser is ever downloaded
(``playwright install`` is not used). A missing Chromium fails the tests that use it,
with a message saying so; it never skips them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

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
