"""Pure user logic: registration input, verification tokens and the decisions around them."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import secrets

from flashsale.common import errors, validation

PASSWORD_MIN = 8
PASSWORD_MAX = 128
TOKEN_MAX = 256
INVALID_TOKEN = "is invalid or expired"
BAD_CREDENTIALS = "email or password is wrong"


@dataclasses.dataclass(frozen=True)
class User:
    """An account as the service shows it (never with its password hash)."""

    user_id: str
    email: str
    phone: str
    verified: bool
    created_at_ms: int


@dataclasses.dataclass(frozen=True)
class Registration:
    """A validated registration request."""

    email: str
    password: str
    phone: str


@dataclasses.dataclass(frozen=True)
class VerificationToken:
    """A fresh verification token: the plain value goes to the user, only its hash is stored."""

    plain: str
    digest: str
    expires_at_ms: int


class VerifyOutcome(enum.Enum):
    """What to do with a presented verification token."""

    VERIFY = "verify"
    ALREADY_VERIFIED = "already_verified"
    INVALID = "invalid"


def password(value: str, field: str = "password") -> str:
    """A password of PASSWORD_MIN..PASSWORD_MAX characters."""
    if not value:
        raise errors.InvalidArgument("is required", field)
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise errors.InvalidArgument(f"must be {PASSWORD_MIN}..{PASSWORD_MAX} characters", field)
    return value


def registration(email: str, password_value: str, phone: str) -> Registration:
    """Validate a registration request, field by field."""
    return Registration(
        email=validation.email(email, "email"),
        password=password(password_value),
        phone=validation.phone(phone.strip(), "phone"),
    )


def hash_token(plain: str) -> str:
    """The stored form of a verification token: its SHA-256 in hex."""
    return hashlib.sha256(plain.encode()).hexdigest()


def new_verification_token(now_ms: int, ttl_s: int) -> VerificationToken:
    """A random URL-safe token that expires ttl_s seconds from now."""
    plain = secrets.token_urlsafe(24)
    return VerificationToken(plain=plain, digest=hash_token(plain), expires_at_ms=now_ms + ttl_s * 1000)


def presented_token(value: str) -> str:
    """A verification token as presented by a caller; malformed ones are refused before any lookup."""
    value = value.strip()
    if not value:
        raise errors.InvalidArgument("is required", "token")
    if len(value) > TOKEN_MAX:
        raise errors.InvalidArgument(INVALID_TOKEN, "token")
    return value


def verify_outcome(expires_at_ms: int | None, now_ms: int, verified: bool) -> VerifyOutcome:
    """Decide a verification: unknown or expired tokens are invalid; a second use changes nothing."""
    if expires_at_ms is None or now_ms >= expires_at_ms:
        return VerifyOutcome.INVALID
    return VerifyOutcome.ALREADY_VERIFIED if verified else VerifyOutcome.VERIFY


def login_email(value: str) -> str:
    """The e-mail of a login attempt, normalised the way registration stores it."""
    value = value.strip().lower()
    if not value:
        raise errors.InvalidArgument("is required", "email")
    return value


def login_password(value: str) -> str:
    """The password of a login attempt; only presence is checked (a wrong one is just wrong)."""
    if not value:
        raise errors.InvalidArgument("is required", "password")
    return value


def plausible_password(value: str) -> bool:
    """Whether a login password could match at all (saves hashing absurd input)."""
    return PASSWORD_MIN <= len(value) <= PASSWORD_MAX
