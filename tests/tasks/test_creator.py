"""The PR creator (webhook_service.tasks.creator) against the fake GitHub, on both backends,
and the fake's ``POST /repos/{o}/{r}/pulls`` and ``head``/``base`` list filters.

The creator is driven the way the API and CLI will: a real GitHub client over HTTP on
loopback, the store, and a running reconciler. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest

from tests.helpers import SyncRig, fake_github, sync_rig
from webhook_service.api.views import created_json
from webhook_service.config import Settings, load_settings
from webhook_service.core.model import TaskStatus
from webhook_service.github.client import GitHub
from webhook_service.github.transport import _API
from webhook_service.store import Store, TaskRecord
from webhook_service.tasks.creator import CreateError, create_pull_request
from webhook_service.testing import FakeGitHub
from webhook_service.testing.fake_github import RequestRecord

TOKEN = "ghp_pr_creator"
OWNER = "o"
REPO = f"{OWNER}/r"
PULLS = f"/repos/{REPO}/pulls"
BOUND = 20.0  # seconds: every creator call and cycle is bounded by this


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with fake_github(TOKEN, REPO) as fake:
        yield fake


def settings_for(database_url: str, gh: FakeGitHub, **env: str) -> Settings:
    values = {
        "WEBHOOK_SECRET": "secret",
        "API_TOKEN": "api-token",
        "DATABASE_URL": database_url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": gh.url,
        "SYNC_RETRY_DELAY": "0.05",
        "SYNC_TIMEOUT": "5",
        **env,
    }
    return load_settings({k: v for k, v in values.items() if v}, env_file=None)


class Rig(SyncRig):
    """The shared rig, with the creator's calls."""

    async def create(self, task_id: str, **options: Any) -> dict[str, Any]:
        async with asyncio.timeout(BOUND):
            created = await create_pull_request(
                store=self.store,
                reconciler=self.reconciler,
                github=self.github,
                task_id=task_id,
                **options,
            )
        return created_json(created)

    async def task(
        self,
        *,
        branch: str | None = "feature/login",
        repository: str | None = REPO,
        title: str = "Log in with GitHub",
    ) -> str:
        now = datetime.now(UTC)
        task_id = str(uuid.uuid4())
        if branch == "task/":  # the service's TASK_BRANCH_PATTERN names the task
            branch = f"task/{task_id}"
        record = TaskRecord(task_id, title, TaskStatus.TODO, repository, branch, None, now, now)
        await self.store.create_task(record)
        return task_id


@asynccontextmanager
async def rig(
    database_url: str,
    gh: FakeGitHub,
    *,
    client: type[GitHub] = GitHub,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Rig]:
    settings = settings_for(database_url, gh, **(env or {}))
    async with sync_rig(database_url, settings, client=client) as r:
        yield Rig(r.store, r.reconciler, r.github, r.worker)


def posts(gh: FakeGitHub) -> list[RequestRecord]:
    return [r for r in gh.requests if r.method == "POST" and r.path == PULLS]


async def task_events(store: Store, task_id: str) -> list[dict[str, Any]]:
    return [e.message() for e in await store.events_since(0, 10_000) if e.task_id == task_id]


