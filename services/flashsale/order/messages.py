"""The order service's protobuf mapping: the gRPC order, the events it emits and the decisions it reads."""

from __future__ import annotations

from flashsale.common import decided, errors, events, timeutil, topics
from flashsale.order import domain
from flashsale_api.v1 import events_pb2, order_pb2

SOURCE = "order"


def order(value: domain.Order) -> order_pb2.Order:
    """An order as its gRPC message."""
    return order_pb2.Order(
        order_id=value.order_id,
        reservation_id=value.reservation_id,
        request_id=value.request_id,
        user_id=value.user_id,
        sale_id=value.sale_id,
        product_id=value.product_id,
        quantity=value.quantity,
        amount_cents=value.amount_cents,
        status=order_pb2.OrderStatus.Value(f"ORDER_STATUS_{value.status.value}"),
        created_at=timeutil.to_timestamp(value.created_at),
        pay_by=timeutil.to_timestamp(value.pay_by),
        updated_at=timeutil.to_timestamp(value.updated_at),
        payment_id=value.payment_id,
    )


def order_changed(event_type: str, value: domain.Order) -> events_pb2.EventEnvelope:
    """The OrderChanged event (order.created, order.paid, order.expired, order.cancelled) of an order."""
    payload = events_pb2.OrderChanged(
        order_id=value.order_id,
        reservation_id=value.reservation_id,
        user_id=value.user_id,
        sale_id=value.sale_id,
        quantity=value.quantity,
        amount_cents=value.amount_cents,
        status=value.status.value,
        pay_by=timeutil.to_timestamp(value.pay_by),
    )
    return events.envelope(event_type, value.order_id, payload, SOURCE)


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


def accepted_decisions(env: events_pb2.EventEnvelope) -> list[domain.Decision]:
    """The accepted decisions of a purchases.decided event, in order (none for any other event);
    PermanentEventError when one of them is unusable (the whole event is refused)."""
    if env.type != topics.PURCHASES_DECIDED:
        return []
    msg = events_pb2.PurchasesDecided()
    events.unpack(env, msg)
    return [decision_of(msg, entry) for entry in decided.entries(msg) if entry.accepted]
