"""The sales service on both backends, with the real product service, Kafka and the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import confluent_kafka
import grpc
import pytest
from grpc_errors import refused
from waiting import eventually, eventually_sync

from flashsale.common import decided as decided_events
from flashsale.common import events, kafka, timeutil, topics
from flashsale.common.settings import Settings
from flashsale.product import bootstrap as product_bootstrap
from flashsale.sales import bootstrap as sales_bootstrap
from flashsale_api.v1 import events_pb2, product_pb2, product_pb2_grpc, sales_pb2, sales_pb2_grpc

pytestmark = pytest.mark.integration

MINUTE = 60_000
HOUR = 60 * MINUTE
ACCEPTED = sales_pb2.PURCHASE_OUTCOME_ACCEPTED


@dataclasses.dataclass
class Platform:
    """The product and sales services running in-process, with clients."""

    settings: Settings
    sales: sales_pb2_grpc.SalesServiceAsyncStub
    products: product_pb2_grpc.ProductServiceAsyncStub
    product_id: str


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Platform]:
    """Start the real product service, then the sales service pointed at it; create one product."""
    product_server = product_bootstrap.build(settings)
    async with product_server:
        sales_settings = settings.model_copy(update={"product_addr": f"127.0.0.1:{product_server.port}"})
        sales_server = sales_bootstrap.build(sales_settings)
        async with (
            sales_server,
            grpc.aio.insecure_channel(f"127.0.0.1:{sales_server.port}") as sales_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{product_server.port}") as product_channel,
        ):
            products = product_pb2_grpc.ProductServiceStub(product_channel)
            product = await products.CreateProduct(
                product_pb2.CreateProductRequest(name=f"Widget {uuid.uuid4().hex[:6]}", base_price_cents=2_000)
            )
            yield Platform(sales_settings, sales_pb2_grpc.SalesServiceStub(sales_channel), products, product.product_id)


def sale_request(product_id: str, **changes: Any) -> sales_pb2.CreateSaleRequest:
    """A valid CreateSaleRequest of an open sale, with changes."""
    now = timeutil.now_ms()
    fields: dict[str, Any] = {
        "product_id": product_id,
        "price_cents": 999,
        "stock": 3,
        "per_user_limit": 2,
        "starts_at": timeutil.to_timestamp(now - MINUTE),
        "ends_at": timeutil.to_timestamp(now + HOUR),
    }
    fields.update(changes)
    return sales_pb2.CreateSaleRequest(**fields)


WAIT_MS = 20_000  # a unary purchase waits this long for its decision (every sale is decided by the pipeline)


def buy(
    sale_id: str, user_id: str, quantity: int = 1, request_id: str = "", wait_ms: int = WAIT_MS
) -> sales_pb2.PurchaseRequest:
    """A purchase request with a fresh request id unless one is given, waiting for its decision."""
    return sales_pb2.PurchaseRequest(
        sale_id=sale_id, user_id=user_id, quantity=quantity, request_id=request_id or uuid.uuid4().hex, wait_ms=wait_ms
    )


class TopicReader:
    """Reads every message of a topic from the beginning (no group), for assertions on emitted events."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False}
        )
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._next: dict[int, int] = {}
        for p in partitions:
            low, _high = self._consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10)
            self._next[p] = low
        self._consumer.assign([confluent_kafka.TopicPartition(topic, p, self._next[p]) for p in partitions])
        self.seen: list[events_pb2.EventEnvelope] = []

    def drain(self, timeout: float = 30.0) -> list[events_pb2.EventEnvelope]:
        """Read up to the current end of every partition; every envelope read so far."""
        highs = {
            p: self._consumer.get_watermark_offsets(confluent_kafka.TopicPartition(self._topic, p), timeout=10)[1]
            for p in self._next
        }
        deadline = time.monotonic() + timeout
        while any(self._next[p] < highs[p] for p in self._next):
            assert time.monotonic() < deadline, "topic not drained in time"
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            self._next[partition] = offset + 1
            value = msg.value()
            assert isinstance(value, bytes)
            self.seen.append(events.decode(value))
        return self.seen

    def wait_for(
        self, done: Callable[[list[events_pb2.EventEnvelope]], bool], timeout: float = 30.0
    ) -> list[events_pb2.EventEnvelope]:
        """Read until done(every envelope so far) holds, then to the end of the topic."""
        eventually_sync(lambda: done(self.drain()), within_s=timeout, what=f"the expected events on {self._topic}")
        return self.drain()

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


