"""What the poller asks GitHub each cycle, decided without I/O.

Two parts (README, "Sync worker"):

- **Discovery**: one GraphQL search per *scope* finds the pull requests updated since
  the last search, however many repositories the scope holds: ``org:`` or ``user:``
  for an App installation's account, or for an owner with several configured
  repositories, and ``repo:`` batches for the rest (a search query is at most 256
  characters: docs "Troubleshooting search queries", "Limitations on query length").
- **The sweep**, the safety net for what search missed: every repository's PR list
  is read with its ETag at least once per ``full`` period. Each repository has a fixed
  phase in the period (a hash of its name), so sweeps are spread evenly over it
  instead of falling in one burst; repositories with recent activity, or with open
  PRs that tasks own, are swept four times as often.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

#: GitHub refuses longer search queries (docs: "Limitations on query length").
MAX_QUERY_LENGTH = 256
#: Configured repositories of one owner from which a search covers the owner whole
#: (``user:``) instead of listing them (``repo:``); results are filtered to tracked ones.
OWNER_SCOPE_FROM = 4
#: How much more often a repository with activity is swept than the others.
HOT_FACTOR = 4


@dataclass(frozen=True, slots=True)
class Scope:
    """One search: the credential to ask with (an installation id, or None for the
    token) and the qualifiers that pick the repositories."""

    installation_id: int | None
    qualifiers: str

    @property
    def key(self) -> str:
        return f"{self.installation_id}:{self.qualifiers}"


def scopes(
    repositories: Mapping[str, int | None], accounts: Mapping[int, tuple[str, bool]]
) -> list[Scope]:
    """The searches that cover ``repositories`` (name -> installation id or None).

    ``accounts``: installation id -> (account login, is an organization). Repositories
    are grouped by the credential that reads them and their owner: an installation's
    own account is searched whole (``org:``/``user:``), so is an owner with
    several repositories (``user:``); the rest go in ``repo:`` batches.
    """
    groups: dict[tuple[int | None, str], list[str]] = defaultdict(list)
    for name, installation_id in sorted(repositories.items(), key=lambda kv: kv[0]):
        groups[(installation_id, name.split("/", 1)[0])].append(name)
    found: list[Scope] = []
    batches: dict[int | None, list[str]] = defaultdict(list)
    for (installation_id, owner), names in sorted(groups.items(), key=_group_order):
        account = accounts.get(installation_id) if installation_id is not None else None
        if account is not None and account[0] == owner:
            found.append(Scope(installation_id, f"{'org' if account[1] else 'user'}:{owner}"))
        elif len(names) >= OWNER_SCOPE_FROM:
            found.append(Scope(installation_id, f"user:{owner}"))
        else:
            batches[installation_id] += [f"repo:{name}" for name in names]
    for installation_id, qualifiers in batches.items():
        batch: list[str] = []
        for qualifier in qualifiers:
            longer = query(" ".join([*batch, qualifier]), _LONGEST_SINCE)
            if batch and len(longer) > MAX_QUERY_LENGTH:
                found.append(Scope(installation_id, " ".join(batch)))
                batch = []
            batch.append(qualifier)
        found.append(Scope(installation_id, " ".join(batch)))
    return found


def _group_order(item: tuple[tuple[int | None, str], list[str]]) -> tuple[int, str]:
    (installation_id, owner), _ = item
    return (-1 if installation_id is None else installation_id, owner)


def query(qualifiers: str, since: datetime) -> str:
    """The search for pull requests updated at or after ``since``, oldest first (so
    that a search past GitHub's 1,000 results goes on from the last one seen)."""
    return f"is:pr updated:>={_stamp(since)} sort:updated-asc {qualifiers}"


_LONGEST_SINCE = datetime(2000, 1, 1, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def phase(repository: str) -> float:
    """A repository's fixed place in the sweep period, in [0, 1)."""
    digest = hashlib.blake2b(repository.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def next_sweep(repository: str, last: float, period: float) -> float:
    """When the repository is next due: its first phase point after ``last`` (so
    never more than ``period`` after it)."""
    offset = phase(repository) * period
    cycles = math.floor((last - offset) / period) + 1
    return offset + cycles * period


def due(
    swept: Mapping[str, float],
    repositories: Iterable[str],
    hot: set[str],
    *,
    now: float,
    horizon: float,
    period: float,
) -> list[str]:
    """The repositories to sweep in a cycle at ``now``: never swept ones first, then
    the due ones, most overdue first.

    ``horizon`` is the time between cycles: a repository is swept at the first cycle
    after its phase point, up to one horizon late, so the schedule runs one horizon
    short of ``period`` and no two sweeps of one repository are further apart than
    ``period``."""
    never: list[str] = []
    timed: list[tuple[float, str]] = []
    for name in repositories:
        last = swept.get(name)
        if last is None:
            never.append(name)
            continue
        every = period / HOT_FACTOR if name in hot else period
        at = next_sweep(name, last, max(every - horizon, horizon))
        if at <= now:
            timed.append((at, name))
    return sorted(never) + [name for _, name in sorted(timed)]
