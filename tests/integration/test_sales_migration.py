"""The migration to one purchase engine moves a sale decided one request at a time (never prepared) into one
partition holding what it had, on both backends; the pipeline then sells the rest and the checker finds nothing."""

from __future__ import annotations

import threading
import uuid

import pytest
from test_sales_service import HOUR

from flashsale.common import database, outbox, timeutil, topics
from flashsale.common.settings import Settings
from flashsale.order import repository as order_repository
from flashsale.sales import ledger, rounds, sale_store, schema, stock_store
from flashsale_tools.verify import reader, rules

pytestmark = pytest.mark.integration

BEFORE = 3  # the migrations applied before the one engine: every sale either prepared or decided one at a time


def _old_sale(tx: database.Tx, sale_id: str, now: int) -> None:
    """A sale of the old transactional path: stock 5, 2 units reserved by alice and bob, one refusal."""
    tx.execute(
        "INSERT INTO sales (sale_id, product_id, price_cents, stock, per_user_limit, starts_at, ends_at, remaining,"
        " created_at) VALUES (?, 'p1', 500, 5, 1, ?, ?, 3, ?)",
        (sale_id, now - HOUR, now + HOUR, now - HOUR),
    )
    for rid, user, outcome, reservation in (
        ("r-a", "alice", "accepted", "res-a"),
        ("r-b", "bob", "accepted", "res-b"),
        ("r-a2", "alice", "limit_exceeded", ""),
    ):
        tx.execute(
            "INSERT INTO decisions (request_id, sale_id, user_id, quantity, outcome, reservation_id, decided_at)"
            " VALUES (?, ?, ?, 1, ?, ?, ?)",
            (rid, sale_id, user, outcome, reservation, now - 1000),
        )
        if reservation:
            tx.execute(
                "INSERT INTO reservations (reservation_id, request_id, sale_id, user_id, quantity, status, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 1, 'reserved', ?, ?)",
                (reservation, rid, sale_id, user, now - 1000, now - 1000),
            )
            tx.execute("INSERT INTO user_counters (sale_id, user_id, qty) VALUES (?, ?, 1)", (sale_id, user))


def test_a_sale_of_the_old_path_becomes_one_partition_the_pipeline_sells(backend_settings: Settings) -> None:
    db = database.open_database(backend_settings, "sales")
    orders = database.open_database(backend_settings, "order")
    try:
        orders.migrate([outbox.MIGRATION, *order_repository.MIGRATIONS])
        db.migrate([outbox.MIGRATION, *schema.MIGRATIONS[:BEFORE]])
        sale_id, now = uuid.uuid4().hex, timeutil.now_ms()
        db.run_sync(lambda tx: _old_sale(tx, sale_id, now))
        db.migrate([outbox.MIGRATION, *schema.MIGRATIONS])

        sale = db.run_sync(lambda tx: sale_store.get(tx, sale_id))
        split = db.run_sync(lambda tx: stock_store.split_of(tx, sale_id))
        assert sale is not None and split is not None
        assert (sale.partitions, sale.stock, sale.remaining) == (1, 5, 3)
        assert [(p.partition, p.stock, p.remaining, p.decided) for p in split.partitions] == [(0, 5, 3, 3)]
        assert (split.reserve, split.pool_remaining) == (0, 0)

        # the pipeline decides the rest: alice is at her limit, carol, dan and eve take the 3 units left, fay is late
        topic = topics.request_topic(sale_id)
        requests = tuple(
            ledger.Request(f"r-{user}", user, 1, now, 0) for user in ("alice", "carol", "dan", "eve", "fay")
        )
        result = rounds.Rounds(db).decide({(topic, 0): rounds.Ready(sale, 0, (0,), requests)}, threading.Event())
        assert isinstance(result, rounds.Committed), result
        assert [d.outcome.value for d in result.batches[0].made] == [
            "limit_exceeded",
            "accepted",
            "accepted",
            "accepted",
            "sold_out",
        ]
        snapshot = reader.read_snapshot(backend_settings, sale_id, kafka=False)
        report = rules.check(snapshot, now_ms=timeutil.now_ms(), sale_finished=True, orders_settled=False)
        assert report.ok, [v for v in report.violations if v.count]
        assert (report.held, report.remaining) == (5, 0)
        assert {d.partition for d in snapshot.decisions} == {0}
    finally:
        db.close()
        orders.close()
