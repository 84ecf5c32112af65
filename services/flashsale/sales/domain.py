"""The sales service's entities and the validation of sales and purchases (pure: no I/O).

The purchase rule itself (window, per-user limit, stock) is the batch decision of `ledger`, the only place a
purchase is decided.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple

from flashsale.common import errors, limits, topics, validation


class Outcome(enum.Enum):
    """The outcome of a purchase request; the value is the stored form and the rejection reason."""

    ACCEPTED = "accepted"
    SOLD_OUT = "sold_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    PENDING = "pending"  # submitted, not decided yet

    @property
    def accepted(self) -> bool:
        """True for the one outcome that reserves stock."""
        return self is Outcome.ACCEPTED

    @property
    def reason(self) -> str:
        """The rejection reason carried by events: empty when accepted."""
        return "" if self.accepted else self.value


class ReservationStatus(enum.Enum):
    """Lifecycle of a reservation: reserved, then confirmed (order paid) or released (stock back)."""

    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    RELEASED = "released"


@dataclasses.dataclass(frozen=True)
class SaleSpec:
    """A validated request to create a sale (times in epoch milliseconds)."""

    product_id: str
    price_cents: int
    stock: int
    per_user_limit: int
    starts_at: int
    ends_at: int


@dataclasses.dataclass(frozen=True)
class Sale:
    """A flash sale and its remaining stock."""

    sale_id: str
    product_id: str
    price_cents: int
    stock: int
    per_user_limit: int
    starts_at: int
    ends_at: int
    remaining: int  # units left: every partition plus the pool
    created_at: int
    partitions: int  # request-topic partitions its stock is split over


@dataclasses.dataclass(frozen=True)
class PurchaseRequest:
    """A validated purchase request (the quantity still has to be checked against its sale)."""

    sale_id: str
    user_id: str
    quantity: int
    request_id: str


class Decision(NamedTuple):
    """The recorded decision of one purchase request (a named tuple: a sale's round makes thousands at once)."""

    request_id: str
    sale_id: str
    user_id: str
    quantity: int
    outcome: Outcome
    reservation_id: str
    decided_at: int


@dataclasses.dataclass(frozen=True)
class Release:
    """Stock given back by an expired or cancelled order."""

    sale: Sale
    reservation_id: str
    quantity: int
    reason: str
    remaining: int


@dataclasses.dataclass(frozen=True)
class SaleStats:
    """Counters of one sale."""

    sale_id: str
    stock: int
    reserved: int
    released: int
    remaining: int
    accepted_requests: int
    rejected_requests: int
    requests_pending: int = 0
    reserve_remaining: int = 0
    partitions: tuple[PartitionStats, ...] = ()


@dataclasses.dataclass(frozen=True)
class PartitionStats:
    """Counters of one stock partition of a prepared sale."""

    partition: int
    stock: int
    remaining: int
    decided: int
    committed_offset: int
    end_offset: int


def validate_sale(
    product_id: str,
    price_cents: int,
    stock: int,
    per_user_limit: int,
    starts_at: int | None,
    ends_at: int | None,
) -> SaleSpec:
    """Check a new sale's fields; raise InvalidArgument naming the first bad one."""
    validation.identifier(product_id, "product_id")
    validation.integer(price_cents, "price_cents", low=1, high=limits.MAX_PRICE_CENTS)
    validation.integer(stock, "stock", low=1, high=limits.MAX_STOCK)
    validation.integer(per_user_limit, "per_user_limit", low=1, high=limits.MAX_PER_USER_LIMIT)
    if starts_at is None:
        raise errors.InvalidArgument("is required", "starts_at")
    if ends_at is None:
        raise errors.InvalidArgument("is required", "ends_at")
    if ends_at <= starts_at:
        raise errors.InvalidArgument("must be after starts_at", "ends_at")
    return SaleSpec(product_id, price_cents, stock, per_user_limit, starts_at, ends_at)


def validate_purchase(sale_id: str, user_id: str, quantity: int, request_id: str) -> PurchaseRequest:
    """Check a purchase request's fields that do not depend on the sale."""
    validation.identifier(request_id, "request_id")
    validation.identifier(sale_id, "sale_id")
    validation.identifier(user_id, "user_id")
    if quantity < 1:
        raise errors.InvalidArgument("must be at least 1", "quantity")
    return PurchaseRequest(sale_id, user_id, quantity, request_id)


def check_quantity(sale: Sale, quantity: int) -> None:
    """A request may never ask for more than the sale's per-user limit."""
    validation.integer(quantity, "quantity", low=1, high=sale.per_user_limit)


def check_retry(existing: Decision, request: PurchaseRequest) -> None:
    """A reused request id must describe the same purchase as the first time."""
    same = (existing.sale_id, existing.user_id, existing.quantity) == (
        request.sale_id,
        request.user_id,
        request.quantity,
    )
    if not same:
        raise errors.InvalidArgument("already used for another purchase", "request_id")


ORDER_RELEASES = {topics.ORDER_EXPIRED: "expired", topics.ORDER_CANCELLED: "cancelled"}
"""Order events that give a reservation's stock back, and the release reason each records."""


def release_reason(event_type: str) -> str | None:
    """The stock-release reason of an order event, or None when the event returns no stock."""
    return ORDER_RELEASES.get(event_type)
