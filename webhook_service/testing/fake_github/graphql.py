"""The fake's ``POST /graphql``: the pull-request search the poller sends, nothing else.

There is no GraphQL engine here. A document is recognised by its ``search(`` call, whose
arguments may be literals or ``$variables``; the answer has the fields of the poller's
query (``issueCount``, ``pageInfo``, ``nodes ... on PullRequest``) and ``rateLimit`` when
the document asks for it. Anything else is answered the way GitHub answers what it cannot
run: HTTP 200 with ``{"errors": [{"message": ...}]}``. Bodies that are not JSON objects are
HTTP 400 with a REST-style message, as GitHub answers them ("Problems parsing JSON":
f/graphql.js#21; "Body should be a JSON object": XAMPPRocky/octocrab#401). Messages that
start with "FakeGitHub:" mark what the fake does not imitate.

Cursors are GitHub's search cursors: base64 of ``cursor:N``, the 1-based position of a
result. They are positions, so a result that moves between two pages can be skipped or
seen twice, as on GitHub; a poller must tolerate both.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_service.testing.fake_github.search import (
    RESULT_CAP,
    SearchError,
    SearchIndex,
    parse_query,
)

__all__ = ["GRAPHQL_DOCS", "RateLimit", "answer", "is_mutation", "rate_limited", "unauthenticated"]

GRAPHQL_DOCS = "https://docs.github.com/graphql"
_MAX_FIRST = 100  # docs "Node limit": values of first and last must be within 1-100
_COMMENT = re.compile(r"#[^\n]*")
_SEARCH = re.compile(r"\bsearch\s*\(")
_ARGUMENT = re.compile(r'\s*(\w+)\s*:\s*(\$\w+|"(?:[^"\\]|\\.)*"|-?\d+|\w+)\s*,?')

_Json = dict[str, Any]


@dataclass(frozen=True)
class RateLimit:
    """The GraphQL primary budget after this query: ``rateLimit`` and its headers."""

    limit: int
    remaining: int
    reset: int  # epoch seconds


class _Refused(Exception):
    """A request answered without running it: the status and JSON to send."""

    def __init__(self, status: int, body: _Json) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def _error(message: str, **extra: Any) -> _Refused:
    # GitHub answers a query it cannot run with 200 and {"errors": [...]}.
    return _Refused(200, {"errors": [{**extra, "message": message}]})


def _document(body: bytes) -> tuple[str, _Json]:
    """The query (comments removed) and its variables."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Refused(
            400, {"message": "Problems parsing JSON", "documentation_url": GRAPHQL_DOCS}
        ) from None
    if not isinstance(data, dict):
        raise _Refused(
            400, {"message": "Body should be a JSON object", "documentation_url": GRAPHQL_DOCS}
        )
    query, variables = data.get("query"), data.get("variables")
    variables = {} if variables is None else variables
    if not isinstance(query, str):
        raise _error("A query attribute must be specified and must be a string.")
    if not isinstance(variables, dict):
        raise _error("Variables must be a JSON object.")
    return _COMMENT.sub("", query), variables


def unauthenticated(message: str) -> _Json:
    """The 401 body for a request without valid credentials (an App JWT included)."""
    if message == "Requires authentication":  # GitHub's GraphQL wording for no credentials
        docs = GRAPHQL_DOCS + "/guides/forming-calls-with-graphql#authenticating-with-graphql"
        return {
            "message": "This endpoint requires you to be authenticated.",
            "documentation_url": docs,
        }
    return {"message": message, "documentation_url": GRAPHQL_DOCS}


def rate_limited(who: str) -> _Json:
    """The answer once the GraphQL primary budget is spent, sent with HTTP 200.

    Docs "Rate limits and query limits for the GraphQL API", "Exceeding the rate limit":
    the status is still 200, with an error message, and ``x-ratelimit-remaining`` is 0.
    The error's fields are GitHub's as clients report them (yanyongyu/githubkit#271);
    older answers had ``"type": "RATE_LIMITED"``.
    """
    error = {"type": "RATE_LIMIT", "code": "graphql_rate_limit"}
    return {"errors": [error | {"message": f"API rate limit already exceeded for {who}."}]}


