"""The python-socketio internals the stream hooks were read against are the installed ones.

A failure here is not a bug: it says a locked version moved, and that
``webhook_service/push/socketio_hooks.py`` must be re-read against the new release (its
docstring lists what it relies on) before CHECKED_AGAINST is bumped."""

from __future__ import annotations

from importlib.metadata import version

from webhook_service.push.socketio_hooks import CHECKED_AGAINST


def test_the_hooks_were_checked_against_the_installed_releases() -> None:
    installed = {name: version(name) for name in CHECKED_AGAINST}
    assert installed == CHECKED_AGAINST