@contextlib.asynccontextmanager
async def reading(settings: Settings, topic: str = topics.SALES) -> AsyncIterator[TopicReader]:
    """A TopicReader whose blocking calls must run via asyncio.to_thread."""
    reader = await asyncio.to_thread(TopicReader, settings.kafka_bootstrap, topic)
    try:
        yield reader
    finally:
        await asyncio.to_thread(reader.close)


def of_sale(envs: list[events_pb2.EventEnvelope], sale_id: str, event_type: str) -> list[events_pb2.EventEnvelope]:
    """The envelopes of one type about one sale."""
    return [e for e in envs if e.key == sale_id and e.type == event_type]


@dataclasses.dataclass(frozen=True)
class OneDecision:
    """The one decision of a purchases.decided event of an unprepared sale, with the sale's figures."""

    request_id: str
    accepted: bool
    reason: str
    reservation_id: str
    remaining: int
    product_id: str
    stock: int
    price_cents: int


def decided(env: events_pb2.EventEnvelope) -> OneDecision:
    """The single decision of a purchases.decided envelope (an unprepared sale decides one purchase at a time)."""
    body = events_pb2.PurchasesDecided()
    events.unpack(env, body)
    (entry,) = decided_events.entries(body)
    return OneDecision(
        entry.request_id,
        entry.accepted,
        entry.reason,
        entry.reservation_id,
        body.remaining,
        body.product_id,
        body.stock,
        body.price_cents,
    )


def released(env: events_pb2.EventEnvelope) -> events_pb2.StockReleased:
    """The StockReleased payload of an envelope."""
    payload = events_pb2.StockReleased()
    events.unpack(env, payload)
    return payload