def status_changes(events: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    return [(e["type"], e["old_status"], e["new_status"]) for e in events]


# -- creating, linking, monitoring ---------------------------------------------------


@pytest.mark.parametrize("branch", ["feature/login", "task/"])
async def test_opens_the_pr_links_it_moves_the_task_and_monitors_it(
    database_url: str, gh: FakeGitHub, branch: str
) -> None:
    """Whether or not the branch names the task (TASK_BRANCH_PATTERN), one PR event and
    one task event."""
    async with rig(database_url, gh) as r:
        task_id = await r.task(branch=branch)
        task = await r.store.get_task(task_id)
        assert task is not None and task.branch is not None

        answer = await r.create(task_id, title="Add login", body="Closes #3", draft=True)

        sent = posts(gh)
        assert [p.status for p in sent] == [201]
        assert orjson.loads(sent[0].body) == {
            "title": "Add login",
            "head": task.branch,
            "base": "main",
            "draft": True,
            "body": "Closes #3",
        }
        (made,) = gh.pulls(REPO)
        assert (made["head"]["ref"], made["base"]["ref"], made["draft"]) == (
            task.branch,
            "main",
            True,
        )
        assert (made["title"], made["body"], made["state"]) == ("Add login", "Closes #3", "open")
        assert answer["created"] is True
        pr = answer["pull_request"]
        assert (pr["repository"], pr["number"], pr["status"]) == (REPO, made["number"], "OPEN")
        assert (pr["task_id"], pr["head_ref"], pr["draft"]) == (task_id, task.branch, True)
        assert (pr["url"], pr["last_source"]) == (made["html_url"], "manual")
        stored = await r.store.get_pull(REPO, made["number"])
        assert stored is not None and stored.task_id == task_id
        task = await r.store.get_task(task_id)
        assert task is not None and task.status is TaskStatus.CODE_REVIEWING
        events = await task_events(r.store, task_id)
        expected: list[tuple[str, Any, Any]] = [("task_status_change", "TODO", "CODE_REVIEWING")]
        if branch == "task/":  # observed already linked: the PR's own event names the task
            expected.insert(0, ("pr_status_change", None, "OPEN"))
        assert status_changes(events) == expected
        (task_event,) = [e for e in events if e["type"] == "task_status_change"]
        assert task_event["pr_trigger"] is True
        (pr_event,) = [
            e.message()
            for e in await r.store.events_since(0, 10_000)
            if e.type == "pr_status_change"
        ]
        assert (pr_event["new_status"], pr_event["sync_source"]) == ("OPEN", "manual")
        assert await r.store.monitored_pulls() == [(REPO, made["number"])]

        # Monitored: the poller follows it (REPO is not a tracked repository here).
        gh.update_pull(REPO, made["number"], merged=True)
        async with asyncio.timeout(BOUND):
            stats = await r.worker.force_sync()
        assert stats["error_count"] == 0
        task = await r.store.get_task(task_id)
        assert task is not None and task.status is TaskStatus.DONE


async def test_the_base_is_the_repositorys_default_branch_unless_given(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_repository(REPO, default_branch="develop")
    async with rig(database_url, gh) as r:
        first = await r.task(branch="feature/one")
        await r.create(first)
        second = await r.task(branch="feature/two")
        await r.create(second, base="release")
    assert [orjson.loads(p.body)["base"] for p in posts(gh)] == ["develop", "release"]
    asked = [q for q in gh.requests if q.method == "GET" and q.path == f"/repos/{REPO}"]
    assert len(asked) == 1, "looked up only when no base was given"
    assert sorted(pull["base"]["ref"] for pull in gh.pulls(REPO)) == ["develop", "release"]


async def test_calling_again_links_the_same_pr_without_a_second_post(
    database_url: str, gh: FakeGitHub
) -> None:
    async with rig(database_url, gh) as r:
        task_id = await r.task()
        first = await r.create(task_id)
        events = await task_events(r.store, task_id)
        gh.reset_requests()

        again = await r.create(task_id, title="other title", base="develop")

        assert again["created"] is False
        assert again["pull_request"]["number"] == first["pull_request"]["number"]
        assert again["pull_request"]["title"] == "Log in with GitHub"  # the task's title
        assert posts(gh) == []
        (listing,) = [r for r in gh.requests if r.method == "GET"]
        assert listing.query == {
            "state": "all",
            "head": f"{OWNER}:feature/login",
            "per_page": "100",
        }
        assert not listing.conditional
        assert len(gh.pulls(REPO)) == 1
        assert await task_events(r.store, task_id) == events  # nothing new
        assert await r.store.monitored_pulls() == [(REPO, first["pull_request"]["number"])]


async def test_an_open_pr_opened_elsewhere_is_linked(database_url: str, gh: FakeGitHub) -> None:
    gh.add_pull(REPO, 1, head_ref="main-fix", base_ref="main")  # another branch
    outside = gh.add_pull(REPO, 2, head_ref="feature/login", base_ref="release", title="By hand")
    async with rig(database_url, gh) as r:
        task_id = await r.task()

        answer = await r.create(task_id)

        assert posts(gh) == []
        assert answer["created"] is False
        pr = answer["pull_request"]
        assert (pr["number"], pr["title"], pr["base_ref"]) == (2, "By hand", "release")
        assert pr["task_id"] == task_id and pr["github_updated_at"] == outside["updated_at"]
        task = await r.store.get_task(task_id)
        assert task is not None and task.status is TaskStatus.CODE_REVIEWING
        assert await r.store.get_pull(REPO, 1) is None  # only the task's PR is stored


async def test_closed_prs_of_the_branch_do_not_count(database_url: str, gh: FakeGitHub) -> None:
    gh.add_pull(REPO, 1, head_ref="feature/login", state="closed")
    gh.add_pull(REPO, 2, head_ref="feature/login", merged=True, base_ref="old")
    async with rig(database_url, gh) as r:
        task_id = await r.task()

        answer = await r.create(task_id)

        assert answer["created"] is True
        assert answer["pull_request"]["number"] == 3
        assert [p.status for p in posts(gh)] == [201]
        assert await r.store.get_pull(REPO, 1) is None


async def test_a_branch_name_with_url_characters_is_found_by_its_head(
    database_url: str, gh: FakeGitHub
) -> None:
    branch = "fix/a+b&c#d?e=f g%20"
    async with rig(database_url, gh) as r:
        task_id = await r.task(branch=branch)
        first = await r.create(task_id)
        again = await r.create(task_id)

        assert (first["created"], again["created"]) == (True, False)
        assert first["pull_request"]["head_ref"] == branch
        assert again["pull_request"]["number"] == first["pull_request"]["number"]
        assert len(posts(gh)) == 1


# -- never a second PR ---------------------------------------------------------------


class MissesOnce(GitHub):
    """A head listing that misses the PR once (another creator won the race)."""

    misses = 1

    async def find_pull_by_head(
        self, api: _API, repository: str, owner: str, branch: str
    ) -> dict[str, Any] | None:
        if self.misses:
            self.misses -= 1
            return None
        return await super().find_pull_by_head(api, repository, owner, branch)


async def test_githubs_already_exists_answer_links_that_pr(
    database_url: str, gh: FakeGitHub
) -> None:
    existing = gh.add_pull(REPO, 7, head_ref="feature/login", base_ref="main")
    async with rig(database_url, gh, client=MissesOnce) as r:
        task_id = await r.task()

        answer = await r.create(task_id)

        assert [p.status for p in posts(gh)] == [422]
        assert answer["created"] is False
        assert answer["pull_request"]["number"] == existing["number"]
        assert answer["pull_request"]["task_id"] == task_id
        assert len(gh.pulls(REPO)) == 1
        assert await r.store.monitored_pulls() == [(REPO, 7)]


async def test_a_lost_answer_is_retried_and_links_the_pr_it_created(
    database_url: str, gh: FakeGitHub
) -> None:
    """GitHub creates the PR but answers 502: the retry meets the 422, which links it."""
    gh.fail_next(1, 502, path_prefix=PULLS, method="POST", handled=True)
    async with rig(database_url, gh) as r:
        task_id = await r.task()

        answer = await r.create(task_id)

        assert [p.status for p in posts(gh)] == [502, 422]
        (made,) = gh.pulls(REPO)
        assert answer["pull_request"]["number"] == made["number"]
        assert answer["pull_request"]["task_id"] == task_id
        task = await r.store.get_task(task_id)
        assert task is not None and task.status is TaskStatus.CODE_REVIEWING


async def test_concurrent_calls_open_one_pr(database_url: str, gh: FakeGitHub) -> None:
    async with rig(database_url, gh) as r:
        task_id = await r.task()

        answers = await asyncio.gather(r.create(task_id), r.create(task_id, draft=True))

        assert sorted(a["created"] for a in answers) == [False, True]
        assert {a["pull_request"]["number"] for a in answers} == {1}
        assert len(posts(gh)) == 1 and len(gh.pulls(REPO)) == 1
        events = await task_events(r.store, task_id)
        assert [e["type"] for e in events].count("task_status_change") == 1


# -- errors --------------------------------------------------------------------------


async def test_task_errors_are_404_and_400_without_calling_github(
    database_url: str, gh: FakeGitHub
) -> None:
    async with rig(database_url, gh) as r:
        cases = [
            (str(uuid.uuid4()), 404, "does not exist"),
            (await r.task(branch=None), 400, "has no branch"),
            (await r.task(repository=None), 400, "has no repository"),
        ]
        for task_id, status, message in cases:
            with pytest.raises(CreateError) as caught:
                await r.create(task_id)
            assert caught.value.status == status
            assert message in str(caught.value)
        assert gh.requests == []


async def test_5xx_answers_are_retried(database_url: str, gh: FakeGitHub) -> None:
    gh.fail_next(2, 503, path_prefix=PULLS, method="POST")
    gh.fail_next(1, 500, path_prefix=PULLS, method="GET")
    async with rig(database_url, gh) as r:
        task_id = await r.task()

        answer = await r.create(task_id)

        assert answer["created"] is True
        assert [p.status for p in posts(gh)] == [503, 503, 201]
        assert len(gh.pulls(REPO)) == 1


async def test_persistent_5xx_is_a_502_and_changes_nothing(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.fail_next(10, 503, path_prefix=PULLS, method="POST")
    async with rig(database_url, gh, env={"SYNC_RETRY_ATTEMPTS": "2"}) as r:
        task_id = await r.task()

        with pytest.raises(CreateError) as caught:
            await r.create(task_id)

        assert caught.value.status == 502
        assert "GitHub answered 503" in str(caught.value)
        assert len(posts(gh)) == 3  # the first attempt and two retries
        task = await r.store.get_task(task_id)
        assert task is not None and task.status is TaskStatus.TODO
        assert await r.store.list_pulls() == [] and await r.store.monitored_pulls() == []


async def test_githubs_refusals_keep_their_status_and_message(
    database_url: str, gh: FakeGitHub
) -> None:
    async with rig(database_url, gh) as r:
        no_commits = await r.task(branch="main")
        with pytest.raises(CreateError) as caught:
            await r.create(no_commits)
        assert caught.value.status == 422
        assert "No commits between main and main" in str(caught.value)

        unknown = await r.task(repository="o/unknown")
        with pytest.raises(CreateError) as caught:
            await r.create(unknown)
        assert caught.value.status == 404
        assert "Not Found" in str(caught.value)

        gh.fail_next(1, 401, path_prefix=PULLS, method="POST")  # our credential's problem
        with pytest.raises(CreateError) as caught:
            await r.create(await r.task())
        assert caught.value.status == 502
        assert "GitHub answered 401" in str(caught.value)
        assert gh.pulls(REPO) == [] and await r.store.list_pulls() == []


async def test_an_app_installation_repository_uses_its_installation_token(
    database_url: str, gh: FakeGitHub
) -> None:
    gh.add_installation(7, [REPO])
    env = {"GITHUB_TOKEN": "", "APP_ID": gh.app_id, "PRIVATE_KEY": gh.private_key_pem}
    async with rig(database_url, gh, env=env) as r:
        await r.store.track_repositories([REPO], source="installation", installation_id=7)
        task_id = await r.task()

        answer = await r.create(task_id)

        assert answer["created"] is True
        (post,) = posts(gh)
        assert post.token is not None and post.token.startswith("ghs_")
        assert gh.tokens_issued == 1


# -- the fake's endpoint -------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), headers={"Authorization": f"token {TOKEN}"}
    ) as session:
        yield session


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(url, data=data) as response:
        return response.status, await response.json()


async def test_the_fake_creates_pull_requests_as_github_does(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    url = gh.url + PULLS
    before = gh.rate_remaining(TOKEN)
    request = {"title": "T", "head": "o:feat", "base": "main", "body": "B", "draft": True}
    async with http.post(url, data=orjson.dumps(request)) as response:
        assert response.status == 201
        created = await response.json()
        assert response.headers["Location"] == created["url"] == f"{url}/1"
    assert gh.rate_remaining(TOKEN) == before - 1
    assert created == gh.pull(REPO, 1)
    assert (created["head"]["ref"], created["head"]["label"]) == ("feat", "o:feat")
    assert (created["base"]["ref"], created["title"], created["body"]) == ("main", "T", "B")
    assert (created["state"], created["draft"], created["merged"]) == ("open", True, False)
    assert gh.requests[-1].body == orjson.dumps(request)

    # One open PR per head and base; another base, or a closed one, does not block.
    status, error = await _post(http, url, {"title": "T", "head": "feat", "base": "main"})
    assert status == 422
    assert error == {
        "message": "Validation Failed",
        "errors": [
            {
                "resource": "PullRequest",
                "code": "custom",
                "message": "A pull request already exists for o:feat.",
            }
        ],
        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
    }
    status, other = await _post(http, url, {"title": "T", "head": "feat", "base": "release"})
    assert (status, other["number"], other["base"]["ref"]) == (201, 2, "release")
    gh.update_pull(REPO, 1, state="closed")
    status, reopened = await _post(http, url, {"title": "T", "head": "feat", "base": "main"})
    assert (status, reopened["number"]) == (201, 3)
    assert [p.status for p in posts(gh)] == [201, 422, 201, 201]


@pytest.mark.parametrize(
    ("body", "status", "message", "errors"),
    [
        ({"title": "T", "head": "feat"}, 422, "Validation Failed", [("base", "missing_field")]),
        ({"title": "T", "base": "main"}, 422, "Validation Failed", [("head", "missing_field")]),
        ({"head": "feat", "base": "main"}, 422, "Validation Failed", [("title", "missing_field")]),
        (
            {"title": "T", "head": "x:feat", "base": "main"},
            422,
            "Validation Failed",
            [("head", "invalid")],
        ),
        (
            {"title": "T", "head": "feat", "base": "main", "draft": "yes"},
            422,
            "Invalid request.\n\nFor 'properties/draft', \"yes\" is not a boolean.",
            None,
        ),
        (b"{not json", 400, "Problems parsing JSON", None),
        ([1], 400, "Problems parsing JSON", None),
    ],
)
async def test_the_fake_validates_a_new_pull_request(
    gh: FakeGitHub,
    http: aiohttp.ClientSession,
    body: Any,
    status: int,
    message: str,
    errors: list[tuple[str, str]] | None,
) -> None:
    answered, error = await _post(http, gh.url + PULLS, body)
    assert (answered, error["message"]) == (status, message)
    if errors is not None:
        assert [(e["field"], e["code"]) for e in error["errors"]] == errors
    assert gh.pulls(REPO) == []


async def test_the_fake_refuses_a_pull_request_with_no_commits_and_unknown_repositories(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    status, error = await _post(
        http, gh.url + PULLS, {"title": "T", "head": "main", "base": "main"}
    )
    assert status == 422
    assert error["errors"][0]["message"] == "No commits between main and main"
    status, error = await _post(
        http, gh.url + "/repos/o/nope/pulls", {"title": "T", "head": "a", "base": "main"}
    )
    assert (status, error["message"]) == (404, "Not Found")


async def test_the_fake_filters_listings_by_head_and_base(
    gh: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    gh.add_pull(REPO, 1, head_ref="feat", base_ref="main")
    gh.add_pull(REPO, 2, head_ref="feat", base_ref="release", state="closed")
    gh.add_pull(REPO, 3, head_ref="other", base_ref="main")

    async def numbers(**query: str) -> list[int]:
        async with http.get(gh.url + PULLS, params=query) as response:
            assert response.status == 200
            return [p["number"] for p in await response.json()]

    assert await numbers(state="all", head="o:feat") == [2, 1]
    assert await numbers(state="all", head="O:feat") == [2, 1]  # owners are case-insensitive
    assert await numbers(head="o:feat") == [1]  # open only, by default
    assert await numbers(state="all", head="x:feat") == []
    assert await numbers(state="all", head="feat") == [3, 2, 1]  # no "user:": ignored
    assert await numbers(state="all", base="main") == [3, 1]
    assert await numbers(state="all", head="o:feat", base="release") == [2]
