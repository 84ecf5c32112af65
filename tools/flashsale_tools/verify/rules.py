"""The invariants of the purchase path (docs/pipeline.md) as pure functions of a snapshot.

Each rule returns a `Violation` whose `count` is 0 when the invariant holds. A rule that cannot be judged
on the snapshot (the sale is still running, orders are still being made) is returned with `applied=False`.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Iterable
from typing import Any

from flashsale_tools.verify import model

MAX_EXAMPLES = 5
DEFAULT_FAIRNESS_TOLERANCE_MS = 1_000
DEFAULT_ORDER_GRACE_MS = 10_000

DESCRIPTIONS = {
    "oversold": "units held in reservations beyond the sale's stock",
    "stock_mismatch": "ledger places where remaining + held does not add up to stock (sale, partition:N, pool)",
    "per_user_limit": "users holding more than the per-user limit",
    "duplicate_reservations": "request ids with more than one reservation",
    "accepted_without_reservation": "ACCEPTED decisions without their reservation, or reservations without one",
    "reservation_orders": "reservations without exactly one order, or orders without a reservation",
    "orders_not_ended": "orders still PENDING_PAYMENT after their payment deadline",
    "released_with_live_order": "released reservations whose order is PAID or PENDING_PAYMENT",
    "unreleased_expired_stock": "EXPIRED/CANCELLED orders whose reservation was not released",
    "undersell": "units left unsold while requests were rejected SOLD_OUT",
    "fairness_inversions": "SOLD_OUT requests that arrived clearly before an ACCEPTED one of their partition",
}


@dataclasses.dataclass(frozen=True)
class Violation:
    """One invariant's outcome: how many times it is broken and up to five ids showing where."""

    name: str
    count: int
    examples: tuple[str, ...] = ()
    applied: bool = True

    @property
    def description(self) -> str:
        """What the count counts."""
        return DESCRIPTIONS.get(self.name, "")


@dataclasses.dataclass(frozen=True)
class Report:
    """Every invariant of one sale, in a fixed order, with the facts they were judged on."""

    sale_id: str
    checked_at: int
    stock: int
    held: int
    remaining: int
    pending_requests: int | None
    sale_finished: bool
    orders_settled: bool
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        """True when no invariant is broken."""
        return all(v.count == 0 for v in self.violations)

    def count(self, name: str) -> int:
        """The count of one invariant by name."""
        for v in self.violations:
            if v.name == name:
                return v.count
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "sale_id": self.sale_id,
            "checked_at": self.checked_at,
            "ok": self.ok,
            "stock": self.stock,
            "held": self.held,
            "remaining": self.remaining,
            "pending_requests": self.pending_requests,
            "sale_finished": self.sale_finished,
            "orders_settled": self.orders_settled,
            "violations": [
                {
                    "name": v.name,
                    "count": v.count,
                    "examples": list(v.examples),
                    "applied": v.applied,
                    "description": v.description,
                }
                for v in self.violations
            ],
        }


def _violation(name: str, found: Iterable[str], applied: bool = True) -> Violation:
    ids = sorted(set(found))
    return Violation(name, len(ids), tuple(ids[:MAX_EXAMPLES]), applied)


def _skipped(name: str) -> Violation:
    return Violation(name, 0, (), applied=False)


def _orders_by_reservation(s: model.Snapshot) -> dict[str, list[model.Order]]:
    by_res: dict[str, list[model.Order]] = collections.defaultdict(list)
    for o in s.orders:
        by_res[o.reservation_id].append(o)
    return by_res


def oversold(s: model.Snapshot) -> Violation:
    """Units in reservations not released beyond the sale's stock (count in units)."""
    excess = s.held - s.sale.stock
    if excess <= 0:
        return Violation("oversold", 0)
    return Violation("oversold", excess, (s.sale.sale_id,))


def stock_mismatch(s: model.Snapshot) -> Violation:
    """Places where the ledger does not add up: Σ remaining + held ≠ stock for the sale, and for each
    partition stock - remaining ≠ units held in its reservations; a negative pool."""
    bad: list[str] = []
    if s.remaining + s.held != s.sale.stock:
        bad.append(s.sale.sale_id)
    if s.partitions:
        held_in: dict[int, int] = collections.Counter()
        for r in s.reservations:
            if r.held:
                held_in[r.partition] += r.quantity
        for p in s.partitions:
            if p.remaining < 0 or p.stock - p.remaining != held_in.get(p.partition, 0):
                bad.append(f"partition:{p.partition}")
        known = {p.partition for p in s.partitions}
        bad += [f"partition:{n}" for n, q in held_in.items() if n not in known and q]
    if s.pool is not None and s.pool.remaining < 0:
        bad.append("pool")
    return _violation("stock_mismatch", bad)


