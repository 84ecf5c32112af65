"""The sales application service: one transaction per call, events through the outbox."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable

from flashsale.common import database, errors, events, outbox, timeutil, topics
from flashsale.sales import catalog, domain, ledger_repository, messages, pipeline, repository
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)

Clock = Callable[[], int]


class SalesService:
    """Creates sales, decides purchases, and gives stock back when orders expire or are cancelled."""

    def __init__(
        self,
        db: database.Database,
        notify: Callable[[], None],
        products: catalog.ProductCatalog,
        pipe: pipeline.Pipeline,
        clock: Clock = timeutil.now_ms,
    ) -> None:
        self._db = db
        self._notify = notify
        self._products = products
        self._pipeline = pipe
        self._clock = clock

    async def create_sale(self, spec: domain.SaleSpec) -> domain.Sale:
        """Create a sale of an existing product and emit sale.created."""
        if not await self._products.exists(spec.product_id):
            raise errors.NotFound("no such product", "product_id")
        sale = domain.Sale(
            sale_id=uuid.uuid4().hex,
            product_id=spec.product_id,
            price_cents=spec.price_cents,
            stock=spec.stock,
            per_user_limit=spec.per_user_limit,
            starts_at=spec.starts_at,
            ends_at=spec.ends_at,
            remaining=spec.stock,
            created_at=self._clock(),
        )

        def work(tx: database.Tx) -> None:
            repository.insert_sale(tx, sale)
            outbox.add(tx, topics.SALES, messages.sale_created(sale))

        await self._db.run(work)
        self._notify()
        log.info("sale created", extra={"sale_id": sale.sale_id, "product_id": sale.product_id, "stock": sale.stock})
        return sale

    async def get_sale(self, sale_id: str) -> domain.Sale:
        """A sale by id, or NotFound."""
        sale = await self._db.run(lambda tx: repository.get_sale(tx, sale_id))
        if sale is None:
            raise errors.NotFound("no such sale", "sale_id")
        return sale

    async def list_sales(self, product_id: str = "") -> list[domain.Sale]:
        """Every sale, optionally of one product."""
        return await self._db.run(lambda tx: repository.list_sales(tx, product_id))

    async def update_stock(self, sale_id: str, stock: int) -> domain.Sale:
        """Change a sale's stock until its first request is decided (re-splitting a prepared sale over the same
        partitions and reserve) and emit sale.updated."""
        sale = await self._pipeline.restock(sale_id, stock)
        self._notify()
        log.info("sale stock changed", extra={"sale_id": sale_id, "stock": stock})
        return sale

    async def prepare_sale(self, sale_id: str, partitions: int, reserve: int) -> ledger_repository.Prepared:
        """Split a sale's stock into partitions and a pool and create its request topic (idempotent)."""
        return await self._pipeline.prepare(sale_id, partitions, reserve)

    async def purchase(self, request: domain.PurchaseRequest, wait_ms: int = 0) -> domain.Decision:
        """Decide a purchase: through the pipeline for a prepared sale (PENDING unless decided within wait_ms),
        else in one transaction. Idempotent per request id."""
        sale = await self._pipeline.prepared_sale(request.sale_id)
        if sale is not None:
            domain.check_quantity(sale, request.quantity)
            return await self._pipeline.purchase(sale, request, wait_ms)
        now = self._clock()
        reservation_id = uuid.uuid4().hex
        result = await self._db.run(lambda tx: decide_purchase(tx, request, now, reservation_id))
        if result.first_time:
            self._notify()
        return result.decision

    async def purchase_batch(self, requests: list[domain.PurchaseRequest]) -> int:
        """Append many requests of prepared sales to their request topics; how many were taken."""
        taken: list[tuple[domain.Sale, domain.PurchaseRequest]] = []
        for index, request in enumerate(requests):
            try:
                sale = await self._pipeline.prepared_sale(request.sale_id)
            except errors.NotFound as exc:
                raise errors.NotFound(exc.message, f"requests[{index}].sale_id") from None
            if sale is None:
                raise errors.FailedPrecondition("the sale is not prepared", f"requests[{index}].sale_id")
            if request.quantity > sale.per_user_limit:
                raise errors.InvalidArgument(
                    f"must be between 1 and {sale.per_user_limit}", f"requests[{index}].quantity"
                )
            taken.append((sale, request))
        await self._pipeline.take(taken)
        return len(taken)

    async def get_purchase(self, request_id: str) -> domain.Decision:
        """The decision recorded for a request id, PENDING when taken and undecided, or NotFound."""
        found = await self._db.run(lambda tx: repository.get_decision(tx, request_id))
        if found is not None:
            return found
        if self._pipeline.waiters.was_taken(request_id):
            return domain.Decision(request_id, "", "", 0, domain.Outcome.PENDING, "", 0)
        raise errors.NotFound("no decision for this request id", "request_id")

    def watch_purchase(self, request_id: str, within_s: float) -> AsyncIterator[domain.Decision]:
        """The request's state until it is decided (or within_s passed)."""

        async def run() -> AsyncIterator[domain.Decision]:
            found = await self._db.run(lambda tx: repository.get_decision(tx, request_id))
            if found is None and not self._pipeline.waiters.was_taken(request_id):
                raise errors.NotFound("no decision for this request id", "request_id")
            async for item in self._pipeline.watch(request_id, found, within_s):
                yield item

        return run()

    async def stats(self, sale_id: str) -> domain.SaleStats:
        """Counters of a sale (per partition for a prepared one), or NotFound."""

        def work(tx: database.Tx) -> tuple[domain.Sale, domain.SaleStats] | None:
            sale = repository.get_sale(tx, sale_id)
            return (sale, repository.stats(tx, sale)) if sale else None

        found = await self._db.run(work)
        if found is None:
            raise errors.NotFound("no such sale", "sale_id")
        sale, base = found
        if sale.partitions:
            return await self._pipeline.stats(sale, base)
        return base

    def on_order_event(self, env: events_pb2.EventEnvelope) -> bool:
        """Apply an order event (consumer thread): release or confirm its reservation; True if events were added."""
        reason = domain.release_reason(env.type)
        if reason is None and env.type != domain.ORDER_CONFIRMS:
            return False
        order = events_pb2.OrderChanged()
        events.unpack(env, order)
        if not order.reservation_id:
            raise errors.PermanentEventError(f"{env.type}: reservation_id is empty")
        now = self._clock()

        def work(tx: database.Tx) -> bool:
            if not outbox.first_time(tx, env.event_id):
                return False
            if reason is None:
                repository.mark_confirmed(tx, order.reservation_id, now)
                return False
            released = release_stock(tx, order.reservation_id, reason, now)
            if released is None:
                return False
            outbox.add(tx, topics.SALES, messages.stock_released(released))
            log.info(
                "stock released",
                extra={"sale_id": released.sale.sale_id, "reservation_id": released.reservation_id, "reason": reason},
            )
            return True

        return self._db.run_sync(work)


