"""User application service: one transaction per operation, events through the outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from flashsale.common import database, errors, outbox, timeutil, topics, validation
from flashsale.user import domain, messages, passwords, repository, tokens


@dataclasses.dataclass(frozen=True)
class Registered:
    """A new account and the plain verification token sent to it."""

    user: domain.User
    verification_token: str


@dataclasses.dataclass(frozen=True)
class Session:
    """A successful login: the access token, its expiry and the account."""

    access_token: str
    expires_at_ms: int
    user: domain.User


@dataclasses.dataclass(frozen=True)
class Identity:
    """Whose a valid token is, with the verified flag as it is now."""

    user_id: str
    email: str
    verified: bool


class UserService:
    """Registration, verification, login and token checks."""

    def __init__(
        self,
        db: database.Database,
        relay: outbox.OutboxRelay,
        issuer: tokens.TokenIssuer,
        hasher: passwords.PasswordHasher,
        verification_ttl_s: int,
    ) -> None:
        self._db = db
        self._relay = relay
        self._issuer = issuer
        self._hasher = hasher
        self._verification_ttl_s = verification_ttl_s

    async def register(self, email: str, password: str, phone: str) -> Registered:
        """Create an unverified account and emit user.registered with a fresh verification token."""
        request = domain.registration(email, password, phone)
        password_hash = await asyncio.to_thread(self._hasher.hash, request.password)
        now = timeutil.now_ms()
        user = domain.User(uuid.uuid4().hex, request.email, request.phone, verified=False, created_at_ms=now)
        token = domain.new_verification_token(now, self._verification_ttl_s)

        def work(tx: database.Tx) -> None:
            if repository.email_taken(tx, user.email):
                raise errors.AlreadyExists("is registered already", "email")
            repository.insert_user(tx, user, password_hash)
            repository.insert_token(tx, user.user_id, token)
            outbox.add(tx, topics.USERS, messages.user_registered(user, token.plain))

        try:
            await self._db.run(work)
        except database.Conflict:
            # A concurrent registration of the same e-mail won the race.
            raise errors.AlreadyExists("is registered already", "email") from None
        self._relay.notify()
        return Registered(user, token.plain)

    async def verify_email(self, token: str) -> domain.User:
        """Mark the token's account verified (emitting user.verified once); a second use changes nothing."""
        digest = domain.hash_token(domain.presented_token(token))
        now = timeutil.now_ms()

        def work(tx: database.Tx) -> tuple[domain.User, bool]:
            found = repository.find_token(tx, digest)
            user = repository.get_user(tx, found[0]) if found else None
            if found is None or user is None:
                raise errors.InvalidArgument(domain.INVALID_TOKEN, "token")
            outcome = domain.verify_outcome(found[1], now, user.verified)
            if outcome is domain.VerifyOutcome.INVALID:
                raise errors.InvalidArgument(domain.INVALID_TOKEN, "token")
            if outcome is domain.VerifyOutcome.ALREADY_VERIFIED:
                return user, False
            repository.mark_verified(tx, user.user_id, now)
            outbox.add(tx, topics.USERS, messages.user_verified(user))
            return dataclasses.replace(user, verified=True), True

        user, changed = await self._db.run(work)
        if changed:
            self._relay.notify()
        return user

    async def login(self, email: str, password: str) -> Session:
        """Check the password and issue an access token; any mismatch is the same Unauthenticated."""
        address = domain.login_email(email)
        secret = domain.login_password(password)
        if not domain.plausible_password(secret):
            raise errors.Unauthenticated(domain.BAD_CREDENTIALS)
        found = await self._db.run(lambda tx: repository.get_credentials(tx, address))
        ok = await asyncio.to_thread(self._hasher.verify, found.password_hash if found else None, secret)
        if not ok or found is None:
            raise errors.Unauthenticated(domain.BAD_CREDENTIALS)
        user = found.user
        token, claims = self._issuer.issue(user.user_id, user.email, user.verified, timeutil.now_ms() // 1000)
        return Session(token, claims.expires_at_s * 1000, found.user)

    async def get_user(self, user_id: str) -> domain.User:
        """An account by id, or NotFound."""
        validation.identifier(user_id, "user_id")
        user = await self._db.run(lambda tx: repository.get_user(tx, user_id))
        if user is None:
            raise errors.NotFound("no such user", "user_id")
        return user

    def signing_keys(self) -> dict[str, Any]:
        """The public keys access tokens are checked with (a JWKS)."""
        return self._issuer.jwks

    async def validate_token(self, token: str) -> Identity:
        """Whose a valid access token is, with the verified flag read from the database now."""
        claims = self._issuer.check(token.strip())
        user = await self._db.run(lambda tx: repository.get_user(tx, claims.user_id))
        if user is None:
            raise errors.Unauthenticated(tokens.INVALID, "token")
        return Identity(user.user_id, user.email, user.verified)
