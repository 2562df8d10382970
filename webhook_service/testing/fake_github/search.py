"""The search index behind the fake's GraphQL ``search(type: ISSUE)``: pull requests kept
sorted by ``updated_at``, a parser for the qualifiers the poller uses, and an index lag.

Qualifiers (docs "Searching issues and pull requests"): ``is:pr`` / ``is:issue``,
``is:open`` / ``is:closed`` / ``is:merged``, ``org:LOGIN`` and ``user:LOGIN`` (pull
requests in repositories that login owns), ``repo:OWNER/NAME``, ``updated:`` with ``>=``,
``>``, ``<=``, ``<``, a range ``A..B`` or one date (docs "Understanding the search syntax":
``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS`` with ``Z`` or an offset; none means UTC). The
scope qualifiers (``org:``, ``user:``, ``repo:``) are OR'd: several ``repo:`` widen the
search, as on GitHub. ``sort:updated-asc`` / ``sort:updated-desc`` (``sort:updated`` is
descending; docs "Sorting search results"); without ``sort:`` GitHub orders by best match,
which the fake answers as ``updated-asc``. Any other term, free text included, is a
:class:`SearchError`: the fake would rather refuse than guess.

Docs (GraphQL reference, ``search``): "Perform a search across resources, returning a
maximum of 1,000 results." ``issueCount`` is the true count; paging stops at 1,000.

Index lag: GitHub's search index trails the database. A change is queued with the time it
becomes visible (``lag`` seconds of real time later); until then search sees the pull
request as it was (or not at all, if new). REST reads the current state directly.
"""

from __future__ import annotations

import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["RESULT_CAP", "SearchEntry", "SearchError", "SearchIndex", "SearchQuery", "parse_query"]

RESULT_CAP = 1000
_DAY = 86400
_REBUILD = 512  # apply more changes than this at once by re-sorting, not one by one


class SearchError(ValueError):
    """A search string the fake does not understand (a GraphQL error for the client)."""


@dataclass(frozen=True, eq=False, slots=True)
class SearchEntry:
    """One pull request as the search index holds it: filter keys and the GraphQL node."""

    pull_id: int  # databaseId, unique
    repo_key: str  # lower-cased "owner/name"
    owner: str  # lower-cased login
    updated_at: int  # epoch seconds
    status: str  # "open", "closed" or "merged"
    node: dict[str, Any]  # the ``... on PullRequest`` fields, ready to serialise


@dataclass(frozen=True)
class SearchQuery:
    owners: frozenset[str] = frozenset()  # org: / user:, lower-cased
    repos: frozenset[str] = frozenset()  # repo:, lower-cased
    since: int | None = None  # updated_at >= since
    until: int | None = None  # updated_at < until
    statuses: frozenset[str] | None = None  # None: any
    issues_only: bool = False  # is:issue: the fake has no issues
    descending: bool = False


def _bounds(value: str, term: str) -> tuple[int, int]:
    """The [start, end) epoch seconds a date or a date-time covers."""
    try:
        if "T" in value:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            start = int(moment.timestamp())
            return start, start + 1  # GitHub's timestamps have one-second resolution
        day = date.fromisoformat(value)
    except ValueError:
        raise SearchError(f"invalid date in search term {term!r}") from None
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    return start, start + _DAY


def _updated(value: str, term: str) -> tuple[int | None, int | None]:
    """``updated:`` as (since, until): updated_at >= since and < until."""
    for operator in (">=", "<=", ">", "<"):
        if value.startswith(operator):
            start, end = _bounds(value[len(operator) :], term)
            return {
                ">=": (start, None),
                ">": (end, None),
                "<=": (None, end),
                "<": (None, start),
            }[operator]
    if ".." in value:
        low, _, high = value.partition("..")
        since = None if low == "*" else _bounds(low, term)[0]
        until = None if high == "*" else _bounds(high, term)[1]
        return since, until
    return _bounds(value, term)


_IS: dict[str, frozenset[str] | None] = {
    "pr": None,
    "open": frozenset({"open"}),
    "closed": frozenset({"closed", "merged"}),
    "merged": frozenset({"merged"}),
    "unmerged": frozenset({"open", "closed"}),
}
_SORTS = {"updated-asc": False, "updated-desc": True, "updated": True}


