"""Fixtures of the fake GitHub's tests: a started fake that accepts both test tokens,
and a bounded HTTP session to call it with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.helpers import app_private_key
from tests.testing.fake_github.support import OTHER_TOKEN, TOKEN
from webhook_service.testing import FakeGitHub


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(private_key_pem=app_private_key()) as fake:
        fake.add_token(TOKEN)
        fake.add_token(OTHER_TOKEN)
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Every request is bounded.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session
