"""Kafka handlers of the order service (run in the consumer thread): parse, then call the service."""

from __future__ import annotations

from collections.abc import Callable

from flashsale.common import kafka
from flashsale.order import messages, service
from flashsale_api.v1 import events_pb2


def handler(orders: service.OrderService, window_s: float, notify: Callable[[], None]) -> kafka.Handler:
    """The handler of topics.SALES: each accepted entry of purchases.decided becomes one PENDING_PAYMENT order,
    payable for window_s.

    `notify` must be safe to call from the consumer thread; it wakes the outbox relay.
    """
    window_ms = round(window_s * 1000)

    def handle(env: events_pb2.EventEnvelope) -> None:
        decisions = messages.accepted_decisions(env)
        if decisions and orders.create_orders(decisions, window_ms):
            notify()

    return handle
