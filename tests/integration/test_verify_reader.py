"""The invariant checker's reader and `flashsale verify` against real databases (SQLite and PostgreSQL)
and a real Kafka request topic, on tables created exactly as docs/pipeline.md specifies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import confluent_kafka
import pytest

from flashsale.common import database, errors, timeutil
from flashsale.common import kafka as kafka_io
from flashsale.common.settings import Settings
from flashsale.order import repository as order_repository
from flashsale_tools.verify import cli, reader, rules

pytestmark = pytest.mark.integration

# The sales service's tables as docs/pipeline.md defines them (its own migrations are written elsewhere).
SALES_TABLES = """
CREATE TABLE sales (
  sale_id TEXT PRIMARY KEY, product_id TEXT NOT NULL, price_cents BIGINT NOT NULL, stock BIGINT NOT NULL,
  per_user_limit INTEGER NOT NULL, starts_at BIGINT NOT NULL, ends_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL, partitions INTEGER NOT NULL DEFAULT 0, reserve BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE sale_partitions (
  sale_id TEXT NOT NULL, partition INTEGER NOT NULL, stock BIGINT NOT NULL, remaining BIGINT NOT NULL,
  decided BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (sale_id, partition)
);
CREATE TABLE sale_pools (sale_id TEXT PRIMARY KEY, stock BIGINT NOT NULL, remaining BIGINT NOT NULL);
CREATE TABLE partition_offsets (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL, published_offset BIGINT NOT NULL,
  PRIMARY KEY (topic, partition)
);
CREATE TABLE decisions (
  request_id TEXT PRIMARY KEY, sale_id TEXT NOT NULL, user_id TEXT NOT NULL, quantity INTEGER NOT NULL,
  outcome TEXT NOT NULL, reservation_id TEXT NOT NULL DEFAULT '', decided_at BIGINT NOT NULL,
  partition INTEGER NOT NULL, log_offset BIGINT NOT NULL, arrived_at BIGINT NOT NULL
);
CREATE TABLE reservations (
  reservation_id TEXT PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, sale_id TEXT NOT NULL, user_id TEXT NOT NULL,
  quantity INTEGER NOT NULL, status TEXT NOT NULL, release_reason TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, partition INTEGER NOT NULL
);
CREATE TABLE user_counters (
  sale_id TEXT NOT NULL, user_id TEXT NOT NULL, qty INTEGER NOT NULL, PRIMARY KEY (sale_id, user_id)
)
"""


@dataclass(frozen=True)
class World:
    settings: Settings
    sales: database.Database
    orders: database.Database
    sale_id: str
    topic: str


@pytest.fixture
def world(backend_settings: Settings) -> Iterator[World]:
    """A finished sale of 6 units (P=2, reserve 1) on both databases and its request topic:
    u1 holds 1 (unpaid), u2 bought 2 (one drawn from the pool), u3's order expired and was released;
    one request of partition 1 is not decided yet."""
    sales = database.open_database(backend_settings, "sales")
    orders = database.open_database(backend_settings, "order")
    sales.migrate([SALES_TABLES])
    orders.migrate(order_repository.MIGRATIONS)
    sale_id = uuid.uuid4().hex
    topic = reader.request_topic(sale_id)
    now = timeutil.now_ms()
    t0 = now - 60_000

    def fill_sales(tx: database.Tx) -> None:
        tx.execute(
            "INSERT INTO sales (sale_id, product_id, price_cents, stock, per_user_limit, starts_at, ends_at,"
            " created_at, partitions, reserve) VALUES (?, 'p1', 500, 6, 2, ?, ?, ?, 2, 1)",
            (sale_id, t0, now - 1_000, t0 - 1_000),
        )
        tx.executemany(
            "INSERT INTO sale_partitions (sale_id, partition, stock, remaining, decided) VALUES (?, ?, ?, ?, ?)",
            [(sale_id, 0, 3, 2, 2), (sale_id, 1, 3, 1, 2)],
        )
        tx.execute("INSERT INTO sale_pools (sale_id, stock, remaining) VALUES (?, 1, 0)", (sale_id,))
        tx.executemany(
            "INSERT INTO partition_offsets (topic, partition, next_offset, published_offset) VALUES (?, ?, ?, ?)",
            [(topic, 0, 2, 2), (topic, 1, 1, 1)],
        )
        tx.executemany(
            "INSERT INTO decisions (request_id, sale_id, user_id, quantity, outcome, reservation_id, decided_at,"
            " partition, log_offset, arrived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("q1", sale_id, "u1", 1, "accepted", "r1", t0 + 20, 0, 0, t0 + 10),
                ("q3", sale_id, "u3", 1, "accepted", "r3", t0 + 40, 0, 1, t0 + 30),
                ("q2", sale_id, "u2", 2, "accepted", "r2", t0 + 20, 1, 0, t0 + 15),
            ],
        )
        tx.executemany(
            "INSERT INTO reservations (reservation_id, request_id, sale_id, user_id, quantity, status,"
            " release_reason, created_at, updated_at, partition) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("r1", "q1", sale_id, "u1", 1, "reserved", "", t0 + 20, t0 + 20, 0),
                ("r3", "q3", sale_id, "u3", 1, "released", "expired", t0 + 40, t0 + 9_000, 0),
                ("r2", "q2", sale_id, "u2", 2, "confirmed", "", t0 + 20, t0 + 500, 1),
            ],
        )

    def fill_orders(tx: database.Tx) -> None:
        tx.executemany(
            "INSERT INTO orders (order_id, reservation_id, request_id, user_id, sale_id, product_id, quantity,"
            " amount_cents, status, created_at, pay_by, updated_at, payment_id)"
            " VALUES (?, ?, ?, ?, ?, 'p1', ?, ?, ?, ?, ?, ?, '')",
            [
                ("o1", "r1", "q1", "u1", sale_id, 1, 500, "PENDING_PAYMENT", t0 + 30, now + 600_000, t0 + 30),
                ("o2", "r2", "q2", "u2", sale_id, 2, 1000, "PAID", t0 + 30, t0 + 8_000, t0 + 500),
                ("o3", "r3", "q3", "u3", sale_id, 1, 500, "EXPIRED", t0 + 50, t0 + 8_000, t0 + 8_500),
            ],
        )

    sales.run_sync(fill_sales)
    orders.run_sync(fill_orders)
    kafka_io.ensure_topics(backend_settings.kafka_bootstrap, [topic], partitions=2)
    producer = confluent_kafka.Producer({"bootstrap.servers": backend_settings.kafka_bootstrap})
    for partition in (0, 0, 1, 1):
        producer.produce(topic, value=b"request", partition=partition)
    assert producer.flush(30) == 0
    try:
        yield World(backend_settings, sales, orders, sale_id, topic)
    finally:
        sales.close()
        orders.close()


def _decide_rest(w: World) -> None:
    w.sales.run_sync(
        lambda tx: tx.execute(
            "UPDATE partition_offsets SET next_offset = 2 WHERE topic = ? AND partition = 1", (w.topic,)
        )
    )


def _expire_o1_without_release(w: World) -> None:
    w.orders.run_sync(lambda tx: tx.execute("UPDATE orders SET status = 'EXPIRED' WHERE order_id = 'o1'"))


def test_reader_reads_every_table_and_the_pending_requests(world: World) -> None:
    with reader.Reader(world.settings) as source:
        snap = source.snapshot(world.sale_id)
        assert (snap.sale.stock, snap.sale.per_user_limit, snap.sale.partitions, snap.sale.reserve) == (6, 2, 2, 1)
        assert [(p.partition, p.stock, p.remaining, p.decided) for p in snap.partitions] == [(0, 3, 2, 2), (1, 3, 1, 2)]
        assert snap.pool is not None and (snap.pool.stock, snap.pool.remaining) == (1, 0)
        assert [(o.partition, o.next_offset) for o in snap.offsets] == [(0, 2), (1, 1)]
        q3 = next(d for d in snap.decisions if d.request_id == "q3")
        assert (q3.user_id, q3.outcome, q3.reservation_id, q3.partition, q3.log_offset) == (
            "u3",
            "accepted",
            "r3",
            0,
            1,
        )
        assert {r.reservation_id: (r.status, r.partition, r.quantity) for r in snap.reservations} == {
            "r1": ("reserved", 0, 1),
            "r2": ("confirmed", 1, 2),
            "r3": ("released", 0, 1),
        }
        assert {o.order_id: (o.reservation_id, o.status) for o in snap.orders} == {
            "o1": ("r1", "PENDING_PAYMENT"),
            "o2": ("r2", "PAID"),
            "o3": ("r3", "EXPIRED"),
        }
        assert snap.pending_requests == 1  # partition 1: end offset 2, next to decide 1
        now = timeutil.now_ms()
        assert not rules.is_finished(snap, now_ms=now) and not rules.is_settled(snap, now_ms=now)

        _decide_rest(world)
        snap = source.snapshot(world.sale_id)
        assert snap.pending_requests == 0
        report = rules.check(snap, now_ms=now, sale_finished=True, orders_settled=True)
        assert report.ok, report
        assert (report.held, report.remaining) == (3, 3)

        _expire_o1_without_release(world)
        report = rules.check(source.snapshot(world.sale_id), now_ms=now, sale_finished=True, orders_settled=True)
        broken = {v.name: (v.count, v.examples) for v in report.violations if v.count}
        assert broken == {"unreleased_expired_stock": (1, ("o1",))}


def test_reader_refuses_an_unknown_sale(world: World) -> None:
    with reader.Reader(world.settings, kafka=False) as source, pytest.raises(errors.NotFound):
        source.snapshot("no-such-sale")


def test_reader_does_not_create_missing_sqlite_databases(base_settings: Settings) -> None:
    with pytest.raises(errors.FailedPrecondition, match="sales database"):
        reader.Reader(base_settings)
    assert not (base_settings.sqlite_dir / "sales.db").exists()


def _env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("FLASHSALE_DB_BACKEND", settings.db_backend)
    monkeypatch.setenv("FLASHSALE_SQLITE_DIR", str(settings.sqlite_dir))
    monkeypatch.setenv("FLASHSALE_POSTGRES_DSN", settings.postgres_dsn)
    monkeypatch.setenv("FLASHSALE_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)


def test_cli_exits_0_on_a_clean_sale_and_1_with_the_violation_counted(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, world.settings)
    _decide_rest(world)
    assert cli.main(["--sale", world.sale_id, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["pending_requests"] == 0 and doc["sale_finished"] is True
    assert [v["name"] for v in doc["violations"]] == list(rules.DESCRIPTIONS)

    _expire_o1_without_release(world)
    assert cli.main(["--sale", world.sale_id]) == 1
    out = capsys.readouterr().out
    assert "unreleased_expired_stock" in out and "VIOLATIONS FOUND" in out


def test_cli_waits_for_pending_requests_then_reports_what_it_could_judge(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, world.settings)
    assert cli.main(["--sale", world.sale_id, "--json", "--wait-settled", "0.6"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pending_requests"] == 1 and doc["sale_finished"] is False
    assert next(v for v in doc["violations"] if v["name"] == "undersell")["applied"] is False


def test_cli_exits_2_for_an_unknown_sale(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, world.settings)
    assert cli.main(["--sale", "no-such-sale"]) == 2
    assert "sale_id: no sale 'no-such-sale'" in capsys.readouterr().err
