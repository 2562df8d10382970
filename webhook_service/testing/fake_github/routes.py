"""The fake's endpoints: the parts of https://docs.github.com/en/rest (and ``POST
/graphql``) that the poller, the failed-delivery recovery and the PR creator use.

:data:`ROUTES` maps each (method, path pattern) to the credential it takes and its
handler. A handler gets a request that the pipeline has already authenticated and
charged (``pipeline``); it reads and changes the fake's state and answers JSON, raising
:class:`ApiError` for GitHub's error answers. The App's manifest pages are ``apps``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from yarl import URL

import webhook_service.testing.fake_github.graphql as graphql
from webhook_service.testing.fake_github.clock import iso
from webhook_service.testing.fake_github.context import Context
from webhook_service.testing.fake_github.credentials import Auth, Credential
from webhook_service.testing.fake_github.deliveries import Delivery, HookKey
from webhook_service.testing.fake_github.rendering import PERMISSIONS
from webhook_service.testing.fake_github.responses import (
    ApiError,
    int_param,
    json_response,
    paginate,
)
from webhook_service.testing.fake_github.state import Repo

Route = Callable[[Context, web.Request, Credential], Awaitable[web.Response]]


def access(fake: Context, request: web.Request, credential: Credential) -> Repo:
    """The path's repository if the credential may see it; GitHub hides others: 404."""
    info = request.match_info
    repo = fake._state.repos.get(f"{info['owner']}/{info['repo']}".lower())
    if repo is None or (credential.repos is not None and repo.key not in credential.repos):
        raise ApiError(404, "Not Found")
    return repo


# -- the App, its installations, repositories and pull requests ----------------------


async def _list_installations(fake: Context, request: web.Request, _: Credential) -> web.Response:
    installations = sorted(fake._state.installations.items())
    items = [fake._render.installation(inst) for _, inst in installations]
    page, link = paginate(request, items, fake.url)
    return json_response(page, link=link)


async def _create_token(fake: Context, request: web.Request, _: Credential) -> web.Response:
    # Docs "Create an installation access token for an app": 201, expires in an hour.
    # The optional body's repository narrowing is not imitated; permissions are echoed.
    number = request.match_info["id"]
    if not number.isdigit() or int(number) not in fake._state.installations:
        raise ApiError(404, "Not Found")
    raw = await request.read()
    try:
        options = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise ApiError(400, "Problems parsing JSON") from None
    permissions = options.get("permissions") if isinstance(options, dict) else None
    token, expires = fake._credentials.issue(int(number), fake.token_ttl)
    fake.tokens_issued += 1
    created: dict[str, Any] = {"token": token, "expires_at": iso(int(expires))}
    created |= {"permissions": permissions or PERMISSIONS, "repository_selection": "selected"}
    return json_response(created, 201)


async def _list_installation_repos(
    fake: Context, request: web.Request, credential: Credential
) -> web.Response:
    # Docs "List repositories accessible to the app installation" (installation token).
    if credential.repos is None:
        raise ApiError(403, "This endpoint requires an installation access token.")
    repos = sorted((fake._state.repos[key] for key in credential.repos), key=lambda r: r.id)
    page, link = paginate(request, [fake._render.repo(repo) for repo in repos], fake.url)
    listing = {"total_count": len(repos), "repository_selection": "selected"}
    return json_response(listing | {"repositories": page}, link=link)


async def _get_repository(
    fake: Context, request: web.Request, credential: Credential
) -> web.Response:
    """``GET /repos/{owner}/{repo}``: the repository (its default branch, say)."""
    return json_response(fake._render.repo(access(fake, request, credential)))


