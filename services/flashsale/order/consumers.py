"""Accepted purchase decisions → orders (run in the consumer thread, idempotent per event and reservation)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flashsale.common import database, errors, events, outbox, timeutil
from flashsale.order import domain, service
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)


def decision_of(msg: events_pb2.PurchaseDecided) -> domain.Decision:
    """The order-relevant fields of an accepted decision, or PermanentEventError when unusable."""
    decision = domain.Decision(
        request_id=msg.request_id,
        reservation_id=msg.reservation_id,
        user_id=msg.user_id,
        sale_id=msg.sale_id,
        product_id=msg.product_id,
        quantity=msg.quantity,
        price_cents=msg.price_cents,
    )
    try:
        domain.check_decision(decision)
    except ValueError as exc:
        raise errors.PermanentEventError(f"purchase.decided: {exc}") from None
    return decision


def handler(
    db: database.Database, window_s: float, notify: Callable[[], None]
) -> Callable[[events_pb2.EventEnvelope], None]:
    """The handler of topics.SALES: each accepted purchase.decided becomes one PENDING_PAYMENT order."""
    window_ms = round(window_s * 1000)

    def handle(env: events_pb2.EventEnvelope) -> None:
        if env.type != "purchase.decided":
            return
        msg = events_pb2.PurchaseDecided()
        events.unpack(env, msg)
        if not msg.accepted:
            return
        decision = decision_of(msg)

        def work(tx: database.Tx) -> domain.Order | None:
            if not outbox.first_time(tx, env.event_id):
                return None
            return service.create_from_decision(tx, decision, timeutil.now_ms(), window_ms)

        order = db.run_sync(work)
        if order is not None:
            notify()
            log.info("order created", extra={"order_id": order.order_id, "reservation_id": order.reservation_id})

    return handle
