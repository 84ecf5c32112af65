"""Kafka handlers of the notification service (run in consumer threads): parse, then call the service.

Deliveries by e-mail and SMS (one group per service); live fan-out (one group per replica).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from flashsale.common import errors, kafka, topics
from flashsale.notification import domain, messages, service
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)


def deliveries(notifications: service.NotificationService) -> kafka.Handler:
    """The handler of the delivery group: each notification of an event is delivered (blocking is fine here).
    A purchases.decided event's notifications are only live: it is checked (a malformed one is dead-lettered)
    without building them."""

    def handle(env: events_pb2.EventEnvelope) -> None:
        if env.type == topics.PURCHASES_DECIDED:
            messages.check_decisions(env)
            return
        for incoming in messages.interpret(env):
            notifications.deliver(incoming)

    return handle


class Audience(Protocol):
    """Who is subscribed to this replica's live notifications (read from the consumer thread)."""

    def anyone(self) -> bool:
        """True while a subscription is open."""
        ...

    def watches(self, user_id: str) -> bool:
        """True while the user has a subscription open."""
        ...


class LiveHandler:
    """Hands the live notifications of an event for the users of `audience` (everyone when None) to `publish`
    (the in-memory hub), all of an event at once; an event is not read at all while nobody is subscribed."""

    def __init__(self, publish: Callable[[list[domain.Notification]], None], audience: Audience | None = None) -> None:
        self._publish = publish
        self._audience = audience

    def __call__(self, env: events_pb2.EventEnvelope) -> None:
        """Handle one event in the live consumer thread; a malformed one is the delivery consumer's to dead-letter."""
        audience = self._audience
        if audience is not None and not audience.anyone():
            return
        try:
            found = messages.interpret(env)
        except errors.PermanentEventError as exc:
            log.debug("live: skipping malformed event", extra={"event_id": env.event_id, "reason": str(exc)})
            return
        notes = [
            i.notification
            for i in found
            if domain.is_live(i.notification.kind) and (audience is None or audience.watches(i.notification.user_id))
        ]
        if notes:
            self._publish(notes)
