"""The PostgreSQL advisory locks the store takes, and the keys of the per-PR ones."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from webhook_service.store.records import PRKey

# PostgreSQL's advisory locks for writing transactions. A reconciling batch holds
# ``_WRITER_LOCK`` shared and one lock per pull request it concerns (sorted, so two
# batches never wait for each other in a cycle), so batches about different PRs run at
# once, in any process, and those about one PR one after the other. Every other writing
# transaction (an operator's edit, a link, a migration) holds ``_WRITER_LOCK`` alone,
# exclusive: nothing else writes meanwhile. Events are inserted under ``_EVENTS_LOCK``,
# taken before their ids are drawn and held until the commit (UnitOfWork.write), so
# their ids increase in commit order: a reader resuming after an id never misses an
# event committed later with a smaller one.
_WRITER_LOCK = 0x57_48_53_45_56_54  # "WHSEVT"
_EVENTS_LOCK = _WRITER_LOCK + 3

# Held while migrating (one process migrates; the others wait for it), and by the one
# replica that runs the sync worker (a session lock, see leadership.py).
_MIGRATION_LOCK = _WRITER_LOCK + 1
_POLLER_LOCK = _WRITER_LOCK + 2


def pull_locks(pulls: Iterable[PRKey]) -> list[int]:
    """The advisory lock keys of ``pulls``, sorted, each once: a stable signed 64-bit
    hash of the PR's key (a collision only makes two PRs wait for each other)."""
    keys = {
        int.from_bytes(
            hashlib.blake2b(f"{repo}#{number}".encode(), digest_size=8, person=b"whs-pr").digest(),
            "big",
            signed=True,
        )
        for repo, number in pulls
    }
    return sorted(keys)
