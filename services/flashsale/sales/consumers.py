"""Kafka handlers of the sales service (run in the consumer thread): parse, then call the service."""

from __future__ import annotations

from collections.abc import Callable

from flashsale.common import kafka
from flashsale.sales import messages, service
from flashsale_api.v1 import events_pb2


def order_events(sales: service.SalesService, notify: Callable[[], None]) -> kafka.Handler:
    """Handle topics.ORDERS: expired / cancelled → stock back, paid → reservation confirmed.

    `notify` must be safe to call from the consumer thread; it wakes the outbox relay.
    """

    def handle(env: events_pb2.EventEnvelope) -> None:
        change = messages.order_change(env)
        if change is None:
            return
        reason, reservation_id = change
        if reason is None:
            sales.confirm(env.event_id, reservation_id)
        elif sales.release(env.event_id, reservation_id, reason):
            notify()

    return handle