def per_user_limit(s: model.Snapshot) -> Violation:
    """Users whose reservations not released add up to more than the per-user limit."""
    held: dict[str, int] = collections.Counter()
    for r in s.reservations:
        if r.held:
            held[r.user_id] += r.quantity
    return _violation("per_user_limit", (u for u, q in held.items() if q > s.sale.per_user_limit))


def duplicate_reservations(s: model.Snapshot) -> Violation:
    """Request ids that yielded more than one reservation."""
    per_request = collections.Counter(r.request_id for r in s.reservations)
    return _violation("duplicate_reservations", (rid for rid, n in per_request.items() if n > 1))


def accepted_without_reservation(s: model.Snapshot) -> Violation:
    """ACCEPTED decisions whose reservation is missing, and reservations without an ACCEPTED decision."""
    reservations = {r.reservation_id: r for r in s.reservations}
    accepted = {d.request_id: d for d in s.decisions if d.outcome == model.ACCEPTED}
    bad = [
        d.request_id
        for d in accepted.values()
        if d.reservation_id not in reservations or reservations[d.reservation_id].request_id != d.request_id
    ]
    bad += [r.request_id for r in s.reservations if r.request_id not in accepted]
    return _violation("accepted_without_reservation", bad)


def reservation_orders(s: model.Snapshot, *, orders_settled: bool) -> Violation:
    """Reservations without exactly one order, and orders of the sale without a reservation.

    While orders may still be in the making (`orders_settled` False) only more than one order counts.
    """
    by_res = _orders_by_reservation(s)
    bad = [
        r.reservation_id
        for r in s.reservations
        if len(by_res.get(r.reservation_id, ())) > 1 or (orders_settled and r.reservation_id not in by_res)
    ]
    if orders_settled:
        known = {r.reservation_id for r in s.reservations}
        bad += [f"order:{o.order_id}" for o in s.orders if o.reservation_id not in known]
    return _violation("reservation_orders", bad)


def orders_not_ended(s: model.Snapshot, *, now_ms: int, grace_ms: int = DEFAULT_ORDER_GRACE_MS) -> Violation:
    """Orders still PENDING_PAYMENT more than grace_ms after their payment deadline."""
    return _violation(
        "orders_not_ended",
        (o.order_id for o in s.orders if o.status == model.ORDER_PENDING and o.pay_by + grace_ms <= now_ms),
    )


def released_with_live_order(s: model.Snapshot) -> Violation:
    """Released reservations whose order is not EXPIRED/CANCELLED (the units were sold twice).

    The sales database is read before the order database, so a reservation released in the snapshot
    had its order ended already: this holds at every moment.
    """
    by_res = _orders_by_reservation(s)
    return _violation(
        "released_with_live_order",
        (
            r.reservation_id
            for r in s.reservations
            if not r.held and any(o.status not in model.ORDER_ENDED_UNSOLD for o in by_res.get(r.reservation_id, ()))
        ),
    )


def unreleased_expired_stock(s: model.Snapshot, *, orders_settled: bool) -> Violation:
    """EXPIRED/CANCELLED orders whose reservation still holds its units (judged once orders settled)."""
    if not orders_settled:
        return _skipped("unreleased_expired_stock")
    reservations = {r.reservation_id: r for r in s.reservations}
    return _violation(
        "unreleased_expired_stock",
        (
            o.order_id
            for o in s.orders
            if o.status in model.ORDER_ENDED_UNSOLD
            and o.reservation_id in reservations
            and reservations[o.reservation_id].held
        ),
    )


def undersell(s: model.Snapshot, *, sale_finished: bool) -> Violation:
    """Units left unsold since the last SOLD_OUT rejection (count in units), once the sale is finished.

    Units released (expired / cancelled orders) at or after the last SOLD_OUT decision were not there to
    sell, so they are not counted; nor are leftovers smaller than every rejected quantity.
    """
    if not sale_finished:
        return _skipped("undersell")
    sold_out = [d for d in s.decisions if d.outcome == model.SOLD_OUT]
    if not sold_out:
        return Violation("undersell", 0)
    last = max(d.decided_at for d in sold_out)
    returned = sum(r.quantity for r in s.reservations if not r.held and r.updated_at >= last)
    stuck = s.remaining - returned
    fits = sorted(d.request_id for d in sold_out if d.quantity <= stuck)
    if stuck <= 0 or not fits:
        return Violation("undersell", 0)
    return Violation("undersell", stuck, tuple(fits[:MAX_EXAMPLES]))


