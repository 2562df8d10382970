"""A PR's timeline in the console (Debian's Chromium against uvicorn, real deliveries):
reached from the PR table (a link, or Enter on the row) and from a delivery, newest
first, with each observation's source, what was observed, the decision, the PR and
task transitions, follow-ups and event ids; a new observation arrives live. A
screenshot goes to artifacts/console/timeline.png (docs/console/ with
UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import CONSOLE_REPO, console_session, screenshot
from tests.helpers import API_TOKEN, make_settings, payload, post_delivery


async def test_timeline_from_the_pr_table_and_from_a_delivery(database_url: str) -> None:
    settings = make_settings(database_url)
    async with console_session(settings, API_TOKEN) as console:
        url, http, page, scenario = console.url, console.http, console.page, console.scenario
        pr_row = page.locator(f'#pulls tbody tr[data-key="{CONSOLE_REPO}#2"]')
        await expect(pr_row).to_have_attribute("data-status", "MERGED")

        # Enter on the row opens its timeline.
        await pr_row.focus()
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(f"{url}/#/pulls/{CONSOLE_REPO}/2")
        title = page.get_by_role("heading", name=f"Timeline of {CONSOLE_REPO}#2")
        await expect(title).to_be_focused()
        items = page.get_by_role("list", name="Observations, newest first").locator("> li")
        await expect(items).to_have_count(3)  # opened, merged, the stale opening
        newest, merge, first = items.nth(0), items.nth(1), items.nth(2)
        await expect(newest.locator(".decision-terminal")).to_have_text("terminal")
        await expect(newest).to_contain_text("webhook")
        await expect(newest.get_by_role("link", name=f"Delivery {scenario.stale}")).to_be_visible()
        await expect(merge.locator(".decision-transitioned")).to_be_visible()
        await expect(merge.locator(".transition").first).to_have_text("OPEN → MERGED")
        await expect(merge).to_contain_text("CODE_REVIEWING → DONE")
        await expect(merge).to_contain_text("cleanup_worktree")
        await expect(merge).to_contain_text("#")  # its event ids
        events = (await http.get(f"/api/pulls/{CONSOLE_REPO}/2/timeline")).json()
        ids = events["observations"][1]["changes"]["event_ids"]
        assert ids, events
        await expect(merge).to_contain_text(", ".join(f"#{i}" for i in ids))
        await expect(first.locator(".decision-created")).to_be_visible()
        await expect(page.locator("#timeline-pr")).to_contain_text("Update the README")

        # Live: a new observation of this PR comes on top.
        again = await post_delivery(
            http,
            payload(
                "pull_request/closed.merged",
                title="Update the README, again",
                updated_at="2019-05-15T16:00:00Z",
            ),
        )
        assert again.status_code == 200, again.text
        await expect(items).to_have_count(4, timeout=15_000)
        await expect(items.first.locator(".decision-updated")).to_be_visible()
        await screenshot(page, "timeline.png")

        # Escape goes back to the board, to the row it came from.
        await page.keyboard.press("Escape")
        await expect(pr_row).to_be_focused()

        # From a delivery: its PR link opens the same timeline.
        await page.evaluate("(g) => { location.hash = '#/deliveries/' + g }", scenario.opened)
        await page.get_by_role("link", name="#2 — timeline").click()
        await expect(title).to_be_visible()
        await expect(items).to_have_count(4)

        # The table's Timeline link, for a PR with one observation.
        await page.get_by_role("link", name="Pull requests & tasks").click()
        await page.get_by_role("link", name=f"Timeline of {CONSOLE_REPO} pull request 4").click()
        await expect(items).to_have_count(1)
        await expect(page.locator("#timeline-pr .badge.draft")).to_be_visible()
    assert console.problems == []
