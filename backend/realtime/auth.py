"""Token verification (HS256 JWT with ``sub``, optional ``name``, required ``exp``)."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import jwt

from realtime.ids import User, UserId
from realtime.protocol import CloseCode, CloseConnection, encodable

MAX_NAME_CHARS = 64
_ALGORITHMS = ("HS256",)
DEV_TOKEN_TTL = 3600
"""Lifetime of a token issued by POST /dev/token, in seconds."""


INVALID_TOKEN = "invalid token"  # noqa: S105 a close reason, not a secret
TOKEN_EXPIRED = "token expired"  # noqa: S105 a close reason, not a secret
"""The only two 4001 reasons (docs/PROTOCOL.md); the cause is never detailed further."""


@dataclass(frozen=True, slots=True)
class Grant:
    """A verified token: its user and its ``exp`` claim (seconds since 1970)."""

    user: User
    expires: float


class TokenVerifier:
    """Verifies tokens presented in ``hello``; never logs or echoes a token."""

    __slots__ = ("_decoder", "_jwk", "_key", "_leeway")

    @property
    def leeway(self) -> float:
        """Seconds of clock skew allowed on ``exp``."""
        return self._leeway

    def __init__(self, key: str, *, leeway: float = 5.0) -> None:
        self._key = key
        self._leeway = leeway
        # prepare the HMAC key once instead of on every decode
        encoded = base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode()
        self._jwk = jwt.PyJWK({"kty": "oct", "k": encoded}, algorithm="HS256")
        # the options are merged once here, not on every decode (jwt.decode merges per call)
        self._decoder = jwt.PyJWT(options={"require": ["exp", "sub"]})

    def verify(self, token: str) -> User:
        """Return the user of a valid token; :class:`CloseConnection` 4001 otherwise."""
        return self.grant(token).user

    def grant(self, token: str) -> Grant:
        """Verify a token: its user and expiry, or :class:`CloseConnection` 4001 with the
        reason ``invalid token`` or ``token expired``. Every string taken from the token
        (``sub``, ``name``) must have a UTF-8 form (no lone surrogate): it is sent to
        other clients and stored."""
        if not token.isascii():
            raise CloseConnection(CloseCode.UNAUTHORIZED, INVALID_TOKEN)
        try:
            claims = self._decoder.decode(
                token, self._jwk, algorithms=_ALGORITHMS, leeway=self._leeway
            )
        except jwt.ExpiredSignatureError:
            raise CloseConnection(CloseCode.UNAUTHORIZED, TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError:
            raise CloseConnection(CloseCode.UNAUTHORIZED, INVALID_TOKEN) from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not 1 <= len(sub) <= 128 or not encodable(sub):
            raise CloseConnection(CloseCode.UNAUTHORIZED, INVALID_TOKEN)
        name = claims.get("name", sub)
        if isinstance(name, str) and not encodable(name):
            raise CloseConnection(CloseCode.UNAUTHORIZED, INVALID_TOKEN)
        if not isinstance(name, str) or not name.strip():
            name = sub
        return Grant(User(UserId(sub), name.strip()[:MAX_NAME_CHARS]), float(claims["exp"]))

    def issue(self, sub: str, name: str, *, ttl: float = DEV_TOKEN_TTL) -> str:
        """Sign a token (POST /dev/token and tests)."""
        claims = {"sub": sub, "name": name, "exp": int(time.time() + ttl)}
        return jwt.encode(claims, self._key, algorithm="HS256")
