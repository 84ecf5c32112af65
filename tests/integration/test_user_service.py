"""The user service against real Kafka and each storage backend: register, verify, log in, validate."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import confluent_kafka
import grpc
import jwt
import pydantic
import pytest
from grpc_errors import refused
from waiting import eventually, eventually_sync

from flashsale.common import access_tokens, database, events, outbox, topics
from flashsale.common import settings as settings_mod
from flashsale.common.settings import Settings
from flashsale.user import bootstrap, domain, repository
from flashsale_api.v1 import events_pb2, user_pb2, user_pb2_grpc

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


class Tap:
    """Reads a topic from its current end in a thread and keeps every message it sees (key, value)."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": bootstrap_servers, "group.id": uuid.uuid4().hex, "enable.auto.commit": False}
        )
        self._next = self._ends()
        self._consumer.assign([confluent_kafka.TopicPartition(topic, p, o) for p, o in self._next.items()])
        self.seen: list[tuple[bytes, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _ends(self, timeout: float = 30.0) -> dict[int, int]:
        probe = confluent_kafka.Consumer({"bootstrap.servers": self._bootstrap, "group.id": uuid.uuid4().hex})

        def ends() -> dict[int, int]:
            """The end offset of every partition; none while the topic has no partitions with leaders."""
            meta = probe.list_topics(self._topic, timeout=10).topics[self._topic]
            if meta.error is not None:
                return {}
            return {
                p: probe.get_watermark_offsets(confluent_kafka.TopicPartition(self._topic, p), timeout=10)[1]
                for p in meta.partitions
            }

        try:
            return eventually_sync(
                ends,
                within_s=timeout,
                every_s=0.1,
                ignoring=(confluent_kafka.KafkaException,),
                what=f"topic {self._topic} ready",
            )
        finally:
            probe.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            with self._lock:
                self.seen.append((msg.key() or b"", msg.value() or b""))
                self._next[msg.partition() or 0] = (msg.offset() or 0) + 1
        self._consumer.close()

    def envelopes(self, key: str) -> list[events_pb2.EventEnvelope]:
        """The envelopes seen so far with this key."""
        with self._lock:
            raw = [v for k, v in self.seen if k == key.encode()]
        return [events.decode(v) for v in raw]

    async def wait_for(self, key: str, event_type: str, within_s: float = 30.0) -> events_pb2.EventEnvelope:
        """The first envelope of a type with a key, waiting for it."""
        found = await eventually(
            lambda: [e for e in self.envelopes(key) if e.type == event_type],
            within_s=within_s,
            what=f"{event_type} for {key} on {self._topic}",
        )
        return found[0]

    async def settle(self, within_s: float = 30.0) -> None:
        """Wait until everything on the topic now has been read."""
        ends = await asyncio.to_thread(self._ends)

        def behind() -> dict[int, int]:
            """Partition → how many messages are still to be read."""
            with self._lock:
                return {p: end - self._next.get(p, 0) for p, end in ends.items() if self._next.get(p, 0) < end}

        await eventually(
            behind, until=lambda lag: not lag, within_s=within_s, what=f"the tap to catch up on {self._topic}"
        )

    def emails(self) -> set[str]:
        """The e-mail of every user.registered seen so far."""
        with self._lock:
            values = [v for _k, v in self.seen]
        found = set()
        for value in values:
            env = events.decode(value)
            if env.type == "user.registered":
                payload = events_pb2.UserRegistered()
                events.unpack(env, payload)
                found.add(payload.email)
        return found

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join()


@dataclasses.dataclass
class Env:
    """A running user service, a client, a tap on topics.USERS and a second handle on its database."""

    stub: user_pb2_grpc.UserServiceAsyncStub
    tap: Tap
    settings: Settings
    db: database.Database

    def count_users(self) -> int:
        """How many accounts the database holds."""
        return self.db.run_sync(repository.count_users)


@pytest.fixture
async def env(backend_settings: Settings) -> AsyncIterator[Env]:
    """The user service on one backend."""
    server = bootstrap.build(backend_settings)
    db = database.open_database(backend_settings, "user")
    async with server:
        tap = Tap(backend_settings.kafka_bootstrap, topics.USERS)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                yield Env(user_pb2_grpc.UserServiceStub(channel), tap, backend_settings, db)
        finally:
            tap.close()
            db.close()


def _email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@example.com"


def _registered(env: events_pb2.EventEnvelope) -> events_pb2.UserRegistered:
    payload = events_pb2.UserRegistered()
    events.unpack(env, payload)
    return payload


def _secret(settings: Settings) -> str:
    return settings.jwt_secret.get_secret_value()


async def test_register_verify_login_and_validate(env: Env) -> None:
    email = _email()
    user = await env.stub.Register(
        user_pb2.RegisterRequest(email=email.upper(), password=PASSWORD, phone="+15551234567")
    )
    assert (user.email, user.phone, user.verified) == (email, "+15551234567", False)
    assert user.created_at.seconds > 0

    registered = await env.tap.wait_for(user.user_id, "user.registered")
    payload = _registered(registered)
    assert (payload.user_id, payload.email, payload.phone) == (user.user_id, email, "+15551234567")
    token = payload.verification_token
    assert len(token) >= 32
    stored = env.db.run_sync(lambda tx: tx.fetchall("SELECT token_hash FROM verification_tokens"))
    assert (domain.hash_token(token),) in [tuple(r) for r in stored]
    assert all(token not in str(r[0]) for r in stored)

    login = await env.stub.Login(user_pb2.LoginRequest(email=email, password=PASSWORD))  # unverified may log in
    assert login.user.user_id == user.user_id
    public = access_tokens.signing_key(_secret(env.settings)).public_key()
    claims = jwt.decode(login.access_token, public, algorithms=["EdDSA"], issuer="flashsale")
    assert set(claims) == {"sub", "email", "email_verified", "iat", "exp", "iss"}
    assert claims["email_verified"] is False
    assert claims["sub"] == user.user_id
    assert claims["exp"] - claims["iat"] == env.settings.jwt_ttl_s
    assert login.expires_at.seconds == claims["exp"]
    identity = await env.stub.ValidateToken(user_pb2.ValidateTokenRequest(token=login.access_token))
    assert (identity.user_id, identity.email, identity.verified) == (user.user_id, email, False)

    verified = await env.stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=token))
    assert verified.verified and verified.user_id == user.user_id
    again = await env.stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=token))  # idempotent
    assert again.verified

    # The same access token now reports verified: the flag is read live, not from the claims.
    identity = await env.stub.ValidateToken(user_pb2.ValidateTokenRequest(token=login.access_token))
    assert identity.verified
    fetched = await env.stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id))
    assert fetched.verified and fetched.email == email

    verified_event = await env.tap.wait_for(user.user_id, "user.verified")
    body = events_pb2.UserVerified()
    events.unpack(verified_event, body)
    assert (body.user_id, body.email) == (user.user_id, email)
    await env.tap.settle()
    assert [e.type for e in env.tap.envelopes(user.user_id)] == ["user.registered", "user.verified"]


