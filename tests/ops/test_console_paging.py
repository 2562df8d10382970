"""10,000 deliveries in the console: written in one go through the store, then paged
through in the browser ("Load more" follows `next`). Each page is timed in the page
(the request, then the rows added and laid out) and from the test (click to the rows
being there); every page must come in under a second and the later pages must not
be much slower than the first: the list only ever appends. The times are printed
(pytest -s shows them)."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import expect

from tests.browser import chromium, open_page, sign_in
from tests.helpers import API_TOKEN, make_settings
from tests.servers import uvicorn_server
from webhook_service.store import Changes, DeliveryRecord

ROWS = 10_000
PAGES = 8  # the first and seven more
PAGE = 100  # the console's page size (static/js/deliveries.js)


def delivery(n: int, base: datetime) -> DeliveryRecord:
    return DeliveryRecord(
        guid=f"00000000-0000-4000-8000-{n:012d}",
        event="pull_request",
        action="synchronize",
        hook_id=1,
        installation_id=None,
        repository=f"o{n % 20:02d}/r",
        pr_number=n % 500 + 1,
        headers={"X-GitHub-Event": "pull_request"},
        body=b'{"action": "synchronize"}',
        received_at=base + timedelta(milliseconds=n),
        processed_at=base + timedelta(milliseconds=n + 1),
        outcome="applied" if n % 7 else "ignored",
        detail="updated" if n % 7 else "no pull request",
    )


async def test_ten_thousand_deliveries_page_without_slowing_down(database_url: str) -> None:
    problems: list[str] = []
    async with uvicorn_server(make_settings(database_url)) as (service, url), chromium() as browser:
        base = datetime.now(UTC) - timedelta(hours=1)
        records = [delivery(n, base) for n in range(ROWS)]
        async with service.store.transaction() as uow:
            await uow.write(Changes(deliveries=records), datetime.now(UTC))

        page = await open_page(browser, problems)
        await sign_in(page, url, API_TOKEN, "#/deliveries")
        rows = page.locator("#deliveries tbody tr")
        await expect(rows).to_have_count(PAGE)
        newest = records[-1].guid
        await expect(rows.first).to_have_attribute("data-guid", newest)
        walls: list[float] = []
        more = page.get_by_role("button", name="Load more")
        for n in range(2, PAGES + 1):
            started = time.perf_counter()
            await more.click()
            await expect(rows).to_have_count(PAGE * n)
            walls.append((time.perf_counter() - started) * 1000)
        # Newest first, no row twice, none skipped.
        guids: list[str] = await page.evaluate(
            "[...document.querySelectorAll('#deliveries tbody tr')].map(r => r.dataset.guid)"
        )
        assert guids == [r.guid for r in reversed(records)][: PAGE * PAGES]
        timings: list[dict[str, Any]] = await page.evaluate(
            "window.webhookDashboard.views.deliveries.timings"
        )
    assert len(timings) == PAGES
    totals = [t["fetchMs"] + t["renderMs"] for t in timings]
    renders = [t["renderMs"] for t in timings]
    print(
        f"\n{database_url.split(':')[0]}: per page (ms) request+render",
        [round(t) for t in totals],
        "render",
        [round(r, 1) for r in renders],
        "click to rows",
        [round(w) for w in walls],
    )
    assert all(total < 1000 for total in totals), totals
    assert all(wall < 1000 for wall in walls), walls
    # Later pages are not much slower than the first: their median (one page may
    # meet a busy moment of a shared machine), with a floor for timer noise.
    assert statistics.median(totals[1:]) < 3 * max(totals[0], 25.0), totals
    assert statistics.median(renders[1:]) < 3 * max(renders[0], 10.0), renders
    assert problems == []
