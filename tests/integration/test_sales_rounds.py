"""A worker's round on the real database: it never refuses for want of stock while another partition of the sale
holds some, whatever the other batches of the same round take from the pool.

The round is driven directly with the batches a worker would have read, so the interleaving that broke first come,
first served after a worker crash (two short partitions decided in one round, stock left only outside it) is forced,
not waited for.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from test_sales_service import running, sale_request

from flashsale.common import database, outbox, timeutil, topics
from flashsale.common.settings import Settings
from flashsale.order import repository as order_repository
from flashsale.sales import decision_store, domain, ledger, partitioning, rounds, sale_store
from flashsale_api.v1 import sales_pb2
from flashsale_tools.verify import model, reader, rules

pytestmark = pytest.mark.integration

PARTITIONS = 3


def _users(partition: int) -> Iterator[str]:
    """User ids routed to one partition."""
    return (u for u in (f"user-{i}" for i in range(10_000)) if partitioning.partition_of(u, PARTITIONS) == partition)


def _batch(sale: domain.Sale, offset: int, users: list[str], arrived_at: int) -> rounds.Ready:
    """One record at `offset` holding a purchase of one unit by each user."""
    requests = [ledger.Request(uuid.uuid4().hex, u, 1, arrived_at, offset) for u in users]
    return rounds.Ready(sale, 0, (offset,), tuple(requests))


def _report(settings: Settings, sale_id: str) -> tuple[rules.Report, model.Snapshot]:
    """The checker's report on the sale (no order service runs here: no orders are expected)."""
    orders = database.open_database(settings, "order")
    orders.migrate([outbox.MIGRATION, *order_repository.MIGRATIONS])
    orders.close()
    snapshot = reader.read_snapshot(settings, sale_id, kafka=False)
    return rules.check(snapshot, now_ms=timeutil.now_ms(), sale_finished=True, orders_settled=False), snapshot


async def test_two_short_partitions_of_one_round_take_the_stock_left_outside_it(backend_settings: Settings) -> None:
    settings = backend_settings.model_copy(update={"sales_worker": False})  # the test plays the worker
    async with running(settings) as p:
        created = await p.sales.CreateSale(sale_request(p.product_id, stock=8, per_user_limit=1))
        await p.sales.PrepareSale(
            sales_pb2.PrepareSaleRequest(sale_id=created.sale_id, partitions=PARTITIONS, reserve=2)
        )
        db = database.open_database(p.settings, "sales")
        try:
            sale = db.run_sync(lambda tx: sale_store.get(tx, created.sale_id))
            assert sale is not None
            topic = topics.request_topic(sale.sale_id)
            decide = rounds.Rounds(db).decide
            stop = threading.Event()
            zero, one = _users(0), _users(1)
            start = timeutil.now_ms()
            # Partitions 0 and 1 sell their 2 units each; partition 2 keeps its 2 and the pool its 2.
            first = decide(
                {
                    (topic, 0): _batch(sale, 0, [next(zero), next(zero)], start),
                    (topic, 1): _batch(sale, 0, [next(one), next(one)], start),
                },
                stop,
            )
            assert isinstance(first, rounds.Committed), first
            # One round, both partitions short by 2: the pool covers the first, partition 2 must cover the second.
            late = [next(one), next(one)]
            second = decide(
                {
                    (topic, 0): _batch(sale, 1, [next(zero), next(zero)], start + 10),
                    (topic, 1): _batch(sale, 1, late, start + 10),
                },
                stop,
            )
            assert isinstance(second, rounds.Committed), second
            # Seconds later, one more shopper of partition 1: the sale is sold out.
            third = decide({(topic, 1): _batch(sale, 2, [next(one)], start + 5_000)}, stop)
            assert isinstance(third, rounds.Committed), third
        finally:
            db.close()
        report, snapshot = _report(p.settings, sale.sale_id)
        inversions = report.count("fairness_inversions")
        assert inversions == 0, f"{inversions} refused before a later shopper of their partition was served"
        assert report.ok, [v for v in report.violations if v.count]
        outcomes = {d.user_id: d.outcome for d in snapshot.decisions}
        assert [outcomes[u] for u in late] == [model.ACCEPTED, model.ACCEPTED]
        assert sorted(outcomes.values()).count(model.ACCEPTED) == 8 and report.remaining == 0
        assert [d.outcome for d in third.batches[0].made] == [domain.Outcome.SOLD_OUT]


