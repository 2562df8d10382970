"""Replaying recorded deliveries over HTTP and offline, with bad fixtures and a
refusing target."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

from tests.helpers import AUTH, SECRET, make_settings, reconciling, running_app
from tests.servers import free_port, uvicorn_server
from webhook_service.ingest.fixtures import fixtures_root
from webhook_service.ingest.replay import collect, record, redeliver, replay_http, replay_offline

PR_FIXTURES = [
    str(fixtures_root() / "pull_request" / name)
    for name in ("opened.json", "closed.merged.json", "labeled.json")
]


async def test_replay_over_http_applies_and_counts(database_url: str) -> None:
    deliveries, bad = collect([*PR_FIXTURES, str(fixtures_root() / "ping")])
    assert bad == []
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        summary = await replay_http(deliveries, url=f"{url}/webhooks/github", secret=SECRET)
        again = await replay_http(deliveries, url=f"{url}/webhooks/github", secret=SECRET)
        pr = await service.store.get_pull("Codertocat/Hello-World", 2)
    assert (summary.sent, summary.applied, summary.ignored, summary.rejected) == (6, 3, 3, [])
    assert again.duplicate == 6  # same GUIDs: nothing changes
    assert pr is not None and pr.status == "MERGED"


async def test_replay_offline_applies_with_source_replay(database_url: str) -> None:
    deliveries, _ = collect(PR_FIXTURES, order="updated_at")
    async with reconciling(database_url) as (store, reconciler):
        summary = await replay_offline(deliveries, reconciler)
        fresh = await replay_offline(deliveries, reconciler, new_guid=True)
        pr = await store.get_pull("Codertocat/Hello-World", 2)
        events = [e.message() for e in await store.events_since(0, 100)]
    assert (summary.applied, summary.rejected) == (3, [])
    assert fresh.applied == 3  # new GUIDs: applied again, changing nothing
    assert pr is not None and (pr.status, pr.last_source) == ("MERGED", "replay")
    assert [(e["old_status"], e["new_status"], e["sync_source"]) for e in events] == [
        (None, "OPEN", "replay"),
        ("OPEN", "MERGED", "replay"),
    ]


async def test_bad_fixtures_are_reported_and_skipped(tmp_path: Path) -> None:
    shutil.copy(PR_FIXTURES[0], tmp_path / "good.json")
    shutil.copy(PR_FIXTURES[0].replace(".json", ".headers"), tmp_path / "good.headers")
    (tmp_path / "no-headers.json").write_text("{}")
    (tmp_path / "bad-headers.json").write_text("{}")
    (tmp_path / "bad-headers.headers").write_text("this is not a header line\n")
    deliveries, bad = collect([str(tmp_path), str(tmp_path / "missing.json")])
    assert [d.path.name for d in deliveries] == ["good.json"]
    reasons = dict(bad)
    assert set(reasons) == {
        str(tmp_path / "no-headers.json"),
        str(tmp_path / "bad-headers.json"),
        str(tmp_path / "missing.json"),
    }
    assert reasons[str(tmp_path / "missing.json")] == "no such file or directory"


async def test_a_refusing_or_absent_target_is_reported(database_url: str) -> None:
    deliveries, _ = collect(PR_FIXTURES[:1])
    async with uvicorn_server(make_settings(database_url)) as (_service, url):
        wrong = await replay_http(deliveries, url=f"{url}/webhooks/github", secret="not it")
    assert wrong.rejected and "HTTP 401" in wrong.rejected[0][1]
    absent = await replay_http(
        deliveries,
        url=f"http://127.0.0.1:{free_port()}/webhooks/github",
        secret=SECRET,
        retries=2,
        retry_delay=0.01,
    )
    assert absent.sent == 0
    assert "Cannot connect" in absent.rejected[0][1] and "after 2 retries" in absent.rejected[0][1]


async def test_replay_command_exits_non_zero_on_bad_fixtures(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "broken.json").write_text("{")
    async with running_app(make_settings(database_url)) as (_service, client):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "webhook_service",
            "replay",
            "--offline",
            PR_FIXTURES[0],
            str(tmp_path / "broken.json"),
            env={"PATH": os.environ.get("PATH", ""), "DATABASE_URL": database_url},
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        pulls = (await client.get("/api/pulls", headers=AUTH)).json()["pulls"]
    assert process.returncode == 1, err.decode()
    text = out.decode()
    assert "applied 1" in text and "bad fixtures 1" in text
    assert "broken.json" in text
    assert [p["last_source"] for p in pulls] == ["replay"]


async def test_recorded_then_replayed_gives_the_same_stored_state(
    database_url: str, tmp_path: Path
) -> None:
    deliveries, _ = collect(PR_FIXTURES)
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        await replay_http(deliveries, url=f"{url}/webhooks/github", secret=SECRET)
        original = await service.store.get_pull("Codertocat/Hello-World", 2)
        written = await record(service.store, tmp_path / "out", event="pull_request")
    assert len(written) == 3
    for path in written:
        headers = path.with_suffix(".headers").read_text()
        assert "X-GitHub-Event: pull_request" in headers
        assert "Signature" not in headers  # made anew at replay
    recorded = {p.name: p.read_bytes() for p in written}
    assert sorted(recorded.values()) == sorted(d.body for d in deliveries)  # byte-exact

    other = f"sqlite:///{tmp_path / 'replayed.db'}"
    again, bad = collect([str(tmp_path / "out")])
    assert bad == []
    async with uvicorn_server(make_settings(other)) as (service, url):
        summary = await replay_http(again, url=f"{url}/webhooks/github", secret=SECRET)
        replayed = await service.store.get_pull("Codertocat/Hello-World", 2)
    assert (summary.applied, summary.rejected) == (3, [])
    assert original is not None and replayed is not None
    assert (replayed.status, replayed.title, replayed.github_updated_at) == (
        original.status,
        original.title,
        original.github_updated_at,
    )


async def test_redeliver_runs_stored_deliveries_through_the_core_again(
    database_url: str,
) -> None:
    deliveries, _ = collect(PR_FIXTURES[:1])
    async with uvicorn_server(make_settings(database_url)) as (service, url):
        await replay_http(deliveries, url=f"{url}/webhooks/github", secret=SECRET)
        report = await redeliver(
            service.store, service.reconciler, [deliveries[0].guid, "no-such-guid"]
        )
    assert [(r.guid, r.outcome, r.events) for r in report] == [
        (deliveries[0].guid, "unchanged", 0),
        ("no-such-guid", "not stored", 0),
    ]


async def test_5xx_answers_are_retried_until_the_target_accepts() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    answers = [503, 502, 200]
    seen: list[str] = []

    async def receiver(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Hub-Signature-256"])
        status = answers.pop(0)
        return web.json_response({"status": "applied"} if status == 200 else {}, status=status)

    app = web.Application()
    app.router.add_post("/hook", receiver)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        deliveries, _ = collect(PR_FIXTURES[:1])
        summary = await replay_http(
            deliveries, url=str(server.make_url("/hook")), secret=SECRET, retry_delay=0.01
        )
    finally:
        await server.close()
    assert (summary.sent, summary.applied, summary.rejected) == (3, 1, [])
    assert len(set(seen)) == 1  # the same signed delivery each time


async def test_unknown_formats_are_bad_fixtures(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    deliveries, bad = collect([str(tmp_path / "notes.txt")])
    assert deliveries == []
    assert bad and "expected a .json or .headers file" in bad[0][1]
