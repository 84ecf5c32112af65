"""Order application service: one transaction per change, events through the outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence

from flashsale.common import database, decided, errors, outbox, timeutil, topics
from flashsale.order import domain, messages, payment, repository

log = logging.getLogger(__name__)

EXPIRY_BATCH = 500


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of orders and the token of the next (empty on the last page)."""

    items: tuple[domain.Order, ...]
    next_token: str


def _emit(tx: database.Tx, event_type: str, order: domain.Order) -> None:
    """Add an OrderChanged event about the order to the outbox."""
    outbox.add(tx, topics.ORDERS, messages.order_changed(event_type, order))


def _create_from_decision(tx: database.Tx, decision: domain.Decision, now: int, window_ms: int) -> domain.Order | None:
    """Make the order of an accepted decision and emit order.created; None when the reservation has one already."""
    if repository.reservation_exists(tx, decision.reservation_id):
        return None
    order = domain.new_order(decision, uuid.uuid4().hex, now, window_ms)
    repository.insert(tx, order)
    _emit(tx, topics.ORDER_CREATED, order)
    return order


def _owned(tx: database.Tx, order_id: str, user_id: str) -> domain.Order:
    order = repository.get(tx, order_id)
    if order is None or order.user_id != user_id:
        raise errors.NotFound("no such order", "order_id")
    return order


class OrderService:
    """Orders made from accepted decisions; reads, payment, cancellation and expiry."""

    def __init__(self, db: database.Database, provider: payment.PaymentProvider, notify: Callable[[], None]) -> None:
        self._db = db
        self._provider = provider
        self._notify = notify

    def create_orders(self, decisions: Sequence[domain.Decision], window_ms: int) -> list[domain.Order]:
        """Make one PENDING_PAYMENT order, payable for window_ms, per accepted decision, in one transaction and once
        per decision (consumer thread; one reservation never gets two orders); the orders made. The caller wakes
        the outbox relay when there are any."""

        def work(tx: database.Tx) -> list[domain.Order]:
            now = timeutil.now_ms()
            created = []
            for decision in decisions:
                if not outbox.first_time(tx, decided.entry_id(decision.request_id)):
                    continue
                order = _create_from_decision(tx, decision, now, window_ms)
                if order is not None:
                    created.append(order)
            return created

        orders = self._db.run_sync(work)
        for order in orders:
            log.info("order created", extra={"order_id": order.order_id, "reservation_id": order.reservation_id})
        return orders

    async def get(self, order_id: str, user_id: str) -> domain.Order:
        """The caller's order, or NOT_FOUND."""
        return await self._db.run(lambda tx: _owned(tx, order_id, user_id))

    async def list(self, user_id: str, request_id: str, size: int, after: domain.Cursor | None) -> Page:
        """One page of the user's orders, newest first."""

        def work(tx: database.Tx) -> Page:
            found = repository.list_for_user(tx, user_id, request_id, after, size + 1)
            items = found[:size]
            token = ""
            if len(found) > size:
                token = domain.encode_cursor(domain.Cursor(items[-1].created_at, items[-1].order_id))
            return Page(tuple(items), token)

        return await self._db.run(work)

    async def pay(self, order_id: str, user_id: str, token: str) -> domain.Order:
        """Charge and mark PAID; refused once the deadline passed, when declined, or when not pending."""
        order = await self.get(order_id, user_id)
        domain.ensure_payable(order, timeutil.now_ms())
        try:
            payment_id = await self._provider.charge(order, token)
        except payment.PaymentDeclined:
            raise errors.FailedPrecondition("payment declined") from None

        def work(tx: database.Tx) -> domain.Order:
            now = timeutil.now_ms()
            if not repository.mark_paid(tx, order_id, payment_id, now):
                current = _owned(tx, order_id, user_id)
                domain.ensure_payable(current, now)
                raise errors.FailedPrecondition("payment deadline passed")
            paid = domain.transition(order, domain.Status.PAID, now, payment_id)
            _emit(tx, topics.ORDER_PAID, paid)
            return paid

        try:
            paid = await self._db.run(work)
        except errors.FailedPrecondition:
            log.warning("charged but not paid; the charge must be refused", extra={"payment_id": payment_id})
            raise
        self._notify()
        return paid

    async def cancel(self, order_id: str, user_id: str) -> domain.Order:
        """PENDING_PAYMENT → CANCELLED and emit order.cancelled."""

        def work(tx: database.Tx) -> domain.Order:
            order = _owned(tx, order_id, user_id)
            domain.ensure_cancellable(order)
            now = timeutil.now_ms()
            if not repository.mark_cancelled(tx, order_id, now):
                domain.ensure_cancellable(_owned(tx, order_id, user_id))
                raise errors.FailedPrecondition("order changed meanwhile; retry")
            cancelled = domain.transition(order, domain.Status.CANCELLED, now)
            _emit(tx, topics.ORDER_CANCELLED, cancelled)
            return cancelled

        cancelled = await self._db.run(work)
        self._notify()
        return cancelled

    async def expire_once(self) -> int:
        """Expire the overdue orders (batches of ≤ 500 per transaction); return how many expired."""
        total = 0
        while True:

            def work(tx: database.Tx) -> tuple[int, int]:
                now = timeutil.now_ms()
                batch = repository.overdue(tx, now, EXPIRY_BATCH)
                expired = 0
                for order in batch:
                    if domain.is_overdue(order, now) and repository.mark_expired(tx, order.order_id, now):
                        _emit(tx, topics.ORDER_EXPIRED, domain.transition(order, domain.Status.EXPIRED, now))
                        expired += 1
                return len(batch), expired

            seen, expired = await self._db.run(work)
            total += expired
            if expired:
                self._notify()
            if seen < EXPIRY_BATCH:
                return total

    async def run_expiry(self, interval_s: float) -> None:
        """Expire overdue orders every interval, forever; a failure is logged and retried."""
        while True:
            try:
                count = await self.expire_once()
                if count:
                    log.info("orders expired", extra={"count": count})
            except Exception:
                log.exception("expiry scan failed; retrying")
            await asyncio.sleep(interval_s)