def _lock_waiters(db: database.Database) -> int:
    """PostgreSQL backends waiting for another transaction's lock (0 on SQLite, whose writers queue in-process)."""
    if db.dialect != "postgres":
        return 0
    row = db.run_sync(lambda tx: tx.fetchone("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))
    return int(row[0]) if row else 0


class _Warnings(logging.Handler):
    """The messages of the warnings a logger emitted (the service's logging does not propagate to pytest's)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_a_request_id_another_sale_decides_meanwhile_keeps_its_first_decision(backend_settings: Settings) -> None:
    """The same request id reaches a round of sale B while a writer of sale A has stored it and not committed: the
    round cannot see it yet, its bulk insert waits for that writer and is refused once it commits (on PostgreSQL,
    the hash exclusion constraint), and the round decided again answers with A's decision and sells nothing."""
    settings = backend_settings.model_copy(update={"sales_worker": False})
    async with running(settings) as p:
        ids = [(await p.sales.CreateSale(sale_request(p.product_id, stock=8))).sale_id for _ in range(2)]
        db = database.open_database(p.settings, "sales")
        try:
            first, second = (db.run_sync(lambda tx, s=s: sale_store.get(tx, s)) for s in ids)
            assert first is not None and second is not None
            user, now = f"user-{uuid.uuid4().hex[:8]}", timeutil.now_ms()
            twice = ledger.Request(uuid.uuid4().hex, user, 1, now, 0)
            stored, release = threading.Event(), threading.Event()

            def sale_a_writer() -> None:
                with db.transaction() as tx:
                    row = (twice.request_id, first.sale_id, user, 1, "sold_out", "", now, 0, 0, now)
                    decision_store.insert(
                        tx, db.dialect, first.sale_id, [decision_store.Batch(0, 0, 1, now)], [row], True
                    )
                    stored.set()
                    release.wait(60)

            writer = threading.Thread(target=sale_a_writer)
            writer.start()
            assert stored.wait(30)
            outcome: list[rounds.Committed | rounds.Gap | None] = []
            topic = topics.request_topic(second.sale_id)
            ready = {(topic, 0): rounds.Ready(second, 0, (0,), (twice,))}
            deciding = threading.Thread(
                target=lambda: outcome.append(rounds.Rounds(db).decide(ready, threading.Event()))
            )
            warned, logger = _Warnings(), logging.getLogger(rounds.__name__)
            logger.addHandler(warned)
            try:
                deciding.start()
                if db.dialect == "postgres":  # the round's insert waits on the writer's uncommitted id
                    assert _wait_until(lambda: _lock_waiters(db) > 0), "the round's insert never waited"
                release.set()
                writer.join(30)
                deciding.join(60)
            finally:
                logger.removeHandler(warned)
            (result,) = outcome
            assert isinstance(result, rounds.Committed), result
            (batch,) = result.batches
            assert batch.made == ()
            assert [(d.sale_id, d.outcome) for d in batch.earlier] == [(first.sale_id, domain.Outcome.SOLD_OUT)]
            if db.dialect == "postgres":
                assert "bulk insert conflict; deciding again" in warned.messages
            again = db.run_sync(lambda tx: sale_store.get(tx, second.sale_id))
            assert again is not None and again.remaining == 8
            stored_rows = db.run_sync(lambda tx: decision_store.get(tx, twice.request_id))
            assert stored_rows is not None and stored_rows.sale_id == first.sale_id
        finally:
            db.close()


def _wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """Poll `condition` every 20 ms until it holds or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
