"""User domain: registration input, verification tokens, password hashing and access tokens."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

import jwt
import pytest

from flashsale.common import access_tokens, errors
from flashsale.user import domain, passwords, tokens


def test_registration_normalises_and_keeps_the_fields() -> None:
    reg = domain.registration(" Ann@Example.COM ", "correct horse", " +15551234567 ")
    assert reg == domain.Registration("ann@example.com", "correct horse", "+15551234567")


def test_phone_is_optional() -> None:
    assert domain.registration("ann@example.com", "correct horse", "").phone == ""


@pytest.mark.parametrize(
    ("email", "password", "phone", "field"),
    [
        ("not-an-email", "correct horse", "", "email"),
        ("", "correct horse", "", "email"),
        ("ann@example.com", "short", "", "password"),
        ("ann@example.com", "", "", "password"),
        ("ann@example.com", "x" * 129, "", "password"),
        ("ann@example.com", "correct horse", "5551234567", "phone"),
        ("ann@example.com", "correct horse", "+1 555 123", "phone"),
    ],
)
def test_bad_registration_names_the_field(email: str, password: str, phone: str, field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        domain.registration(email, password, phone)
    assert caught.value.field == field


def test_password_length_bounds_are_inclusive() -> None:
    assert domain.password("x" * 8) == "x" * 8
    assert domain.password("x" * 128) == "x" * 128
    with pytest.raises(errors.InvalidArgument):
        domain.password("x" * 7)


def test_token_is_stored_as_its_sha256_only() -> None:
    token = domain.new_verification_token(now_ms=1_000, ttl_s=60)
    assert token.digest == hashlib.sha256(token.plain.encode()).hexdigest()
    assert token.plain not in token.digest
    assert token.expires_at_ms == 61_000
    assert len(token.plain) >= 32
    assert domain.new_verification_token(1_000, 60).plain != token.plain


@pytest.mark.parametrize(
    ("expires_at", "now", "verified", "outcome"),
    [
        (None, 0, False, domain.VerifyOutcome.INVALID),
        (1_000, 999, False, domain.VerifyOutcome.VERIFY),
        (1_000, 1_000, False, domain.VerifyOutcome.INVALID),
        (1_000, 5_000, True, domain.VerifyOutcome.INVALID),
        (1_000, 10, True, domain.VerifyOutcome.ALREADY_VERIFIED),
    ],
)
def test_verify_outcome(expires_at: int | None, now: int, verified: bool, outcome: domain.VerifyOutcome) -> None:
    assert domain.verify_outcome(expires_at, now, verified) is outcome


def test_presented_token_is_checked_before_lookup() -> None:
    assert domain.presented_token("  abc ") == "abc"
    for bad in ("", "   ", "x" * 300):
        with pytest.raises(errors.InvalidArgument) as caught:
            domain.presented_token(bad)
        assert caught.value.field == "token"


def test_password_hasher_round_trip_and_unknown_account() -> None:
    hasher = passwords.PasswordHasher()
    encoded = hasher.hash("correct horse")
    assert encoded.startswith("$argon2id$")
    assert "correct horse" not in encoded
    assert hasher.verify(encoded, "correct horse")
    assert not hasher.verify(encoded, "wrong horse!")
    assert not hasher.verify(None, "correct horse")
    assert not hasher.verify("not-a-hash", "correct horse")


def test_access_token_round_trip() -> None:
    now = int(time.time())
    issuer = tokens.TokenIssuer("k" * 40, ttl_s=3600)
    token, claims = issuer.issue("u1", "ann@example.com", True, now_s=now)
    assert claims.expires_at_s == now + 3600 and claims.verified is True
    public = access_tokens.signing_key("k" * 40).public_key()
    decoded = jwt.decode(token, public, algorithms=["EdDSA"], issuer="flashsale")
    assert set(decoded) == {"sub", "email", "email_verified", "iat", "exp", "iss"}
    assert jwt.get_unverified_header(token)["kid"] == issuer.jwks["keys"][0]["kid"] == access_tokens.key_id(public)
    assert issuer.check(token) == claims
    assert issuer.check(issuer.issue("u2", "bo@example.com", False, now_s=now)[0]).verified is False


def test_anyone_with_the_published_key_set_checks_tokens_and_nobody_signs_with_it() -> None:
    now = int(time.time())
    issuer = tokens.TokenIssuer("k" * 40, ttl_s=3600)
    token, claims = issuer.issue("u1", "ann@example.com", True, now_s=now)
    published = json.loads(json.dumps(issuer.jwks))  # what GetSigningKeys sends
    assert {k["kty"] for k in published["keys"]} == {"OKP"} and "d" not in published["keys"][0]
    assert access_tokens.TokenVerifier(published).check(token) == claims
    rotated, _ = tokens.TokenIssuer("another secret" * 3, ttl_s=3600).issue("u1", "ann@example.com", True, now)
    with pytest.raises(access_tokens.UnknownSigningKey):
        access_tokens.TokenVerifier(published).check(rotated)
    hmac_with_the_secret = jwt.encode(
        {
            "sub": "u1",
            "email": "a@example.com",
            "email_verified": True,
            "iat": now,
            "exp": now + 60,
            "iss": "flashsale",
        },
        "k" * 40,
        algorithm="HS256",
        headers={"kid": published["keys"][0]["kid"]},
    )  # the old HS256 tokens, or an attempt at algorithm confusion
    with pytest.raises(errors.Unauthenticated):
        issuer.check(hmac_with_the_secret)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: "",
        lambda t: "not.a.jwt",
        lambda t: t + "x",
        lambda t: t.split(".")[0] + ".e30." + t.split(".")[2],
    ],
)
def test_malformed_access_tokens_are_unauthenticated(mangle: Callable[[str], str]) -> None:
    issuer = tokens.TokenIssuer("k" * 40, ttl_s=3600)
    token, _ = issuer.issue("u1", "ann@example.com", True, now_s=int(time.time()))
    with pytest.raises(errors.Unauthenticated) as caught:
        issuer.check(mangle(token))
    assert caught.value.field == "token"


def test_expired_forged_and_foreign_tokens_are_refused() -> None:
    now = int(time.time())
    issuer = tokens.TokenIssuer("k" * 40, ttl_s=60)
    expired, _ = issuer.issue("u1", "a@example.com", True, now_s=now - 3600)
    forged, _ = tokens.TokenIssuer("other-key" * 5, ttl_s=60).issue("u1", "a@example.com", True, now_s=now)
    key, kid = access_tokens.signing_key("k" * 40), issuer.jwks["keys"][0]["kid"]
    claims = {"sub": "u1", "email": "a@example.com", "iat": now, "exp": now + 60}
    foreign = jwt.encode({**claims, "iss": "x"}, key, algorithm="EdDSA", headers={"kid": kid})
    no_expiry = jwt.encode({"sub": "u1", "email": "a", "iat": now, "iss": "flashsale"}, key, "EdDSA", {"kid": kid})
    odd_flag = jwt.encode({**claims, "iss": "flashsale", "email_verified": "yes"}, key, "EdDSA", {"kid": kid})
    unsigned = jwt.encode({"sub": "u1", "email": "a@example.com", "iat": now, "exp": now + 60}, None, "none")
    for token in (expired, forged, foreign, unsigned, no_expiry, odd_flag):
        with pytest.raises(errors.Unauthenticated):
            issuer.check(token)
