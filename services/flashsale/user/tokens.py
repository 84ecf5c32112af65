"""Signed access tokens (JWT, HS256)."""

from __future__ import annotations

import dataclasses

import jwt

from flashsale.common import errors

ISSUER = "flashsale"
ALGORITHM = "HS256"
INVALID = "is invalid or expired"


@dataclasses.dataclass(frozen=True)
class Claims:
    """What a valid token says: whose it is and when it expires."""

    user_id: str
    email: str
    issued_at_s: int
    expires_at_s: int


class TokenIssuer:
    """Issues and checks access tokens with one HMAC key."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self._ttl_s = ttl_s

    def issue(self, user_id: str, email: str, now_s: int) -> tuple[str, Claims]:
        """A token for a user, valid ttl_s seconds from now_s."""
        claims = Claims(user_id=user_id, email=email, issued_at_s=now_s, expires_at_s=now_s + self._ttl_s)
        payload = {"sub": user_id, "email": email, "iat": now_s, "exp": claims.expires_at_s, "iss": ISSUER}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), claims

    def check(self, token: str) -> Claims:
        """The claims of a valid token; Unauthenticated when it is malformed, forged or expired."""
        if not token:
            raise errors.Unauthenticated("is required", "token")
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iat", "iss"]},
            )
        except jwt.PyJWTError:
            raise errors.Unauthenticated(INVALID, "token") from None
        sub, email = payload.get("sub"), payload.get("email")
        if not isinstance(sub, str) or not isinstance(email, str):
            raise errors.Unauthenticated(INVALID, "token")
        return Claims(user_id=sub, email=email, issued_at_s=int(payload["iat"]), expires_at_s=int(payload["exp"]))