async def _list_pulls(fake: Context, request: web.Request, credential: Credential) -> web.Response:
    # Docs "List pull requests": state open|closed|all (default open); sort created|
    # updated|popularity|long-running (default created; the last two are ordered like
    # created here); direction defaults to desc for created, otherwise to asc.
    repo, query = access(fake, request, credential), request.query
    state, sort = query.get("state", "open"), query.get("sort", "created")
    direction = query.get("direction", "desc" if sort == "created" else "asc")
    for name, value, allowed in (
        ("state", state, ("open", "closed", "all")),
        ("sort", sort, ("created", "updated", "popularity", "long-running")),
        ("direction", direction, ("asc", "desc")),
    ):
        if value not in allowed:
            error = {"resource": "PullRequest", "field": name, "code": "invalid"}
            raise ApiError(422, "Validation Failed", errors=[error])
    pulls = [p for p in fake._state.pulls[repo.key].values() if state in ("all", p.state)]
    # head: "user:ref-name" (the head repository's owner); GitHub silently ignores a
    # value without the "user:" part. base: the base branch's name.
    head_owner, colon, head_ref = query.get("head", "").partition(":")
    if colon:
        pulls = [
            pull
            for pull in pulls
            if pull.repo.owner.lower() == head_owner.lower() and pull.head_ref == head_ref
        ]
    if "base" in query:
        pulls = [pull for pull in pulls if pull.base_ref == query["base"]]
    if sort == "updated":
        pulls.sort(key=lambda pull: (pull.updated_at, pull.number))
    else:
        pulls.sort(key=lambda pull: (pull.created_at, pull.number))
    if direction == "desc":
        pulls.reverse()
    page, link = paginate(request, pulls, fake.url)
    return json_response([fake._render.pull(pull, simple=True) for pull in page], link=link)


async def _create_pull(fake: Context, request: web.Request, credential: Credential) -> web.Response:
    # Docs "Create a pull request": title, head ("branch" or "owner:branch"), base,
    # body, draft; 201 with the pull request and a Location header. One open pull
    # request per head and base: another is a 422 (code "custom"). Not imitated:
    # forks (head's owner must be the repository's), branches (any name is taken to
    # exist, with commits), ``issue`` (title is required), maintainer_can_modify.
    repo = access(fake, request, credential)
    data = await _json_body(request)
    for name, kind in _CREATE_FIELDS.items():
        if data.get(name) is not None and not isinstance(data[name], kind[0]):
            raise ApiError(
                422,
                f"Invalid request.\n\nFor 'properties/{name}', "
                f"{orjson.dumps(data[name]).decode()} is not {kind[1]}.",
                docs=_CREATE_PULL_DOCS,
            )
    for name in ("head", "base", "title"):
        if not data.get(name):
            error = {"resource": "PullRequest", "code": "missing_field", "field": name}
            raise ApiError(422, "Validation Failed", errors=[error], docs=_CREATE_PULL_DOCS)
    owner, colon, ref = str(data["head"]).rpartition(":")
    if (colon and owner.lower() != repo.owner.lower()) or not ref:
        error = {"resource": "PullRequest", "field": "head", "code": "invalid"}
        raise ApiError(422, "Validation Failed", errors=[error], docs=_CREATE_PULL_DOCS)
    base = str(data["base"])
    if ref == base:
        raise _validation_failed(f"No commits between {base} and {ref}")
    for pull in fake._state.pulls[repo.key].values():
        if pull.state == "open" and pull.head_ref == ref and pull.base_ref == base:
            raise _validation_failed(f"A pull request already exists for {repo.owner}:{ref}.")
    pull = fake._state.add_pull(
        repo.full_name,
        title=str(data["title"]),
        head_ref=ref,
        base_ref=base,
        body=data.get("body"),
        draft=bool(data.get("draft")),
    )
    created = fake._render.public(pull)
    response = json_response(created, 201)
    response.headers["Location"] = str(created["url"])
    return response


async def _get_pull(fake: Context, request: web.Request, credential: Credential) -> web.Response:
    repo, number = access(fake, request, credential), request.match_info["number"]
    pull = fake._state.pulls[repo.key].get(int(number)) if number.isdigit() else None
    if pull is None:
        raise ApiError(404, "Not Found")
    return json_response(fake._render.pull(pull))


# -- webhook deliveries ------------------------------------------------------------------


def _path_hook(fake: Context, request: web.Request, credential: Credential) -> HookKey:
    if "repo" not in request.match_info:
        return fake._hooks.key(None, None)  # /app/hook/...
    repo, hook_id = access(fake, request, credential), request.match_info["hook_id"]
    if not hook_id.isdigit():
        raise ApiError(404, "Not Found")
    return repo.key, int(hook_id)


def _path_delivery(fake: Context, request: web.Request, credential: Credential) -> Delivery:
    key, wanted = _path_hook(fake, request, credential), request.match_info["delivery_id"]
    for delivery in fake._hooks.deliveries:
        if delivery.hook == key and str(delivery.id) == wanted:
            return delivery
    raise ApiError(404, "Not Found")


