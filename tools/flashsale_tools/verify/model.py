"""A snapshot of one sale as the invariant checker sees it: frozen rows of the sales and order databases."""

from __future__ import annotations

import dataclasses

RELEASED = "released"  # reservation status whose units are back in the sale

ACCEPTED = "accepted"  # stored form of the sales service's Outcome
SOLD_OUT = "sold_out"

ORDER_PENDING = "PENDING_PAYMENT"
ORDER_PAID = "PAID"
ORDER_ENDED_UNSOLD = frozenset({"EXPIRED", "CANCELLED"})  # order statuses whose reservation must be released


@dataclasses.dataclass(frozen=True)
class Sale:
    """The sale row; `partitions` is 0 when the sale was not prepared (then `remaining` is the live stock)."""

    sale_id: str
    product_id: str
    stock: int
    per_user_limit: int
    starts_at: int
    ends_at: int
    remaining: int
    partitions: int
    reserve: int


@dataclasses.dataclass(frozen=True)
class Partition:
    """One stock partition: `stock` allocated to it (after pool moves) and `remaining` unsold."""

    partition: int
    stock: int
    remaining: int
    decided: int


@dataclasses.dataclass(frozen=True)
class Pool:
    """The sale's reserve pool."""

    stock: int
    remaining: int


@dataclasses.dataclass(frozen=True)
class PartitionOffset:
    """How far one partition of the request topic was decided (`next_offset`) and published."""

    partition: int
    next_offset: int
    published_offset: int


@dataclasses.dataclass(frozen=True)
class Decision:
    """The first decision of one request id; times are epoch ms, `arrived_at` is the log-append time."""

    request_id: str
    user_id: str
    quantity: int
    outcome: str
    reservation_id: str
    decided_at: int
    partition: int
    log_offset: int
    arrived_at: int


@dataclasses.dataclass(frozen=True)
class Reservation:
    """Units held for one accepted request; `updated_at` of a released one is when it was released."""

    reservation_id: str
    request_id: str
    user_id: str
    quantity: int
    status: str
    release_reason: str
    created_at: int
    updated_at: int
    partition: int

    @property
    def held(self) -> bool:
        """True while the units count against the stock (reserved or confirmed)."""
        return self.status != RELEASED


@dataclasses.dataclass(frozen=True)
class Order:
    """An order of the sale, from the order service's database."""

    order_id: str
    reservation_id: str
    status: str
    pay_by: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything the checker reads about one sale; `pending_requests` is None when the topic was not read."""

    sale: Sale
    partitions: tuple[Partition, ...]
    pool: Pool | None
    offsets: tuple[PartitionOffset, ...]
    decisions: tuple[Decision, ...]
    reservations: tuple[Reservation, ...]
    orders: tuple[Order, ...]
    pending_requests: int | None = None

    @property
    def held(self) -> int:
        """Units in reservations not released."""
        return sum(r.quantity for r in self.reservations if r.held)

    @property
    def remaining(self) -> int:
        """Units still for sale: every partition plus the pool (the sale row for an unprepared sale)."""
        if self.sale.partitions == 0 and not self.partitions:
            return self.sale.remaining
        pool = self.pool.remaining if self.pool is not None else 0
        return sum(p.remaining for p in self.partitions) + pool
