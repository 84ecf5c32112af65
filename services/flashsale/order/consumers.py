"""Accepted purchase decisions → orders (run in the consumer thread, idempotent per decision and reservation)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flashsale.common import database, decided, errors, events, outbox, timeutil, topics
from flashsale.order import domain, service
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)


def decision_of(msg: events_pb2.PurchasesDecided, entry: decided.Entry) -> domain.Decision:
    """The order-relevant fields of an accepted entry of the event, or PermanentEventError when unusable."""
    decision = domain.Decision(
        request_id=entry.request_id,
        reservation_id=entry.reservation_id,
        user_id=entry.user_id,
        sale_id=msg.sale_id,
        product_id=msg.product_id,
        quantity=entry.quantity,
        price_cents=msg.price_cents,
    )
    try:
        if not decision.request_id:
            raise ValueError("request_id is missing")  # it identifies the decision across re-publications
        domain.check_decision(decision)
    except ValueError as exc:
        raise errors.PermanentEventError(f"{topics.PURCHASES_DECIDED}: {exc}") from None
    return decision


def handler(
    db: database.Database, window_s: float, notify: Callable[[], None]
) -> Callable[[events_pb2.EventEnvelope], None]:
    """The handler of topics.SALES: each accepted entry of purchases.decided becomes one PENDING_PAYMENT order.

    The orders of one event are made in one transaction; an unusable entry refuses the whole event.
    """
    window_ms = round(window_s * 1000)

    def handle(env: events_pb2.EventEnvelope) -> None:
        if env.type != topics.PURCHASES_DECIDED:
            return
        msg = events_pb2.PurchasesDecided()
        events.unpack(env, msg)
        decisions = [decision_of(msg, entry) for entry in decided.entries(msg) if entry.accepted]
        if not decisions:
            return

        def work(tx: database.Tx) -> list[domain.Order]:
            now = timeutil.now_ms()
            created = []
            for decision in decisions:
                if not outbox.first_time(tx, decided.entry_id(decision.request_id)):
                    continue
                order = service.create_from_decision(tx, decision, now, window_ms)
                if order is not None:
                    created.append(order)
            return created

        orders = db.run_sync(work)
        if orders:
            notify()
        for order in orders:
            log.info("order created", extra={"order_id": order.order_id, "reservation_id": order.reservation_id})

    return handle
