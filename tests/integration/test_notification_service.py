"""The notification service with real Kafka, a real SMTP server (aiosmtpd) and a real HTTP SMS sink."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
import email.message
import email.policy
import http.server
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import confluent_kafka
import grpc
import pytest
from aiosmtpd import controller as smtp_controller
from google.protobuf import message as pb_message
from grpc_errors import refused
from waiting import eventually

from flashsale.common import database, decided, events, kafka, outbox, timeutil, topics
from flashsale.common.settings import Settings
from flashsale.notification import bootstrap, domain, repository
from flashsale.user import bootstrap as user_bootstrap
from flashsale_api.v1 import events_pb2, notification_pb2, notification_pb2_grpc, user_pb2, user_pb2_grpc
from flashsale_tools.platform import cache

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
TOKEN_LINE = re.compile(r"^Verification token: (\S+)\r?$", re.MULTILINE)


class Mailbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store one received message."""
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        with self._lock:
            self._messages.append(parsed)
        return "250 Message accepted for delivery"

    def to(self, address: str, subject: str = "") -> list[email.message.EmailMessage]:
        """Messages received for an address (and with a subject, when given)."""
        with self._lock:
            return [m for m in self._messages if m["To"] == address and (not subject or m["Subject"] == subject)]

    async def wait(self, address: str, subject: str, within_s: float = 30.0) -> email.message.EmailMessage:
        """The first message for an address with a subject, waiting for it."""
        found = await eventually(
            lambda: self.to(address, subject), within_s=within_s, what=f"mail {subject!r} to {address}"
        )
        return found[0]


class SmsSink(http.server.ThreadingHTTPServer):
    """A small HTTP server playing the SMS provider: keeps the JSON bodies, answers `status`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmsHandler)
        self.received: list[dict[str, str]] = []
        self.status = 200
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"http://127.0.0.1:{self.server_address[1]}/sms"

    def to(self, phone: str) -> list[dict[str, str]]:
        """Texts received for a number."""
        with self.lock:
            return [r for r in self.received if r.get("to") == phone]


class _SmsHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        sink = self.server
        assert isinstance(sink, SmsSink)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with sink.lock:
            sink.received.append(body)
        self.send_response(sink.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on a free port."""
    box = Mailbox()
    port = cache.free_port()
    server = smtp_controller.Controller(box, hostname="127.0.0.1", port=port)
    server.start()
    try:
        yield box, port
    finally:
        server.stop()


@pytest.fixture
def sms() -> Iterator[SmsSink]:
    """A real HTTP server standing in for the SMS provider."""
    sink = SmsSink()
    thread = threading.Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.shutdown()
        sink.server_close()
        thread.join()


class Stream:
    """A live Subscribe call pumped into a queue, so waiting with a timeout never cancels the call."""

    def __init__(self, stub: notification_pb2_grpc.NotificationServiceAsyncStub, user_id: str) -> None:
        self.call = stub.Subscribe(notification_pb2.SubscribeRequest(user_id=user_id))
        self.queue: asyncio.Queue[notification_pb2.Notification] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for note in self.call:
            await self.queue.put(note)

    async def ready(self) -> None:
        """Wait until the server registered the subscription (it sends initial metadata then)."""
        await asyncio.wait_for(self.call.initial_metadata(), 10)

    async def next_of(self, kind: str, within_s: float = 30.0) -> notification_pb2.Notification:
        """The next notification of a kind (others are skipped)."""
        deadline = time.monotonic() + within_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} notification within {within_s}s")
            with contextlib.suppress(TimeoutError):
                note = await asyncio.wait_for(self.queue.get(), remaining)
                if note.kind == kind:
                    return note

    async def close(self) -> None:
        """Go away as a client does."""
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self.task