async def test_bad_registrations_change_nothing(env: Env) -> None:
    taken = _email()
    first = await env.stub.Register(user_pb2.RegisterRequest(email=taken, password=PASSWORD))
    before = env.count_users()
    emails = {"bad-email": "not-an-email", "short": _email(), "phone": _email(), "dup": taken.upper()}
    await refused(
        env.stub.Register(user_pb2.RegisterRequest(email=emails["bad-email"], password=PASSWORD)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "email",
    )
    await refused(
        env.stub.Register(user_pb2.RegisterRequest(email=emails["short"], password="seven77")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "password",
    )
    await refused(
        env.stub.Register(user_pb2.RegisterRequest(email=emails["phone"], password=PASSWORD, phone="5551234")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "phone",
    )
    dup = await refused(
        env.stub.Register(user_pb2.RegisterRequest(email=emails["dup"], password="another password")),
        grpc.StatusCode.ALREADY_EXISTS,
        "email",
    )
    assert dup.details() == "email: is registered already"
    trailers: Any = dup.trailing_metadata()  # grpc-stubs types the aio Metadata poorly
    assert ("field", "email") in list(trailers or ())
    assert env.count_users() == before

    # Everything emitted before now has been read: only the accepted registration produced an event.
    await env.tap.wait_for(first.user_id, "user.registered")
    await env.tap.settle()
    emitted = env.tap.emails()
    assert taken in emitted
    assert not {v.lower() for k, v in emails.items() if k != "dup"} & emitted
    assert len([e for e in env.tap.envelopes(first.user_id) if e.type == "user.registered"]) == 1
    login = await env.stub.Login(user_pb2.LoginRequest(email=taken, password=PASSWORD))  # the original password
    assert login.user.user_id == first.user_id


async def test_concurrent_registrations_of_one_email_make_one_account(env: Env) -> None:
    email = _email()
    calls = [env.stub.Register(user_pb2.RegisterRequest(email=email, password=PASSWORD)) for _ in range(6)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    accepted = [r for r in results if isinstance(r, user_pb2.User)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(accepted) == 1
    assert len(losers) == 5
    assert all(r.code() == grpc.StatusCode.ALREADY_EXISTS and "email" in (r.details() or "") for r in losers)


async def test_bad_tokens_and_credentials_are_refused(env: Env) -> None:
    email = _email()
    user = await env.stub.Register(user_pb2.RegisterRequest(email=email, password=PASSWORD))

    for token in ("", "x" * 300, "no-such-token", domain.hash_token("x")):
        await refused(
            env.stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=token)), grpc.StatusCode.INVALID_ARGUMENT, "token"
        )
    assert not (await env.stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id))).verified

    # a wrong password and an unknown e-mail get the same answer, naming no field (nothing to probe accounts with)
    wrong = await refused(
        env.stub.Login(user_pb2.LoginRequest(email=email, password="wrong password")), grpc.StatusCode.UNAUTHENTICATED
    )
    unknown = await refused(
        env.stub.Login(user_pb2.LoginRequest(email=_email(), password=PASSWORD)), grpc.StatusCode.UNAUTHENTICATED
    )
    assert wrong.details() == unknown.details() == "email or password is wrong"
    await refused(
        env.stub.Login(user_pb2.LoginRequest(email=email, password="")), grpc.StatusCode.INVALID_ARGUMENT, "password"
    )

    now = int(time.time())
    secret = _secret(env.settings)
    key = access_tokens.signing_key(secret)
    keys = json.loads((await env.stub.GetSigningKeys(user_pb2.GetSigningKeysRequest())).jwks_json)
    assert [k["kid"] for k in keys["keys"]] == [access_tokens.key_id(key.public_key())]
    kid = {"kid": keys["keys"][0]["kid"]}
    claims = {"sub": user.user_id, "email": email, "iat": now, "exp": now + 60, "iss": "flashsale"}
    bad_tokens = [
        "",
        "garbage",
        "a.b.c",
        jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, key, algorithm="EdDSA", headers=kid),
        jwt.encode(claims, access_tokens.signing_key("some-other-key-some-other-key-32"), algorithm="EdDSA"),
        jwt.encode({**claims, "iss": "elsewhere"}, key, algorithm="EdDSA", headers=kid),
        jwt.encode({**claims, "sub": uuid.uuid4().hex}, key, algorithm="EdDSA", headers=kid),  # no such user
        jwt.encode(claims, secret, algorithm="HS256", headers=kid),  # the secret is no signing key
    ]
    for token in bad_tokens:
        await refused(
            env.stub.ValidateToken(user_pb2.ValidateTokenRequest(token=token)), grpc.StatusCode.UNAUTHENTICATED, "token"
        )
    good = jwt.encode(claims, key, algorithm="EdDSA", headers=kid)
    assert (await env.stub.ValidateToken(user_pb2.ValidateTokenRequest(token=good))).user_id == user.user_id

    await refused(
        env.stub.GetUser(user_pb2.GetUserRequest(user_id="bad id!")), grpc.StatusCode.INVALID_ARGUMENT, "user_id"
    )
    await refused(
        env.stub.GetUser(user_pb2.GetUserRequest(user_id=uuid.uuid4().hex)), grpc.StatusCode.NOT_FOUND, "user_id"
    )


