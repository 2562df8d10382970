"""The commands that talk to GitHub: track and create-pr, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.process import run
from tests.helpers import AUTH, make_settings, running_app
from webhook_service.testing import FakeGitHub


async def test_track_fetches_links_and_monitors_a_pr(database_url: str, tmp_path: Path) -> None:
    async with FakeGitHub() as github:
        github.add_token("tok")
        github.add_pull("x/y", 5, title="Faster gears", head_ref="gears")
        async with running_app(make_settings(database_url)) as (service, client):
            task_id = (await client.post("/api/tasks", json={"title": "t"}, headers=AUTH)).json()[
                "id"
            ]
            env = {
                "DATABASE_URL": database_url,
                "GITHUB_TOKEN": "tok",
                "GITHUB_API_URL": github.url,
            }
            code, out, err = await run(
                "track", "x/y#5", "--task", task_id, "--json", env=env, cwd=tmp_path
            )
            assert code == 0, err
            pr = json.loads(out)
            assert (pr["repository"], pr["number"], pr["status"]) == ("x/y", 5, "OPEN")
            assert pr["task_id"] == task_id
            assert await service.store.monitored_pulls() == [("x/y", 5)]
            task = (await client.get(f"/api/tasks/{task_id}", headers=AUTH)).json()
            assert task["status"] == "CODE_REVIEWING"

            code, out, err = await run("tasks", env=env, cwd=tmp_path)
            assert code == 0, err
            header, row = out.splitlines()
            assert header.split() == ["ID", "STATUS", "TITLE", "REPOSITORY", "BRANCH", "UPDATED_AT"]
            assert row.startswith(f"{task_id}  CODE_REVIEWING")

            code, _out, err = await run("track", "not-a-target", env=env, cwd=tmp_path)
            assert code == 2 and "OWNER/REPO#NUMBER" in err


async def test_create_pr_over_the_api_and_the_command_line(
    database_url: str, tmp_path: Path
) -> None:
    async with FakeGitHub() as github:
        github.add_token("tok")
        github.add_repository("x/y")
        settings = make_settings(
            database_url, GITHUB_TOKEN="tok", GITHUB_API_URL=github.url, GITHUB_REPOSITORIES="x/y"
        )
        async with running_app(settings) as (_service, client):
            tasks = []
            for branch in ("feature-a", "feature-b"):
                body = {"title": f"Do {branch}", "repository": "x/y", "branch": branch}
                response = await client.post("/api/tasks", json=body, headers=AUTH)
                tasks.append(response.json()["id"])

            path = f"/api/tasks/{tasks[0]}/pull-request"
            first = await client.post(path, json={"draft": True}, headers=AUTH)
            assert first.status_code == 200, first.text
            assert first.json()["created"] is True
            pr = first.json()["pull_request"]
            assert (pr["repository"], pr["task_id"], pr["draft"]) == ("x/y", tasks[0], True)
            again = await client.post(path, headers=AUTH)
            assert again.json()["created"] is False
            assert again.json()["pull_request"]["number"] == pr["number"]
            bad = await client.post(path, json={"draft": "yes"}, headers=AUTH)
            assert bad.status_code == 400

            env = {
                "DATABASE_URL": database_url,
                "GITHUB_TOKEN": "tok",
                "GITHUB_API_URL": github.url,
            }
            code, out, err = await run("create-pr", tasks[1], "--json", env=env, cwd=tmp_path)
            assert code == 0, err
            result = json.loads(out)
            assert result["created"] is True
            assert result["pull_request"]["task_id"] == tasks[1]
            task = (await client.get(f"/api/tasks/{tasks[1]}", headers=AUTH)).json()
            assert task["status"] == "CODE_REVIEWING"
        assert len(github.pulls("x/y")) == 2
