"""Kafka handlers of the sales service (run in the consumer thread)."""

from __future__ import annotations

from collections.abc import Callable

from flashsale.common import kafka
from flashsale.sales import service
from flashsale_api.v1 import events_pb2


def order_events(sales: service.SalesService, notify: Callable[[], None]) -> kafka.Handler:
    """Handle topics.ORDERS: expired / cancelled → stock back, paid → reservation confirmed.

    `notify` must be safe to call from the consumer thread; it wakes the outbox relay.
    """

    def handle(env: events_pb2.EventEnvelope) -> None:
        if sales.on_order_event(env):
            notify()

    return handle
