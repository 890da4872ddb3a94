"""Token verification (HS256 JWT with ``sub``, optional ``name``, required ``exp``)."""

from __future__ import annotations

import base64
import time

import jwt

from realtime.ids import User, UserId
from realtime.protocol import CloseCode, CloseConnection

MAX_NAME_CHARS = 64
DEV_TOKEN_TTL = 3600
"""Lifetime of a token issued by POST /dev/token, in seconds."""


class TokenVerifier:
    """Verifies tokens presented in ``hello``; never logs or echoes a token."""

    __slots__ = ("_jwk", "_key", "_leeway")

    def __init__(self, key: str, *, leeway: float = 5.0) -> None:
        self._key = key
        self._leeway = leeway
        # prepare the HMAC key once instead of on every decode
        encoded = base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode()
        self._jwk = jwt.PyJWK({"kty": "oct", "k": encoded}, algorithm="HS256")

    def verify(self, token: str) -> User:
        """Return the user of a valid token; :class:`CloseConnection` 4001 otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._jwk,
                algorithms=["HS256"],
                options={"require": ["exp", "sub"]},
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise CloseConnection(CloseCode.UNAUTHORIZED, "token expired") from None
        except jwt.InvalidTokenError:
            raise CloseConnection(CloseCode.UNAUTHORIZED, "invalid token") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not 1 <= len(sub) <= 128:
            raise CloseConnection(CloseCode.UNAUTHORIZED, "invalid token: bad sub")
        name = claims.get("name", sub)
        if not isinstance(name, str) or not name.strip():
            name = sub
        return User(UserId(sub), name.strip()[:MAX_NAME_CHARS])

    def issue(self, sub: str, name: str, *, ttl: float = DEV_TOKEN_TTL) -> str:
        """Sign a token (POST /dev/token and tests)."""
        claims = {"sub": sub, "name": name, "exp": int(time.time() + ttl)}
        return jwt.encode(claims, self._key, algorithm="HS256")