def parse_query(text: str) -> SearchQuery:
    """The qualifiers of a search string (see the module docstring)."""
    owners: set[str] = set()
    repos: set[str] = set()
    since: int | None = None
    until: int | None = None
    statuses: frozenset[str] | None = None
    issues_only = descending = False
    for term in text.split():
        name, colon, value = term.partition(":")
        name, lowered = name.lower(), value.lower()
        if not colon or not value:
            raise SearchError(
                f"FakeGitHub: unsupported search term {term!r} (no free text; qualifiers"
                " is:, org:, user:, repo:, updated:, sort:)"
            )
        if name in ("org", "user"):
            owners.add(lowered)
        elif name == "repo" and lowered.count("/") == 1 and "" not in lowered.split("/"):
            repos.add(lowered)
        elif name == "updated":
            low, high = _updated(value, term)
            since = low if since is None or (low is not None and low > since) else since
            until = high if until is None or (high is not None and high < until) else until
        elif name == "is" and lowered == "issue":
            issues_only = True
        elif name == "is" and lowered in _IS:
            wanted = _IS[lowered]
            if wanted is not None:
                statuses = wanted if statuses is None else statuses & wanted
        elif name == "sort" and lowered in _SORTS:
            descending = _SORTS[lowered]
        else:
            raise SearchError(f"FakeGitHub: unsupported search qualifier {term!r}")
    return SearchQuery(
        frozenset(owners),
        frozenset(repos),
        since,
        until,
        statuses,
        issues_only,
        descending,
    )


_Item = tuple[int, int, SearchEntry]  # (updated_at, pull_id, entry): sorts by update


def _between(items: list[_Item], query: SearchQuery) -> list[_Item]:
    """The items updated within the query's bounds (``items`` is sorted)."""
    low = 0 if query.since is None else bisect_left(items, (query.since,))
    high = len(items) if query.until is None else bisect_left(items, (query.until,))
    return items[low:high]


class SearchIndex:
    """Pull requests as search sees them, sorted by (updated_at, id) overall, per owner
    and per repository; changes are queued until they are ``lag`` seconds old."""

    def __init__(self, lag: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        if lag < 0:
            raise ValueError("search_lag must be >= 0")
        self.lag = lag
        self._clock = clock
        self._pending: deque[tuple[float, SearchEntry]] = deque()  # by visible time
        self._visible: dict[int, SearchEntry] = {}
        self._sorted: list[_Item] = []
        self._by_owner: dict[str, list[_Item]] = {}
        self._by_repo: dict[str, list[_Item]] = {}

    def record(self, entry: SearchEntry) -> None:
        """A pull request changed: search sees ``entry`` once it is ``lag`` seconds old."""
        self._pending.append((self._clock() + self.lag, entry))

    def _lists(self, entry: SearchEntry) -> tuple[list[_Item], ...]:
        by_owner = self._by_owner.setdefault(entry.owner, [])
        return self._sorted, by_owner, self._by_repo.setdefault(entry.repo_key, [])

    def _catch_up(self) -> None:
        now, due = self._clock(), []
        while self._pending and self._pending[0][0] <= now:
            due.append(self._pending.popleft()[1])
        if len(due) > _REBUILD:  # e.g. a benchmark's 50,000 pull requests: sort once
            self._visible.update((entry.pull_id, entry) for entry in due)
            self._sorted = sorted((e.updated_at, e.pull_id, e) for e in self._visible.values())
            self._by_owner, self._by_repo = {}, {}
            for item in self._sorted:
                self._lists(item[2])[1].append(item)
                self._by_repo[item[2].repo_key].append(item)
            return
        for entry in due:
            old = self._visible.get(entry.pull_id)
            if old is not None:
                for items in self._lists(old):
                    del items[bisect_left(items, (old.updated_at, old.pull_id))]
            self._visible[entry.pull_id] = entry
            for items in self._lists(entry):
                insort(items, (entry.updated_at, entry.pull_id, entry))

    def search(
        self, query: SearchQuery, *, scope: frozenset[str] | None, offset: int, limit: int
    ) -> tuple[int, list[SearchEntry]]:
        """(issueCount, the entries at ``offset``..``offset + limit``), never past the
        1,000th result; ``scope``: the repository keys the credential may see (None: all)."""
        self._catch_up()
        if query.issues_only:
            return 0, []
        if query.owners or query.repos:
            sources = [self._by_owner.get(owner, []) for owner in query.owners]
            sources += [
                self._by_repo.get(repo, [])
                for repo in query.repos
                if repo.partition("/")[0] not in query.owners  # already in its owner's list
            ]
            parts = [_between(items, query) for items in sources]
            found = parts[0] if len(parts) == 1 else sorted(item for part in parts for item in part)
        else:
            found = _between(self._sorted, query)
        if scope is not None:
            found = [item for item in found if item[2].repo_key in scope]
        if query.statuses is not None:
            statuses = query.statuses
            found = [item for item in found if item[2].status in statuses]
        if query.descending:
            found.reverse()
        end = min(offset + limit, RESULT_CAP)
        return len(found), [item[2] for item in found[offset:end]] if offset < end else []