@dataclasses.dataclass
class Env:
    """A running notification service, a client, and a producer to play the other services."""

    stub: notification_pb2_grpc.NotificationServiceAsyncStub
    producer: kafka.EventProducer
    settings: Settings

    async def publish(self, topic: str, kind: str, key: str, payload: pb_message.Message) -> events_pb2.EventEnvelope:
        """Emit an event as another service would."""
        env = events.envelope(kind, key, payload, "test")
        await self.producer.publish(topic, env)
        return env

    async def deliveries(self, user_id: str) -> list[notification_pb2.Delivery]:
        """ListDeliveries of a user."""
        reply = await self.stub.ListDeliveries(notification_pb2.ListDeliveriesRequest(user_id=user_id))
        return list(reply.deliveries)

    async def deliveries_of(self, user_id: str, notification_id: str, count: int) -> list[notification_pb2.Delivery]:
        """The deliveries of one notification, waiting until `count` of them are recorded."""

        async def probe() -> list[notification_pb2.Delivery]:
            return [d for d in await self.deliveries(user_id) if d.notification_id == notification_id]

        found = await eventually(
            probe, until=lambda got: len(got) >= count, within_s=30, what=f"{count} deliveries of {notification_id}"
        )
        return sorted(found, key=lambda d: d.channel)

    async def live_ready(self) -> None:
        """Wait until this replica's live consumer reads new events (its group starts at the end)."""
        probe_user = f"probe-{uuid.uuid4().hex}"
        stream = Stream(self.stub, probe_user)
        await stream.ready()

        async def seen_live() -> notification_pb2.Notification:
            """Publish a probe event and wait a second for it on the stream."""
            await self.publish(topics.USERS, "user.verified", probe_user, events_pb2.UserVerified(user_id=probe_user))
            return await stream.next_of("user.verified", within_s=1.0)

        try:
            await eventually(
                seen_live,
                within_s=60,
                every_s=0,
                ignoring=(AssertionError,),
                what="the live consumer to read a new event",
            )
        finally:
            await stream.close()


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Env]:
    """The notification service with the given settings, a client and a producer.

    The channel is opened first and closed last, so a stream still open at shutdown sees how the server ends it.
    """
    address = f"127.0.0.1:{cache.free_port()}"
    settings = settings.model_copy(update={"notification_addr": address})
    server = bootstrap.build(settings)
    producer = kafka.EventProducer(settings.kafka_bootstrap, "notification-test")
    try:
        async with grpc.aio.insecure_channel(address) as channel, server:
            yield Env(notification_pb2_grpc.NotificationServiceStub(channel), producer, settings)
    finally:
        await asyncio.to_thread(producer.close)


def _settings(base: Settings, smtp_port: int, sms_url: str = "") -> Settings:
    return base.model_copy(
        update={"smtp_port": smtp_port, "sms_url": sms_url, "delivery_attempts": 3, "delivery_backoff_s": 0.05}
    )


def _order(order_id: str, user_id: str, status: str) -> events_pb2.OrderChanged:
    return events_pb2.OrderChanged(
        order_id=order_id,
        reservation_id=uuid.uuid4().hex,
        user_id=user_id,
        sale_id="sale-1",
        quantity=2,
        amount_cents=1999,
        status=status,
        pay_by=timeutil.to_timestamp(timeutil.now_ms() + 900_000),
    )