async def test_purchases_are_decided_idempotently_within_limit_and_stock(backend_settings: Settings) -> None:
    async with running(backend_settings) as p, reading(p.settings) as reader:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=3, per_user_limit=2, price_cents=750))
        assert (sale.stock, sale.remaining, sale.per_user_limit, sale.price_cents) == (3, 3, 2, 750)
        assert await p.sales.GetSale(sales_pb2.GetSaleRequest(sale_id=sale.sale_id)) == sale
        listed = await p.sales.ListSales(sales_pb2.ListSalesRequest(product_id=p.product_id))
        assert list(listed.sales) == [sale]
        assert sale in (await p.sales.ListSales(sales_pb2.ListSalesRequest())).sales
        other = await p.sales.ListSales(sales_pb2.ListSalesRequest(product_id=uuid.uuid4().hex))
        assert list(other.sales) == []

        alice, bob, carol = (f"user-{uuid.uuid4().hex[:8]}" for _ in range(3))
        first = await p.sales.Purchase(buy(sale.sale_id, alice))
        assert first.outcome == ACCEPTED
        assert first.reservation_id
        again = await p.sales.Purchase(buy(sale.sale_id, alice, request_id=first.request_id))
        assert again == first
        assert await p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=first.request_id)) == first
        stats = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
        assert (stats.reserved, stats.remaining, stats.accepted_requests, stats.rejected_requests) == (1, 2, 1, 0)

        over = await p.sales.Purchase(buy(sale.sale_id, alice, quantity=2))
        assert over.outcome == sales_pb2.PURCHASE_OUTCOME_LIMIT_EXCEEDED
        assert over.reservation_id == ""
        assert (await p.sales.Purchase(buy(sale.sale_id, alice))).outcome == ACCEPTED
        assert (await p.sales.Purchase(buy(sale.sale_id, alice))).outcome == sales_pb2.PURCHASE_OUTCOME_LIMIT_EXCEEDED
        too_many = await p.sales.Purchase(buy(sale.sale_id, bob, quantity=2))
        assert too_many.outcome == sales_pb2.PURCHASE_OUTCOME_SOLD_OUT
        assert (await p.sales.Purchase(buy(sale.sale_id, bob))).outcome == ACCEPTED
        assert (await p.sales.Purchase(buy(sale.sale_id, carol))).outcome == sales_pb2.PURCHASE_OUTCOME_SOLD_OUT

        stats = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
        counters = (stats.sale_id, stats.stock, stats.reserved, stats.released, stats.remaining)
        assert counters == (sale.sale_id, 3, 3, 0, 0)
        assert (stats.accepted_requests, stats.rejected_requests, stats.requests_pending) == (3, 4, 0)
        assert sum(q.stock - q.remaining for q in stats.partitions) == 3 and stats.reserve_remaining == 0
        assert (await p.sales.GetSale(sales_pb2.GetSaleRequest(sale_id=sale.sale_id))).remaining == 0

        envs = await asyncio.to_thread(
            reader.wait_for, lambda e: len(of_sale(e, sale.sale_id, topics.PURCHASES_DECIDED)) >= 7
        )
        created = of_sale(envs, sale.sale_id, "sale.created")
        assert len(created) == 1
        payload = events_pb2.SaleCreated()
        events.unpack(created[0], payload)
        assert (payload.product_id, payload.stock, payload.price_cents) == (p.product_id, 3, 750)
        decisions = [decided(e) for e in of_sale(envs, sale.sale_id, topics.PURCHASES_DECIDED)]
        assert len(decisions) == 7  # the retry of the first request emitted nothing
        assert [d.accepted for d in decisions].count(True) == 3
        assert [d.remaining for d in decisions] == [2, 2, 1, 1, 1, 0, 0]
        assert [d.reason for d in decisions] == [
            "",
            "limit_exceeded",
            "",
            "limit_exceeded",
            "sold_out",
            "",
            "sold_out",
        ]
        assert decisions[0].reservation_id == first.reservation_id
        assert all((d.product_id, d.stock, d.price_cents) == (p.product_id, 3, 750) for d in decisions)


async def test_purchases_outside_the_window_are_recorded_rejections(backend_settings: Settings) -> None:
    async with running(backend_settings) as p, reading(p.settings) as reader:
        now = timeutil.now_ms()
        later = await p.sales.CreateSale(
            sale_request(
                p.product_id, starts_at=timeutil.to_timestamp(now + HOUR), ends_at=timeutil.to_timestamp(now + 2 * HOUR)
            )
        )
        over = await p.sales.CreateSale(
            sale_request(
                p.product_id, starts_at=timeutil.to_timestamp(now - 2 * HOUR), ends_at=timeutil.to_timestamp(now - 1)
            )
        )
        early = await p.sales.Purchase(buy(later.sale_id, "u1"))
        late = await p.sales.Purchase(buy(over.sale_id, "u1"))
        assert early.outcome == sales_pb2.PURCHASE_OUTCOME_NOT_STARTED
        assert late.outcome == sales_pb2.PURCHASE_OUTCOME_ENDED
        assert await p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=early.request_id)) == early
        assert await p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=late.request_id)) == late
        for sale in (later, over):
            stats = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
            assert (stats.remaining, stats.reserved, stats.accepted_requests, stats.rejected_requests) == (3, 0, 0, 1)
        envs = await asyncio.to_thread(
            reader.wait_for,
            lambda e: bool(
                of_sale(e, later.sale_id, topics.PURCHASES_DECIDED)
                and of_sale(e, over.sale_id, topics.PURCHASES_DECIDED)
            ),
        )
        assert [decided(e).reason for e in of_sale(envs, later.sale_id, topics.PURCHASES_DECIDED)] == ["not_started"]
        assert [decided(e).reason for e in of_sale(envs, over.sale_id, topics.PURCHASES_DECIDED)] == ["ended"]


