"""The console with the read-only DASHBOARD_TOKEN (Debian's Chromium against uvicorn):
it sees every view and, having asked the server what the token may do
(``/api/console/access``), offers no writes (Redeliver, Retry); the server refuses
them anyway and nothing was redelivered (checked through the API)."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import console_session
from tests.helpers import make_settings

READER = "test-dashboard-token"


async def test_read_only_token_sees_everything_and_writes_nothing(database_url: str) -> None:
    settings = make_settings(database_url, DASHBOARD_TOKEN=READER)
    async with console_session(settings, READER, "#/deliveries") as console:
        http, page, scenario = console.http, console.page, console.scenario
        await expect(page.locator("#deliveries tbody tr")).to_have_count(5)
        await expect(page.locator("#pulls tbody tr", has_text="#2")).to_have_count(1)
        before = (await http.get(f"/api/deliveries/{scenario.merged}")).json()

        # The console asked the server what the token may do: no write is offered.
        await expect(page.locator("#read-only")).to_have_text("Read-only token")
        await page.evaluate("(g) => { location.hash = '#/deliveries/' + g }", scenario.merged)
        await expect(page.locator("#view-delivery .facts").first).to_be_visible()
        await expect(page.get_by_role("button", name="Redeliver")).to_be_hidden()

        # Health: no Retry is offered.
        await page.get_by_role("link", name="Health").click()
        await expect(page.locator("#view-health .card").first).to_be_visible()
        await expect(page.get_by_role("button", name="Retry")).to_have_count(0)

        # The server refuses a write anyway, and nothing was run again.
        reader = {"Authorization": f"Bearer {READER}"}
        refused = await http.post(f"/api/deliveries/{scenario.merged}/redeliver", headers=reader)
        assert refused.status_code == 403
        after = (await http.get(f"/api/deliveries/{scenario.merged}")).json()
        assert after["changes"] == before["changes"]
        assert (await http.get("/api/console/access", headers=reader)).json() == {"write": False}
        assert (await http.get("/api/console/access")).json() == {"write": True}
    assert console.problems == []
