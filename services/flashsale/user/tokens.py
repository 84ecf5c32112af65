"""The user service's access tokens: issued with the signing key derived from the JWT secret, checked with its
public key (the JWKS it publishes; flashsale.common.access_tokens)."""

from __future__ import annotations

from typing import Any

from flashsale.common import access_tokens

INVALID = access_tokens.INVALID
Claims = access_tokens.Claims


class TokenIssuer:
    """Issues and checks access tokens with one Ed25519 key."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._key = access_tokens.signing_key(secret)
        self._ttl_s = ttl_s
        self._jwks = access_tokens.jwks([self._key.public_key()])
        self._verifier = access_tokens.TokenVerifier(self._jwks)

    @property
    def jwks(self) -> dict[str, Any]:
        """The public keys tokens are checked with (a JWKS)."""
        return self._jwks

    def issue(self, user_id: str, email: str, verified: bool, now_s: int) -> tuple[str, Claims]:
        """A token for a user, valid ttl_s seconds from now_s, saying whether the e-mail is verified now."""
        claims = Claims(user_id, email, verified, issued_at_s=now_s, expires_at_s=now_s + self._ttl_s)
        return access_tokens.sign(self._key, claims), claims

    def check(self, token: str) -> Claims:
        """The claims of a valid token; Unauthenticated when it is malformed, forged, foreign or expired."""
        return self._verifier.check(token)
