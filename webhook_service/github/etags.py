"""Conditional requests: gidgethub's cache protocol, keeping ETags, not bodies.

The poller skips all work on a 304, so a body is never needed again, and memory stays
flat in the number of PRs watched. Every credential has its own cache: GitHub's ETags
are per token, and gidgethub keys its cache by URL only.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any


class ETagCache(MutableMapping[str, tuple[Any, ...]]):
    """gidgethub's cache protocol, keeping validators only (see the module docs).

    Only URLs registered with :meth:`watch` are conditional: gidgethub's ``getitem``
    and ``getiter`` would hand a 304's missing body to their callers.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._watched: set[str] = set()

    def watch(self, url: str) -> None:
        self._watched.add(url)

    def __getitem__(self, url: str) -> tuple[Any, ...]:
        if url not in self._watched:
            raise KeyError(url)
        etag, last_modified, more = self._entries[url]
        return etag, last_modified, None, more

    def __setitem__(self, url: str, value: tuple[Any, ...]) -> None:
        if url not in self._watched:
            return
        etag, last_modified, _data, more = value
        self._entries[url] = (etag, last_modified, more)

    def __delitem__(self, url: str) -> None:
        del self._entries[url]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