async def _list_deliveries(
    fake: Context, request: web.Request, credential: Credential
) -> web.Response:
    # Docs "List deliveries for an app webhook" / "... for a repository webhook": newest
    # first, per_page (max 100) and an opaque cursor in the Link rel="next" URL.
    key = _path_hook(fake, request, credential)
    deliveries = [d for d in reversed(fake._hooks.deliveries) if d.hook == key]
    cursor = request.query.get("cursor")
    if cursor is not None:
        if not cursor.startswith("v1_") or not cursor[3:].isdigit():
            raise ApiError(400, "Invalid cursor")
        deliveries = [d for d in deliveries if d.id <= int(cursor[3:])]
    per_page = min(int_param(request, "per_page", 30), 100)
    link = None
    if len(deliveries) > per_page:
        query = dict(request.query) | {"cursor": f"v1_{deliveries[per_page].id}"}
        link = f'<{URL(fake.url).with_path(request.path).with_query(query)}>; rel="next"'
    keys = fake._render.delivery_item_keys
    return json_response([delivery.json(keys) for delivery in deliveries[:per_page]], link=link)


async def _get_delivery(
    fake: Context, request: web.Request, credential: Credential
) -> web.Response:
    delivery = _path_delivery(fake, request, credential)
    return json_response(delivery.json(fake._render.delivery_keys))


async def _redeliver(fake: Context, request: web.Request, credential: Credential) -> web.Response:
    # Docs "Redeliver a delivery for an app webhook": 202 {}. The new attempt has the
    # same GUID and redelivery=true; it is made before answering (package docstring).
    original = _path_delivery(fake, request, credential)
    if original.hook not in fake._hooks.hooks:
        raise ApiError(404, "Not Found (FakeGitHub: call configure_hook first)")
    await fake._hooks.redeliver(original, answer_within=fake.hook_timeout)
    return json_response({}, 202)


# -- GraphQL -----------------------------------------------------------------------------


async def _graphql(fake: Context, request: web.Request, credential: Credential) -> web.Response:
    # Only tokens reach here (route auth "token"): docs "Authenticating as a GitHub App":
    # "The GraphQL API does not support any queries or mutations that require you to
    # authenticate with a JWT", so an App JWT is a 401 "Bad credentials" like any
    # unknown token. An installation token searches its installation's repositories.
    budget = fake._primary.budget(credential.budget_key, "graphql")
    rate = graphql.RateLimit(budget.limit, budget.remaining, budget.reset)
    status, data = graphql.answer(
        await request.read(), index=fake._search, scope=credential.repos, rate=rate
    )
    return json_response(data, status)


_REPO = "/repos/{owner}/{repo}"
_HOOK = _REPO + "/hooks/{hook_id}/deliveries"

#: (method, path pattern) -> (the credential it takes, the handler)
ROUTES: dict[tuple[str, str], tuple[Auth, Route]] = {
    ("GET", "/app/installations"): ("jwt", _list_installations),
    ("POST", "/app/installations/{id}/access_tokens"): ("jwt", _create_token),
    ("GET", "/app/hook/deliveries"): ("jwt", _list_deliveries),
    ("GET", "/app/hook/deliveries/{delivery_id}"): ("jwt", _get_delivery),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts"): ("jwt", _redeliver),
    ("GET", "/installation/repositories"): ("token", _list_installation_repos),
    ("GET", _REPO): ("token", _get_repository),
    ("GET", _REPO + "/pulls"): ("token", _list_pulls),
    ("POST", _REPO + "/pulls"): ("token", _create_pull),
    ("GET", _REPO + "/pulls/{number}"): ("token", _get_pull),
    ("GET", _HOOK): ("token", _list_deliveries),
    ("GET", _HOOK + "/{delivery_id}"): ("token", _get_delivery),
    ("POST", _HOOK + "/{delivery_id}/attempts"): ("token", _redeliver),
    ("POST", "/graphql"): ("token", _graphql),
}

# "Create a pull request" body parameters: JSON type, and its name in GitHub's messages.
_CREATE_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "title": (str, "a string"),
    "head": (str, "a string"),
    "base": (str, "a string"),
    "body": (str, "a string"),
    "draft": (bool, "a boolean"),
    "maintainer_can_modify": (bool, "a boolean"),
    "issue": (int, "an integer"),
}
_CREATE_PULL_DOCS = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"


def _validation_failed(message: str) -> ApiError:
    error = {"resource": "PullRequest", "code": "custom", "message": message}
    return ApiError(422, "Validation Failed", errors=[error], docs=_CREATE_PULL_DOCS)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ApiError(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Problems parsing JSON")
    return data