def order_event(event_type: str, order_id: str, decision: sales_pb2.PurchaseDecision) -> events_pb2.EventEnvelope:
    """An OrderChanged envelope as the order service would emit it (keyed by order id)."""
    status = {"order.expired": "EXPIRED", "order.cancelled": "CANCELLED", "order.paid": "PAID"}[event_type]
    payload = events_pb2.OrderChanged(
        order_id=order_id,
        reservation_id=decision.reservation_id,
        user_id=decision.user_id,
        sale_id=decision.sale_id,
        quantity=decision.quantity,
        amount_cents=999 * decision.quantity,
        status=status,
    )
    return events.envelope(event_type, order_id, payload, "order")


async def test_expired_and_cancelled_orders_return_stock_once(backend_settings: Settings) -> None:
    async with running(backend_settings) as p, reading(p.settings) as reader:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=2, per_user_limit=1))
        alice, bob, carol = (f"user-{uuid.uuid4().hex[:8]}" for _ in range(3))
        held = await p.sales.Purchase(buy(sale.sale_id, alice))
        paid = await p.sales.Purchase(buy(sale.sale_id, bob))
        assert held.outcome == paid.outcome == ACCEPTED
        assert (await p.sales.Purchase(buy(sale.sale_id, carol))).outcome == sales_pb2.PURCHASE_OUTCOME_SOLD_OUT

        order_id = uuid.uuid4().hex
        expired = order_event("order.expired", order_id, held)
        producer = kafka.EventProducer(p.settings.kafka_bootstrap, "test-orders")
        try:
            await producer.publish(topics.ORDERS, expired)
            await producer.publish(topics.ORDERS, expired)  # a redelivery of the same event
            await producer.publish(topics.ORDERS, order_event("order.cancelled", order_id, held))  # another event
            other_order = uuid.uuid4().hex
            await producer.publish(topics.ORDERS, order_event("order.paid", other_order, paid))
            await producer.publish(topics.ORDERS, order_event("order.expired", other_order, paid))  # too late
        finally:
            await asyncio.to_thread(producer.close)
        await _wait_consumed(p.settings, topics.ORDERS)

        stats = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
        assert (stats.stock, stats.reserved, stats.released, stats.remaining) == (2, 1, 1, 1)
        envs = await asyncio.to_thread(reader.wait_for, lambda e: bool(of_sale(e, sale.sale_id, "stock.released")))
        back = [released(e) for e in of_sale(envs, sale.sale_id, "stock.released")]
        assert len(back) == 1
        assert (back[0].reservation_id, back[0].quantity, back[0].reason) == (held.reservation_id, 1, "expired")
        assert (back[0].product_id, back[0].stock, back[0].remaining) == (p.product_id, 2, 1)

        # alice's allowance came back with the stock (limit 1): she may buy again; then it is sold out again.
        assert (await p.sales.Purchase(buy(sale.sale_id, alice))).outcome == ACCEPTED
        assert (await p.sales.Purchase(buy(sale.sale_id, carol))).outcome == sales_pb2.PURCHASE_OUTCOME_SOLD_OUT
        final = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
        assert (final.remaining, final.reserved, final.released, final.accepted_requests) == (0, 2, 1, 3)


