"""Kafka handlers of the notification service (run in consumer threads): parse, then call the service.

Deliveries by e-mail and SMS (one group per service); live fan-out (one group per replica).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flashsale.common import errors, kafka
from flashsale.notification import domain, messages, service
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)


def deliveries(notifications: service.NotificationService) -> kafka.Handler:
    """The handler of the delivery group: each notification of an event is delivered (blocking is fine here)."""

    def handle(env: events_pb2.EventEnvelope) -> None:
        for incoming in messages.interpret(env):
            notifications.deliver(incoming)

    return handle


class LiveHandler:
    """Hands every live notification of an event to `publish` (the in-memory hub of this replica)."""

    def __init__(self, publish: Callable[[domain.Notification], None]) -> None:
        self._publish = publish

    def __call__(self, env: events_pb2.EventEnvelope) -> None:
        """Handle one event in the live consumer thread; a malformed one is the delivery consumer's to dead-letter."""
        try:
            found = messages.interpret(env)
        except errors.PermanentEventError as exc:
            log.debug("live: skipping malformed event", extra={"event_id": env.event_id, "reason": str(exc)})
            return
        for incoming in found:
            if domain.is_live(incoming.notification.kind):
                self._publish(incoming.notification)
