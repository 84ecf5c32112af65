"""The order service against real Kafka and each storage backend: orders from decisions, payment, expiry."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_errors import refused
from kafka_reader import Predicate, TopicTap
from waiting import eventually

from flashsale.common import decided, events, kafka, topics
from flashsale.common.settings import Settings
from flashsale.order import bootstrap
from flashsale_api.v1 import events_pb2, order_pb2, order_pb2_grpc

pytestmark = pytest.mark.integration

PENDING = order_pb2.ORDER_STATUS_PENDING_PAYMENT


@dataclasses.dataclass
class Env:
    """A running order service, a client, a tap on topics.ORDERS and a producer onto topics.SALES."""

    stub: order_pb2_grpc.OrderServiceAsyncStub
    tap: TopicTap
    producer: kafka.EventProducer


@contextlib.asynccontextmanager
async def _running(settings: Settings) -> AsyncIterator[Env]:
    server = bootstrap.build(settings)
    tap = TopicTap(settings.kafka_bootstrap, topics.ORDERS)
    producer = kafka.EventProducer(settings.kafka_bootstrap, "test-order")
    try:
        async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield Env(order_pb2_grpc.OrderServiceStub(channel), tap, producer)
    finally:
        tap.close()
        await asyncio.to_thread(producer.close)


def _decision(user_id: str, *, quantity: int = 2, accepted: bool = True) -> decided.Entry:
    return decided.Entry(
        request_id=uuid.uuid4().hex,
        user_id=user_id,
        quantity=quantity,
        reason="" if accepted else "sold_out",
        reservation_id=uuid.uuid4().hex if accepted else "",
    )


def _decided(sale_id: str, entries: list[decided.Entry]) -> events_pb2.PurchasesDecided:
    """A purchases.decided payload of a sale at 15.00 a unit with the entries as its columns."""
    return events_pb2.PurchasesDecided(
        sale_id=sale_id,
        product_id="prod-1",
        price_cents=1500,
        stock=20,
        remaining=10,
        request_ids=[e.request_id for e in entries],
        user_ids=[e.user_id for e in entries],
        quantities=[e.quantity for e in entries],
        reasons=[e.reason for e in entries],
        reservation_ids=[e.reservation_id for e in entries],
    )


async def _publish(env: Env, sale_id: str, *entries: decided.Entry) -> events_pb2.EventEnvelope:
    envelope = events.envelope(topics.PURCHASES_DECIDED, sale_id, _decided(sale_id, list(entries)), "test")
    await env.producer.publish(topics.SALES, envelope)
    return envelope


async def _orders_of(env: Env, user_id: str, request_id: str) -> list[order_pb2.Order]:
    reply = await env.stub.ListOrders(order_pb2.ListOrdersRequest(user_id=user_id, request_id=request_id))
    return list(reply.orders)


async def _wait_order(env: Env, user_id: str, request_id: str, wait_s: float = 30.0) -> order_pb2.Order:
    found = await eventually(
        lambda: _orders_of(env, user_id, request_id), within_s=wait_s, what=f"an order for request {request_id}"
    )
    return found[0]


def _payload(envelope: events_pb2.EventEnvelope) -> events_pb2.OrderChanged:
    payload = events_pb2.OrderChanged()
    events.unpack(envelope, payload)
    return payload


def _event(event_type: str, order_id: str) -> Predicate:
    return lambda e: e.type == event_type and e.key == order_id


async def test_order_from_decision_is_paid_cancelled_and_listed(backend_settings: Settings) -> None:
    user, sale = uuid.uuid4().hex, uuid.uuid4().hex
    async with _running(backend_settings) as env:
        stub = env.stub
        first = _decision(user)
        await _publish(env, sale, first)
        order = await _wait_order(env, user, first.request_id)
        assert (order.status, order.amount_cents, order.quantity) == (PENDING, 3000, 2)
        assert (order.reservation_id, order.sale_id, order.product_id) == (first.reservation_id, sale, "prod-1")
        window_ms = order.pay_by.ToMilliseconds() - order.created_at.ToMilliseconds()
        assert window_ms == round(backend_settings.payment_window_s * 1000)
        created = _payload(await env.tap.wait_for(_event("order.created", order.order_id)))
        assert (created.reservation_id, created.status, created.amount_cents) == (
            first.reservation_id,
            "PENDING_PAYMENT",
            3000,
        )

        get = order_pb2.GetOrderRequest
        assert await stub.GetOrder(get(order_id=order.order_id, user_id=user)) == order
        stranger = uuid.uuid4().hex
        await refused(stub.GetOrder(get(order_id=order.order_id, user_id=stranger)), grpc.StatusCode.NOT_FOUND)

        pay = order_pb2.PayOrderRequest
        await refused(
            stub.PayOrder(pay(order_id=order.order_id, user_id=stranger, payment_token="tok_ok")),
            grpc.StatusCode.NOT_FOUND,
        )
        err = await refused(
            stub.PayOrder(pay(order_id=order.order_id, user_id=user, payment_token="tok_declined")),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert err.details() == "payment declined"
        assert (await stub.GetOrder(get(order_id=order.order_id, user_id=user))).status == PENDING

        paid = await stub.PayOrder(pay(order_id=order.order_id, user_id=user, payment_token="tok_visa"))
        assert paid.status == order_pb2.ORDER_STATUS_PAID
        assert paid.payment_id
        assert _payload(await env.tap.wait_for(_event("order.paid", order.order_id))).status == "PAID"
        err = await refused(
            stub.PayOrder(pay(order_id=order.order_id, user_id=user, payment_token="tok_visa")),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert "already paid" in (err.details() or "")
        cancel = order_pb2.CancelOrderRequest
        await refused(
            stub.CancelOrder(cancel(order_id=order.order_id, user_id=user)), grpc.StatusCode.FAILED_PRECONDITION
        )

        second = _decision(user, quantity=1)
        await _publish(env, sale, second)
        other = await _wait_order(env, user, second.request_id)
        cancelled = await stub.CancelOrder(cancel(order_id=other.order_id, user_id=user))
        assert cancelled.status == order_pb2.ORDER_STATUS_CANCELLED
        event = _payload(await env.tap.wait_for(_event("order.cancelled", other.order_id)))
        assert (event.reservation_id, event.sale_id, event.quantity) == (second.reservation_id, sale, 1)

        listed = await stub.ListOrders(order_pb2.ListOrdersRequest(user_id=user))
        assert [o.order_id for o in listed.orders] == [other.order_id, order.order_id]
        page = await stub.ListOrders(order_pb2.ListOrdersRequest(user_id=user, page_size=1))
        assert [o.order_id for o in page.orders] == [other.order_id]
        rest = await stub.ListOrders(
            order_pb2.ListOrdersRequest(user_id=user, page_size=1, page_token=page.next_page_token)
        )
        assert ([o.order_id for o in rest.orders], rest.next_page_token) == ([order.order_id], "")
        assert (await stub.ListOrders(order_pb2.ListOrdersRequest(user_id=stranger))).orders == []


async def test_redelivered_and_rejected_decisions(backend_settings: Settings) -> None:
    user, sale = uuid.uuid4().hex, uuid.uuid4().hex
    async with _running(backend_settings) as env:
        twice = _decision(user)
        envelope = await _publish(env, sale, twice)
        await env.producer.publish(topics.SALES, envelope)
        await _publish(env, sale, twice)  # a new event id for the same decision
        rejected = _decision(user, accepted=False)
        await _publish(env, sale, rejected)
        marker = _decision(user)
        await _publish(env, sale, marker)  # same key: read after the others
        await _wait_order(env, user, marker.request_id)
        assert len(await _orders_of(env, user, twice.request_id)) == 1
        assert await _orders_of(env, user, rejected.request_id) == []


async def test_one_event_orders_its_accepted_decisions_once(backend_settings: Settings) -> None:
    ann, bob, sale = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    async with _running(backend_settings) as env:
        first, rejected, second, third = (
            _decision(ann, quantity=2),
            _decision(ann, accepted=False),
            _decision(bob, quantity=1),
            _decision(ann, quantity=3),
        )
        await _publish(env, sale, first, rejected, second, third)
        orders = {d.request_id: await _wait_order(env, d.user_id, d.request_id) for d in (first, second, third)}
        assert {r: (o.reservation_id, o.amount_cents, o.status) for r, o in orders.items()} == {
            first.request_id: (first.reservation_id, 3000, PENDING),
            second.request_id: (second.reservation_id, 1500, PENDING),
            third.request_id: (third.reservation_id, 4500, PENDING),
        }
        assert await _orders_of(env, ann, rejected.request_id) == []

        # A writer taking the partition over re-publishes decisions grouped differently, under another event id.
        fourth, late_rejection = _decision(bob, quantity=1), _decision(ann, accepted=False)
        await _publish(env, sale, third, late_rejection, second, fourth)
        # An unusable entry (no reservation) refuses its whole event: the good entry beside it makes no order.
        beside, unusable = _decision(ann), dataclasses.replace(_decision(bob), reservation_id="")
        await _publish(env, sale, beside, unusable)
        marker = _decision(ann)
        await _publish(env, sale, marker)  # same key: read after the others
        await _wait_order(env, ann, marker.request_id)
        await _wait_order(env, bob, fourth.request_id)
        for d in (first, second, third, fourth):
            assert len(await _orders_of(env, d.user_id, d.request_id)) == 1, d
        for d in (rejected, late_rejection, beside, unusable):
            assert await _orders_of(env, d.user_id, d.request_id) == [], d
        listed = {u: await env.stub.ListOrders(order_pb2.ListOrdersRequest(user_id=u)) for u in (ann, bob)}
        assert {o.request_id for o in listed[ann].orders} == {first.request_id, third.request_id, marker.request_id}
        assert {o.request_id for o in listed[bob].orders} == {second.request_id, fourth.request_id}

        def created_in_sale(e: events_pb2.EventEnvelope) -> bool:
            return e.type == "order.created" and _payload(e).sale_id == sale

        await env.tap.wait_for(created_in_sale, count=5)
        await env.tap.settle()
        assert len(env.tap.matching(created_in_sale)) == 5


async def test_unpaid_order_expires_and_cannot_be_paid(backend_settings: Settings) -> None:
    settings = backend_settings.model_copy(update={"payment_window_s": 0.5, "expiry_scan_s": 0.1})
    user, sale = uuid.uuid4().hex, uuid.uuid4().hex
    async with _running(settings) as env:
        decision = _decision(user, quantity=3)
        await _publish(env, sale, decision)
        order = await _wait_order(env, user, decision.request_id)
        expired = _payload(await env.tap.wait_for(_event("order.expired", order.order_id)))
        assert (expired.reservation_id, expired.sale_id, expired.quantity, expired.status) == (
            decision.reservation_id,
            sale,
            3,
            "EXPIRED",
        )
        current = await env.stub.GetOrder(order_pb2.GetOrderRequest(order_id=order.order_id, user_id=user))
        assert current.status == order_pb2.ORDER_STATUS_EXPIRED
        err = await refused(
            env.stub.PayOrder(
                order_pb2.PayOrderRequest(order_id=order.order_id, user_id=user, payment_token="tok_visa")
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert err.details() == "payment deadline passed"
        again = await env.stub.GetOrder(order_pb2.GetOrderRequest(order_id=order.order_id, user_id=user))
        assert (again.status, again.payment_id) == (order_pb2.ORDER_STATUS_EXPIRED, "")
        await env.tap.settle()
        assert [e.type for e in env.tap.matching(lambda e: e.key == order.order_id)] == [
            "order.created",
            "order.expired",
        ]


async def test_bad_input_is_refused_and_changes_nothing(backend_settings: Settings) -> None:
    user, sale = uuid.uuid4().hex, uuid.uuid4().hex
    code = grpc.StatusCode.INVALID_ARGUMENT
    async with _running(backend_settings) as env:
        stub = env.stub
        decision = _decision(user)
        await _publish(env, sale, decision)
        order = await _wait_order(env, user, decision.request_id)
        oid = order.order_id

        get = order_pb2.GetOrderRequest
        await refused(stub.GetOrder(get(order_id="", user_id=user)), code, "order_id")
        await refused(stub.GetOrder(get(order_id=oid, user_id="bad id")), code, "user_id")
        await refused(stub.GetOrder(get(order_id=uuid.uuid4().hex, user_id=user)), grpc.StatusCode.NOT_FOUND)

        lst = order_pb2.ListOrdersRequest
        await refused(stub.ListOrders(lst(user_id="")), code, "user_id")
        await refused(stub.ListOrders(lst(user_id=user, page_size=101)), code, "page_size")
        await refused(stub.ListOrders(lst(user_id=user, page_size=-3)), code, "page_size")
        await refused(stub.ListOrders(lst(user_id=user, page_token="bogus!")), code, "page_token")
        await refused(stub.ListOrders(lst(user_id=user, request_id="x;y")), code, "request_id")

        pay = order_pb2.PayOrderRequest
        await refused(stub.PayOrder(pay(order_id=oid, user_id=user, payment_token="")), code, "payment_token")
        await refused(stub.PayOrder(pay(order_id=oid, user_id=user, payment_token="t" * 129)), code, "payment_token")
        await refused(stub.PayOrder(pay(order_id="a b", user_id=user, payment_token="tok")), code, "order_id")
        await refused(stub.PayOrder(pay(order_id=oid, user_id="", payment_token="tok")), code, "user_id")

        cancel = order_pb2.CancelOrderRequest
        await refused(stub.CancelOrder(cancel(order_id="", user_id=user)), code, "order_id")
        await refused(stub.CancelOrder(cancel(order_id=oid, user_id="x" * 65)), code, "user_id")
        await refused(stub.CancelOrder(cancel(order_id=oid, user_id=uuid.uuid4().hex)), grpc.StatusCode.NOT_FOUND)

        assert await stub.GetOrder(get(order_id=oid, user_id=user)) == order
        # The owner's cancel is the marker: had a refused call emitted, its event would precede it (same key).
        await stub.CancelOrder(cancel(order_id=oid, user_id=user))
        await env.tap.wait_for(_event("order.cancelled", oid))
        assert [e.type for e in env.tap.matching(lambda e: e.key == oid)] == ["order.created", "order.cancelled"]
