"""The console with the read-only DASHBOARD_TOKEN (Debian's Chromium against uvicorn):
it sees every view; its one attempt to write (Redeliver) is answered 403, which the
console says and from then on offers no writes (Redeliver, Retry), also after a
reload; nothing was redelivered (checked through the API)."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import expect

from tests.browser import chromium, console_scenario, open_page, sign_in
from tests.helpers import AUTH, make_settings
from tests.servers import uvicorn_server

READER = "test-dashboard-token"


async def test_read_only_token_sees_everything_and_writes_nothing(tmp_path: Path) -> None:
    problems: list[str] = []
    settings = make_settings(f"sqlite:///{tmp_path / 'console.db'}", DASHBOARD_TOKEN=READER)
    async with (
        uvicorn_server(settings) as (_service, url),
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as http,
        chromium() as browser,
    ):
        scenario = await console_scenario(http)
        page = await open_page(browser, problems)
        await sign_in(page, url, READER, "#/deliveries")
        await expect(page.locator("#deliveries tbody tr")).to_have_count(5)
        await expect(page.locator("#pulls tbody tr", has_text="#2")).to_have_count(1)
        before = (await http.get(f"/api/deliveries/{scenario.merged}")).json()

        await page.evaluate("(g) => { location.hash = '#/deliveries/' + g }", scenario.merged)
        redeliver = page.get_by_role("button", name="Redeliver")
        await redeliver.click()
        result = page.locator(".redeliver-result")
        await expect(result).to_have_attribute("data-outcome", "read-only")
        await expect(result).to_contain_text("This token is read-only")
        await expect(redeliver).to_be_hidden()
        await expect(page.locator("#read-only")).to_have_text("Read-only token")
        after = (await http.get(f"/api/deliveries/{scenario.merged}")).json()
        assert after["changes"] == before["changes"]  # nothing was run again

        # Health: no Retry is offered.
        await page.get_by_role("link", name="Health").click()
        await expect(page.locator("#view-health .card").first).to_be_visible()
        await expect(page.get_by_role("button", name="Retry")).to_have_count(0)

        # Known on the next visit too: no write is offered at all.
        await page.reload()
        await page.evaluate("(g) => { location.hash = '#/deliveries/' + g }", scenario.merged)
        await expect(page.locator("#read-only")).to_be_visible()
        await expect(page.locator("#view-delivery .facts").first).to_be_visible()
        await expect(page.get_by_role("button", name="Redeliver")).to_be_hidden()
        # And the server refuses it anyway.
        refused = await http.post(
            f"/api/deliveries/{scenario.merged}/redeliver",
            headers={"Authorization": f"Bearer {READER}"},
        )
        assert refused.status_code == 403
    # The browser logs the one 403 answer; nothing else went wrong.
    assert [p for p in problems if "403" not in p] == []
    assert len(problems) == 1
