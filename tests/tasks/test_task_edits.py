"""PATCH /api/tasks/{id} with fields: title, repository, branch, worktree_path.

The fields are validated as POST /api/tasks validates them (the same code); a change
is one transaction, with ``task_updated`` for the fields and ``task_status_change``
(``pr_trigger: false``) for the status; a new branch that names the task by
TASK_BRANCH_PATTERN links the stored PRs of that head that no task has yet.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import AUTH, make_settings, payload, post_delivery, running_app

REPO = "Codertocat/Hello-World"
OTHER_REPO = "octo-org/widgets"


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/tasks", json={"title": "t", **fields}, headers=AUTH)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def patch(client: httpx.AsyncClient, task_id: str, body: Any) -> httpx.Response:
    return await client.patch(f"/api/tasks/{task_id}", json=body, headers=AUTH)


async def get_task(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/tasks/{task_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    body = (await client.get("/api/events?limit=5000", headers=AUTH)).json()
    found: list[dict[str, Any]] = body["events"]
    return found


async def open_pr(
    client: httpx.AsyncClient, number: int, branch: str, repository: str = REPO
) -> None:
    """A PR of ``branch`` observed through a webhook, as GitHub would send it."""
    document = payload("pull_request/opened", number=number, id=700_000 + number)
    document["pull_request"]["head"]["ref"] = branch
    if repository != REPO:
        document["repository"]["full_name"] = repository
        document["pull_request"]["html_url"] = f"https://github.com/{repository}/pull/{number}"
    response = await post_delivery(client, document)
    assert response.status_code == 200, response.text


async def pull_task(client: httpx.AsyncClient, number: int, repository: str = REPO) -> Any:
    response = await client.get(f"/api/pulls/{repository}/{number}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


NEW_VALUES = {
    "title": "A better title",
    "repository": OTHER_REPO,
    "branch": "feature/better",
    "worktree_path": "/srv/worktrees/better",
}


@pytest.mark.parametrize("field", list(NEW_VALUES))
async def test_each_field_can_be_changed(database_url: str, field: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        before = await create(
            client, repository=REPO, branch="feature/x", worktree_path="/srv/worktrees/x"
        )
        response = await patch(client, before["id"], {field: NEW_VALUES[field]})
        assert response.status_code == 200, response.text
        after = response.json()
        assert after == await get_task(client, before["id"])
        assert after[field] == NEW_VALUES[field]
        unchanged = {k: v for k, v in after.items() if k not in (field, "updated_at")}
        assert unchanged == {k: v for k, v in before.items() if k not in (field, "updated_at")}
        assert after["updated_at"] >= before["updated_at"]
        (event,) = await events(client)
    assert event["type"] == "task_updated"
    assert event["task_id"] == before["id"]
    assert event["changes"] == {field: {"old": before[field], "new": NEW_VALUES[field]}}
    assert set(event) == {"type", "task_id", "changes", "timestamp", "event_id"}


async def test_several_fields_and_the_status_at_once(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        before = await create(client, repository=REPO)
        body = {**NEW_VALUES, "title": "  Padded  ", "status": "IMPLEMENTING"}
        response = await patch(client, before["id"], body)
        assert response.status_code == 200, response.text
        after = response.json()
        found = await events(client)
    assert after["status"] == "IMPLEMENTING"
    assert after["title"] == "Padded"  # stripped, as POST does
    assert {k: after[k] for k in ("repository", "branch", "worktree_path")} == {
        k: NEW_VALUES[k] for k in ("repository", "branch", "worktree_path")
    }
    assert [e["type"] for e in found] == ["task_status_change", "task_updated"]
    status_change, updated = found
    assert (status_change["old_status"], status_change["new_status"]) == ("TODO", "IMPLEMENTING")
    assert status_change["pr_trigger"] is False
    assert updated["changes"] == {
        "title": {"old": "t", "new": "Padded"},
        "repository": {"old": REPO, "new": OTHER_REPO},
        "branch": {"old": None, "new": NEW_VALUES["branch"]},
        "worktree_path": {"old": None, "new": NEW_VALUES["worktree_path"]},
    }
    assert status_change["timestamp"] == updated["timestamp"]


async def test_null_clears_a_field_and_unchanged_values_change_nothing(
    database_url: str,
) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        before = await create(client, repository=REPO, branch="b", worktree_path="/w")
        same = await patch(
            client, before["id"], {"title": "t", "repository": REPO, "status": "TODO"}
        )
        assert same.status_code == 200, same.text
        assert same.json() == before  # not even updated_at
        assert await events(client) == []
        cleared = await patch(client, before["id"], {"branch": None, "worktree_path": None})
        assert cleared.status_code == 200, cleared.text
        assert (cleared.json()["branch"], cleared.json()["worktree_path"]) == (None, None)
        assert cleared.json()["repository"] == REPO
        (event,) = await events(client)
    assert event["changes"] == {
        "branch": {"old": "b", "new": None},
        "worktree_path": {"old": "/w", "new": None},
    }


BAD_BODIES: list[tuple[Any, str]] = [
    ({"bogus": 1}, "bogus"),
    ({"title": "x", "id": str(uuid.uuid4())}, "id"),
    ({"created_at": "2026-01-01T00:00:00Z"}, "created_at"),
    ({"title": 5}, "title"),
    ({"title": None}, "title"),
    ({"title": ""}, "title"),
    ({"title": "   "}, "title"),
    ({"repository": 7}, "repository"),
    ({"repository": ""}, "repository"),
    ({"repository": "no-slash"}, "repository"),
    ({"repository": "a/b/c"}, "repository"),
    ({"repository": "o/r", "title": []}, "title"),
    ({"branch": ""}, "branch"),
    ({"branch": " "}, "branch"),
    ({"branch": ["task/x"]}, "branch"),
    ({"worktree_path": ""}, "worktree_path"),
    ({"worktree_path": {"path": "/w"}}, "worktree_path"),
    ({"status": "NOPE"}, "status"),
    ({"status": 3}, "status"),
    ({"status": None}, "status"),
    ({"status": ["TODO"]}, "status"),
    ({"status": "IMPLEMENTING", "branch": ""}, "branch"),
]


async def test_bad_fields_are_400_naming_the_field(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        before = await create(client, repository=REPO, branch="b")
        for body, field in BAD_BODIES:
            response = await patch(client, before["id"], body)
            assert response.status_code == 400, (body, response.text)
            assert f"'{field}'" in response.json()["error"], (body, response.json())
        for raw in (b"[]", b"not json", b'"title"'):
            response = await client.patch(
                f"/api/tasks/{before['id']}",
                content=raw,
                headers={**AUTH, "Content-Type": "application/json"},
            )
            assert response.status_code == 400, raw
            assert "JSON object" in response.json()["error"]
        nothing = await patch(client, before["id"], {})
        assert nothing.status_code == 400 and "nothing to change" in nothing.json()["error"]
        assert await get_task(client, before["id"]) == before
        assert await events(client) == []


async def test_post_validates_with_the_same_code(database_url: str) -> None:
    """The field errors of POST are PATCH's (one function), and a status of the wrong
    type is a 400 there too."""
    async with running_app(make_settings(database_url)) as (_service, client):
        task = await create(client)
        for body, field in BAD_BODIES:
            if field in ("bogus", "id", "created_at"):
                continue  # POST takes an id, and ignores what it does not know
            if "title" in body and body["title"] is None:
                continue  # a missing title is "required" on POST
            created = await client.post("/api/tasks", json={"title": "t", **body}, headers=AUTH)
            changed = await patch(client, task["id"], body)
            assert created.status_code == changed.status_code == 400, body
            assert created.json()["error"] == changed.json()["error"], body


async def test_unknown_task_is_404(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        for body in ({"title": "x"}, {"branch": f"task/{uuid.uuid4()}"}, {"status": "DONE"}):
            response = await patch(client, str(uuid.uuid4()), body)
            assert response.status_code == 404, response.text
            assert "does not exist" in response.json()["error"]
        # Validation comes first.
        assert (await patch(client, str(uuid.uuid4()), {"title": ""})).status_code == 400


async def test_a_refused_status_change_writes_none_of_the_fields(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        before = await create(client, repository=REPO)
        response = await patch(client, before["id"], {"title": "new", "status": "DONE"})
        assert response.status_code == 409, response.text
        assert await get_task(client, before["id"]) == before
        assert await events(client) == []


async def test_a_new_branch_naming_the_task_links_its_prs(database_url: str) -> None:
    task_id = str(uuid.uuid4())
    branch = f"task/{task_id}"
    async with running_app(make_settings(database_url)) as (_service, client):
        # PRs seen before the task existed: nothing to link them to then.
        await open_pr(client, 11, branch)
        await open_pr(client, 12, branch, repository=OTHER_REPO)
        await open_pr(client, 13, "feature/elsewhere")
        other = await create(client, title="other")
        await open_pr(client, 14, branch)
        linked = await client.post(
            f"/api/tasks/{other['id']}/link",
            json={"repository": REPO, "number": 14},
            headers=AUTH,
        )
        assert linked.status_code == 200, linked.text
        await create(client, id=task_id, title="mine")
        assert await pull_task(client, 11) is None
        seen = len(await events(client))

        # A branch that does not name the task links nothing (the pattern decides).
        response = await patch(client, task_id, {"branch": "feature/elsewhere"})
        assert response.status_code == 200, response.text
        assert await pull_task(client, 13) is None
        assert response.json()["status"] == "TODO"

        # Git branches are case-sensitive: the pattern names the task, but no PR has
        # this head.
        response = await patch(client, task_id, {"branch": f"task/{task_id.upper()}"})
        assert response.status_code == 200, response.text
        assert await pull_task(client, 11) is None
        response = await patch(client, task_id, {"branch": branch})
        assert response.status_code == 200, response.text
        task = response.json()
        new = (await events(client))[seen:]

        assert await pull_task(client, 11) == task_id
        assert await pull_task(client, 12, OTHER_REPO) == task_id  # as an observation would
        assert await pull_task(client, 13) is None
        assert await pull_task(client, 14) == other["id"]  # a PR keeps the task it has
    assert task["status"] == "CODE_REVIEWING"  # the task follows its open PR
    assert [(e["type"], e.get("new_status"), e.get("pr_trigger")) for e in new] == [
        ("task_updated", None, None),  # feature/elsewhere
        ("task_updated", None, None),  # TASK/<id>
        ("task_updated", None, None),
        ("task_status_change", "CODE_REVIEWING", True),
    ]
    assert new[2]["changes"] == {"branch": {"old": f"task/{task_id.upper()}", "new": branch}}


async def test_the_status_asked_for_comes_before_the_prs_of_the_new_branch(
    database_url: str,
) -> None:
    task_id = str(uuid.uuid4())
    async with running_app(make_settings(database_url)) as (service, client):
        await open_pr(client, 21, f"task/{task_id}")
        await create(client, id=task_id, title="mine", worktree_path="/srv/worktrees/old")
        response = await patch(
            client, task_id, {"status": "IMPLEMENTING", "branch": f"task/{task_id}"}
        )
        assert response.status_code == 200, response.text
        found = await events(client)
        # Then DONE by hand with a new worktree path, in one change: the clean-up job
        # queued by DONE removes the new path.
        done = await patch(client, task_id, {"status": "DONE", "worktree_path": "/srv/new"})
        assert done.status_code == 200, done.text
        jobs = await service.store.cleanup_jobs()
    assert response.json()["status"] == "CODE_REVIEWING"
    task_events = [e for e in found if e["type"] != "pr_status_change"]
    assert [(e["type"], e.get("new_status"), e.get("pr_trigger")) for e in task_events] == [
        ("task_status_change", "IMPLEMENTING", False),
        ("task_updated", None, None),
        ("task_status_change", "CODE_REVIEWING", True),
    ]
    assert [(j.task_id, j.worktree_path) for j in jobs] == [(task_id, "/srv/new")]
