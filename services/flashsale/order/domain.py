"""Pure order logic: creation from a decision, the state machine, list cursors."""

from __future__ import annotations

import dataclasses
import enum

from flashsale.common import errors, paging

MAX_TOKEN_LEN = 128


class Status(enum.StrEnum):
    """The life of an order: PENDING_PAYMENT → PAID, CANCELLED or EXPIRED."""

    PENDING_PAYMENT = "PENDING_PAYMENT"
    PAID = "PAID"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


@dataclasses.dataclass(frozen=True)
class Decision:
    """The fields of an accepted purchase decision an order is made from."""

    request_id: str
    reservation_id: str
    user_id: str
    sale_id: str
    product_id: str
    quantity: int
    price_cents: int


@dataclasses.dataclass(frozen=True)
class Order:
    """An order; times are epoch milliseconds."""

    order_id: str
    reservation_id: str
    request_id: str
    user_id: str
    sale_id: str
    product_id: str
    quantity: int
    amount_cents: int
    status: Status
    created_at: int
    pay_by: int
    updated_at: int
    payment_id: str = ""


def check_decision(decision: Decision) -> None:
    """Raise ValueError naming the first unusable field of an accepted decision."""
    for name in ("reservation_id", "user_id", "sale_id"):
        if not getattr(decision, name):
            raise ValueError(f"{name} is missing")
    if decision.quantity < 1:
        raise ValueError("quantity must be positive")
    if decision.price_cents < 0:
        raise ValueError("price_cents must not be negative")


def new_order(decision: Decision, order_id: str, now: int, window_ms: int) -> Order:
    """A PENDING_PAYMENT order for an accepted decision, payable until now + window."""
    return Order(
        order_id=order_id,
        reservation_id=decision.reservation_id,
        request_id=decision.request_id,
        user_id=decision.user_id,
        sale_id=decision.sale_id,
        product_id=decision.product_id,
        quantity=decision.quantity,
        amount_cents=decision.price_cents * decision.quantity,
        status=Status.PENDING_PAYMENT,
        created_at=now,
        pay_by=now + window_ms,
        updated_at=now,
    )


def is_overdue(order: Order, now: int) -> bool:
    """True when the order waits for payment and its deadline has passed (pay_by ≤ now): it must expire."""
    return order.status is Status.PENDING_PAYMENT and order.pay_by <= now


def can_pay(order: Order, now: int) -> bool:
    """True when the order may be paid now."""
    return order.status is Status.PENDING_PAYMENT and now < order.pay_by


def ensure_payable(order: Order, now: int) -> None:
    """Raise FAILED_PRECONDITION when the order may not be paid now."""
    if order.status is Status.EXPIRED or is_overdue(order, now):
        raise errors.FailedPrecondition("payment deadline passed")
    if order.status is Status.PAID:
        raise errors.FailedPrecondition("order is already paid")
    if order.status is Status.CANCELLED:
        raise errors.FailedPrecondition("order is cancelled")


def ensure_cancellable(order: Order) -> None:
    """Raise FAILED_PRECONDITION unless the order waits for payment."""
    if order.status is not Status.PENDING_PAYMENT:
        raise errors.FailedPrecondition(f"order is {order.status.value}, only PENDING_PAYMENT can be cancelled")


def transition(order: Order, status: Status, now: int, payment_id: str = "") -> Order:
    """The order in its new state."""
    return dataclasses.replace(order, status=status, updated_at=now, payment_id=payment_id or order.payment_id)


def payment_token(value: str) -> str:
    """A payment token of 1..128 characters."""
    if not value:
        raise errors.InvalidArgument("is required", "payment_token")
    if len(value) > MAX_TOKEN_LEN:
        raise errors.InvalidArgument(f"must be at most {MAX_TOKEN_LEN} characters", "payment_token")
    return value


# List paging is shared with the other services (flashsale.common.paging); these names stay for the order modules.
Cursor = paging.Cursor
page_size = paging.page_size
encode_cursor = paging.encode_cursor
decode_cursor = paging.decode_cursor