async def test_register_verify_and_notify_by_mail_sms_and_live(
    base_settings: Settings, mailbox: tuple[Mailbox, int], sms: SmsSink
) -> None:
    box, smtp_port = mailbox
    settings = _settings(base_settings, smtp_port, sms.url)
    user_server = user_bootstrap.build(settings)
    async with (
        running(settings) as env,
        user_server,
        grpc.aio.insecure_channel(f"127.0.0.1:{user_server.port}") as user_channel,
    ):
        users = user_pb2_grpc.UserServiceStub(user_channel)
        await env.live_ready()
        address = f"u-{uuid.uuid4().hex[:12]}@example.com"
        phone = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
        user = await users.Register(user_pb2.RegisterRequest(email=address, password=PASSWORD, phone=phone))

        # The verification mail carries the token on a line of its own.
        mail = await box.wait(address, "Verify your Flashsale account")
        assert mail["From"] == settings.smtp_sender
        match = TOKEN_LINE.search(mail.get_content())
        assert match is not None, mail.get_content()
        assert not sms.to(phone)  # verification goes by e-mail only

        stream = Stream(env.stub, user.user_id)
        await stream.ready()
        verified = await users.VerifyEmail(user_pb2.VerifyEmailRequest(token=match.group(1)))
        assert verified.verified
        live = await stream.next_of("user.verified")
        assert (live.user_id, live.title) == (user.user_id, "E-mail verified")
        login = await users.Login(user_pb2.LoginRequest(email=address, password=PASSWORD))
        identity = await users.ValidateToken(user_pb2.ValidateTokenRequest(token=login.access_token))
        assert identity.verified and identity.user_id == user.user_id

        [first] = await env.deliveries(user.user_id)
        assert (first.channel, first.status, first.attempts) == ("email", "sent", 1)

        # An order: e-mail, SMS and live, each delivery recorded.
        prefs = await env.stub.GetPreferences(notification_pb2.GetPreferencesRequest(user_id=user.user_id))
        assert (prefs.email_enabled, prefs.sms_enabled) == (True, True)
        order_id = uuid.uuid4().hex
        created = await env.publish(
            topics.ORDERS, "order.created", order_id, _order(order_id, user.user_id, "PENDING_PAYMENT")
        )
        note = await stream.next_of("order.created")
        assert note.notification_id == created.event_id and note.data["order_id"] == order_id
        recorded = await env.deliveries_of(user.user_id, created.event_id, 2)
        assert [(d.channel, d.status, d.attempts) for d in recorded] == [("email", "sent", 1), ("sms", "sent", 1)]
        assert len(box.to(address, "Your order awaits payment")) == 1
        [text] = sms.to(phone)
        assert "Your order awaits payment" in text["body"]

        # SMS switched off: the next order notice goes by e-mail only.
        await env.stub.SetPreferences(
            notification_pb2.Preferences(user_id=user.user_id, email_enabled=True, sms_enabled=False)
        )
        paid = await env.publish(topics.ORDERS, "order.paid", order_id, _order(order_id, user.user_id, "PAID"))
        recorded = await env.deliveries_of(user.user_id, paid.event_id, 1)
        assert [d.channel for d in recorded] == ["email"]
        await box.wait(address, "Payment received")
        assert len(sms.to(phone)) == 1

        # A redelivered event sends nothing again (same partition: handled before the next one).
        await env.producer.publish(topics.ORDERS, created)
        cancelled = await env.publish(
            topics.ORDERS, "order.cancelled", order_id, _order(order_id, user.user_id, "CANCELLED")
        )
        await env.deliveries_of(user.user_id, cancelled.event_id, 1)
        assert len(box.to(address, "Your order awaits payment")) == 1

        # Purchase decisions are live only: one notice per decision of a purchases.decided event, to its shopper.
        other = uuid.uuid4().hex
        other_stream = Stream(env.stub, other)
        await other_stream.ready()
        rejected, accepted, theirs = (uuid.uuid4().hex for _ in range(3))
        batch = events_pb2.PurchasesDecided(
            sale_id="sale-1",
            product_id="prod-1",
            price_cents=1999,
            stock=10,
            remaining=8,
            request_ids=[rejected, theirs, accepted],
            user_ids=[user.user_id, other, user.user_id],
            quantities=[1, 2, 2],
            reasons=["sold_out", "", ""],
            reservation_ids=["", "res-theirs", "res-mine"],
        )
        decision = await env.publish(topics.SALES, topics.PURCHASES_DECIDED, "sale-1", batch)
        first, second = [await stream.next_of("purchase.decided") for _ in range(2)]
        assert (first.notification_id, first.title) == (decided.entry_id(rejected), "Purchase rejected")
        assert "sold out" in first.body and first.data["reason"] == "sold_out"
        assert (second.notification_id, second.title) == (decided.entry_id(accepted), "Purchase accepted")
        assert (second.data["reservation_id"], second.data["sale_id"]) == ("res-mine", "sale-1")
        note = await other_stream.next_of("purchase.decided")
        assert (note.user_id, note.notification_id, note.data["request_id"]) == (
            other,
            decided.entry_id(theirs),
            theirs,
        )
        await other_stream.close()
        ids = {decision.event_id, *(decided.entry_id(r) for r in (rejected, accepted))}
        assert not [d for d in await env.deliveries(user.user_id) if d.notification_id in ids]
        open_stream = stream  # left open: shutdown must end it
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 4.5  # the open stream did not hold the server for its grace period
    await asyncio.wait_for(open_stream.task, 5)
    assert await open_stream.call.code() == grpc.StatusCode.OK  # ended cleanly, not cut off


