"""The shared adapters against real backends: database (SQLite and PostgreSQL), Kafka consumer, outbox relay."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import confluent_kafka
import pytest

from flashsale.common import database, errors, events, outbox
from flashsale.common import kafka as kafka_io
from flashsale.common.settings import Settings
from flashsale_api.v1 import events_pb2
from flashsale_tools.platform import kafka_broker

pytestmark = pytest.mark.integration

MIGRATIONS = ["CREATE TABLE items (id TEXT PRIMARY KEY, qty BIGINT NOT NULL)"]


def _db(settings: Settings) -> database.Database:
    db = database.open_database(settings, f"t{uuid.uuid4().hex[:8]}")
    db.migrate([outbox.MIGRATION, *MIGRATIONS])
    return db


async def test_transactions_commit_or_roll_back(backend_settings: Settings) -> None:
    db = _db(backend_settings)
    try:
        await db.run(lambda tx: tx.execute("INSERT INTO items (id, qty) VALUES (?, ?)", ("a", 1)))

        def fails(tx: database.Tx) -> None:
            tx.execute("UPDATE items SET qty = 99 WHERE id = ?", ("a",))
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await db.run(fails)
        assert await db.run(lambda tx: tx.fetchone("SELECT qty FROM items WHERE id = ?", ("a",))) == (1,)
    finally:
        db.close()


async def test_migrations_are_applied_once(backend_settings: Settings) -> None:
    db = _db(backend_settings)
    try:
        db.migrate([outbox.MIGRATION, *MIGRATIONS])  # again: nothing to do, no error
        versions = await db.run(lambda tx: tx.fetchall("SELECT version FROM schema_migrations ORDER BY version"))
        assert versions == [(1,), (2,)]
    finally:
        db.close()


async def test_conditional_decrement_never_goes_below_zero_under_concurrency(backend_settings: Settings) -> None:
    db = _db(backend_settings)
    try:
        await db.run(lambda tx: tx.execute("INSERT INTO items (id, qty) VALUES (?, ?)", ("hot", 10)))

        def take(tx: database.Tx) -> int:
            return tx.execute("UPDATE items SET qty = qty - 1 WHERE id = ? AND qty > 0", ("hot",))

        taken = await asyncio.gather(*(db.run(take) for _ in range(40)))
        assert sum(taken) == 10
        assert await db.run(lambda tx: tx.fetchone("SELECT qty FROM items WHERE id = ?", ("hot",))) == (0,)
    finally:
        db.close()


def _consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[confluent_kafka.Message]:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: list[confluent_kafka.Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg)
    finally:
        consumer.close()
    return got


def _envelope(key: str) -> events_pb2.EventEnvelope:
    return events.envelope("user.verified", key, events_pb2.UserVerified(user_id=key, email="a@b.cd"), "test")


async def test_outbox_relay_publishes_committed_events_in_order(
    backend_settings: Settings, kafka: kafka_broker.KafkaBroker
) -> None:
    topic = f"t.outbox.{uuid.uuid4().hex[:8]}"
    db = _db(backend_settings)
    pub = _producer(kafka)
    try:
        envs = [_envelope(f"k{i}") for i in range(5)]

        def store(tx: database.Tx) -> None:
            for env in envs:
                outbox.add(tx, topic, env)

        await db.run(store)
        relay = outbox.OutboxRelay(db, pub)
        assert await relay.relay_once() == 5
        assert await relay.relay_once() == 0
        got = _consume_all(kafka.bootstrap_servers, topic, 5)
        ids = [events.decode(m.value()).event_id for m in sorted(got, key=lambda m: m.offset())]
        assert sorted(ids) == sorted(e.event_id for e in envs)
    finally:
        pub.close()
        db.close()


def _producer(broker: kafka_broker.KafkaBroker) -> kafka_io.EventProducer:
    return kafka_io.EventProducer(broker.bootstrap_servers, f"test-{uuid.uuid4().hex[:6]}")


def test_consumer_dead_letters_malformed_messages_and_goes_on(kafka: kafka_broker.KafkaBroker) -> None:
    topic = f"t.consume.{uuid.uuid4().hex[:8]}"
    pub = _producer(kafka)
    handled: list[str] = []
    done = threading.Event()

    def handler(env: events_pb2.EventEnvelope) -> None:
        handled.append(env.key)
        done.set()

    pub.publish_sync(topic, "bad", b"garbage")
    good = _envelope("good")
    pub.publish_sync(topic, good.key, good.SerializeToString())
    consumer = kafka_io.EventConsumer(kafka.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}", [topic], handler, pub)
    consumer.start()
    try:
        assert done.wait(30), "the good event after the malformed one was not handled"
        letters = _consume_all(kafka.bootstrap_servers, f"{topic}.dlq", 1)
        assert len(letters) == 1
        letter = events_pb2.DeadLetter()
        letter.ParseFromString(letters[0].value() or b"")
        assert letter.value == b"garbage" and letter.topic == topic and letter.reason
    finally:
        consumer.stop()
        pub.close()
    assert handled == ["good"]


def test_consumer_retries_temporary_failures_without_skipping(kafka: kafka_broker.KafkaBroker) -> None:
    topic = f"t.retry.{uuid.uuid4().hex[:8]}"
    pub = _producer(kafka)
    calls: list[str] = []
    done = threading.Event()

    def flaky(env: events_pb2.EventEnvelope) -> None:
        calls.append(env.key)
        if len(calls) < 3:
            raise errors.TemporaryError("database restarting")
        done.set()

    env = _envelope("once")
    pub.publish_sync(topic, env.key, env.SerializeToString())
    consumer = kafka_io.EventConsumer(kafka.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}", [topic], flaky, pub)
    consumer.start()
    try:
        assert done.wait(30)
    finally:
        consumer.stop()
        pub.close()
    assert calls == ["once", "once", "once"]


def test_a_consumer_stopped_mid_batch_leaves_exactly_the_unhandled_records_to_its_group(
    kafka: kafka_broker.KafkaBroker,
) -> None:
    """Offsets are stored per fetched batch, past each partition's last handled record: a member stopped in the
    middle of a batch (records of several partitions) leaves its group exactly the records it did not handle."""
    topic = f"t.batch.{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:6]}"
    pub = _producer(kafka)
    keys = [f"k{i}" for i in range(40)]
    for key in keys:  # auto-created with the broker's 8 partitions: the keys spread over them
        env = _envelope(key)
        pub.publish_sync(topic, env.key, env.SerializeToString())
    first: list[str] = []
    in_hand, release = threading.Event(), threading.Event()

    def slow_at_ten(env: events_pb2.EventEnvelope) -> None:
        first.append(env.key)
        if len(first) == 10:
            in_hand.set()
            release.wait(30)

    consumer = kafka_io.EventConsumer(kafka.bootstrap_servers, group, [topic], slow_at_ten, pub)
    consumer.start()
    assert in_hand.wait(30), "the first member never reached its tenth record"
    stopping = threading.Thread(target=consumer.stop)
    stopping.start()  # the stop lands while the tenth record is in hand
    time.sleep(0.5)
    release.set()
    stopping.join(30)
    assert len(first) == 10  # the record in hand finished; none after it was handled

    second: list[str] = []
    rest = threading.Event()

    def record(env: events_pb2.EventEnvelope) -> None:
        second.append(env.key)
        if len(second) >= len(keys) - 10:
            rest.set()

    successor = kafka_io.EventConsumer(kafka.bootstrap_servers, group, [topic], record, pub)
    successor.start()
    try:
        assert rest.wait(30), f"the successor handled {len(second)} of the {len(keys) - 10} left"
        time.sleep(1.0)  # nothing handled by the first member may come again
    finally:
        successor.stop()
        pub.close()
    assert sorted(second) == sorted(set(keys) - set(first))


def _start_together(settings: Settings, schema: str, processes: int) -> list[BaseException]:
    """`processes` threads open and migrate one schema at the same moment; what they raised."""
    gate = threading.Barrier(processes)
    failures: list[BaseException] = []

    def start() -> None:
        try:
            gate.wait()
            db = database.open_database(settings, schema)
            try:
                db.migrate([outbox.MIGRATION, *MIGRATIONS])
            finally:
                db.close()
        except BaseException as exc:  # collected and asserted by the caller
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_replicas_starting_at_once_migrate_one_postgres_schema(postgres_dsn: str, tmp_path: Path) -> None:
    """Processes of one service starting together (a sales process and its workers, replicas of a Deployment)
    create and migrate its schema once between them, none failing on a concurrent CREATE ... IF NOT EXISTS."""
    settings = Settings(db_backend="postgres", postgres_dsn=postgres_dsn, sqlite_dir=tmp_path)
    for attempt in range(5):
        schema = f"race{attempt}_{uuid.uuid4().hex[:6]}"
        failures = _start_together(settings, schema, 6)
        assert not failures, failures
        db = database.open_database(settings, schema)
        try:
            applied = db.run_sync(lambda tx: tx.fetchall("SELECT version FROM schema_migrations ORDER BY version"))
        finally:
            db.close()
        assert [row[0] for row in applied] == [1, 2]
