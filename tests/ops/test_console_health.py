"""The console's health view (Debian's Chromium against uvicorn, a fake GitHub on
loopback so that the sync worker really polls): the worker's state and cycles, each
credential's budgets as SVG gauges, per-minute charts of deliveries by outcome and of
poll requests, the outbox, connected clients, and a failing clean-up job whose Retry
makes it due now (checked through the API afterwards). A screenshot goes to
artifacts/console/health.png (docs/console/ with UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import asyncio
import re

import httpx
from playwright.async_api import expect

from tests.browser import CONSOLE_REPO, chromium, console_scenario, open_page, screenshot, sign_in
from tests.helpers import API_TOKEN, AUTH, fake_github, make_settings, until
from tests.servers import uvicorn_server

GITHUB_TOKEN = "ghp_console"


async def failing_cleanups(http: httpx.AsyncClient) -> list[dict[str, object]]:
    health = (await http.get("/api/console/health")).json()
    jobs: list[dict[str, object]] = health["cleanup_failing"]
    return jobs


async def test_health_gauges_charts_and_retry(database_url: str) -> None:
    problems: list[str] = []
    async with fake_github(GITHUB_TOKEN, CONSOLE_REPO) as gh:
        settings = make_settings(
            database_url,
            GITHUB_TOKEN=GITHUB_TOKEN,
            GITHUB_API_URL=gh.url,
            GITHUB_REPOSITORIES=CONSOLE_REPO,
            SYNC_INTERVAL="2",
            SYNC_DISCOVERY="off",
        )
        async with (
            uvicorn_server(settings) as (service, url),
            httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as http,
            chromium() as browser,
        ):
            scenario = await console_scenario(http)
            # The merge queued the task's worktree clean-up; WORKTREE_ROOT is not set,
            # so the runner refuses it: a failing job.
            async with asyncio.timeout(20):
                while True:
                    if await failing_cleanups(http):
                        break
                    await asyncio.sleep(0.2)
            worker = service.worker
            assert worker is not None
            await until(lambda: worker.get_stats()["sync_count"] > 0, 20)
            assert service.minutes is not None
            await service.minutes.flush()  # the counts reach the charts now, not in 15 s

            page = await open_page(browser, problems)
            await sign_in(page, url, API_TOKEN, "#/health")
            view = page.locator("#view-health")
            await expect(page.get_by_role("heading", name="Health")).to_be_focused()
            sync = view.locator('[data-part="sync"]')
            await expect(sync.locator(".badge")).to_have_text("running")
            await expect(sync).to_contain_text("Last cycle")
            # Gauges: REST and GraphQL, secondary and primary, of the one credential.
            budget = view.locator(".budget")
            await expect(budget).to_have_count(1)
            gauges = budget.get_by_role("img")
            await expect(gauges.first).to_have_attribute(
                "aria-label", re.compile(r"REST secondary: \d+ of \d+ used")
            )
            assert await gauges.count() >= 4
            await expect(
                budget.get_by_role("img", name=re.compile("GraphQL primary"))
            ).to_be_visible()
            # Charts: what was delivered, by outcome, and the poller's requests.
            deliveries = view.get_by_role("img", name=re.compile("^Deliveries per minute"))
            await expect(deliveries).to_have_attribute("aria-label", re.compile(r"applied [1-9]"))
            await expect(deliveries).to_have_attribute("aria-label", re.compile(r"stale 1"))
            requests = view.get_by_role("img", name=re.compile("^Requests to GitHub"))
            await expect(requests).to_have_attribute("aria-label", re.compile(r"REST [1-9]"))
            await expect(view.locator('[data-part="n-Outbox-backlog"] .big')).to_have_text("0")
            await expect(view.locator('[data-part="n-Connected-clients"] .big')).to_have_text(
                re.compile(r"[1-9]")
            )

            # The failing clean-up, with its error; Retry makes it due now.
            job = view.locator(f'#cleanups tr[data-task-id="{scenario.task_id}"]')
            await expect(job).to_contain_text("WORKTREE_ROOT is not set")
            before = (await failing_cleanups(http))[0]
            await screenshot(page, "health.png")
            await job.get_by_role(
                "button", name="Retry the clean-up of /nonexistent/worktrees/docs"
            ).click()
            await expect(job.locator(".retry-result")).to_contain_text("Queued now")
            # The runner took it again (and, WORKTREE_ROOT still unset, refused again).
            async with asyncio.timeout(20):
                while True:
                    after = (await failing_cleanups(http))[0]
                    if after["attempts"] != before["attempts"]:
                        break
                    await asyncio.sleep(0.2)
            assert int(str(after["attempts"])) == int(str(before["attempts"])) + 1
    assert problems == []
