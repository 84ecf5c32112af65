"""Kafka handlers: deliveries by e-mail and SMS (one group per service), live fan-out (one group per replica)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from flashsale.common import database, decided, errors, events, outbox, timeutil, topics, validation
from flashsale.notification import delivery, domain, repository
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Incoming:
    """An event read as a notification, with the contact it carries (user.registered only)."""

    notification: domain.Notification
    contact: domain.Contact | None = None


def _user_id(value: str) -> str:
    try:
        return validation.identifier(value, "user_id")
    except errors.InvalidArgument as exc:
        raise errors.PermanentEventError(f"user_id {value!r} {exc.message}") from None


def interpret(env: events_pb2.EventEnvelope) -> list[Incoming]:
    """The notifications an event stands for (one per decision of purchases.decided); none if it concerns nobody.

    Raises PermanentEventError when the payload does not unpack or names no valid user.
    """
    kind = env.type
    created = timeutil.from_timestamp(env.occurred_at) or timeutil.now_ms()
    if kind == topics.USER_REGISTERED:
        registered = events_pb2.UserRegistered()
        events.unpack(env, registered)
        user_id = _user_id(registered.user_id)
        if not registered.verification_token:
            raise errors.PermanentEventError("user.registered without a verification token")
        note = domain.verification(env.event_id, user_id, registered.email, registered.verification_token, created)
        return [Incoming(note, domain.Contact(user_id, registered.email, registered.phone))]
    if kind == topics.USER_VERIFIED:
        verified = events_pb2.UserVerified()
        events.unpack(env, verified)
        return [Incoming(domain.verified(env.event_id, _user_id(verified.user_id), verified.email, created))]
    if kind in domain.ORDER_KINDS:
        order = events_pb2.OrderChanged()
        events.unpack(env, order)
        update = domain.OrderUpdate(
            order_id=order.order_id,
            user_id=_user_id(order.user_id),
            sale_id=order.sale_id,
            quantity=order.quantity,
            amount_cents=order.amount_cents,
            status=order.status,
            pay_by_ms=timeutil.from_timestamp(order.pay_by),
        )
        return [Incoming(domain.order_changed(env.event_id, kind, update, created))]
    if kind == topics.PURCHASES_DECIDED:
        return _decisions(env, created)
    return []


def _decisions(env: events_pb2.EventEnvelope, created: int) -> list[Incoming]:
    """One purchase-decided notification per decision of a purchases.decided event, named after the decision."""
    batch = events_pb2.PurchasesDecided()
    events.unpack(env, batch)
    found = []
    for entry in decided.entries(batch):
        purchase = domain.PurchaseUpdate(
            request_id=entry.request_id,
            user_id=_user_id(entry.user_id),
            sale_id=batch.sale_id,
            quantity=entry.quantity,
            accepted=entry.accepted,
            reason=entry.reason,
            reservation_id=entry.reservation_id,
        )
        found.append(Incoming(domain.purchase_decided(decided.entry_id(entry.request_id), purchase, created)))
    return found


@dataclasses.dataclass(frozen=True)
class _Plan:
    contact: domain.Contact | None
    channels: tuple[domain.Channel, ...]


class DeliveryHandler:
    """Sends e-mail and SMS for an event's notifications and records every delivery, once per notification id."""

    def __init__(
        self,
        db: database.Database,
        email: delivery.EmailSender,
        sms: delivery.SmsSender | None,
        attempts: int,
        first_backoff_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._db = db
        self._email = email
        self._sms = sms
        self._attempts = attempts
        self._first_backoff_s = first_backoff_s
        self._sleep = sleep

    def __call__(self, env: events_pb2.EventEnvelope) -> None:
        """Handle one event in the consumer thread (blocking is fine here)."""
        for incoming in interpret(env):
            if incoming.notification.kind in (topics.USER_REGISTERED, *domain.ORDER_KINDS):
                self._deliver(incoming)

    def _deliver(self, incoming: Incoming) -> None:
        note = incoming.notification
        plan = self._db.run_sync(lambda tx: self._plan(tx, incoming))
        if plan is None:
            log.info("notification already handled", extra={"notification_id": note.notification_id, "kind": note.kind})
            return
        deliveries = [self._send(channel, note, plan.contact) for channel in plan.channels]

        def record(tx: database.Tx) -> None:
            if outbox.first_time(tx, note.notification_id):
                repository.record_deliveries(tx, deliveries)

        self._db.run_sync(record)

    def _plan(self, tx: database.Tx, incoming: Incoming) -> _Plan | None:
        if tx.fetchone("SELECT 1 FROM processed_events WHERE event_id = ?", (incoming.notification.notification_id,)):
            return None
        user_id = incoming.notification.user_id
        if incoming.contact is not None:
            repository.save_contact(tx, incoming.contact, timeutil.now_ms())
        contact = repository.get_contact(tx, user_id)
        prefs = repository.get_preferences(tx, user_id)
        chosen = domain.channels(incoming.notification.kind, prefs, contact, self._sms is not None)
        return _Plan(contact, chosen)

    def _send(
        self, channel: domain.Channel, note: domain.Notification, contact: domain.Contact | None
    ) -> domain.Delivery:
        assert contact is not None  # channels() chose none without a contact
        if channel == "email":

            def send() -> None:
                self._email.send(contact.email, note.title, note.body)

        else:
            sms = self._sms
            assert sms is not None  # channels() chose no SMS without a provider

            def send() -> None:
                sms.send(contact.phone, domain.sms_text(note))

        outcome = delivery.deliver(send, self._attempts, self._first_backoff_s, self._sleep)
        fields = {"notification_id": note.notification_id, "channel": channel, "kind": note.kind}
        if outcome.status == "sent":
            log.info("notification sent", extra={**fields, "attempts": outcome.attempts})
        else:
            log.warning(
                "notification failed", extra={**fields, "attempts": outcome.attempts, "error": outcome.last_error}
            )
        return domain.Delivery(
            notification_id=note.notification_id,
            user_id=note.user_id,
            channel=channel,
            status=outcome.status,
            attempts=outcome.attempts,
            last_error=outcome.last_error,
            updated_at_ms=timeutil.now_ms(),
        )


class LiveHandler:
    """Hands every live notification of an event to the in-memory hub of this replica."""

    def __init__(self, publish: Callable[[domain.Notification], None]) -> None:
        self._publish = publish

    def __call__(self, env: events_pb2.EventEnvelope) -> None:
        """Handle one event in the live consumer thread; a malformed one is the delivery consumer's to dead-letter."""
        try:
            found = interpret(env)
        except errors.PermanentEventError as exc:
            log.debug("live: skipping malformed event", extra={"event_id": env.event_id, "reason": str(exc)})
            return
        for incoming in found:
            if domain.is_live(incoming.notification.kind):
                self._publish(incoming.notification)
