"""The fake GitHub as its request pipeline and endpoints see it.

``FakeGitHub`` (``server``) assembles the parts and is the one object tests hold; the
pipeline and the endpoints are functions of this :class:`Context` rather than methods of
``FakeGitHub``, so they live in their own modules without importing the class that
imports them. Settings (``url``, ``token_ttl``, ...) are read on every request, so a test
may change them on the fake at any time, as before.
"""

from __future__ import annotations

from typing import Protocol

from webhook_service.testing.fake_github.budgets import PrimaryLimits
from webhook_service.testing.fake_github.credentials import Credentials
from webhook_service.testing.fake_github.deliveries import Hooks
from webhook_service.testing.fake_github.faults import Fault, FaultKind
from webhook_service.testing.fake_github.limits import SecondaryLimits
from webhook_service.testing.fake_github.records import RequestRecord
from webhook_service.testing.fake_github.rendering import Renderer
from webhook_service.testing.fake_github.search import SearchIndex
from webhook_service.testing.fake_github.state import State


class Context(Protocol):
    url: str  # the base URL, "" until the server listens
    token_ttl: float  # lifetime of installation tokens, seconds
    hook_timeout: float  # how long a hook may take to answer a redelivery, seconds
    tokens_issued: int
    secondary_refusals: int
    requests: list[RequestRecord]
    limits: SecondaryLimits
    _state: State
    _render: Renderer
    _credentials: Credentials
    _primary: PrimaryLimits
    _hooks: Hooks
    _search: SearchIndex

    def _take(self, kind: FaultKind, path: str, method: str | None = None) -> Fault | None: ...