def fairness_inversions(s: model.Snapshot, *, tolerance_ms: int = DEFAULT_FAIRNESS_TOLERANCE_MS) -> Violation:
    """SOLD_OUT requests that arrived more than tolerance_ms before an ACCEPTED request of the same partition
    for at least as many units, with no stock released in the sale between the two decisions."""
    releases = sorted(r.updated_at for r in s.reservations if not r.held)
    by_partition: dict[int, list[model.Decision]] = collections.defaultdict(list)
    for d in s.decisions:
        if d.outcome in (model.ACCEPTED, model.SOLD_OUT):
            by_partition[d.partition].append(d)
    inverted: list[str] = []
    for decisions in by_partition.values():
        accepted = sorted((d for d in decisions if d.outcome == model.ACCEPTED), key=lambda d: d.arrived_at)
        rejected = [d for d in decisions if d.outcome == model.SOLD_OUT]
        if not accepted or not rejected:
            continue
        arrivals = [a.arrived_at for a in accepted]
        # For each rejected quantity q: the earliest decision time among accepted requests of ≥ q units
        # that arrived at or after index i (suffix minimum), so each rejection is judged in O(log n).
        earliest: dict[int, list[float]] = {}
        for q in {d.quantity for d in rejected}:
            suffix = [float("inf")] * (len(accepted) + 1)
            for i in range(len(accepted) - 1, -1, -1):
                a = accepted[i]
                suffix[i] = min(suffix[i + 1], a.decided_at if a.quantity >= q else float("inf"))
            earliest[q] = suffix
        for d in rejected:
            first_later = bisect.bisect_right(arrivals, d.arrived_at + tolerance_ms)
            nxt = bisect.bisect_left(releases, d.decided_at)
            next_release = releases[nxt] if nxt < len(releases) else float("inf")
            if earliest[d.quantity][first_later] < next_release:
                inverted.append(d.request_id)
    return _violation("fairness_inversions", inverted)


def is_settled(s: model.Snapshot, *, now_ms: int) -> bool:
    """True when nothing is in flight: no request pending on the topic (or, unread, the sale ended), every
    reservation has its order, every order its reservation, every ended unsold order released its units."""
    if s.pending_requests is None:
        if now_ms < s.sale.ends_at:
            return False
    elif s.pending_requests > 0:
        return False
    return (
        reservation_orders(s, orders_settled=True).count == 0
        and unreleased_expired_stock(s, orders_settled=True).count == 0
        and orders_not_ended(s, now_ms=now_ms, grace_ms=0).count == 0
    )


def is_finished(s: model.Snapshot, *, now_ms: int) -> bool:
    """True when no more request of the sale can be decided: none pending on the topic, or (not read) the
    sale's end time passed."""
    if s.pending_requests is not None:
        return s.pending_requests == 0
    return now_ms >= s.sale.ends_at


def check(
    s: model.Snapshot,
    *,
    now_ms: int,
    sale_finished: bool,
    orders_settled: bool,
    fairness_tolerance_ms: int = DEFAULT_FAIRNESS_TOLERANCE_MS,
    order_grace_ms: int = DEFAULT_ORDER_GRACE_MS,
) -> Report:
    """Every invariant of the sale, each listed even when its count is 0."""
    violations = (
        oversold(s),
        stock_mismatch(s),
        per_user_limit(s),
        duplicate_reservations(s),
        accepted_without_reservation(s),
        reservation_orders(s, orders_settled=orders_settled),
        orders_not_ended(s, now_ms=now_ms, grace_ms=order_grace_ms),
        released_with_live_order(s),
        unreleased_expired_stock(s, orders_settled=orders_settled),
        undersell(s, sale_finished=sale_finished),
        fairness_inversions(s, tolerance_ms=fairness_tolerance_ms),
    )
    return Report(
        sale_id=s.sale.sale_id,
        checked_at=now_ms,
        stock=s.sale.stock,
        held=s.held,
        remaining=s.remaining,
        pending_requests=s.pending_requests,
        sale_finished=sale_finished,
        orders_settled=orders_settled,
        violations=violations,
    )
