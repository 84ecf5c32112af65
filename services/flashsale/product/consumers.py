"""Kafka handlers of the product service (run in the consumer thread): parse, then call the service."""

from __future__ import annotations

import logging

from flashsale.common import kafka, timeutil
from flashsale.product import messages, service
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)


def handler(products: service.ProductService) -> kafka.Handler:
    """The handler of topics.SALES: sale.created, sale.updated, purchases.decided and stock.released update
    availability (once per event id)."""

    def handle(env: events_pb2.EventEnvelope) -> None:
        now = timeutil.now_ms()
        if env.type in messages.SALE_TERMS:
            row, restocked = messages.sale_terms(env, now)
            products.record_sale(env.event_id, row, restocked)
        elif env.type in messages.STOCK_CHANGES:
            products.record_remaining(env.event_id, messages.stock_left(env, now))
        else:
            return
        log.debug("availability updated", extra={"event_type": env.type, "event_id": env.event_id})

    return handle
