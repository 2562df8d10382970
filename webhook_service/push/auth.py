"""The handshake: the ``auth`` a Socket.IO client connects with, checked.

``{"token": API_TOKEN}`` is required (compared in constant time) when the service has a
token; ``DASHBOARD_TOKEN`` (read-only) will do as well, as the stream only reads;
``"since"`` (a non-negative event id) asks to resume after it, ``"batch": true``
for ``events`` lists instead of one message per event. Anything else is refused: the
client's fault, so it learns why (the reason reaches its ``connect_error`` handler).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


class Refused(Exception):
    """The connection is refused; ``str(exc)`` is the reason the client gets."""


@dataclass(frozen=True, slots=True)
class Handshake:
    since: int | None  # resume after this event id; None: the live stream only
    batch: bool  # ``events`` lists instead of one message per event


def read_auth(auth: Any, *, token: bytes | None, read_only_token: bytes | None = None) -> Handshake:
    """What a client asked for, if it may connect; else :class:`Refused`. ``token`` is
    API_TOKEN (None: no token needed), ``read_only_token`` DASHBOARD_TOKEN."""
    auth = auth if isinstance(auth, dict) else {}
    offered = auth.get("token")
    accepted = [t for t in (token, read_only_token) if t is not None]
    # A list, not a generator: both are compared, so timing does not tell which matched.
    if token is not None and not (
        isinstance(offered, str)
        and any([hmac.compare_digest(offered.encode(), t) for t in accepted])
    ):
        logger.info("refused a Socket.IO connection with a missing or wrong token")
        raise Refused("unauthorized")
    since = auth.get("since")
    if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
        raise Refused("'since' must be a non-negative event id")
    batch = auth.get("batch", False)
    if not isinstance(batch, bool):
        raise Refused("'batch' must be true or false")
    return Handshake(since=since, batch=batch)
