"""The notification service's protobuf mapping: gRPC messages and the reading of the events it is told about."""

from __future__ import annotations

from flashsale.common import decided, errors, events, timeutil, topics, validation
from flashsale.notification import domain
from flashsale_api.v1 import events_pb2, notification_pb2


def notification(note: domain.Notification) -> notification_pb2.Notification:
    """A notification as its gRPC message."""
    return notification_pb2.Notification(
        notification_id=note.notification_id,
        user_id=note.user_id,
        kind=note.kind,
        title=note.title,
        body=note.body,
        data=dict(note.data),
        created_at=timeutil.to_timestamp(note.created_at_ms),
    )


def preferences(prefs: domain.Preferences) -> notification_pb2.Preferences:
    """Preferences as their gRPC message."""
    return notification_pb2.Preferences(
        user_id=prefs.user_id, email_enabled=prefs.email_enabled, sms_enabled=prefs.sms_enabled
    )


def delivery(item: domain.Delivery) -> notification_pb2.Delivery:
    """A delivery record as its gRPC message."""
    return notification_pb2.Delivery(
        notification_id=item.notification_id,
        channel=item.channel,
        status=item.status,
        attempts=item.attempts,
        last_error=item.last_error,
        updated_at=timeutil.to_timestamp(item.updated_at_ms),
    )


def _user_id(value: str) -> str:
    try:
        return validation.identifier(value, "user_id")
    except errors.InvalidArgument as exc:
        raise errors.PermanentEventError(f"user_id {value!r} {exc.message}") from None


def interpret(env: events_pb2.EventEnvelope) -> list[domain.Incoming]:
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
        return [domain.Incoming(note, domain.Contact(user_id, registered.email, registered.phone))]
    if kind == topics.USER_VERIFIED:
        verified = events_pb2.UserVerified()
        events.unpack(env, verified)
        return [domain.Incoming(domain.verified(env.event_id, _user_id(verified.user_id), verified.email, created))]
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
        return [domain.Incoming(domain.order_changed(env.event_id, kind, update, created))]
    if kind == topics.PURCHASES_DECIDED:
        return _decisions(env, created)
    return []


def check_decisions(env: events_pb2.EventEnvelope) -> None:
    """PermanentEventError when a purchases.decided event's payload does not unpack, its columns disagree or it
    names an invalid user (what interpret would raise), without building its notifications."""
    batch = events_pb2.PurchasesDecided()
    events.unpack(env, batch)
    decided.entries(batch)
    for user_id in set(batch.user_ids):
        _user_id(user_id)


def _decisions(env: events_pb2.EventEnvelope, created: int) -> list[domain.Incoming]:
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
        found.append(domain.Incoming(domain.purchase_decided(decided.entry_id(entry.request_id), purchase, created)))
    return found
