"""The product service's protobuf mapping: gRPC messages, the event it emits and the sales events it reads."""

from __future__ import annotations

from collections.abc import Sequence

from flashsale.common import errors, events, timeutil, topics
from flashsale.product import domain
from flashsale_api.v1 import events_pb2, product_pb2

SOURCE = "product"

SALE_TERMS = (topics.SALE_CREATED, topics.SALE_UPDATED)
STOCK_CHANGES = (topics.PURCHASES_DECIDED, topics.STOCK_RELEASED)


def availability(value: domain.Availability) -> product_pb2.Availability:
    """A sale's stock display as its gRPC message."""
    return product_pb2.Availability(
        sale_id=value.sale_id,
        product_id=value.product_id,
        stock=value.stock,
        remaining=value.remaining,
        sale_price_cents=value.sale_price_cents,
        updated_at=timeutil.to_timestamp(value.updated_at),
    )


def product(value: domain.Product, sales: Sequence[domain.Availability]) -> product_pb2.Product:
    """A product with the stock display of its sales as its gRPC message."""
    return product_pb2.Product(
        product_id=value.product_id,
        name=value.name,
        description=value.description,
        base_price_cents=value.base_price_cents,
        currency=value.currency,
        created_at=timeutil.to_timestamp(value.created_at),
        updated_at=timeutil.to_timestamp(value.updated_at),
        availability=[availability(a) for a in sales],
    )


def product_changed(value: domain.Product) -> events_pb2.EventEnvelope:
    """The product.changed event of a created or changed product."""
    payload = events_pb2.ProductChanged(
        product_id=value.product_id, name=value.name, base_price_cents=value.base_price_cents
    )
    return events.envelope(topics.PRODUCT_CHANGED, value.product_id, payload, SOURCE)


def _require(value: str, what: str, event_type: str) -> str:
    if not value:
        raise errors.PermanentEventError(f"{event_type}: {what} is missing")
    return value


def sale_terms(env: events_pb2.EventEnvelope, now: int) -> tuple[domain.Availability, bool]:
    """The availability row a sale.created or sale.updated event describes, and whether the sale was restocked
    (sale.updated: its stock changed before the first decision, so all of it remains). PermanentEventError when it
    names no sale or product."""
    msg = events_pb2.SaleCreated()
    events.unpack(env, msg)
    row = domain.Availability(
        sale_id=_require(msg.sale_id, "sale_id", env.type),
        product_id=_require(msg.product_id, "product_id", env.type),
        stock=msg.stock,
        remaining=msg.stock,
        sale_price_cents=msg.price_cents,
        starts_at=timeutil.from_timestamp(msg.starts_at),
        ends_at=timeutil.from_timestamp(msg.ends_at),
        updated_at=now,
    )
    return row, env.type == topics.SALE_UPDATED


def stock_left(env: events_pb2.EventEnvelope, now: int) -> domain.Availability:
    """The stock remaining after a purchases.decided or stock.released event (times unknown: 0), with the sale's
    product, stock and (purchases.decided only) price. PermanentEventError when it names no sale."""
    price = 0
    if env.type == topics.PURCHASES_DECIDED:
        batch = events_pb2.PurchasesDecided()
        events.unpack(env, batch)
        sale_id, product_id, stock, remaining = batch.sale_id, batch.product_id, batch.stock, batch.remaining
        price = batch.price_cents
    else:
        released = events_pb2.StockReleased()
        events.unpack(env, released)
        sale_id, product_id, stock, remaining = (
            released.sale_id,
            released.product_id,
            released.stock,
            released.remaining,
        )
    return domain.Availability(
        sale_id=_require(sale_id, "sale_id", env.type),
        product_id=product_id,
        stock=stock,
        remaining=remaining,
        sale_price_cents=price,
        starts_at=0,
        ends_at=0,
        updated_at=now,
    )