def behind(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """Partition → (committed offset, end offset) where a group has not committed up to the end of a topic."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        wanted = [confluent_kafka.TopicPartition(topic, p) for p in partitions]
        lagging: dict[int, tuple[int, int]] = {}
        for tp in consumer.committed(wanted, timeout=10):
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset < high:
                lagging[tp.partition] = (tp.offset, high)
        return lagging
    finally:
        consumer.close()


async def _wait_consumed(settings: Settings, topic: str, limit_s: float = 30.0) -> None:
    """Wait until group flashsale-sales committed offsets up to the end of every partition of topic."""
    await eventually(
        lambda: asyncio.to_thread(behind, settings.kafka_bootstrap, sales_bootstrap.CONSUMER_GROUP, topic),
        until=lambda lagging: not lagging,
        within_s=limit_s,
        every_s=0.1,
        what=f"the sales consumer to catch up on {topic}",
    )


async def test_create_sale_rejects_bad_input_and_creates_nothing(backend_settings: Settings) -> None:
    async with running(backend_settings) as p, reading(p.settings) as reader:
        unknown_product = uuid.uuid4().hex
        no_start = sale_request(p.product_id)
        no_start.ClearField("starts_at")
        no_end = sale_request(p.product_id)
        no_end.ClearField("ends_at")
        empty_window = sale_request(p.product_id)
        empty_window.ends_at.CopyFrom(empty_window.starts_at)
        cases = [
            (sale_request(""), grpc.StatusCode.INVALID_ARGUMENT, "product_id"),
            (sale_request("bad id!"), grpc.StatusCode.INVALID_ARGUMENT, "product_id"),
            (sale_request(p.product_id, price_cents=0), grpc.StatusCode.INVALID_ARGUMENT, "price_cents"),
            (sale_request(p.product_id, price_cents=10**10 + 1), grpc.StatusCode.INVALID_ARGUMENT, "price_cents"),
            (sale_request(p.product_id, stock=0), grpc.StatusCode.INVALID_ARGUMENT, "stock"),
            (sale_request(p.product_id, stock=10**7 + 1), grpc.StatusCode.INVALID_ARGUMENT, "stock"),
            (sale_request(p.product_id, per_user_limit=0), grpc.StatusCode.INVALID_ARGUMENT, "per_user_limit"),
            (sale_request(p.product_id, per_user_limit=1001), grpc.StatusCode.INVALID_ARGUMENT, "per_user_limit"),
            (no_start, grpc.StatusCode.INVALID_ARGUMENT, "starts_at"),
            (no_end, grpc.StatusCode.INVALID_ARGUMENT, "ends_at"),
            (empty_window, grpc.StatusCode.INVALID_ARGUMENT, "ends_at"),
            (sale_request(unknown_product), grpc.StatusCode.NOT_FOUND, "product_id"),
        ]
        for request, code, field in cases:
            await refused(p.sales.CreateSale(request), code, field)
        for product_id in (p.product_id, unknown_product):
            assert list((await p.sales.ListSales(sales_pb2.ListSalesRequest(product_id=product_id))).sales) == []

        marker = await p.sales.CreateSale(sale_request(p.product_id))
        envs = await asyncio.to_thread(reader.wait_for, lambda e: bool(of_sale(e, marker.sale_id, "sale.created")))
        created = []
        for env in envs:
            if env.type == "sale.created":
                payload = events_pb2.SaleCreated()
                events.unpack(env, payload)
                if payload.product_id in (p.product_id, unknown_product):
                    created.append(payload.sale_id)
        assert created == [marker.sale_id]


async def test_reads_reject_bad_input(backend_settings: Settings) -> None:
    async with running(backend_settings) as p:
        invalid, missing = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
        await refused(p.sales.GetSale(sales_pb2.GetSaleRequest(sale_id="")), invalid, "sale_id")
        await refused(p.sales.GetSale(sales_pb2.GetSaleRequest(sale_id="no such/id")), invalid, "sale_id")
        await refused(p.sales.GetSale(sales_pb2.GetSaleRequest(sale_id=uuid.uuid4().hex)), missing, "sale_id")
        await refused(p.sales.ListSales(sales_pb2.ListSalesRequest(product_id="bad id!")), invalid, "product_id")
        await refused(p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id="")), invalid, "request_id")
        await refused(p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id="a" * 65)), invalid, "request_id")
        await refused(
            p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=uuid.uuid4().hex)), missing, "request_id"
        )
        await refused(p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id="")), invalid, "sale_id")
        await refused(p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=uuid.uuid4().hex)), missing, "sale_id")


async def test_purchase_rejects_bad_input_and_changes_nothing(backend_settings: Settings) -> None:
    async with running(backend_settings) as p, reading(p.settings) as reader:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=3, per_user_limit=2))
        second = await p.sales.CreateSale(sale_request(p.product_id, stock=3, per_user_limit=2))
        first = await p.sales.Purchase(buy(sale.sale_id, "alice"))
        assert first.outcome == ACCEPTED
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        bad_ids = [uuid.uuid4().hex for _ in range(4)]
        cases = [
            (buy(sale.sale_id, "bob", request_id="has space"), invalid, "request_id"),
            (buy(sale.sale_id, "bob", request_id="r" * 65), invalid, "request_id"),
            (sales_pb2.PurchaseRequest(sale_id=sale.sale_id, user_id="bob", quantity=1), invalid, "request_id"),
            (buy("", "bob", request_id=bad_ids[0]), invalid, "sale_id"),
            (buy(sale.sale_id, "", request_id=bad_ids[0]), invalid, "user_id"),
            (buy(sale.sale_id, "bob", quantity=0, request_id=bad_ids[1]), invalid, "quantity"),
            (buy(sale.sale_id, "bob", quantity=-1, request_id=bad_ids[1]), invalid, "quantity"),
            (buy(sale.sale_id, "bob", quantity=3, request_id=bad_ids[2]), invalid, "quantity"),
            (buy(uuid.uuid4().hex, "bob", request_id=bad_ids[3]), grpc.StatusCode.NOT_FOUND, "sale_id"),
            (buy(sale.sale_id, "bob", request_id=first.request_id), invalid, "request_id"),
            (buy(second.sale_id, "alice", request_id=first.request_id), invalid, "request_id"),
            (buy(sale.sale_id, "alice", quantity=2, request_id=first.request_id), invalid, "request_id"),
        ]
        for request, code, field in cases:
            err = await refused(p.sales.Purchase(request), code, field)
            if request.request_id == first.request_id:
                assert "already used for another purchase" in (err.details() or "")
        for request_id in bad_ids:
            await refused(
                p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=request_id)),
                grpc.StatusCode.NOT_FOUND,
                "request_id",
            )
        assert await p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=first.request_id)) == first
        stats = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
        assert (stats.remaining, stats.reserved, stats.accepted_requests, stats.rejected_requests) == (2, 1, 1, 0)
        untouched = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=second.sale_id))
        assert (untouched.remaining, untouched.accepted_requests, untouched.rejected_requests) == (3, 0, 0)

        # bob's allowance was not consumed by his refused requests: he may still buy the limit.
        marker = await p.sales.Purchase(buy(sale.sale_id, "bob", quantity=2))
        assert marker.outcome == ACCEPTED
        envs = await asyncio.to_thread(
            reader.wait_for,
            lambda e: any(
                decided(x).request_id == marker.request_id for x in of_sale(e, sale.sale_id, topics.PURCHASES_DECIDED)
            ),
        )
        ids = [
            decided(e).request_id
            for e in envs
            if e.type == topics.PURCHASES_DECIDED and e.key in (sale.sale_id, second.sale_id)
        ]
        assert ids == [first.request_id, marker.request_id]


async def test_create_sale_is_unavailable_while_the_product_service_is_down(base_settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = base_settings.model_copy(update={"product_addr": f"127.0.0.1:{closed_port}"})
    server = sales_bootstrap.build(settings)
    async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        sales = sales_pb2_grpc.SalesServiceStub(channel)
        product_id = uuid.uuid4().hex
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await sales.CreateSale(sale_request(product_id), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "product service" in (caught.value.details() or "")
        assert list((await sales.ListSales(sales_pb2.ListSalesRequest())).sales) == []
