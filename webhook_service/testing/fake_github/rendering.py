"""The fake's JSON: GitHub's own REST examples (``testing/rest/``) with the fake's values.

Each answer starts from an example of GitHub's OpenAPI description, so it has GitHub's
keys in GitHub's order; the values the fake manages replace the example's, field by
field, nested ones (user, repository, links) included. What the fake does not model
keeps a neutral value. The same pull request, as search shows it to GraphQL, is
:func:`search_entry`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from webhook_service.testing.fake_github.clock import iso
from webhook_service.testing.fake_github.search import SearchEntry
from webhook_service.testing.fake_github.state import Installation, Pull, Repo, fake_sha

API = "https://api.github.com"  # the examples' API host; rendered JSON uses the fake's URL
PERMISSIONS = {"metadata": "read", "pull_requests": "read"}  # what installations are granted


def rest_fixtures_root() -> Path:
    """GitHub's REST response examples, shipped with the package (``testing/rest``)."""
    return Path(__file__).resolve().parent.parent / "rest"


def node_id(kind: str, number: int) -> str:
    # GitHub's legacy global ids: base64 of "0<len(kind)>:<kind><id>", e.g. "04:User1".
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def _rewrite(value: Any, pairs: tuple[tuple[str, str], ...]) -> Any:
    """A copy of a JSON value with substrings replaced in every string."""
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {key: _rewrite(item, pairs) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewrite(item, pairs) for item in value]
    return value


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


