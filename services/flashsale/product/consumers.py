"""Sales events → the stock display (run in the consumer thread, idempotent per event id)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flashsale.common import database, errors, events, outbox, timeutil, topics
from flashsale.product import domain, repository
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)


def _require(value: str, what: str, event_type: str) -> str:
    if not value:
        raise errors.PermanentEventError(f"{event_type}: {what} is missing")
    return value


def _sale_terms(env: events_pb2.EventEnvelope, now: int) -> Callable[[database.Tx], None]:
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
    restocked = env.type == topics.SALE_UPDATED  # its stock changed before the first decision: all of it remains

    def apply(tx: database.Tx) -> None:
        repository.upsert_sale(tx, row)
        if restocked:
            repository.set_remaining(tx, row)

    return apply


def _stock_changed(env: events_pb2.EventEnvelope, now: int) -> Callable[[database.Tx], None]:
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
    row = domain.Availability(
        sale_id=_require(sale_id, "sale_id", env.type),
        product_id=product_id,
        stock=stock,
        remaining=remaining,
        sale_price_cents=price,
        starts_at=0,
        ends_at=0,
        updated_at=now,
    )
    return lambda tx: repository.set_remaining(tx, row)


def handler(db: database.Database) -> Callable[[events_pb2.EventEnvelope], None]:
    """The handler of topics.SALES: sale.created, sale.updated, purchases.decided and stock.released update
    availability."""

    def handle(env: events_pb2.EventEnvelope) -> None:
        now = timeutil.now_ms()
        if env.type in (topics.SALE_CREATED, topics.SALE_UPDATED):
            effect = _sale_terms(env, now)
        elif env.type in (topics.PURCHASES_DECIDED, topics.STOCK_RELEASED):
            effect = _stock_changed(env, now)
        else:
            return

        def work(tx: database.Tx) -> None:
            if outbox.first_time(tx, env.event_id):
                effect(tx)

        db.run_sync(work)
        log.debug("availability updated", extra={"event_type": env.type, "event_id": env.event_id})

    return handle
