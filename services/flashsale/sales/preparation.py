"""A sale's split: its stock over P partitions plus a reserve pool, and its request topic with P partitions.

Every sale is split when it is created (the default partition count from settings, no reserve), so every sale is
decided by the pipeline. PrepareSale splits it again (the operator does, with the sale's own P and reserve) and
UpdateSale changes its stock, both only while nothing of it was taken.
"""

from __future__ import annotations

import asyncio
import dataclasses

from flashsale.common import database, errors, outbox, topics
from flashsale.sales import (
    domain,
    messages,
    partitioning,
    request_topics,
    sale_store,
    stock_store,
)


def split_new(tx: database.Tx, sale: domain.Sale) -> None:
    """Split a new sale's stock over its partitions, without a reserve (in the transaction that creates it)."""
    stock_store.store_split(tx, sale.sale_id, partitioning.split(sale.stock, sale.partitions, 0), 0)


class Preparation:
    """Splits sales and creates their request topics."""

    def __init__(self, db: database.Database, request_topics_: request_topics.RequestTopics) -> None:
        self._db = db
        self._topics = request_topics_

    async def prepare(self, sale_id: str, partitions: int, reserve: int) -> stock_store.Split:
        """Split the stock again and create (or grow) the request topic; idempotent. Refused once a request of the
        sale was taken or decided, unless the split asked for is the one it has."""
        topic = topics.request_topic(sale_id)
        found = await self._db.run(lambda tx: stock_store.split_of(tx, sale_id))
        if found is None:
            raise errors.NotFound("no such sale", "sale_id")
        changes = (len(found.partitions), found.reserve) != (partitions, reserve)
        if changes and await asyncio.to_thread(self._topics.holds_records, topic):
            raise errors.FailedPrecondition("requests were taken already; the split cannot change", "partitions")

        def work(tx: database.Tx) -> stock_store.Split:
            sale = sale_store.get(tx, sale_id)
            if sale is None:
                raise errors.NotFound("no such sale", "sale_id")
            shares = partitioning.split(sale.stock, partitions, reserve)
            current = stock_store.split_of(tx, sale_id)
            if current is not None and (len(current.partitions), current.reserve) == (partitions, reserve):
                return current
            if current is not None and any(p.decided for p in current.partitions):
                raise errors.FailedPrecondition("requests were decided already; the split cannot change", "partitions")
            stock_store.store_split(tx, sale_id, shares, reserve)
            sale_store.set_split(tx, sale_id, partitions, reserve)
            stored = stock_store.split_of(tx, sale_id)
            assert stored is not None
            return stored

        result = await self._db.run(work)
        await asyncio.to_thread(self._topics.ensure, topic, partitions)
        return result

    async def restock(self, sale_id: str, stock: int) -> domain.Sale:
        """Set a sale's stock while none of it was taken, splitting it again over the same partitions and reserve;
        emits sale.updated in the same transaction. Requests refused so far (e.g. before the start) do not matter."""

        def work(tx: database.Tx) -> domain.Sale:
            sale = sale_store.get(tx, sale_id)
            found = stock_store.split_of(tx, sale_id)
            if sale is None or found is None:
                raise errors.NotFound("no such sale", "sale_id")
            if found.reserve > stock:
                raise errors.FailedPrecondition(f"must be at least the reserve ({found.reserve})", "stock")
            shares = partitioning.split(stock, len(found.partitions), found.reserve)
            if not stock_store.resplit_untouched(tx, sale_id, shares):
                raise errors.FailedPrecondition("purchases were accepted already; the stock cannot change", "stock")
            sale_store.set_stock(tx, sale_id, stock)
            changed = dataclasses.replace(sale, stock=stock, remaining=stock)
            outbox.add(tx, topics.SALES, messages.sale_updated(changed))
            return changed

        return await self._db.run(work)
