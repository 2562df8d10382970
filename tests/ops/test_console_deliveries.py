"""The console's deliveries in a real browser (Debian's Chromium, see tests/browser.py)
against the app under uvicorn, with real signed deliveries: the list with its colours,
filters and live rows, one delivery (headers, JSON body, what it changed), Redeliver,
and the keyboard. Screenshots of the list and of a delivery go to artifacts/console/
(docs/console/ with UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from playwright.async_api import Locator, expect

from tests.browser import CONSOLE_REPO, HOSTILE_TITLE, console_session, screenshot
from tests.helpers import API_TOKEN, make_settings, payload, post_delivery


async def test_deliveries_list_detail_redeliver_and_keyboard(database_url: str) -> None:
    settings = make_settings(database_url)
    async with console_session(settings, API_TOKEN) as console:
        url, http, page, scenario = console.url, console.http, console.page, console.scenario
        # The tabs: Tab reaches them, Enter follows one.
        tab = page.get_by_role("navigation", name="Views").get_by_role("link", name="Deliveries")
        await tab.focus()
        await page.keyboard.press("Enter")
        await expect(tab).to_have_attribute("aria-current", "page")
        await expect(page.get_by_role("heading", name="Deliveries")).to_be_focused()

        rows = page.locator("#deliveries tbody tr")
        await expect(rows).to_have_count(5)  # the duplicate is one row, attempts 2

        def row(guid: str) -> Locator:
            return page.locator(f'#deliveries tbody tr[data-guid="{guid}"]')

        await expect(rows.first).to_have_attribute("data-guid", scenario.ping)  # newest first
        await expect(row(scenario.opened)).to_have_attribute("data-outcome", "applied")
        await expect(row(scenario.stale)).to_have_attribute("data-outcome", "stale")
        await expect(row(scenario.stale).locator(".badge.outcome-stale")).to_have_text("stale")
        await expect(row(scenario.ping)).to_have_attribute("data-outcome", "ignored")
        await expect(row(scenario.merged)).to_contain_text("received 2 times")
        await expect(row(scenario.merged).locator(".decision-transitioned")).to_be_visible()
        await screenshot(page, "deliveries.png")

        # Filters: the server's.
        filters = page.get_by_role("form", name="Filter deliveries")
        await filters.get_by_label("Outcome").select_option("stale")
        await filters.get_by_role("button", name="Filter").click()
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-guid", scenario.stale)
        await filters.get_by_role("button", name="Clear").click()
        await expect(rows).to_have_count(5)
        await filters.get_by_label("PR number").fill("4")
        await filters.get_by_label("Repo").fill(CONSOLE_REPO)
        await filters.get_by_label("PR number").press("Enter")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-guid", scenario.draft)
        await filters.get_by_label("Event").fill("ping")
        await filters.get_by_label("PR number").fill("")
        await filters.get_by_label("Repo").fill("")
        await filters.get_by_role("button", name="Filter").click()
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-guid", scenario.ping)
        await filters.get_by_role("button", name="Clear").click()
        await expect(rows).to_have_count(5)

        # Live: a delivery that changes nothing sends no event; it comes all the same
        # (re-asked with since= on events and every 10 s), on top.
        edited = await post_delivery(http, payload("pull_request/opened", number=9, id=9))
        assert edited.status_code == 200, edited.text
        await expect(rows).to_have_count(6, timeout=15_000)
        await expect(rows.first).to_contain_text("#9")

        # Keyboard: the first row, arrow down to the merge, Enter opens it.
        await rows.first.focus()
        for _ in range(10):
            if await page.evaluate("document.activeElement.dataset.guid") == scenario.merged:
                break
            await page.keyboard.press("ArrowDown")
        await expect(row(scenario.merged)).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(f"{url}/#/deliveries/{scenario.merged}")
        detail = page.locator("#view-delivery")
        await expect(
            detail.get_by_role("heading", name=f"Delivery {scenario.merged}")
        ).to_be_focused()
        await expect(detail.locator(".facts").first).to_contain_text("closed")
        headers = detail.get_by_role("table", name="Headers")
        signature = headers.get_by_role("row", name="x-hub-signature-256")
        await expect(signature.locator(".badge.redacted")).to_have_text("redacted")
        await expect(headers).to_contain_text("x-github-event")
        viewer = detail.get_by_role("group", name="JSON body")
        await expect(viewer).to_contain_text('"action"')
        await expect(viewer).to_contain_text('"closed"')
        # Collapsible: the pull_request branch closes and opens from the keyboard.
        branch = viewer.locator("summary", has_text='"pull_request"').first
        await branch.focus()
        is_open = "(summary) => summary.parentElement.open"
        assert await branch.evaluate(is_open) is True
        await page.keyboard.press("Enter")
        assert await branch.evaluate(is_open) is False
        await page.keyboard.press("Enter")
        assert await branch.evaluate(is_open) is True
        # What it changed: the transition, with links to the PR's timeline.
        changed = detail.locator(".detail-part", has_text="What it changed")
        await expect(changed.locator(".obs")).to_have_count(1)
        await expect(changed.locator(".obs").first).to_contain_text("MERGED")
        await expect(changed.locator(".obs").first).to_contain_text("cleanup_worktree")
        await expect(detail.get_by_role("link", name="#2 — timeline")).to_have_attribute(
            "href", f"#/pulls/{CONSOLE_REPO}/2"
        )
        await screenshot(page, "delivery.png")

        # Redeliver: runs it through the core again; the API then shows one more
        # observation of it, unchanged (the merge is already stored).
        before = (await http.get(f"/api/deliveries/{scenario.merged}")).json()
        await detail.get_by_role("button", name="Redeliver").click()
        result = detail.locator(".redeliver-result")
        await expect(result).to_have_attribute("data-outcome", "applied")
        await expect(result).to_contain_text("unchanged")
        after = (await http.get(f"/api/deliveries/{scenario.merged}")).json()
        assert len(after["changes"]) == len(before["changes"]) + 1
        assert (
            after["changes"][-1]["decision"] == "unchanged"
            or after["changes"][0]["decision"] == "unchanged"
        )

        # Escape closes the detail: back to the list, the row it came from focused.
        await page.keyboard.press("Escape")
        await expect(page).to_have_url(f"{url}/#/deliveries")
        await expect(row(scenario.merged)).to_be_focused()

        # Markup in a payload is shown as text, never run.
        await page.evaluate("(guid) => { location.hash = '#/deliveries/' + guid }", scenario.draft)
        draft_view = page.get_by_role("group", name="JSON body")
        await expect(draft_view).to_contain_text(HOSTILE_TITLE[:12])
        assert await page.locator("#view-delivery img").count() == 0
        assert await page.evaluate("window.__owned") is None
    assert console.problems == []
