"""Test doubles shipped with the package: a fake GitHub REST API server on loopback."""

from __future__ import annotations

from webhook_service.testing.fake_github import Delivery, FakeGitHub, RequestRecord

__all__ = ["Delivery", "FakeGitHub", "RequestRecord"]
