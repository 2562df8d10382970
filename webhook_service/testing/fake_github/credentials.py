"""Who may call the fake: personal access tokens, the App (a JWT signed with its key) and
installation access tokens that expire. Each credential draws on one rate-limit budget.

Docs "Authenticating to the REST API": ``Authorization: token X`` or ``Bearer X``. An
installation's tokens see only the installation's repositories and share its budget,
whichever token is used; the App's JWTs share the App's.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.types import Options

from webhook_service.testing.fake_github.state import Installation

Auth = Literal["token", "jwt"]  # what a route accepts
APP = "jwt"  # RequestRecord.token of requests made with an App JWT


@dataclass
class Credential:
    label: str  # for RequestRecord.token
    raw: str  # the presented token or JWT (ETags vary with it)
    budget_key: str
    who: str  # for "API rate limit exceeded for ..."
    repos: frozenset[str] | None = None  # None: every repository


def new_private_key() -> str:
    """A fresh RSA key for the App, PEM-encoded as GitHub hands it out."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem.decode()


class Credentials:
    """The tokens the fake accepts and the App's public key.

    ``app_id()`` is the App's id (a JWT's ``iss``); ``installations`` the installations
    by id, whose repositories scope their tokens.
    """

    def __init__(
        self,
        private_key_pem: str,
        *,
        app_id: Callable[[], str],
        installations: Mapping[int, Installation],
    ) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("private_key_pem must be an RSA key")
        self._public_key = key.public_key()
        self._app_id = app_id
        self._installations = installations
        self.tokens: set[str] = set()
        self._installation_tokens: dict[str, tuple[int, float]] = {}  # id, expiry

    def issue(self, installation_id: int, ttl: float) -> tuple[str, float]:
        """A new installation access token and its expiry (epoch seconds)."""
        alphabet = string.ascii_letters + string.digits
        token = "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))
        expires = time.time() + ttl
        self._installation_tokens[token] = (installation_id, expires)
        return token, expires

    def budget_key(self, token: str) -> str:
        # Docs: installation requests share the installation's limit, whichever token.
        if token in self.tokens:
            return "token:" + token
        if token in self._installation_tokens:
            return f"installation:{self._installation_tokens[token][0]}"
        if token == APP or token.count(".") == 2:
            return "app"
        raise KeyError(f"unknown token {token!r}")

    def budget_of(self, header: str) -> str | None:
        """The budget a request's credential draws on, before routing (None: no valid one)."""
        value = header.partition(" ")[2].strip()
        credential = self.authenticate(header, "jwt" if value.count(".") == 2 else "token")
        return None if isinstance(credential, str) else credential.budget_key

    def authenticate(self, header: str, auth: Auth) -> Credential | str:
        """The credential, or the 401 message (``Authorization: token X`` or ``Bearer X``)."""
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() not in ("token", "bearer") or not value:
            return "Requires authentication"
        if auth == "jwt":
            return self._check_jwt(value)
        if value in self.tokens:
            return Credential(value, value, "token:" + value, "user ID 1")
        installation_id, expires = self._installation_tokens.get(value, (0, 0.0))
        if time.time() >= expires:  # unknown or expired
            return "Bad credentials"
        repos = frozenset(self._installations[installation_id].repos)
        who = f"installation ID {installation_id}"
        return Credential(value, value, f"installation:{installation_id}", who, repos)

    def _check_jwt(self, value: str) -> Credential | str:
        # Docs "Generating a JSON Web Token (JWT) for a GitHub App": RS256, iss = App ID,
        # iat may be backdated 60 s for clock drift, exp at most 10 minutes ahead.
        options: Options = {"verify_exp": False, "verify_iat": False, "verify_iss": False}
        try:
            claims = jwt.decode(value, self._public_key, algorithms=["RS256"], options=options)
        except jwt.PyJWTError:
            return "A JSON web token could not be decoded"
        now, exp, iat = time.time(), claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or exp <= now:
            return (
                "'Expiration time' claim ('exp') must be a numeric value representing the"
                " future time at which the assertion expires"
            )
        if exp > now + 601:
            return "'Expiration time' claim ('exp') is too far in the future"
        if not isinstance(iat, int | float) or iat > now + 60:
            return (
                "'Issued at' claim ('iat') must be an Integer representing the time that the"
                " assertion was issued"
            )
        app_id = self._app_id()
        if str(claims.get("iss")) != app_id:
            return "'Issuer' claim ('iss') must be the ID of the App"
        return Credential(APP, value, "app", f"app ID {app_id}")