def decide_purchase(
    tx: database.Tx, request: domain.PurchaseRequest, now: int, reservation_id: str
) -> domain.PurchaseResult:
    """The purchase path in one transaction: claim the request id, then window, limit and stock."""
    sale = repository.get_sale(tx, request.sale_id)
    if sale is None:
        raise errors.NotFound("no such sale", "sale_id")
    domain.check_quantity(sale, request.quantity)
    if not repository.claim_request(tx, request, now):
        existing = repository.get_decision(tx, request.request_id)
        if existing is None:
            raise errors.TemporaryError(f"request {request.request_id} is being decided; retry")
        domain.check_retry(existing, request)
        return domain.PurchaseResult(existing, sale, sale.remaining, first_time=False)
    outcome = domain.window_outcome(sale, now)
    left: int | None = None
    if outcome is None:
        bought = repository.add_to_counter(tx, sale.sale_id, request.user_id, request.quantity, sale.per_user_limit)
        if bought is None:
            outcome = domain.Outcome.LIMIT_EXCEEDED
        else:
            left = repository.take_stock(tx, sale.sale_id, request.quantity)
            if left is None:
                repository.take_from_counter(tx, sale.sale_id, request.user_id, request.quantity)
                outcome = domain.Outcome.SOLD_OUT
            else:
                outcome = domain.Outcome.ACCEPTED
    decision = domain.Decision(
        request_id=request.request_id,
        sale_id=sale.sale_id,
        user_id=request.user_id,
        quantity=request.quantity,
        outcome=outcome,
        reservation_id=reservation_id if outcome.accepted else "",
        decided_at=now,
    )
    repository.record_decision(tx, decision)
    if outcome.accepted:
        repository.insert_reservation(tx, decision)
    result = domain.PurchaseResult(
        decision,
        sale,
        left if left is not None else repository.remaining(tx, sale.sale_id),
        first_time=True,
    )
    outbox.add(tx, topics.SALES, messages.purchases_decided(sale, [decision], result.remaining))
    return result


def release_stock(tx: database.Tx, reservation_id: str, reason: str, now: int) -> domain.Release | None:
    """Give a still-reserved reservation's stock back to its sale and its buyer; None when nothing to do."""
    held = repository.mark_released(tx, reservation_id, reason, now)
    if held is None:
        return None
    sale_id, user_id, quantity, partition = held
    if partition >= 0:  # a reservation of the partitioned pipeline: back to its partition
        # the partition row before the user's counter, the order a round locks them in (no deadlock with it)
        ledger_repository.give_back(tx, sale_id, partition, quantity)
        repository.take_from_counter(tx, sale_id, user_id, quantity)
        left = ledger_repository.total_remaining(tx, sale_id)
    else:
        repository.take_from_counter(tx, sale_id, user_id, quantity)
        left = repository.give_stock(tx, sale_id, quantity)
    sale = repository.get_sale(tx, sale_id)
    if sale is None:
        raise LookupError(f"sale {sale_id} vanished")
    return domain.Release(sale=sale, reservation_id=reservation_id, quantity=quantity, reason=reason, remaining=left)
