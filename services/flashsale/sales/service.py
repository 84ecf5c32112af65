"""The sales service's one facade: every entrypoint (the servicer, the consumers) calls these methods.

Creating, changing and splitting sales; taking purchases into the pipeline (every sale is decided there, by the
workers' rounds); reading decisions and counters; giving stock back when an order expires or is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from flashsale.common import database, errors, outbox, timeutil, topics
from flashsale.sales import (
    catalog,
    domain,
    ingress,
    messages,
    offset_store,
    preparation,
    request_topics,
    reservation_store,
    sale_store,
    stock_store,
    waiting,
)

log = logging.getLogger(__name__)

Clock = Callable[[], int]


class _Counted(NamedTuple):
    """What GetSaleStats reads in one transaction."""

    sale: domain.Sale | None
    split: stock_store.Split | None
    committed: dict[int, int]  # next offset to decide, by partition
    holdings: tuple[int, int]  # (held, released) units
    accepted: int  # requests accepted (the rest of the partitions' decided were refused)


class SalesService:
    """Creates sales, takes purchases, and gives stock back when orders expire or are cancelled."""

    def __init__(
        self,
        db: database.Database,
        notify: Callable[[], None],
        products: catalog.ProductCatalog,
        front: ingress.Ingress,
        prep: preparation.Preparation,
        decisions: waiting.Decisions,
        request_topics_: request_topics.RequestTopics,
        default_partitions: int,
        clock: Clock = timeutil.now_ms,
    ) -> None:
        self._db = db
        self._notify = notify
        self._products = products
        self._ingress = front
        self._preparation = prep
        self._decisions = decisions
        self._topics = request_topics_
        self._default_partitions = default_partitions
        self._clock = clock

    async def create_sale(self, spec: domain.SaleSpec) -> domain.Sale:
        """Create a sale of an existing product, split over the default partitions, and emit sale.created."""
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
            partitions=min(self._default_partitions, spec.stock),
        )

        def work(tx: database.Tx) -> None:
            sale_store.insert(tx, sale)
            preparation.split_new(tx, sale)
            outbox.add(tx, topics.SALES, messages.sale_created(sale))

        await self._db.run(work)
        self._notify()
        log.info("sale created", extra={"sale_id": sale.sale_id, "product_id": sale.product_id, "stock": sale.stock})
        return sale

    async def get_sale(self, sale_id: str) -> domain.Sale:
        """A sale by id, or NotFound."""
        sale = await self._db.run(lambda tx: sale_store.get(tx, sale_id))
        if sale is None:
            raise errors.NotFound("no such sale", "sale_id")
        return sale

    async def list_sales(self, product_id: str = "") -> list[domain.Sale]:
        """Every sale, optionally of one product."""
        return await self._db.run(lambda tx: sale_store.list_all(tx, product_id))

    async def update_stock(self, sale_id: str, stock: int) -> domain.Sale:
        """Change a sale's stock until its first purchase is accepted (re-split over the same partitions and
        reserve) and emit sale.updated."""
        sale = await self._preparation.restock(sale_id, stock)
        self._ingress.forget(sale_id)
        self._notify()
        log.info("sale stock changed", extra={"sale_id": sale_id, "stock": stock})
        return sale

    async def prepare_sale(self, sale_id: str, partitions: int, reserve: int) -> stock_store.Split:
        """Split a sale's stock into partitions and a pool and create its request topic (idempotent)."""
        found = await self._preparation.prepare(sale_id, partitions, reserve)
        self._ingress.forget(sale_id)
        log.info("sale prepared", extra={"sale_id": sale_id, "partitions": partitions, "reserve": reserve})
        return found

    async def purchase(self, request: domain.PurchaseRequest, wait_ms: int = 0) -> domain.Decision:
        """Take a purchase into its sale's request topic; PENDING unless decided within wait_ms. Idempotent per
        request id (a retry meets the first decision)."""
        sale = await self._ingress.sale(request.sale_id)
        domain.check_quantity(sale, request.quantity)
        return await self._ingress.purchase(sale, request, wait_ms)

    async def purchase_batch(self, requests: list[domain.PurchaseRequest]) -> int:
        """Take many purchases into their sales' request topics; how many were taken (all or, on bad input,
        none: the field of the bad one is named with its index)."""
        taken: list[tuple[domain.Sale, domain.PurchaseRequest]] = []
        for index, request in enumerate(requests):
            try:
                sale = await self._ingress.sale(request.sale_id)
            except errors.NotFound as exc:
                raise errors.NotFound(exc.message, f"requests[{index}].sale_id") from None
            if request.quantity > sale.per_user_limit:
                raise errors.InvalidArgument(
                    f"must be between 1 and {sale.per_user_limit}", f"requests[{index}].quantity"
                )
            taken.append((sale, request))
        await self._ingress.take(taken)
        return len(taken)

    async def get_purchase(self, request_id: str) -> domain.Decision:
        """The decision recorded for a request id, PENDING when taken and undecided, or NotFound."""
        found = await self._decisions.stored(request_id)
        if found is not None:
            return found
        if self._decisions.waiters.was_taken(request_id):
            return domain.Decision(request_id, "", "", 0, domain.Outcome.PENDING, "", 0)
        raise errors.NotFound("no decision for this request id", "request_id")

    def watch_purchase(self, request_id: str, within_s: float) -> AsyncIterator[domain.Decision]:
        """The request's state until it is decided (or within_s passed)."""

        async def run() -> AsyncIterator[domain.Decision]:
            found = await self._decisions.stored(request_id)
            if found is None and not self._decisions.waiters.was_taken(request_id):
                raise errors.NotFound("no decision for this request id", "request_id")
            async for item in self._decisions.watch(request_id, found, within_s):
                yield item

        return run()

    async def stats(self, sale_id: str) -> domain.SaleStats:
        """Counters of a sale and of each of its partitions, with the requests not decided yet, or NotFound."""
        topic = topics.request_topic(sale_id)

        def work(tx: database.Tx) -> _Counted:
            return _Counted(
                sale_store.get(tx, sale_id),
                stock_store.split_of(tx, sale_id),
                offset_store.all_of(tx, topic),
                reservation_store.totals(tx, sale_id),
                reservation_store.count(tx, sale_id),
            )

        sale, found, committed, (held, released), accepted = await self._db.run(work)
        if sale is None or found is None:
            raise errors.NotFound("no such sale", "sale_id")
        rejected = sum(p.decided for p in found.partitions) - accepted
        ends = await asyncio.to_thread(self._topics.ends, topic)  # a topic made by the operator may have fewer yet
        parts = tuple(
            domain.PartitionStats(
                p.partition, p.stock, p.remaining, p.decided, committed.get(p.partition, 0), ends.get(p.partition, 0)
            )
            for p in found.partitions
        )
        return domain.SaleStats(
            sale_id=sale_id,
            stock=sale.stock,
            reserved=held,
            released=released,
            remaining=sum(p.remaining for p in found.partitions) + found.pool_remaining,
            accepted_requests=accepted,
            rejected_requests=rejected,
            requests_pending=sum(max(0, p.end_offset - p.committed_offset) for p in parts),
            reserve_remaining=found.pool_remaining,
            partitions=parts,
        )

    def release(self, event_id: str, reservation_id: str, reason: str) -> bool:
        """Give a reservation's stock back to its partition and its buyer, once per order event (consumer thread);
        True when a stock.released event was added."""
        now = self._clock()

        def work(tx: database.Tx) -> bool:
            if not outbox.first_time(tx, event_id):
                return False
            released = release_stock(tx, reservation_id, reason, now)
            if released is None:
                return False
            outbox.add(tx, topics.SALES, messages.stock_released(released))
            log.info(
                "stock released",
                extra={"sale_id": released.sale.sale_id, "reservation_id": reservation_id, "reason": reason},
            )
            return True

        return self._db.run_sync(work)

    def confirm(self, event_id: str, reservation_id: str) -> None:
        """Mark a reservation confirmed (its order was paid), once per order event (consumer thread)."""
        now = self._clock()

        def work(tx: database.Tx) -> None:
            if outbox.first_time(tx, event_id):
                reservation_store.mark_confirmed(tx, reservation_id, now)

        self._db.run_sync(work)


def release_stock(tx: database.Tx, reservation_id: str, reason: str, now: int) -> domain.Release | None:
    """Give a still-reserved reservation's stock back to its partition and its buyer (a released reservation no
    longer counts towards what they hold); None when nothing to do."""
    held = reservation_store.mark_released(tx, reservation_id, reason, now)
    if held is None:
        return None
    sale_id, _, quantity, partition = held
    stock_store.give_back(tx, sale_id, partition, quantity)
    sale = sale_store.get(tx, sale_id)
    if sale is None:
        raise LookupError(f"sale {sale_id} vanished")
    return domain.Release(sale, reservation_id, quantity, reason, sale.remaining)
