"""Protobuf messages → response bodies; timestamps as RFC 3339 strings, empty strings as null."""

from __future__ import annotations

import datetime

from google.protobuf import message, timestamp_pb2

from flashsale.gateway import schemas
from flashsale_api.v1 import notification_pb2, order_pb2, product_pb2, sales_pb2, user_pb2

_OUTCOMES: dict[int, schemas.Outcome] = {
    sales_pb2.PURCHASE_OUTCOME_ACCEPTED: "ACCEPTED",
    sales_pb2.PURCHASE_OUTCOME_SOLD_OUT: "SOLD_OUT",
    sales_pb2.PURCHASE_OUTCOME_LIMIT_EXCEEDED: "LIMIT_EXCEEDED",
    sales_pb2.PURCHASE_OUTCOME_NOT_STARTED: "NOT_STARTED",
    sales_pb2.PURCHASE_OUTCOME_ENDED: "ENDED",
}
_ORDER_STATUSES: dict[int, schemas.OrderStatus] = {
    order_pb2.ORDER_STATUS_PENDING_PAYMENT: "PENDING_PAYMENT",
    order_pb2.ORDER_STATUS_PAID: "PAID",
    order_pb2.ORDER_STATUS_CANCELLED: "CANCELLED",
    order_pb2.ORDER_STATUS_EXPIRED: "EXPIRED",
}


def rfc3339(msg: message.Message, field: str) -> str | None:
    """A Timestamp field as RFC 3339 (UTC, "Z"), or None when unset."""
    if not msg.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(msg, field)
    return str(ts.ToJsonString())


def to_timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    """An aware datetime as a protobuf Timestamp."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(datetime.UTC))
    return ts


def _opt(value: str) -> str | None:
    return value or None


def user(msg: user_pb2.User) -> schemas.User:
    """A User."""
    return schemas.User(
        user_id=msg.user_id,
        email=msg.email,
        phone=_opt(msg.phone),
        verified=msg.verified,
        created_at=rfc3339(msg, "created_at"),
    )


def token(msg: user_pb2.LoginResponse) -> schemas.Token:
    """A LoginResponse."""
    return schemas.Token(
        access_token=msg.access_token,
        expires_at=rfc3339(msg, "expires_at"),
        user=user(msg.user) if msg.HasField("user") else None,
    )


def availability(msg: product_pb2.Availability) -> schemas.Availability:
    """An Availability."""
    return schemas.Availability(
        sale_id=msg.sale_id,
        product_id=msg.product_id,
        stock=msg.stock,
        remaining=msg.remaining,
        sale_price_cents=msg.sale_price_cents,
        updated_at=rfc3339(msg, "updated_at"),
    )


def product(msg: product_pb2.Product) -> schemas.Product:
    """A Product."""
    return schemas.Product(
        product_id=msg.product_id,
        name=msg.name,
        description=msg.description,
        base_price_cents=msg.base_price_cents,
        currency=msg.currency,
        created_at=rfc3339(msg, "created_at"),
        updated_at=rfc3339(msg, "updated_at"),
        availability=[availability(a) for a in msg.availability],
    )


def product_page(msg: product_pb2.ListProductsResponse) -> schemas.ProductPage:
    """A ListProductsResponse."""
    return schemas.ProductPage(products=[product(p) for p in msg.products], next_page_token=_opt(msg.next_page_token))


def price(msg: product_pb2.Price) -> schemas.Price:
    """A Price."""
    return schemas.Price(
        product_id=msg.product_id, price_cents=msg.price_cents, currency=msg.currency, sale_id=_opt(msg.sale_id)
    )


def sale(msg: sales_pb2.Sale) -> schemas.Sale:
    """A Sale."""
    return schemas.Sale(
        sale_id=msg.sale_id,
        product_id=msg.product_id,
        price_cents=msg.price_cents,
        stock=msg.stock,
        per_user_limit=msg.per_user_limit,
        starts_at=rfc3339(msg, "starts_at"),
        ends_at=rfc3339(msg, "ends_at"),
        remaining=msg.remaining,
    )


def sale_stats(msg: sales_pb2.SaleStats) -> schemas.SaleStats:
    """SaleStats."""
    return schemas.SaleStats(
        sale_id=msg.sale_id,
        stock=msg.stock,
        reserved=msg.reserved,
        released=msg.released,
        remaining=msg.remaining,
        accepted_requests=msg.accepted_requests,
        rejected_requests=msg.rejected_requests,
        requests_pending=msg.requests_pending,
        reserve_remaining=msg.reserve_remaining,
        partitions=[
            schemas.PartitionStats(
                partition=p.partition,
                stock=p.stock,
                remaining=p.remaining,
                decided=p.decided,
                committed_offset=p.committed_offset,
                end_offset=p.end_offset,
            )
            for p in msg.partitions
        ],
    )


def outcome(value: int) -> schemas.Outcome:
    """A PurchaseOutcome without its prefix; UNSPECIFIED (not decided yet) is "PENDING"."""
    return _OUTCOMES.get(value, "PENDING")


def decision(msg: sales_pb2.PurchaseDecision) -> schemas.PurchaseDecision:
    """A PurchaseDecision."""
    return schemas.PurchaseDecision(
        request_id=msg.request_id,
        sale_id=msg.sale_id,
        outcome=outcome(msg.outcome),
        quantity=msg.quantity,
        reservation_id=_opt(msg.reservation_id),
        decided_at=rfc3339(msg, "decided_at"),
    )


def order_status(value: int) -> schemas.OrderStatus:
    """An OrderStatus without its prefix."""
    return _ORDER_STATUSES.get(value, "UNSPECIFIED")


def order(msg: order_pb2.Order) -> schemas.Order:
    """An Order."""
    return schemas.Order(
        order_id=msg.order_id,
        reservation_id=msg.reservation_id,
        request_id=msg.request_id,
        user_id=msg.user_id,
        sale_id=msg.sale_id,
        product_id=msg.product_id,
        quantity=msg.quantity,
        amount_cents=msg.amount_cents,
        status=order_status(msg.status),
        created_at=rfc3339(msg, "created_at"),
        pay_by=rfc3339(msg, "pay_by"),
        updated_at=rfc3339(msg, "updated_at"),
        payment_id=_opt(msg.payment_id),
    )


def order_page(msg: order_pb2.ListOrdersResponse) -> schemas.OrderPage:
    """A ListOrdersResponse."""
    return schemas.OrderPage(orders=[order(o) for o in msg.orders], next_page_token=_opt(msg.next_page_token))


def notification(msg: notification_pb2.Notification) -> schemas.Notification:
    """A Notification."""
    return schemas.Notification(
        notification_id=msg.notification_id,
        user_id=msg.user_id,
        kind=msg.kind,
        title=msg.title,
        body=msg.body,
        data=dict(msg.data),
        created_at=rfc3339(msg, "created_at"),
    )


def preferences(msg: notification_pb2.Preferences) -> schemas.Preferences:
    """Preferences."""
    return schemas.Preferences(email_enabled=msg.email_enabled, sms_enabled=msg.sms_enabled)


def deliveries(msg: notification_pb2.ListDeliveriesResponse) -> schemas.DeliveryList:
    """A ListDeliveriesResponse."""
    return schemas.DeliveryList(
        deliveries=[
            schemas.Delivery(
                notification_id=d.notification_id,
                channel=d.channel,
                status=d.status,
                attempts=d.attempts,
                last_error=_opt(d.last_error),
                updated_at=rfc3339(d, "updated_at"),
            )
            for d in msg.deliveries
        ]
    )
