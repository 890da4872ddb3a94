"""Token verification: claims, defaults, refusals with 4001."""

from __future__ import annotations

import time

import jwt
import pytest
from realtime.auth import TokenVerifier
from realtime.ids import User, UserId
from realtime.protocol import CloseCode, CloseConnection

KEY = "k" * 64


def _token(claims: dict[str, object], key: str = KEY, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def test_issued_tokens_verify_to_their_user() -> None:
    """issue() and verify() agree: sub becomes the id, name the display name."""
    verifier = TokenVerifier(KEY)
    assert verifier.verify(verifier.issue("u-1", "Alice")) == User(UserId("u-1"), "Alice")


@pytest.mark.parametrize(
    ("name", "shown"),
    [(None, "u-1"), ("  ", "u-1"), (7, "u-1"), ("  Bob  ", "Bob"), ("x" * 100, "x" * 64)],
)
def test_name_defaults_to_sub_and_is_trimmed(name: object, shown: str) -> None:
    """A missing, blank or non-string name falls back to sub; names are cut to 64."""
    claims: dict[str, object] = {"sub": "u-1", "exp": int(time.time()) + 60}
    if name is not None:
        claims["name"] = name
    assert TokenVerifier(KEY).verify(_token(claims)).name == shown


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"sub": "u-1", "exp": int(time.time()) - 60}, "token expired"),
        ({"sub": 5, "exp": int(time.time()) + 60}, "invalid token"),
        ({"sub": "", "exp": int(time.time()) + 60}, "invalid token"),
        ({"sub": "u-1", "exp": "tomorrow"}, "invalid token"),
    ],
)
def test_bad_claims_close_4001(claims: dict[str, object], reason: str) -> None:
    """Expired, malformed or missing claims raise CloseConnection 4001 with a short reason."""
    with pytest.raises(CloseConnection) as raised:
        TokenVerifier(KEY).verify(_token(claims))
    assert (raised.value.code, raised.value.reason) == (CloseCode.UNAUTHORIZED, reason)


def test_other_algorithms_are_refused() -> None:
    """Only HS256 is accepted (no alg=none, no HS512 downgrade games)."""
    claims = {"sub": "u-1", "exp": int(time.time()) + 60}
    forged = _token(claims, alg="HS512")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in (forged, unsigned, "not.a.token"):
        with pytest.raises(CloseConnection):
            TokenVerifier(KEY).verify(token)
