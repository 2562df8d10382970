"""The API's one exception: what went wrong with a request, as the status to answer.

A handler raises :class:`APIError` and the guard (:mod:`.routes`) answers it as JSON
``{"error": "..."}``; the status says whose fault it is: 4xx for the request (never
worth retrying as it is), 502 when GitHub answered wrongly. A database that cannot be
reached is not an APIError: the guard answers ``StoreUnavailable`` with 503.
"""

from __future__ import annotations


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
