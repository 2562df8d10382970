"""The dashboard page in a real browser, against the app under a real uvicorn server.

The browser is Debian's Chromium (``/usr/bin/chromium``, which scripts/test installs
with apt-get), driven by Playwright for Python with ``executable_path``: no browser is
ever downloaded (``playwright install`` is not used). A missing Chromium fails these
tests with a message saying so; it never skips them.

A screenshot of the page after the live updates is written to ``artifacts/`` at the
repository root (``dashboard.png`` on SQLite).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, Route, expect

from tests.browser import WAIT_MS, chromium, open_page
from tests.helpers import API_TOKEN, AUTH, make_settings, payload, post_delivery
from tests.servers import uvicorn_server
from webhook_service.app import create_app
from webhook_service.ops import dashboard
from webhook_service.store import utcnow

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
REPO = "Codertocat/Hello-World"
OTHER_REPO = "octo-org/widgets"


async def enter_token(page: Page, token: str) -> None:
    await expect(page.locator("#token-panel")).to_be_visible()
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Connect").click()


async def stored_tokens(page: Page) -> Any:
    return await page.evaluate("Object.keys(localStorage).filter(k => k.endsWith('token'))")


async def watch_connection_states(page: Page) -> None:
    """Record every state the connection indicator leaves (read by connection_states)."""
    await page.evaluate(
        """() => {
          window.__states = [];
          new MutationObserver((records) => {
            for (const record of records) window.__states.push(record.oldValue);
          }).observe(document.getElementById("connection"),
                     {attributes: true, attributeFilter: ["data-state"], attributeOldValue: true});
        }"""
    )


async def connection_states(page: Page) -> list[str]:
    """The states left since the last call."""
    states: list[str] = await page.evaluate("window.__states.splice(0)")
    return states


async def drop_transport(page: Page) -> None:
    """Close the connection's transport as a network failure would; the client
    reconnects by itself 1.5 s later."""
    await page.evaluate(
        """() => {
          const manager = window.webhookDashboard.state.socket.io;
          manager.randomizationFactor(0);
          manager.reconnectionDelay(1500);
          manager.reconnectionDelayMax(1500);
          manager.engine.close();
        }"""
    )


async def last_event_id(page: Page) -> Any:
    return await page.evaluate("window.webhookDashboard.state.lastEventId")


async def newest_event_id(http: httpx.AsyncClient) -> int:
    events = (await http.get("/api/events", params={"since": 0, "limit": 5000})).json()
    return int(events["last_id"])


def pr_row(page: Page, repository: str, number: int) -> Any:
    return page.locator(f'#pulls tbody tr[data-key="{repository}#{number}"]')


def other_repo_delivery(name: str, number: int) -> dict[str, Any]:
    document = payload(name, number=number, id=900_000 + number, title="Widgets: faster gears")
    document["pull_request"]["html_url"] = f"https://github.com/{OTHER_REPO}/pull/{number}"
    document["repository"]["full_name"] = OTHER_REPO
    return document


async def test_dashboard_follows_deliveries_live(database_url: str, backend: str) -> None:
    problems: list[str] = []
    lists_loaded: list[str] = []
    async with (
        uvicorn_server(make_settings(database_url)) as (service, url),
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as http,
        chromium() as browser,
    ):
        task = await http.post(
            "/api/tasks",
            json={"title": "Update the README", "repository": REPO, "branch": "docs"},
        )
        assert task.status_code == 201, task.text
        task_id = task.json()["id"]

        page = await open_page(browser, problems)
        page.on(
            "request",
            lambda request: (
                lists_loaded.append(request.url)
                if re.search(r"/api/(pulls|tasks)\?", request.url)
                else None
            ),
        )
        response = await page.goto(f"{url}/")
        assert response is not None and response.ok
        policy = (await response.all_headers())["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy

        await enter_token(page, API_TOKEN)
        connection = page.locator("#connection")
        await expect(connection).to_have_attribute("data-state", "live")
        await expect(connection).to_have_text("Live")
        await expect(page.locator("#tasks tbody tr")).to_have_count(1)
        await expect(page.locator("#pulls-empty")).to_be_visible()
        # Survives only as long as the page is not reloaded.
        await page.evaluate("window.__sameDocument = true")

        # Opened: a new row appears, linked to the task through its head branch.
        head = {**payload("pull_request/opened")["pull_request"]["head"], "ref": f"task/{task_id}"}
        opened = await post_delivery(http, payload("pull_request/opened", head=head))
        assert opened.status_code == 200, opened.text
        row = pr_row(page, REPO, 2)
        await expect(row).to_have_attribute("data-status", "OPEN")
        await expect(row.locator(".badge").first).to_have_text("OPEN")
        # The rest of the row comes from GET /api/pulls/{owner}/{repo}/{number}.
        await expect(row).to_contain_text("Update the README with new information.")
        await expect(row.get_by_role("link", name="#2")).to_have_attribute(
            "href", "https://github.com/Codertocat/Hello-World/pull/2"
        )
        task_link = row.get_by_role("link", name="Update the README")
        await expect(task_link).to_have_attribute("href", f"#task-{task_id}")
        task_row = page.locator(f'#tasks tbody tr[data-key="{task_id}"]')
        await expect(task_row).to_have_attribute("data-status", "CODE_REVIEWING")

        # Merged: the same row changes in place.
        merged = await post_delivery(http, payload("pull_request/closed.merged", head=head))
        assert merged.status_code == 200, merged.text
        await expect(row).to_have_attribute("data-status", "MERGED")
        await expect(row.locator(".badge").first).to_have_text("MERGED")
        await expect(task_row).to_have_attribute("data-status", "DONE")
        await expect(task_row.get_by_role("link", name=re.compile(r"#2"))).to_be_visible()
        await expect(connection).to_have_attribute("data-state", "live")

        # A draft says so.
        draft = await post_delivery(
            http, payload("pull_request/opened", number=4, id=4, draft=True, title="WIP: docs")
        )
        assert draft.status_code == 200, draft.text
        await expect(pr_row(page, REPO, 4).locator(".badge.draft")).to_have_text("draft")
        await expect(row.locator(".badge.draft")).to_have_count(0)

        # A second repository, then the filter narrows the tables to one of them.
        other = await post_delivery(http, other_repo_delivery("pull_request/opened", 7))
        assert other.status_code == 200, other.text
        await expect(pr_row(page, OTHER_REPO, 7)).to_have_attribute("data-status", "OPEN")
        await expect(page.locator("#pulls tbody tr")).to_have_count(3)
        await page.get_by_label("Repository").select_option(OTHER_REPO)
        await expect(pr_row(page, REPO, 2)).to_be_hidden()
        await expect(pr_row(page, OTHER_REPO, 7)).to_be_visible()
        await expect(task_row).to_be_hidden()
        await expect(page.locator("#pulls-count")).to_have_text("1 of 3 shown")
        # The stream is narrowed to that repository: another one's events do not come
        # (events arrive in order, so #8's row proves #3's event was not sent)...
        await page.wait_for_function(
            f"window.webhookDashboard.state.subscribed === {OTHER_REPO!r}", timeout=WAIT_MS
        )
        third = await post_delivery(http, payload("pull_request/opened", number=3, id=3))
        eighth = await post_delivery(http, other_repo_delivery("pull_request/opened", 8))
        assert third.status_code == eighth.status_code == 200
        await expect(pr_row(page, OTHER_REPO, 8)).to_be_visible()
        await expect(pr_row(page, REPO, 3)).to_have_count(0)
        # ... and widening it again reloads the lists, which have it.
        await page.get_by_label("Repository").select_option("")
        await expect(pr_row(page, REPO, 3)).to_have_attribute("data-status", "OPEN")
        await expect(pr_row(page, REPO, 2)).to_be_visible()
        await expect(page.locator("#pulls tbody tr")).to_have_count(5)
        # Widening reloaded the lists; the time of the last event is kept.
        await expect(pr_row(page, REPO, 2).locator("time")).to_have_text(
            re.compile(r"just now|\d+ s ago")
        )
        await expect(connection).to_have_attribute("data-state", "live")

        # Resume: drop the transport, and have an event emitted while disconnected.
        # The reconnection asks for the events after the last one applied and gets it
        # from the server, without reloading the lists.
        await watch_connection_states(page)
        await drop_transport(page)
        await expect(connection).to_have_attribute("data-state", "reconnecting")
        loads_before = len(lists_loaded)
        closed = await post_delivery(http, other_repo_delivery("pull_request/closed", 7))
        assert closed.status_code == 200, closed.text
        # Committed while the page was away.
        assert await connection.get_attribute("data-state") == "reconnecting"
        await expect(pr_row(page, OTHER_REPO, 7)).to_have_attribute("data-status", "CLOSED")
        await expect(connection).to_have_attribute("data-state", "live")
        assert "reconnecting" in await connection_states(page)
        assert len(lists_loaded) == loads_before, "the reconnection reloaded the lists"
        assert await last_event_id(page) == await newest_event_id(http)

        # Resync: the client's cursor is older than what the server still keeps (all
        # emitted events pruned, as retention does): the server says so, the page
        # reloads its lists and goes on live from the server's newest event.
        await service.store.prune(utcnow() + timedelta(days=1))
        await page.evaluate("window.webhookDashboard.state.lastEventId = 1")
        await drop_transport(page)
        await expect(connection).to_have_attribute("data-state", "reconnecting")
        loads_before = len(lists_loaded)
        closed = await post_delivery(http, other_repo_delivery("pull_request/closed", 8))
        assert closed.status_code == 200, closed.text
        assert await connection.get_attribute("data-state") == "reconnecting"
        await expect(pr_row(page, OTHER_REPO, 8)).to_have_attribute("data-status", "CLOSED")
        await expect(connection).to_have_attribute("data-state", "live")
        assert "resync" in await connection_states(page)
        assert len(lists_loaded) > loads_before, "resync_required did not reload the lists"
        assert await last_event_id(page) == await newest_event_id(http)
        # Live again after the resync.
        closed_draft = await post_delivery(
            http, payload("pull_request/closed", number=4, id=4, draft=True, title="WIP: docs")
        )
        assert closed_draft.status_code == 200, closed_draft.text
        await expect(pr_row(page, REPO, 4)).to_have_attribute("data-status", "CLOSED")
        assert await last_event_id(page) == await newest_event_id(http)

        assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
        await page.locator("#pulls").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        name = "dashboard.png" if backend == "sqlite" else f"dashboard-{backend}.png"
        await page.screenshot(path=ARTIFACTS / name, full_page=True)

        # "Forget token" asks again and keeps nothing.
        await page.get_by_role("button", name="Forget token").click()
        await expect(page.locator("#token-panel")).to_be_visible()
        await expect(page.locator("#content")).to_be_hidden()
        assert await stored_tokens(page) == []

    assert problems == []


async def test_dashboard_loads_every_page_of_the_lists(tmp_path: Path) -> None:
    """The lists are loaded by following ``next``: with the page size cut to 2 (the
    requests rewritten on their way), 5 PRs and 3 tasks take 3 and 2 requests."""
    problems: list[str] = []
    requested: list[str] = []

    async def small_pages(route: Route) -> None:
        url = route.request.url.replace("limit=5000", "limit=2")
        requested.append(url)
        await route.continue_(url=url)

    settings = make_settings(f"sqlite:///{tmp_path / 'dashboard.db'}")
    async with (
        uvicorn_server(settings) as (_service, url),
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as http,
        chromium() as browser,
    ):
        for n in range(1, 4):
            created = await http.post("/api/tasks", json={"title": f"task {n}"})
            assert created.status_code == 201, created.text
        for n in range(1, 6):
            opened = await post_delivery(http, payload("pull_request/opened", number=n, id=n))
            assert opened.status_code == 200, opened.text
        page = await open_page(browser, problems)
        await page.route(re.compile(r"/api/(pulls|tasks)\?"), small_pages)
        await page.goto(f"{url}/")
        await enter_token(page, API_TOKEN)
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#pulls tbody tr")).to_have_count(5)
        await expect(page.locator("#tasks tbody tr")).to_have_count(3)
        for n in range(1, 6):
            await expect(pr_row(page, REPO, n)).to_be_visible()
    assert len([u for u in requested if "/api/pulls?" in u]) == 3, requested
    assert len([u for u in requested if "/api/tasks?" in u]) == 2, requested
    assert all("limit=2" in u for u in requested)
    assert sum("cursor=" in u for u in requested) == 3  # every request but the first two
    assert problems == []


async def test_dashboard_refuses_a_wrong_token(tmp_path: Path) -> None:
    problems: list[str] = []
    settings = make_settings(f"sqlite:///{tmp_path / 'dashboard.db'}")
    async with uvicorn_server(settings) as (_service, url), chromium() as browser:
        page = await open_page(browser, problems)
        await page.goto(f"{url}/")
        await enter_token(page, "not-the-token")
        connection = page.locator("#connection")
        await expect(connection).to_have_attribute("data-state", "refused")
        await expect(connection).to_have_text("Token refused")
        panel = page.locator("#token-panel")
        await expect(panel).to_be_visible()
        await expect(panel).to_contain_text("The server refused this token")
        await expect(page.locator("#content")).to_be_hidden()
        assert await stored_tokens(page) == []
        await page.screenshot(path=_artifact("dashboard-refused.png"))

        # A token that was stored and no longer works: refused on the next visit too.
        await page.evaluate(
            "localStorage.setItem('webhook-service.dashboard.token', 'stale-token')"
        )
        await page.reload()
        await expect(connection).to_have_attribute("data-state", "refused")

        # The right token then connects.
        await enter_token(page, API_TOKEN)
        await expect(connection).to_have_attribute("data-state", "live")
        await expect(page.locator("#pulls-empty")).to_be_visible()

    # A refused Socket.IO handshake is an answer, not an error in the page.
    assert problems == []


async def test_dashboard_takes_the_token_once_from_the_url_fragment(tmp_path: Path) -> None:
    """A bookmark or a wall screen: /#token=... signs in, is stored as a typed token is,
    and leaves the address bar (a fragment never reaches the server)."""
    problems: list[str] = []
    settings = make_settings(f"sqlite:///{tmp_path / 'dashboard.db'}")
    async with uvicorn_server(settings) as (_service, url), chromium() as browser:
        page = await open_page(browser, problems)
        await page.goto(f"{url}/#token={API_TOKEN}")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        assert page.url == f"{url}/"
        assert await page.evaluate("location.hash") == ""
        stored = "localStorage.getItem('webhook-service.dashboard.token')"
        assert await page.evaluate(stored) == API_TOKEN
        await page.reload()  # kept, as a typed one is
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

        await page.goto("about:blank")  # (a fragment alone would not load the page again)
        await page.goto(f"{url}/#token=not-the-token")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "refused")
        assert page.url == f"{url}/"
        assert await stored_tokens(page) == []
    assert problems == []


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


async def test_page_and_files_are_served_without_a_token(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'dashboard.db'}")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "connect-src 'self' ws://testserver wss://testserver" in policy
        assert "unsafe-inline" not in policy
        # Everything the page loads is local.
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith(("/static/", "#", "data:")) for s in sources), sources
        for path in sources:
            if path.startswith("/static/"):
                assert (await http.get(path)).status_code == 200, path
        client = await http.get("/static/vendor/socket.io/socket.io.min.js")
        assert client.text.startswith("/*!\n * Socket.IO v4.")
        licence = await http.get("/static/vendor/socket.io/LICENSE")
        assert "MIT License" in licence.text
        # The API stays behind the token.
        assert (await http.get("/api/pulls")).status_code == 401


def test_policy_does_not_repeat_a_strange_host() -> None:
    assert "ws://" not in dashboard.content_security_policy("evil.example; script-src *")
    assert "ws://127.0.0.1:3000" in dashboard.content_security_policy("127.0.0.1:3000")
    assert "ws://[::1]:8080" in dashboard.content_security_policy("[::1]:8080")
    assert "connect-src 'self';" in dashboard.content_security_policy(None)


def test_no_cdn_references() -> None:
    static = dashboard.STATIC_DIR
    for path in (static / "index.html", static / "dashboard.js", static / "dashboard.css"):
        text = path.read_text()
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", text), path
        assert "cdn" not in text.lower(), path