async def test_unreachable_channels_are_recorded_as_failed(base_settings: Settings, sms: SmsSink) -> None:
    sms.status = 503
    settings = _settings(base_settings, cache.free_port(), sms.url)  # nothing listens on that SMTP port
    async with running(settings) as env:
        user_id, address, phone = uuid.uuid4().hex, f"f-{uuid.uuid4().hex[:12]}@example.com", "+15550001111"
        token = "tok-" + uuid.uuid4().hex
        registered = events_pb2.UserRegistered(user_id=user_id, email=address, phone=phone, verification_token=token)
        reg = await env.publish(topics.USERS, "user.registered", user_id, registered)
        [mail] = await env.deliveries_of(user_id, reg.event_id, 1)
        assert (mail.channel, mail.status, mail.attempts) == ("email", "failed", 3)
        assert "smtp" in mail.last_error
        assert token not in mail.last_error

        order_id = uuid.uuid4().hex
        created = await env.publish(
            topics.ORDERS, "order.created", order_id, _order(order_id, user_id, "PENDING_PAYMENT")
        )
        failed = await env.deliveries_of(user_id, created.event_id, 2)
        assert [(d.channel, d.status, d.attempts) for d in failed] == [("email", "failed", 3), ("sms", "failed", 3)]
        assert "503" in failed[1].last_error
        assert len(sms.to(phone)) == 3  # every attempt reached the provider


async def test_malformed_events_are_dead_lettered_and_consumption_goes_on(
    base_settings: Settings, mailbox: tuple[Mailbox, int]
) -> None:
    box, smtp_port = mailbox
    dlq = topics.dead_letter(topics.USERS)
    kafka.ensure_topics(base_settings.kafka_bootstrap, [dlq], 1)
    tap = DeadLetters(base_settings.kafka_bootstrap, dlq)
    try:
        async with running(_settings(base_settings, smtp_port)) as env:
            garbage_key = f"garbage-{uuid.uuid4().hex}"
            raw = confluent_kafka.Producer({"bootstrap.servers": base_settings.kafka_bootstrap})
            raw.produce(topics.USERS, key=garbage_key.encode(), value=b"garbage")
            assert raw.flush(10) == 0
            wrong_key = uuid.uuid4().hex  # a user.registered whose payload is something else
            await env.publish(topics.USERS, "user.registered", wrong_key, events_pb2.UserVerified(user_id=wrong_key))

            user_id, address = uuid.uuid4().hex, f"d-{uuid.uuid4().hex[:12]}@example.com"
            good = events_pb2.UserRegistered(user_id=user_id, email=address, verification_token="tok-after")
            await env.publish(topics.USERS, "user.registered", user_id, good)
            mail = await box.wait(address, "Verify your Flashsale account")
            assert "Verification token: tok-after" in mail.get_content()

            letter = await tap.wait_for(garbage_key, "flashsale-notification")
            assert (letter.topic, letter.value) == (topics.USERS, b"garbage")
            assert letter.reason
            letter = await tap.wait_for(wrong_key, "flashsale-notification")
            assert "expected flashsale.v1.UserRegistered" in letter.reason
    finally:
        tap.close()


