"""Many buyers at once through the real gRPC server: never oversold, never above the limit, idempotent."""

from __future__ import annotations

import asyncio
import collections
import random
import time
import uuid
from typing import Any

import confluent_kafka
import grpc
import pytest
from test_sales_service import WAIT_MS, OneDecision

from flashsale.common import database, decided, events, timeutil, topics
from flashsale.common.settings import Settings
from flashsale.product import bootstrap as product_bootstrap
from flashsale.sales import bootstrap as sales_bootstrap
from flashsale_api.v1 import events_pb2, product_pb2, product_pb2_grpc, sales_pb2, sales_pb2_grpc

pytestmark = pytest.mark.integration

STOCK = 50
USERS = 200
RETRYING = 40  # users who send the same request twice at once
GREEDY = 40  # users who try a second time with another request id (limit 1)
ACCEPTED = sales_pb2.PURCHASE_OUTCOME_ACCEPTED


def _figures(body: events_pb2.PurchasesDecided) -> tuple[str, int, int]:
    return body.product_id, body.stock, body.price_cents


def _entries(env: events_pb2.EventEnvelope) -> list[OneDecision]:
    """Every decision of a purchases.decided envelope, with the sale's figures."""
    body = events_pb2.PurchasesDecided()
    events.unpack(env, body)
    return [
        OneDecision(e.request_id, e.accepted, e.reason, e.reservation_id, body.remaining, *_figures(body))
        for e in decided.entries(body)
    ]