async def test_expired_verification_token_is_refused(env: Env) -> None:
    user = await env.stub.Register(user_pb2.RegisterRequest(email=_email(), password=PASSWORD))
    token = _registered(await env.tap.wait_for(user.user_id, "user.registered")).verification_token
    env.db.run_sync(
        lambda tx: tx.execute("UPDATE verification_tokens SET expires_at = ? WHERE user_id = ?", (1, user.user_id))
    )
    await refused(
        env.stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=token)), grpc.StatusCode.INVALID_ARGUMENT, "token"
    )
    assert not (await env.stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id))).verified


def test_repository_round_trip(backend_settings: Settings) -> None:
    db = database.open_database(backend_settings, "user")
    try:
        db.migrate([outbox.MIGRATION, *repository.MIGRATIONS])
        db.migrate([outbox.MIGRATION, *repository.MIGRATIONS])  # idempotent
        user = domain.User(uuid.uuid4().hex, "ann@example.com", "", verified=False, created_at_ms=1_000)
        token = domain.new_verification_token(1_000, 60)

        def create(tx: database.Tx) -> None:
            repository.insert_user(tx, user, "hash")
            repository.insert_token(tx, user.user_id, token)

        db.run_sync(create)
        assert db.run_sync(lambda tx: repository.email_taken(tx, "ann@example.com"))
        assert not db.run_sync(lambda tx: repository.email_taken(tx, "bob@example.com"))
        assert db.run_sync(lambda tx: repository.get_user(tx, user.user_id)) == user
        creds = db.run_sync(lambda tx: repository.get_credentials(tx, "ann@example.com"))
        assert creds == repository.Credentials(user, "hash")
        assert db.run_sync(lambda tx: repository.find_token(tx, token.digest)) == (user.user_id, 61_000)
        assert db.run_sync(lambda tx: repository.find_token(tx, "nope")) is None
        db.run_sync(lambda tx: repository.mark_verified(tx, user.user_id, 2_000))
        assert db.run_sync(lambda tx: repository.get_user(tx, user.user_id)) == dataclasses.replace(user, verified=True)

        clash = domain.User(uuid.uuid4().hex, "ann@example.com", "", verified=False, created_at_ms=1_000)
        with pytest.raises(Exception) as caught:
            db.run_sync(lambda tx: repository.insert_user(tx, clash, "hash"))
        assert "unique" in str(caught.value).lower()
        assert db.run_sync(repository.count_users) == 1
    finally:
        db.close()


def test_build_fails_fast_without_a_jwt_secret(base_settings: Settings) -> None:
    with pytest.raises(settings_mod.ConfigError, match="FLASHSALE_JWT_SECRET"):
        bootstrap.build(base_settings.model_copy(update={"jwt_secret": pydantic.SecretStr("")}))
