"""The fake's timestamp clock, and GitHub's timestamp format.

GitHub stamps pull requests and deliveries with a one-second resolution. The clock follows
the wall clock but moves at least one second per stamp, so ``updated_at`` strictly
increases however fast a test changes things; :meth:`Clock.advance` pushes it forward.
Rate-limit windows and token expiry do not use it: they use the real ``time.time()``, so
clients can wait for them.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

Timestamp = datetime | str | int  # what callers may give: aware datetimes, ISO text, epoch


class Clock:
    """Epoch seconds that never repeat: the wall clock plus advances."""

    def __init__(self) -> None:
        self.last = 0  # the last timestamp given
        self.offset = 0.0  # the sum of advances

    def now(self) -> int:
        """The wall clock plus advances, without moving the clock."""
        return int(time.time() + self.offset)

    def tick(self) -> int:
        """The next timestamp: the wall clock plus advances, at least 1 s after the last."""
        self.last = max(self.last + 1, self.now())
        return self.last

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.last += math.ceil(seconds)


def iso(epoch: int) -> str:
    """GitHub's timestamp format: ``2011-01-26T19:01:12Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(value: Timestamp) -> int:
    if isinstance(value, int):
        return value
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return int(moment.timestamp())