def _decided_events(bootstrap: str, sale_id: str, expected: int, limit_s: float = 60.0) -> list[OneDecision]:
    """Read topics.SALES from the beginning until `expected` decisions of the sale (in purchases.decided events,
    many per event) were seen and the topic is read to its end; return them."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topics.SALES, timeout=10).topics[topics.SALES].partitions
        consumer.assign(
            [confluent_kafka.TopicPartition(topics.SALES, p, confluent_kafka.OFFSET_BEGINNING) for p in partitions]
        )
        found: list[OneDecision] = []
        position = {p: -1 for p in partitions}
        deadline = time.monotonic() + limit_s
        while True:
            highs = {
                p: consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topics.SALES, p), timeout=10)[1]
                for p in partitions
            }
            while any(position[p] + 1 < highs[p] for p in partitions):  # read to the end as of now
                assert time.monotonic() < deadline, f"saw {len(found)} of {expected} purchases.decided events"
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                partition, offset, value = msg.partition(), msg.offset(), msg.value()
                assert partition is not None and offset is not None and isinstance(value, bytes)
                position[partition] = offset
                env = events.decode(value)
                if env.type == topics.PURCHASES_DECIDED and env.key == sale_id:
                    found.extend(_entries(env))
            if len(found) >= expected:
                return found
            assert time.monotonic() < deadline, f"saw {len(found)} of {expected} purchases.decided events"
            time.sleep(0.05)
    finally:
        consumer.close()


def _reservations(settings: Settings, sale_id: str) -> list[tuple[Any, ...]]:
    """(request_id, user_id, quantity) of every reservation of the sale, read from the sales database."""
    db = database.open_database(settings, "sales")
    try:
        return db.run_sync(
            lambda tx: tx.fetchall(
                "SELECT request_id, user_id, quantity FROM reservations WHERE sale_id = ?", (sale_id,)
            )
        )
    finally:
        db.close()


async def test_a_rush_of_buyers_sells_exactly_the_stock(backend_settings: Settings) -> None:
    settings = backend_settings.model_copy(update={"postgres_pool_size": 8})
    product_server = product_bootstrap.build(settings)
    async with product_server:
        settings = settings.model_copy(update={"product_addr": f"127.0.0.1:{product_server.port}"})
        sales_server = sales_bootstrap.build(settings)
        async with (
            sales_server,
            grpc.aio.insecure_channel(f"127.0.0.1:{sales_server.port}") as channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{product_server.port}") as product_channel,
        ):
            product = await product_pb2_grpc.ProductServiceStub(product_channel).CreateProduct(
                product_pb2.CreateProductRequest(name="Rush", base_price_cents=5_000)
            )
            sales = sales_pb2_grpc.SalesServiceStub(channel)
            now = timeutil.now_ms()
            sale = await sales.CreateSale(
                sales_pb2.CreateSaleRequest(
                    product_id=product.product_id,
                    price_cents=1_000,
                    stock=STOCK,
                    per_user_limit=1,
                    starts_at=timeutil.to_timestamp(now - 60_000),
                    ends_at=timeutil.to_timestamp(now + 3_600_000),
                )
            )
            users = [f"u{i}-{uuid.uuid4().hex[:8]}" for i in range(USERS)]
            requests = [
                sales_pb2.PurchaseRequest(
                    sale_id=sale.sale_id, user_id=u, quantity=1, request_id=uuid.uuid4().hex, wait_ms=WAIT_MS
                )
                for u in users
            ]
            retries = [sales_pb2.PurchaseRequest(**_fields(r)) for r in requests[:RETRYING]]
            seconds = [
                sales_pb2.PurchaseRequest(
                    sale_id=sale.sale_id, user_id=u, quantity=1, request_id=uuid.uuid4().hex, wait_ms=WAIT_MS
                )
                for u in users[-GREEDY:]
            ]
            # A retry or a second try travels right next to its first call: the two meet in one batch of the log.
            pairs = [[*pair] for pair in zip(requests[:RETRYING], retries, strict=True)]
            pairs += [[*pair] for pair in zip(requests[-GREEDY:], seconds, strict=True)]
            units = [*pairs, *([r] for r in requests[RETRYING:-GREEDY])]
            random.shuffle(units)
            calls = [call for unit in units for call in unit]
            answers = await asyncio.gather(*(sales.Purchase(r, timeout=120) for r in calls))

            distinct = {a.request_id: a for a in answers}
            assert len(distinct) == USERS + GREEDY
            for a in answers:  # a retry answers the very decision of its first call
                assert a == distinct[a.request_id]
            accepted = [a for a in distinct.values() if a.outcome == ACCEPTED]
            assert len(accepted) == STOCK
            assert len({a.reservation_id for a in accepted}) == STOCK
            per_user = collections.Counter(a.user_id for a in accepted)
            assert max(per_user.values()) == 1
            rejected = [a for a in distinct.values() if a.outcome != ACCEPTED]
            assert {a.outcome for a in rejected} <= {
                sales_pb2.PURCHASE_OUTCOME_SOLD_OUT,
                sales_pb2.PURCHASE_OUTCOME_LIMIT_EXCEEDED,
            }

            after = await sales.GetSale(sales_pb2.GetSaleRequest(sale_id=sale.sale_id))
            assert after.remaining == 0
            stats = await sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
            assert (stats.stock, stats.reserved, stats.remaining) == (STOCK, STOCK, 0)
            assert (stats.accepted_requests, stats.rejected_requests) == (STOCK, USERS + GREEDY - STOCK)

            decided = await asyncio.to_thread(_decided_events, settings.kafka_bootstrap, sale.sale_id, USERS + GREEDY)
    assert len(decided) == USERS + GREEDY
    assert len({d.request_id for d in decided}) == USERS + GREEDY
    good = [d for d in decided if d.accepted]
    assert len(good) == STOCK
    assert {d.reservation_id for d in good} == {a.reservation_id for a in accepted}
    assert min(d.remaining for d in decided) == 0
    assert all(0 <= d.remaining < STOCK for d in decided)

    rows = await asyncio.to_thread(_reservations, settings, sale.sale_id)
    assert len(rows) == STOCK
    assert len({r[0] for r in rows}) == STOCK  # no request id with two reservations
    held = collections.Counter[str]()
    for _request_id, user_id, quantity in rows:
        held[str(user_id)] += int(quantity)
    assert max(held.values()) == 1  # nobody above the limit


def _fields(request: sales_pb2.PurchaseRequest) -> dict[str, Any]:
    return {
        "sale_id": request.sale_id,
        "user_id": request.user_id,
        "quantity": request.quantity,
        "request_id": request.request_id,
        "wait_ms": request.wait_ms,
    }