class Renderer:
    """Renders state as GitHub would. ``url()`` is the fake's base URL ("" before it
    listens), ``app_id()`` the App's id; users and repositories are cached until
    :meth:`forget` (their URLs embed the base URL)."""

    def __init__(
        self, examples: Path, *, url: Callable[[], str], app_id: Callable[[], str]
    ) -> None:
        self._url = url
        self._app_id = app_id
        self._template: dict[str, Any] = _load(examples / "pulls-get.json")
        # pull-request-simple (list items) lacks some of pull-request's fields.
        simple = _load(examples / "pulls-list.json")[0]
        self._simple_missing = self._template.keys() - simple.keys()
        self.delivery_item_keys = list(_load(examples / "app-hook-deliveries-list.json")[0])
        self.delivery_keys = list(_load(examples / "hook-delivery-get.json"))
        self._user_ids: dict[str, int] = {}
        self._cache: dict[str, dict[str, Any]] = {}

    def forget(self, repo_key: str | None = None) -> None:
        """Drop one repository's cached JSON, or (None) everything cached."""
        if repo_key is None:
            self._cache.clear()
        else:
            self._cache.pop("repo:" + repo_key, None)

    def user(self, login: str) -> dict[str, Any]:
        if "user:" + login not in self._cache:
            user_id = self._user_ids.setdefault(login, 1000 + len(self._user_ids))
            pairs = (("octocat", login), (API, self._url() or API))
            data = _rewrite(self._template["user"], pairs)
            data.update(login=login, id=user_id, node_id=node_id("User", user_id))
            self._cache["user:" + login] = data
        return self._cache["user:" + login]

    def repo(self, repo: Repo) -> dict[str, Any]:
        if "repo:" + repo.key not in self._cache:
            pairs = (("octocat/Hello-World", repo.full_name), (API, self._url() or API))
            data = _rewrite(self._template["head"]["repo"], pairs)
            data.update(id=repo.id, node_id=node_id("Repository", repo.id))
            data.update(name=repo.full_name.partition("/")[2], full_name=repo.full_name)
            data.update(owner=self.user(repo.owner), default_branch=repo.default_branch)
            self._cache["repo:" + repo.key] = data
        return self._cache["repo:" + repo.key]

    def pull(self, pull: Pull, *, simple: bool = False) -> dict[str, Any]:
        """``pulls-get.json`` with the pull's values; ``simple``: a list item."""
        data = dict(self._template)  # GitHub's key order; the fake's values
        data.update(pull.extra)
        data.update(self.pull_fields(pull))
        if simple:
            for name in self._simple_missing:
                del data[name]
        return data

    def public(self, pull: Pull) -> dict[str, Any]:
        """The pull request for a caller to keep: a deep copy (rendered JSON shares cached
        user and repository objects)."""
        data: dict[str, Any] = orjson.loads(orjson.dumps(self.pull(pull)))
        return data

    def pull_fields(self, pull: Pull) -> dict[str, Any]:
        """The fields the fake manages. Nested template values are replaced too."""
        api, full, n = self._url() or API, pull.repo.full_name, pull.number
        url, issue = f"{api}/repos/{full}/pulls/{n}", f"{api}/repos/{full}/issues/{n}"
        html = f"https://github.com/{full}/pull/{n}"
        links = {  # _links.<rel>.href, and <rel>_url at the top level
            "self": url,
            "html": html,
            "issue": issue,
            "comments": issue + "/comments",
            "review_comments": url + "/comments",
            "review_comment": f"{api}/repos/{full}/pulls/comments{{/number}}",
            "commits": url + "/commits",
            "statuses": f"{api}/repos/{full}/statuses/{pull.head_sha}",
        }
        user, repo = self.user(pull.user), self.repo(pull.repo)

        def branch(ref: str, sha: str) -> dict[str, Any]:
            label = f"{pull.repo.owner}:{ref}"
            return {"label": label, "ref": ref, "sha": sha, "user": repo["owner"], "repo": repo}

        fields: dict[str, Any] = {f"{rel}_url": h for rel, h in links.items() if rel != "self"}
        fields.update(url=url, diff_url=html + ".diff", patch_url=html + ".patch")
        fields.update(id=pull.id, node_id=node_id("PullRequest", pull.id), number=n)
        fields.update(state=pull.state, title=pull.title, user=user, body=pull.body)
        fields.update(created_at=iso(pull.created_at), updated_at=iso(pull.updated_at))
        fields.update(closed_at=iso(pull.closed_at) if pull.closed_at else None)
        fields.update(merged_at=iso(pull.merged_at) if pull.merged_at else None)
        fields.update(draft=pull.draft, merged=pull.merged, merged_by=user if pull.merged else None)
        fields.update(merge_commit_sha=fake_sha(f"merge:{full}#{n}:{pull.head_sha}"))
        fields.update(head=branch(pull.head_ref, pull.head_sha))
        fields.update(base=branch(pull.base_ref, fake_sha(f"{full}:{pull.base_ref}")))
        fields["_links"] = {rel: {"href": href} for rel, href in links.items()}
        # Not modelled: the example's lock, labels, milestone, assignees and reviewers.
        fields.update(locked=False, active_lock_reason=None, milestone=None, assignee=None)
        fields.update(labels=[], assignees=[], requested_reviewers=[], requested_teams=[])
        return fields

    def installation(self, inst: Installation) -> dict[str, Any]:
        # Docs "List installations for the authenticated app": one item.
        api, account, app_id = self._url() or API, self.user(inst.account), self._app_id()
        return {
            "id": inst.id,
            "account": account,
            "repository_selection": "selected",
            "access_tokens_url": f"{api}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{api}/installation/repositories",
            "html_url": f"https://github.com/settings/installations/{inst.id}",
            "app_id": int(app_id) if app_id.isdigit() else app_id,
            "target_id": account["id"],
            "target_type": "User",
            "permissions": PERMISSIONS,
            "events": ["pull_request"],
            "created_at": inst.created_at,
            "updated_at": inst.created_at,
            "single_file_name": None,
            "suspended_at": None,
        }


def search_entry(pull: Pull) -> SearchEntry:
    """The pull request as search shows it: the GraphQL fields the poller asks for, from
    the same data the REST endpoints render."""
    full, status = pull.repo.full_name, "merged" if pull.merged else pull.state
    node = {
        "number": pull.number,
        "title": pull.title,
        "state": status.upper(),  # PullRequestState: OPEN, CLOSED, MERGED
        "merged": pull.merged,
        "mergedAt": iso(pull.merged_at) if pull.merged_at else None,
        "closedAt": iso(pull.closed_at) if pull.closed_at else None,
        "updatedAt": iso(pull.updated_at),
        "isDraft": pull.draft,
        "url": f"https://github.com/{full}/pull/{pull.number}",
        "id": node_id("PullRequest", pull.id),
        "databaseId": pull.id,
        "headRefName": pull.head_ref,
        "headRefOid": pull.head_sha,
        "baseRefName": pull.base_ref,
        "repository": {"nameWithOwner": full},
    }
    owner = pull.repo.owner.lower()
    return SearchEntry(pull.id, pull.repo.key, owner, pull.updated_at, status, node)
