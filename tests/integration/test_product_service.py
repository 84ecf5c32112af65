"""The product service against real Kafka and each storage backend: catalogue, prices, live availability."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from google.protobuf import message
from grpc_errors import refused
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka_reader import Predicate, TopicTap
from waiting import eventually

from flashsale.common import events, kafka, timeutil, topics
from flashsale.common.settings import Settings
from flashsale.product import bootstrap
from flashsale_api.v1 import events_pb2, product_pb2, product_pb2_grpc

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Env:
    """A running product service, a client, a tap on topics.PRODUCTS and a producer onto topics.SALES."""

    stub: product_pb2_grpc.ProductServiceAsyncStub
    tap: TopicTap
    producer: kafka.EventProducer


@pytest.fixture
async def env(backend_settings: Settings) -> AsyncIterator[Env]:
    """The product service on one backend."""
    server = bootstrap.build(backend_settings)
    tap = TopicTap(backend_settings.kafka_bootstrap, topics.PRODUCTS)
    producer = kafka.EventProducer(backend_settings.kafka_bootstrap, "test-product")
    try:
        async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield Env(product_pb2_grpc.ProductServiceStub(channel), tap, producer)
    finally:
        tap.close()
        await asyncio.to_thread(producer.close)


def _changed(envelope: events_pb2.EventEnvelope) -> events_pb2.ProductChanged:
    payload = events_pb2.ProductChanged()
    events.unpack(envelope, payload)
    return payload


def _is_change_of(product_id: str, name: str | None = None) -> Predicate:
    def check(e: events_pb2.EventEnvelope) -> bool:
        return e.type == "product.changed" and e.key == product_id and (name is None or _changed(e).name == name)

    return check


async def _publish(env: Env, event_type: str, key: str, payload: message.Message) -> events_pb2.EventEnvelope:
    envelope = events.envelope(event_type, key, payload, "test")
    await env.producer.publish(topics.SALES, envelope)
    return envelope


def _sale_created(sale_id: str, product_id: str, stock: int, price: int, starts: int, ends: int) -> message.Message:
    return events_pb2.SaleCreated(
        sale_id=sale_id,
        product_id=product_id,
        price_cents=price,
        stock=stock,
        per_user_limit=2,
        starts_at=timeutil.to_timestamp(starts),
        ends_at=timeutil.to_timestamp(ends),
    )


def _decided(sale_id: str, product_id: str, stock: int, remaining: int) -> message.Message:
    """Two accepted decisions and a rejected one, leaving `remaining` of `stock`."""
    return events_pb2.PurchasesDecided(
        sale_id=sale_id,
        product_id=product_id,
        price_cents=500,
        stock=stock,
        remaining=remaining,
        request_ids=[uuid.uuid4().hex for _ in range(3)],
        user_ids=[uuid.uuid4().hex for _ in range(3)],
        quantities=[1, 2, 1],
        reasons=["", "", "limit_exceeded"],
        reservation_ids=[uuid.uuid4().hex, uuid.uuid4().hex, ""],
    )


async def _availability(
    env: Env, product_id: str, sale_id: str, ok: Callable[[product_pb2.Availability], bool], wait_s: float = 30.0
) -> product_pb2.Availability:
    async def availability() -> list[product_pb2.Availability]:
        product = await env.stub.GetProduct(product_pb2.GetProductRequest(product_id=product_id))
        return [item for item in product.availability if item.sale_id == sale_id]

    found = await eventually(
        availability,
        until=lambda items: any(ok(item) for item in items),
        within_s=wait_s,
        what=f"availability of {sale_id}",
    )
    return next(item for item in found if ok(item))


async def test_product_crud_emits_product_changed(env: Env) -> None:
    tag = uuid.uuid4().hex[:8]
    created = await env.stub.CreateProduct(
        product_pb2.CreateProductRequest(name=f"Lamp {tag}", description="warm", base_price_cents=4990)
    )
    assert (created.name, created.description, created.base_price_cents, created.currency) == (
        f"Lamp {tag}",
        "warm",
        4990,
        "EUR",
    )
    event = await env.tap.wait_for(_is_change_of(created.product_id))
    assert (_changed(event).name, _changed(event).base_price_cents, event.source) == (f"Lamp {tag}", 4990, "product")

    fetched = await env.stub.GetProduct(product_pb2.GetProductRequest(product_id=created.product_id))
    assert fetched == created

    updated = await env.stub.UpdateProduct(
        product_pb2.UpdateProductRequest(product_id=created.product_id, name=f"Desk lamp {tag}", base_price_cents=3990)
    )
    assert (updated.name, updated.description, updated.base_price_cents) == (f"Desk lamp {tag}", "warm", 3990)
    event = await env.tap.wait_for(_is_change_of(created.product_id, f"Desk lamp {tag}"))
    assert _changed(event).base_price_cents == 3990

    usd = await env.stub.CreateProduct(product_pb2.CreateProductRequest(name="b", base_price_cents=1, currency="USD"))
    third = await env.stub.CreateProduct(product_pb2.CreateProductRequest(name="c", base_price_cents=2))
    first = await env.stub.ListProducts(product_pb2.ListProductsRequest(page_size=2))
    assert [p.product_id for p in first.products] == [created.product_id, usd.product_id]
    assert first.next_page_token
    second = await env.stub.ListProducts(product_pb2.ListProductsRequest(page_size=2, page_token=first.next_page_token))
    assert [p.product_id for p in second.products] == [third.product_id]
    assert second.next_page_token == ""
    everything = await env.stub.ListProducts(product_pb2.ListProductsRequest())
    assert len(everything.products) == 3
    assert usd.currency == "USD"


async def test_availability_and_price_follow_sales_events(env: Env) -> None:
    product = await env.stub.CreateProduct(product_pb2.CreateProductRequest(name="Phone", base_price_cents=90000))
    pid, sale, now = product.product_id, uuid.uuid4().hex, timeutil.now_ms()
    await _publish(env, "sale.created", sale, _sale_created(sale, pid, 10, 50000, now - 60_000, now + 3_600_000))
    row = await _availability(env, pid, sale, lambda a: True)
    assert (row.stock, row.remaining, row.sale_price_cents) == (10, 10, 50000)

    price = await env.stub.GetPrice(product_pb2.GetPriceRequest(product_id=pid))
    assert (price.price_cents, price.sale_id, price.currency) == (50000, sale, "EUR")
    price = await env.stub.GetPrice(product_pb2.GetPriceRequest(product_id=pid, sale_id=sale))
    assert price.price_cents == 50000
    other = await env.stub.GetPrice(product_pb2.GetPriceRequest(product_id=pid, sale_id=uuid.uuid4().hex))
    assert (other.price_cents, other.sale_id) == (90000, "")

    later = await env.stub.CreateProduct(product_pb2.CreateProductRequest(name="Later", base_price_cents=700))
    future_sale = uuid.uuid4().hex
    await _publish(
        env,
        "sale.created",
        future_sale,
        _sale_created(future_sale, later.product_id, 5, 100, now + 3_600_000, now + 7_200_000),
    )
    await _availability(env, later.product_id, future_sale, lambda a: True)
    not_yet = await env.stub.GetPrice(product_pb2.GetPriceRequest(product_id=later.product_id))
    assert (not_yet.price_cents, not_yet.sale_id) == (700, "")
    # restocked before its first decision: stock and remaining both follow
    restocked = _sale_created(future_sale, later.product_id, 8, 100, now + 3_600_000, now + 7_200_000)
    await _publish(env, "sale.updated", future_sale, restocked)
    row = await _availability(env, later.product_id, future_sale, lambda a: a.stock == 8)
    assert (row.stock, row.remaining) == (8, 8)

    watch = env.stub.WatchAvailability(product_pb2.WatchAvailabilityRequest(sale_id=sale))
    try:
        first = await asyncio.wait_for(watch.read(), 10)
        assert isinstance(first, product_pb2.Availability)
        assert (first.sale_id, first.remaining, first.stock) == (sale, 10, 10)
        decisions = await _publish(env, topics.PURCHASES_DECIDED, sale, _decided(sale, pid, 10, 7))
        change = await asyncio.wait_for(watch.read(), 30)
        assert isinstance(change, product_pb2.Availability)
        assert (change.remaining, change.stock) == (7, 10)
        released = events_pb2.StockReleased(
            sale_id=sale, reservation_id="r", quantity=2, reason="expired", remaining=9, product_id=pid, stock=10
        )
        await _publish(env, "stock.released", sale, released)
        change = await asyncio.wait_for(watch.read(), 30)
        assert isinstance(change, product_pb2.Availability)
        assert change.remaining == 9
    finally:
        watch.cancel()

    # A redelivered decision changes nothing: the marker behind it (same key, same partition) proves it was read.
    await env.producer.publish(topics.SALES, decisions)
    marker = uuid.uuid4().hex
    await _publish(env, "sale.created", sale, _sale_created(marker, pid, 1, 1, now, now + 1000))
    await _availability(env, pid, marker, lambda a: True)
    assert (await _availability(env, pid, sale, lambda a: True)).remaining == 9

    unseen = uuid.uuid4().hex
    await _publish(env, topics.PURCHASES_DECIDED, unseen, _decided(unseen, pid, 5, 4))
    row = await _availability(env, pid, unseen, lambda a: True)
    assert (row.stock, row.remaining, row.sale_price_cents) == (5, 4, 500)


async def test_bad_input_is_refused_and_changes_nothing(env: Env) -> None:
    stub, tag = env.stub, uuid.uuid4().hex[:8]
    code = grpc.StatusCode.INVALID_ARGUMENT
    create = product_pb2.CreateProductRequest
    await refused(stub.CreateProduct(create(name="", base_price_cents=1)), code, "name")
    await refused(stub.CreateProduct(create(name="x" * 201 + tag, base_price_cents=1)), code, "name")
    await refused(stub.CreateProduct(create(name=tag, description="d" * 2001, base_price_cents=1)), code, "description")
    await refused(stub.CreateProduct(create(name=tag, base_price_cents=0)), code, "base_price_cents")
    await refused(stub.CreateProduct(create(name=tag, base_price_cents=10**10 + 1)), code, "base_price_cents")
    await refused(stub.CreateProduct(create(name=tag, base_price_cents=1, currency="eu")), code, "currency")
    assert len((await stub.ListProducts(product_pb2.ListProductsRequest())).products) == 0

    product = await stub.CreateProduct(create(name="Kept", description="same", base_price_cents=100))
    pid = product.product_id
    await refused(stub.GetProduct(product_pb2.GetProductRequest(product_id="has space")), code, "product_id")
    await refused(
        stub.GetProduct(product_pb2.GetProductRequest(product_id=uuid.uuid4().hex)), grpc.StatusCode.NOT_FOUND
    )
    await refused(stub.ListProducts(product_pb2.ListProductsRequest(page_size=101)), code, "page_size")
    await refused(stub.ListProducts(product_pb2.ListProductsRequest(page_size=-1)), code, "page_size")
    await refused(stub.ListProducts(product_pb2.ListProductsRequest(page_token="bogus!")), code, "page_token")

    update = product_pb2.UpdateProductRequest
    err = await refused(stub.UpdateProduct(update(product_id=pid)), code)
    assert "name" in (err.details() or "")
    await refused(stub.UpdateProduct(update(product_id=pid, name="")), code, "name")
    await refused(stub.UpdateProduct(update(product_id=pid, name=tag, base_price_cents=-1)), code, "base_price_cents")
    await refused(stub.UpdateProduct(update(product_id="", name=tag)), code, "product_id")
    await refused(stub.UpdateProduct(update(product_id=uuid.uuid4().hex, name=tag)), grpc.StatusCode.NOT_FOUND)
    assert await stub.GetProduct(product_pb2.GetProductRequest(product_id=pid)) == product

    price = product_pb2.GetPriceRequest
    await refused(stub.GetPrice(price(product_id="")), code, "product_id")
    await refused(stub.GetPrice(price(product_id=pid, sale_id="bad id")), code, "sale_id")
    await refused(stub.GetPrice(price(product_id=uuid.uuid4().hex)), grpc.StatusCode.NOT_FOUND)

    watch = product_pb2.WatchAvailabilityRequest
    await refused(stub.WatchAvailability(watch(sale_id="")).read(), code, "sale_id")
    await refused(stub.WatchAvailability(watch(sale_id=uuid.uuid4().hex)).read(), grpc.StatusCode.NOT_FOUND)

    # No event for any refused request: the marker update follows them on the product's partition,
    # and the tap has read the whole topic before the refused creates are looked for.
    await stub.UpdateProduct(update(product_id=pid, description=f"marker {tag}"))
    await env.tap.wait_for(_is_change_of(pid), count=2)
    await env.tap.settle()
    assert [_changed(e).name for e in env.tap.matching(_is_change_of(pid))] == ["Kept", "Kept"]
    assert env.tap.matching(lambda e: e.type == "product.changed" and tag in _changed(e).name) == []


async def test_a_service_binds_its_listen_address_while_the_others_dial_its_own(base_settings: Settings) -> None:
    # in a pod the service binds every interface; its own address is the Service name the others dial, which
    # is not an address of this machine and so cannot be bound
    settings = base_settings.model_copy(
        update={"product_addr": "flashsale-product.invalid:50052", "grpc_listen": "0.0.0.0:0"}
    )
    server = bootstrap.build(settings)
    async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
