"""Access tokens: JWTs signed with EdDSA (Ed25519) by the user service and checked by anyone holding its public keys
(a JWKS), without asking it: the gateway checks every purchase's token itself. A token says whether the e-mail was
verified when it was issued (`email_verified`)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.kdf import hkdf

from flashsale.common import errors

ISSUER = "flashsale"
ALGORITHM = "EdDSA"
INVALID = "is invalid or expired"
_REQUIRED = ["sub", "exp", "iat", "iss"]
_KEY_INFO = b"flashsale access-token signing key v1"


@dataclasses.dataclass(frozen=True)
class Claims:
    """What a valid token says: whose it is, whether the e-mail was verified when it was issued, its lifetime."""

    user_id: str
    email: str
    verified: bool
    issued_at_s: int
    expires_at_s: int


class UnknownSigningKey(errors.Unauthenticated):
    """A well-formed token signed by a key the verifier does not hold (yet: the keys may have been rotated)."""


def signing_key(secret: str) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 key derived from the JWT secret (HKDF-SHA256): rotating the secret rotates the key."""
    seed = hkdf.HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(secret.encode())
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw(public: ed25519.Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: ed25519.Ed25519PublicKey) -> str:
    """The key's id in token headers and the JWKS: a digest of the public key."""
    return _b64(hashlib.sha256(_raw(public)).digest()[:12])


def jwks(publics: Sequence[ed25519.Ed25519PublicKey]) -> dict[str, Any]:
    """A JSON Web Key Set (RFC 7517, OKP keys of RFC 8037) of the public keys."""
    keys = [{"kty": "OKP", "crv": "Ed25519", "x": _b64(_raw(p)), "kid": key_id(p), "alg": ALGORITHM, "use": "sig"}
            for p in publics]  # fmt: skip
    return {"keys": keys}


def sign(key: ed25519.Ed25519PrivateKey, claims: Claims) -> str:
    """The signed token of the claims."""
    payload = {
        "sub": claims.user_id,
        "email": claims.email,
        "email_verified": claims.verified,
        "iat": claims.issued_at_s,
        "exp": claims.expires_at_s,
        "iss": ISSUER,
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": key_id(key.public_key())})


class TokenVerifier:
    """Checks tokens against the public keys of a JWKS."""

    def __init__(self, key_set: Mapping[str, Any]) -> None:
        self._keys: dict[str, Any] = {}
        for entry in key_set.get("keys", []):
            if entry.get("kty") == "OKP" and entry.get("crv") == "Ed25519" and entry.get("kid"):
                self._keys[str(entry["kid"])] = jwt.PyJWK(dict(entry), ALGORITHM).key

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of the keys held."""
        return frozenset(self._keys)

    def check(self, token: str) -> Claims:
        """The claims of a valid token; Unauthenticated when it is malformed, forged, foreign or expired, and
        UnknownSigningKey when its key is not held."""
        if not token:
            raise errors.Unauthenticated("is required", "token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise errors.Unauthenticated(INVALID, "token") from None
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise UnknownSigningKey(INVALID, "token")
        try:
            payload = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": _REQUIRED})
        except jwt.PyJWTError:
            raise errors.Unauthenticated(INVALID, "token") from None
        sub, email, verified = payload.get("sub"), payload.get("email"), payload.get("email_verified", False)
        if not isinstance(sub, str) or not isinstance(email, str) or not isinstance(verified, bool):
            raise errors.Unauthenticated(INVALID, "token")
        return Claims(sub, email, verified, int(payload["iat"]), int(payload["exp"]))