async def test_bad_user_ids_are_refused(base_settings: Settings, mailbox: tuple[Mailbox, int]) -> None:
    _box, smtp_port = mailbox
    settings = _settings(base_settings, smtp_port)
    async with running(settings) as env:
        for bad in ("", "bad id!", "x" * 65):
            await refused(
                env.stub.GetPreferences(notification_pb2.GetPreferencesRequest(user_id=bad)),
                grpc.StatusCode.INVALID_ARGUMENT,
                "user_id",
            )
            await refused(
                env.stub.SetPreferences(notification_pb2.Preferences(user_id=bad, email_enabled=False)),
                grpc.StatusCode.INVALID_ARGUMENT,
                "user_id",
            )
            await refused(
                env.stub.ListDeliveries(notification_pb2.ListDeliveriesRequest(user_id=bad)),
                grpc.StatusCode.INVALID_ARGUMENT,
                "user_id",
            )
            call = env.stub.Subscribe(notification_pb2.SubscribeRequest(user_id=bad))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.read()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "user_id" in (caught.value.details() or "")

        user_id = uuid.uuid4().hex
        prefs = await env.stub.SetPreferences(
            notification_pb2.Preferences(user_id=user_id, email_enabled=False, sms_enabled=True)
        )
        assert (prefs.email_enabled, prefs.sms_enabled) == (False, True)
        db = database.open_database(settings, "notification")
        try:
            rows = db.run_sync(lambda tx: tx.fetchall("SELECT user_id FROM preferences"))
        finally:
            db.close()
        assert [r[0] for r in rows] == [user_id]  # the refused calls stored nothing


class DeadLetters:
    """Reads a dead-letter topic from its start in a thread."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": uuid.uuid4().hex,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self._consumer.assign(
            [confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in meta.partitions]
        )
        self.letters: list[events_pb2.DeadLetter] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            letter = events_pb2.DeadLetter()
            letter.ParseFromString(msg.value() or b"")
            with self._lock:
                self.letters.append(letter)
        self._consumer.close()

    async def wait_for(self, key: str, consumer: str) -> events_pb2.DeadLetter:
        """The dead letter of a message key written by a consumer group, waiting for it."""

        def probe() -> list[events_pb2.DeadLetter]:
            with self._lock:
                return [x for x in self.letters if x.key == key.encode() and x.consumer == consumer]

        found = await eventually(probe, within_s=30, what=f"dead letter {key}")
        return found[0]

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join()


def test_repository_round_trip(backend_settings: Settings) -> None:
    db = database.open_database(backend_settings, "notification")
    try:
        db.migrate([outbox.MIGRATION, *repository.MIGRATIONS])
        assert db.run_sync(lambda tx: repository.get_contact(tx, "u1")) is None
        db.run_sync(lambda tx: repository.save_contact(tx, domain.Contact("u1", "a@example.com", ""), 1))
        db.run_sync(lambda tx: repository.save_contact(tx, domain.Contact("u1", "b@example.com", "+15551234567"), 2))
        assert db.run_sync(lambda tx: repository.get_contact(tx, "u1")) == domain.Contact(
            "u1", "b@example.com", "+15551234567"
        )

        assert db.run_sync(lambda tx: repository.get_preferences(tx, "u1")) == domain.Preferences("u1", True, True)
        db.run_sync(lambda tx: repository.save_preferences(tx, domain.Preferences("u1", False, True), 1))
        db.run_sync(lambda tx: repository.save_preferences(tx, domain.Preferences("u1", True, False), 2))
        assert db.run_sync(lambda tx: repository.get_preferences(tx, "u1")) == domain.Preferences("u1", True, False)

        first = domain.Delivery("n1", "u1", "email", "failed", 3, "smtp down", 10)
        second = domain.Delivery("n2", "u1", "sms", "sent", 1, "", 20)
        db.run_sync(lambda tx: repository.record_deliveries(tx, [first, second]))
        db.run_sync(lambda tx: repository.record_deliveries(tx, []))
        retried = dataclasses.replace(first, status="sent", attempts=1, last_error="", updated_at_ms=30)
        db.run_sync(lambda tx: repository.record_deliveries(tx, [retried]))
        db.run_sync(
            lambda tx: repository.record_deliveries(tx, [domain.Delivery("n3", "u2", "email", "sent", 1, "", 5)])
        )
        assert db.run_sync(lambda tx: repository.list_deliveries(tx, "u1")) == [retried, second]
    finally:
        db.close()
