"""User tables and the SQL on them."""

from __future__ import annotations

import dataclasses

from flashsale.common import database
from flashsale.user import domain

MIGRATIONS = [
    """
CREATE TABLE users (
  user_id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  phone TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  verified INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  verified_at BIGINT
);
CREATE TABLE verification_tokens (
  token_hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX verification_tokens_user ON verification_tokens (user_id)
"""
]

_USER_COLUMNS = "user_id, email, phone, verified, created_at"


@dataclasses.dataclass(frozen=True)
class Credentials:
    """An account with its password hash, for a login check."""

    user: domain.User
    password_hash: str


def _user(row: database.Row) -> domain.User:
    return domain.User(
        user_id=str(row[0]), email=str(row[1]), phone=str(row[2]), verified=bool(row[3]), created_at_ms=int(row[4])
    )


def insert_user(tx: database.Tx, user: domain.User, password_hash: str) -> None:
    """Store a new account; database.Conflict when its e-mail is registered already (by a concurrent registration
    that committed first: the unique key is checked by the database, whatever the driver)."""
    added = tx.execute(
        "INSERT INTO users (user_id, email, phone, password_hash, verified, created_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (email) DO NOTHING",
        (user.user_id, user.email, user.phone, password_hash, int(user.verified), user.created_at_ms),
    )
    if added == 0:
        raise database.Conflict(f"users.email must be unique: {user.email!r} is registered already")


def email_taken(tx: database.Tx, email: str) -> bool:
    """Whether an account uses this e-mail already."""
    return tx.fetchone("SELECT 1 FROM users WHERE email = ?", (email,)) is not None


def get_user(tx: database.Tx, user_id: str) -> domain.User | None:
    """An account by id."""
    row = tx.fetchone(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,))
    return _user(row) if row else None


def get_credentials(tx: database.Tx, email: str) -> Credentials | None:
    """An account and its password hash by e-mail."""
    row = tx.fetchone(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE email = ?", (email,))
    return Credentials(_user(row), str(row[5])) if row else None


def insert_token(tx: database.Tx, user_id: str, token: domain.VerificationToken) -> None:
    """Store the hash of a verification token."""
    tx.execute(
        "INSERT INTO verification_tokens (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
        (token.digest, user_id, token.expires_at_ms),
    )


def find_token(tx: database.Tx, digest: str) -> tuple[str, int] | None:
    """The user id and expiry of a stored token hash."""
    row = tx.fetchone("SELECT user_id, expires_at FROM verification_tokens WHERE token_hash = ?", (digest,))
    return (str(row[0]), int(row[1])) if row else None


def mark_verified(tx: database.Tx, user_id: str, now_ms: int) -> None:
    """Mark an account verified."""
    tx.execute("UPDATE users SET verified = 1, verified_at = ? WHERE user_id = ?", (now_ms, user_id))


def count_users(tx: database.Tx) -> int:
    """How many accounts exist."""
    row = tx.fetchone("SELECT COUNT(*) FROM users")
    return int(row[0]) if row else 0
