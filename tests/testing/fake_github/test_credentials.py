"""Who may call the fake GitHub (fake_github.credentials): App JWTs, installation tokens."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import BadRequest
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_installation_access_token, get_jwt

from tests.helpers import app_private_key
from tests.testing.fake_github.support import REPO, auth, get
from webhook_service.testing import FakeGitHub


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


async def test_app_jwt_authentication(gh: FakeGitHub, http: aiohttp.ClientSession) -> None:
    gh.add_installation(42, [REPO])
    url = f"{gh.url}/app/installations"

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    valid = get_jwt(app_id=gh.app_id, private_key=gh.private_key_pem)
    status, body, _ = await get(http, url, bearer(valid))
    assert status == 200
    assert [(i["id"], i["account"]["login"]) for i in body] == [(42, "Codertocat")]
    assert gh.requests[-1].token == "jwt"

    now = int(time.time())

    def signed(claims: dict[str, Any], key: str | None = None) -> str:
        return jwt.encode(claims, key or gh.private_key_pem, algorithm="RS256")

    refused: dict[str, str] = {
        "decoded": get_jwt(app_id=gh.app_id, private_key=_other_key()),  # wrong key
        "exp": signed({"iat": now - 700, "exp": now - 10, "iss": gh.app_id}),  # expired
        "far in the future": signed({"iat": now, "exp": now + 3600, "iss": gh.app_id}),
        "Issued at": signed({"iat": now + 300, "exp": now + 500, "iss": gh.app_id}),
        "Issuer": signed({"iat": now - 60, "exp": now + 500, "iss": "999"}),
    }
    for message, token in refused.items():
        status, body, _ = await get(http, url, bearer(token))
        assert status == 401, message
        assert message in body["message"]
        assert "documentation_url" in body
    # A token is no JWT, a JWT is no token, and no credentials at all is refused.
    assert (await get(http, url, auth()))[0] == 401
    status, body, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls", bearer(valid))
    assert (status, body["message"]) == (401, "Bad credentials")
    status, body, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls", {})
    assert (status, body["message"]) == (401, "Requires authentication")
    status, body, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls", auth("ghp_unknown"))
    assert (status, body["message"]) == (401, "Bad credentials")


async def test_installation_tokens_are_scoped_and_expire() -> None:
    async with (
        FakeGitHub(private_key_pem=app_private_key(), token_ttl=1.0) as gh,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        gh.add_installation(42, [REPO])
        gh.add_pull(REPO)
        gh.add_pull("someone/else")
        api = GitHubAPI(http, "tests", base_url=gh.url)
        issued = await get_installation_access_token(
            api, installation_id="42", app_id=gh.app_id, private_key=gh.private_key_pem
        )
        token = issued["token"]
        assert token.startswith("ghs_") and gh.tokens_issued == 1
        expires = datetime.fromisoformat(issued["expires_at"]).timestamp()
        assert 0 < expires - time.time() <= 1.0
        assert issued["repository_selection"] == "selected"

        bearer = {"Authorization": f"Bearer {token}"}
        status, pulls, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls", bearer)
        assert (status, len(pulls)) == (200, 1)
        assert (await get(http, f"{gh.url}/repos/someone/else/pulls", auth(token)))[0] == 404
        status, listing, _ = await get(http, f"{gh.url}/installation/repositories", bearer)
        assert status == 200
        assert listing["total_count"] == 1
        assert [r["full_name"] for r in listing["repositories"]] == [REPO]
        # An installation's tokens share its rate limit.
        second = await get_installation_access_token(
            api, installation_id="42", app_id=gh.app_id, private_key=gh.private_key_pem
        )
        assert gh.rate_remaining(second["token"]) == gh.rate_remaining(token) == 4997
        with pytest.raises(BadRequest) as caught:
            await get_installation_access_token(
                api, installation_id="7", app_id=gh.app_id, private_key=gh.private_key_pem
            )
        assert caught.value.status_code == 404

        async with asyncio.timeout(5):
            await asyncio.sleep(max(0.0, expires + 1.0 - time.time()))
        status, body, _ = await get(http, f"{gh.url}/repos/{REPO}/pulls", bearer)
        assert (status, body["message"]) == (401, "Bad credentials")