def is_mutation(body: bytes) -> bool:
    """Whether a /graphql body holds a mutation (5 secondary points instead of 1)."""
    try:
        return _document(body)[0].lstrip().startswith("mutation")
    except _Refused:
        return False


def _arguments(document: str, start: int) -> dict[str, str] | None:
    """``name: value`` pairs of the call whose ``(`` ends at ``start``; None if malformed."""
    found: dict[str, str] = {}
    position = start
    while (match := _ARGUMENT.match(document, position)) is not None:
        found[match[1]] = match[2]
        position = match.end()
    return found if document[position:].lstrip().startswith(")") else None


def _value(raw: str | None, variables: _Json) -> Any:
    if raw is None:
        return None
    if raw.startswith("$"):
        return variables.get(raw[1:])
    if raw.startswith('"'):
        return orjson.loads(raw)
    if raw.lstrip("-").isdigit():
        return int(raw)
    return raw  # an enum value such as ISSUE, or true/false/null


def _cursor(position: int) -> str:
    return base64.b64encode(f"cursor:{position}".encode()).decode()


def _offset(after: Any) -> int | None:
    if after is None:
        return 0
    try:
        text = base64.b64decode(str(after), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    label, _, number = text.partition(":")
    return int(number) if label == "cursor" and number.isdigit() else None


def _search_page(document: str, variables: _Json) -> tuple[str, int, int]:
    """The search string, ``first`` and the offset ``after`` stands for."""
    if document.lstrip().startswith("mutation"):
        raise _error("FakeGitHub: mutations are not imitated")
    call = _SEARCH.search(document)
    if call is None:
        raise _error("FakeGitHub: only the pull-request search query is imitated")
    arguments = _arguments(document, call.end())
    if arguments is None:
        raise _error("FakeGitHub: the search(...) arguments could not be read")
    q, kind = _value(arguments.get("query"), variables), _value(arguments.get("type"), variables)
    first = _value(arguments.get("first"), variables)
    if not isinstance(q, str):
        raise _error("Argument 'query' on Field 'search' must be a String!", path=["search"])
    if kind != "ISSUE":
        raise _error("FakeGitHub: only search(type: ISSUE) is imitated", path=["search"])
    if first is None:
        raise _error(
            "You must provide a `first` or `last` value to properly paginate the `search`"
            " connection.",
            type="MISSING_PAGINATION_BOUNDARIES",
            path=["search"],
        )
    if not isinstance(first, int) or isinstance(first, bool) or first < 0:
        raise _error("Argument 'first' on Field 'search' must be an Int >= 0", path=["search"])
    if first > _MAX_FIRST:
        raise _error(
            f"Requesting {first} records on the `search` connection exceeds the `first`"
            f" limit of {_MAX_FIRST} records.",
            type="EXCESSIVE_PAGINATION",
            path=["search"],
        )
    offset = _offset(_value(arguments.get("after"), variables))
    if offset is None:
        raise _error("`after` does not appear to be a valid cursor.", path=["search"])
    return q, first, offset


def answer(
    body: bytes, *, index: SearchIndex, scope: frozenset[str] | None, rate: RateLimit
) -> tuple[int, _Json]:
    """The (status, JSON) GitHub would send for ``body``; ``scope``: the repository keys
    the credential may see (None: every repository)."""
    try:
        document, variables = _document(body)
        q, first, offset = _search_page(document, variables)
        try:
            query = parse_query(q)
        except SearchError as exc:
            raise _error(str(exc), type="INVALID_ARGUMENTS", path=["search"]) from None
    except _Refused as refused:
        return refused.status, refused.body
    total, entries = index.search(query, scope=scope, offset=offset, limit=first)
    last = offset + len(entries)
    search = {
        "issueCount": total,
        "pageInfo": {
            "hasNextPage": last < min(total, RESULT_CAP),
            "endCursor": _cursor(last) if entries else None,
        },
        "nodes": [entry.node for entry in entries],
    }
    data: _Json = {"search": search}
    if re.search(r"\brateLimit\b", document):
        reset = datetime.fromtimestamp(rate.reset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data["rateLimit"] = {
            "cost": 1,
            "limit": rate.limit,
            "remaining": rate.remaining,
            "resetAt": reset,
        }
    return 200, {"data": data}
