"""Keyset paging of GET /api/pulls, /api/tasks and /api/events, at 12,000 rows.

Rows are written in bulk through the store (one transaction each), then read back
through the API page by page, following ``next``. Every row must come exactly once
and in the list's order, with filters combined with the cursor, and rows inserted or
changed between pages must not make a row that was there at the start come twice or
not at all.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from tests.helpers import AUTH, make_settings, running_app
from webhook_service.core.model import EventDraft, PRStatus, PullRequest, Source, TaskStatus
from webhook_service.store import Changes, Store

ROWS = 12_000
SMALL = 97  # divides nothing here: the last page is a short one
DEFAULT = 500
BASE = datetime(2026, 11, 1, tzinfo=UTC)
#: 24 repositories whose names sort alike in every collation (only digits differ).
REPOSITORIES = [f"o{i:02d}/r" for i in range(24)]
STATUSES = [PRStatus.OPEN, PRStatus.CLOSED, PRStatus.MERGED]


def pull(repository: str, number: int, status: PRStatus, updated: datetime) -> PullRequest:
    return PullRequest(
        id=str(uuid.uuid4()),
        repository=repository,
        number=number,
        status=status,
        draft=False,
        title=f"PR {repository}#{number}",
        head_ref=f"branch-{number}",
        head_sha=None,
        base_ref="main",
        url=None,
        node_id=None,
        github_id=None,
        merged_at=updated if status is PRStatus.MERGED else None,
        closed_at=updated if status is not PRStatus.OPEN else None,
        github_updated_at=updated,
        task_id=None,
        last_source=Source.WORKER,
        last_delivery_id=None,
    )


async def write_pulls(store: Store, pulls: Sequence[PullRequest]) -> None:
    async with store.transaction() as uow:
        await uow.write(Changes(pulls=pulls), datetime.now(UTC))


TaskRow = tuple[str, str, str, str | None, datetime]  # id, title, status, repository, created


async def write_tasks(store: Store, rows: Sequence[TaskRow]) -> None:
    async with store.connection() as conn, store.unit_of_work(conn):
        await conn.executemany(
            "INSERT INTO tasks (id, title, status, repository, branch, worktree_path,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, NULL, NULL, $5, $5)",
            rows,
        )


async def write_events(store: Store, count: int, start: int = 0) -> list[int]:
    drafts = [
        EventDraft("pr_status_change", "o00/r", None, {"type": "pr_status_change", "n": start + n})
        for n in range(count)
    ]
    async with store.transaction() as uow:
        stored = await uow.write(Changes(events=drafts), datetime.now(UTC))
    return [e.id for e in stored]


async def get_page(client: httpx.AsyncClient, url: str, key: str) -> tuple[list[Any], str | None]:
    """One page: its rows and ``next``, checked against the Link header."""
    response = await client.get(url, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    following = body["next"]
    if following is None:
        assert "link" not in response.headers
    else:
        assert response.headers["link"] == f'<{following}>; rel="next"'
        assert following.startswith(f"{urlsplit(url).path}?")
        # The other parameters are kept as they were; only the cursor moves.
        kept = {k: v for k, v in parse_qs(urlsplit(url).query).items() if k not in {"cursor"}}
        moved = parse_qs(urlsplit(following).query)
        assert {k: v for k, v in moved.items() if k in kept and k != "since"} == {
            k: v for k, v in kept.items() if k != "since"
        }
    rows: list[Any] = body[key]
    return rows, following


async def page_all(
    client: httpx.AsyncClient, url: str, key: str, limit: int
) -> tuple[list[Any], int]:
    """Every row, following ``next``; each page but the last is full."""
    rows: list[Any] = []
    pages = 0
    following: str | None = url
    while following is not None:
        page, following = await get_page(client, following, key)
        pages += 1
        if following is not None:
            assert len(page) == limit
        rows.extend(page)
    return rows, pages


def pages_for(count: int, limit: int) -> int:
    return max(1, math.ceil(count / limit))


def pull_key(p: dict[str, Any]) -> tuple[str, int]:
    return p["repository"], p["number"]


# -- pulls ---------------------------------------------------------------------------


def pulls_dataset() -> list[PullRequest]:
    """12,000 PRs: 500 per repository, even numbers only (odd ones are for inserting
    between existing rows), statuses mixed, update times shuffled (not the order)."""
    rng = random.Random(7)
    pulls = []
    for r, repository in enumerate(REPOSITORIES):
        for i in range(ROWS // len(REPOSITORIES)):
            updated = BASE + timedelta(seconds=rng.randrange(10**6))
            pulls.append(pull(repository, 2 * (i + 1), STATUSES[(r + i) % 3], updated))
    return pulls


async def test_pulls_are_paged_in_key_order(database_url: str) -> None:
    dataset = pulls_dataset()
    expected = sorted((p.repository, p.number) for p in dataset)
    async with running_app(make_settings(database_url)) as (service, client):
        await write_pulls(service.store, dataset)
        for limit in (SMALL, DEFAULT):
            rows, pages = await page_all(client, f"/api/pulls?limit={limit}", "pulls", limit)
            assert [pull_key(p) for p in rows] == expected
            assert pages == pages_for(ROWS, limit)
        rows, pages = await page_all(client, "/api/pulls", "pulls", DEFAULT)  # default size
        assert [pull_key(p) for p in rows] == expected and pages == ROWS // DEFAULT
        whole, _ = await get_page(client, "/api/pulls?limit=5000", "pulls")
        assert len(whole) == 5000

        # Filters combine with the cursor.
        filters: list[dict[str, str]] = [
            {"repository": "o05/r"},
            {"status": "MERGED"},
            {"repository": "o05/r", "status": "OPEN"},
            {"repository": "o99/r"},
        ]
        for query in filters:
            wanted = [
                (p.repository, p.number)
                for p in sorted(dataset, key=lambda p: (p.repository, p.number))
                if p.repository == query.get("repository", p.repository)
                and p.status == query.get("status", p.status)
            ]
            url = str(httpx.URL("/api/pulls", params={**query, "limit": SMALL}))
            rows, pages = await page_all(client, url, "pulls", SMALL)
            assert [pull_key(p) for p in rows] == wanted, query
            assert pages == pages_for(len(wanted), SMALL)
            assert all(p["status"] == query.get("status", p["status"]) for p in rows)


async def test_pulls_written_between_pages_cause_no_repeats_or_skips(database_url: str) -> None:
    dataset = pulls_dataset()
    original = sorted((p.repository, p.number) for p in dataset)
    by_key = {(p.repository, p.number): p for p in dataset}
    async with running_app(make_settings(database_url)) as (service, client):
        await write_pulls(service.store, dataset)
        seen: list[tuple[str, int]] = []
        before_cursor: set[tuple[str, int]] = set()
        after_cursor: set[tuple[str, int]] = set()
        following: str | None = f"/api/pulls?limit={DEFAULT}"
        page_number = 0
        while following is not None:
            rows, following = await get_page(client, following, "pulls")
            seen.extend(pull_key(p) for p in rows)
            page_number += 1
            if following is None or page_number % 5:
                continue
            # Every fifth page: new PRs on both sides of the cursor (odd numbers, in
            # between existing ones), and changes to PRs not read yet, which move them
            # in the old updated_at order but not in this one.
            cursor = seen[-1]
            rng = random.Random(page_number)
            new = [
                pull(repository, 2 * rng.randrange(500) + 1, PRStatus.OPEN, datetime.now(UTC))
                for repository in rng.sample(REPOSITORIES, 8)
            ]
            new = [p for p in new if (p.repository, p.number) not in by_key]
            for p in new:
                by_key[(p.repository, p.number)] = p
                key = (p.repository, p.number)
                (after_cursor if key > cursor else before_cursor).add(key)
            unread = [k for k in original if k > cursor][::97]
            changed = [
                pull(k[0], k[1], PRStatus.CLOSED, datetime.now(UTC) + timedelta(days=1))
                for k in unread
            ]
            await write_pulls(service.store, [*new, *(_same_id(c, by_key) for c in changed)])
        assert before_cursor and after_cursor
    assert seen == sorted(seen) and len(seen) == len(set(seen)), "a row came twice"
    assert set(original) <= set(seen), "a row that was there at the start was skipped"
    assert after_cursor <= set(seen), "a row inserted after the cursor was not read"
    assert not before_cursor & set(seen)


def _same_id(changed: PullRequest, stored: dict[tuple[str, int], PullRequest]) -> PullRequest:
    """``changed`` as an update of the stored row (the upsert is by id)."""
    return dataclasses.replace(changed, id=stored[(changed.repository, changed.number)].id)


# -- tasks ---------------------------------------------------------------------------


def tasks_dataset() -> list[TaskRow]:
    """12,000 tasks, three to a creation time (the id breaks the tie), statuses and
    repositories mixed, ids in no particular order."""
    rows: list[TaskRow] = []
    statuses = list(TaskStatus)
    for i in range(ROWS):
        created = BASE + timedelta(milliseconds=i // 3)
        repository = REPOSITORIES[i % 4] if i % 5 else None
        rows.append((str(uuid.uuid4()), f"task {i}", statuses[i % 5], repository, created))
    return rows


def newest_first(rows: Sequence[TaskRow]) -> list[str]:
    return [r[0] for r in sorted(rows, key=lambda r: (r[4], r[0]), reverse=True)]


async def test_tasks_are_paged_newest_first(database_url: str) -> None:
    dataset = tasks_dataset()
    expected = newest_first(dataset)
    async with running_app(make_settings(database_url)) as (service, client):
        await write_tasks(service.store, dataset)
        for limit in (SMALL, DEFAULT):
            rows, pages = await page_all(client, f"/api/tasks?limit={limit}", "tasks", limit)
            assert [t["id"] for t in rows] == expected
            assert pages == pages_for(ROWS, limit)
        rows, _ = await page_all(client, "/api/tasks", "tasks", DEFAULT)
        assert [t["id"] for t in rows] == expected

        filters: list[dict[str, str]] = [
            {"repository": "o01/r"},
            {"status": "IMPLEMENTING"},
            {"repository": "o02/r", "status": "DONE"},
        ]
        for query in filters:
            wanted = newest_first(
                [
                    r
                    for r in dataset
                    if r[3] == query.get("repository", r[3]) and r[2] == query.get("status", r[2])
                ]
            )
            assert wanted, query
            url = str(httpx.URL("/api/tasks", params={**query, "limit": SMALL}))
            rows, pages = await page_all(client, url, "tasks", SMALL)
            assert [t["id"] for t in rows] == wanted, query
            assert pages == pages_for(len(wanted), SMALL)


async def test_tasks_created_between_pages_cause_no_repeats_or_skips(database_url: str) -> None:
    dataset = tasks_dataset()
    original = newest_first(dataset)
    created_at = {r[0]: r[4] for r in dataset}
    async with running_app(make_settings(database_url)) as (service, client):
        await write_tasks(service.store, dataset)
        seen: list[str] = []
        later: set[str] = set()  # created after the cursor's position: to be read
        following: str | None = f"/api/tasks?limit={SMALL}"
        page_number = 0
        while following is not None:
            rows, following = await get_page(client, following, "tasks")
            seen.extend(t["id"] for t in rows)
            page_number += 1
            if following is None or page_number % 10:
                continue
            last = seen[-1]
            new: list[TaskRow] = []
            # New tasks (created now: before the cursor, not read by this pass), and
            # tasks sharing the cursor's creation time, on both sides of its id.
            for _ in range(3):
                new.append((str(uuid.uuid4()), "new", "TODO", None, datetime.now(UTC)))
            for _ in range(6):
                new.append((str(uuid.uuid4()), "tie", "TODO", None, created_at[last]))
            # One older than the cursor: still to come.
            new.append((str(uuid.uuid4()), "old", "TODO", None, created_at[last] - timedelta(1)))
            for row in new:
                created_at[row[0]] = row[4]
                if (row[4], row[0]) < (created_at[last], last):
                    later.add(row[0])
            # Changes to tasks not read yet do not move them either.
            unread = original[original.index(last) + 1 :][::50]
            async with service.store.connection() as conn, service.store.unit_of_work(conn):
                await conn.executemany(
                    "UPDATE tasks SET title = 'changed', updated_at = $2 WHERE id = $1",
                    [(t, datetime.now(UTC)) for t in unread],
                )
            await write_tasks(service.store, new)
    assert len(seen) == len(set(seen)), "a task came twice"
    assert set(original) <= set(seen), "a task that was there at the start was skipped"
    assert later <= set(seen), "a task inserted after the cursor was not read"
    assert seen == sorted(seen, key=lambda t: (created_at[t], t), reverse=True)
    assert len(set(seen) - set(original)) == len(later)


# -- events --------------------------------------------------------------------------


async def test_events_are_paged_by_since(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        ids = await write_events(service.store, ROWS)
        assert ids == sorted(ids) and len(ids) == ROWS
        for limit in (SMALL, DEFAULT):
            rows, pages = await page_all(client, f"/api/events?limit={limit}", "events", limit)
            assert [e["event_id"] for e in rows] == ids
            assert pages == pages_for(ROWS, limit)

        # Events committed while a client pages come after the ones it has (ids grow
        # in commit order): nothing twice, nothing skipped, the new ones at the end.
        seen: list[int] = []
        added: list[int] = []
        following: str | None = f"/api/events?since=0&limit={DEFAULT}"
        while following is not None:
            response = await client.get(following, headers=AUTH)
            body = response.json()
            seen.extend(e["event_id"] for e in body["events"])
            assert body["last_id"] == seen[-1]
            following = body["next"]
            if following is not None:
                assert parse_qs(urlsplit(following).query)["since"] == [str(seen[-1])]
                if len(added) < 600:
                    added += await write_events(service.store, 100, start=ROWS + len(added))
        assert seen == ids + added

        # At the end: no next, and last_id is where to resume.
        end = (await client.get(f"/api/events?since={seen[-1]}", headers=AUTH)).json()
        assert end == {"events": [], "last_id": seen[-1], "next": None}


# -- bad cursors ---------------------------------------------------------------------


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


BAD_CURSORS = [
    ("/api/pulls", ""),
    ("/api/pulls", "!!!"),
    ("/api/pulls", "bm90IGpzb24"),  # "not json"
    ("/api/pulls", _cursor({"pulls": 1})),
    ("/api/pulls", _cursor([])),
    ("/api/pulls", _cursor(["pulls", "o/r"])),
    ("/api/pulls", _cursor(["pulls", "o/r", "5"])),
    ("/api/pulls", _cursor(["pulls", "o/r", True])),
    ("/api/pulls", _cursor(["pulls", "o/r", 2**40])),
    ("/api/pulls", _cursor(["tasks", "2026-11-01T00:00:00+00:00", "x"])),
    ("/api/tasks", _cursor(["pulls", "o/r", 5])),
    ("/api/tasks", _cursor(["tasks", "yesterday", "x"])),
    ("/api/tasks", _cursor(["tasks", "2026-11-01T00:00:00", "x"])),  # no time zone
    ("/api/tasks", _cursor(["tasks", "2026-11-01T00:00:00+00:00", 5])),
    ("/api/tasks", "e30"),  # {}
]


async def test_a_bad_cursor_is_400(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        await write_pulls(service.store, [pull("o/r", 1, PRStatus.OPEN, BASE)])
        for path, cursor in BAD_CURSORS:
            response = await client.get(path, params={"cursor": cursor}, headers=AUTH)
            assert response.status_code == 400, (path, cursor, response.text)
            assert "'cursor'" in response.json()["error"], (path, cursor)
            assert f"cursor of {path}" in response.json()["error"]


async def test_short_lists_have_no_next(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (service, client):
        await write_pulls(service.store, [pull("o/r", n, PRStatus.OPEN, BASE) for n in (1, 2)])
        for path, key in (("/api/pulls", "pulls"), ("/api/tasks", "tasks")):
            exact = await client.get(f"{path}?limit=2", headers=AUTH)
            assert exact.status_code == 200
            assert exact.json()["next"] is None and "link" not in exact.headers
            assert len(exact.json()[key]) == (2 if key == "pulls" else 0)
        first, following = await get_page(client, "/api/pulls?limit=1&status=OPEN", "pulls")
        assert [p["number"] for p in first] == [1] and following is not None
        query = parse_qs(urlsplit(following).query)
        assert query["status"] == ["OPEN"] and query["limit"] == ["1"]
        assert base64.urlsafe_b64decode(query["cursor"][0] + "==") == b'["pulls","o/r",1]'
        second, last = await get_page(client, following, "pulls")
        assert [p["number"] for p in second] == [2] and last is None
