"""The real local backends start, serve clients, and keep their data across a restart."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # no re-export

from flashsale_tools.platform.kafka_broker import KafkaBroker
from flashsale_tools.platform.postgres_server import PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker shared by the Kafka tests of this module."""
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A fresh cluster in a temp dir the postgres OS user can reach (pytest's own tmp dirs are 0700)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="flashsale-pgtest-"))
    try:
        with PostgresServer(root / "pg") as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _create_topic(broker: KafkaBroker, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=30)


def _produce(broker: KafkaBroker, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all"})
    producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0


def _read_first(consumer: Consumer, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        error = msg.error()
        if error is not None and error.code() != KafkaError._PARTITION_EOF:
            raise AssertionError(f"consumer error: {error}")
        if error is None:
            value = msg.value()
            assert isinstance(value, bytes)
            return value
    raise AssertionError("no message consumed in time")


def test_kafka_produce_then_consume_with_a_group(kafka: KafkaBroker) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    _create_topic(kafka, topic)
    _produce(kafka, topic, b"hello")
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        assert _read_first(consumer) == b"hello"
    finally:
        consumer.close()


def test_kafka_restart_keeps_messages(kafka: KafkaBroker) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    _create_topic(kafka, topic)
    _produce(kafka, topic, b"durable")
    port = kafka.port
    kafka.restart()
    assert kafka.port == port
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "unused"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        assert _read_first(consumer) == b"durable"
    finally:
        consumer.close()


def test_postgres_row_survives_restart(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        conn.execute("CREATE TABLE stock (sku text PRIMARY KEY, remaining int NOT NULL)")
        conn.execute("INSERT INTO stock VALUES ('sku-1', 42)")
    postgres.restart()
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT remaining FROM stock WHERE sku = 'sku-1'").fetchone() == (42,)
        assert conn.execute("SHOW fsync").fetchone() == ("on",)


def test_postgres_create_database_is_fresh(postgres: PostgresServer) -> None:
    dsn = postgres.create_database("scratch")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE t (x int)")
    dsn = postgres.create_database("scratch")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.t')").fetchone() == (None,)
