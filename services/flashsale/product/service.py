"""Product application service: one transaction per operation, events through the outbox."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from flashsale.common import database, errors, outbox, timeutil, topics
from flashsale.product import domain, messages, repository


@dataclasses.dataclass(frozen=True)
class ProductView:
    """A product with the stock display of its sales."""

    product: domain.Product
    availability: tuple[domain.Availability, ...]


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of products and the token of the next (empty on the last page)."""

    items: tuple[ProductView, ...]
    next_token: str


def _changed(tx: database.Tx, product: domain.Product) -> None:
    outbox.add(tx, topics.PRODUCTS, messages.product_changed(product))


class ProductService:
    """Catalogue operations, prices, availability reads, and the availability the sales events report."""

    def __init__(self, db: database.Database, notify: Callable[[], None]) -> None:
        self._db = db
        self._notify = notify

    async def create(self, draft: domain.ProductDraft) -> ProductView:
        """Store a new product and emit product.changed."""
        now = timeutil.now_ms()
        product = domain.Product(
            uuid.uuid4().hex, draft.name, draft.description, draft.base_price_cents, draft.currency, now, now
        )

        def work(tx: database.Tx) -> None:
            repository.insert_product(tx, product)
            _changed(tx, product)

        await self._db.run(work)
        self._notify()
        return ProductView(product, ())

    async def get(self, product_id: str) -> ProductView:
        """A product with its availability, or NOT_FOUND."""

        def work(tx: database.Tx) -> ProductView:
            product = repository.get_product(tx, product_id)
            if product is None:
                raise errors.NotFound("no such product", "product_id")
            return ProductView(product, tuple(repository.availability_of(tx, [product_id])[product_id]))

        return await self._db.run(work)

    async def list(self, size: int, after: domain.Cursor | None) -> Page:
        """One page of products, oldest first."""

        def work(tx: database.Tx) -> Page:
            found = repository.list_products(tx, after, size + 1)
            items, more = found[:size], len(found) > size
            avail = repository.availability_of(tx, [p.product_id for p in items])
            views = tuple(ProductView(p, tuple(avail[p.product_id])) for p in items)
            token = ""
            if more:
                last = items[-1]
                token = domain.encode_cursor(domain.Cursor(last.created_at, last.product_id))
            return Page(views, token)

        return await self._db.run(work)

    async def update(self, product_id: str, patch: domain.ProductPatch) -> ProductView:
        """Change the set fields and emit product.changed, or NOT_FOUND."""
        now = timeutil.now_ms()

        def work(tx: database.Tx) -> ProductView:
            product = (
                repository.get_product(tx, product_id) if repository.patch_product(tx, product_id, patch, now) else None
            )
            if product is None:
                raise errors.NotFound("no such product", "product_id")
            _changed(tx, product)
            return ProductView(product, tuple(repository.availability_of(tx, [product_id])[product_id]))

        view = await self._db.run(work)
        self._notify()
        return view

    async def price(self, product_id: str, sale_id: str) -> tuple[domain.Product, domain.Quote]:
        """The price a shopper pays now, or NOT_FOUND for an unknown product."""
        view = await self.get(product_id)
        quote = domain.select_price(view.product.base_price_cents, view.availability, sale_id, timeutil.now_ms())
        return view.product, quote

    async def availability(self, sale_id: str) -> domain.Availability | None:
        """The availability of a sale, or None when the sale is unknown."""
        return await self._db.run(lambda tx: repository.get_availability(tx, sale_id))

    def record_sale(self, event_id: str, row: domain.Availability, restocked: bool) -> None:
        """Record a sale's terms (sale.created, sale.updated), once per event (consumer thread): a row made earlier
        from a decision keeps its remaining stock, unless the sale was restocked (all of its new stock remains)."""

        def work(tx: database.Tx) -> None:
            if outbox.first_time(tx, event_id):
                repository.upsert_sale(tx, row)
                if restocked:
                    repository.set_remaining(tx, row)

        self._db.run_sync(work)

    def record_remaining(self, event_id: str, row: domain.Availability) -> None:
        """Record the stock remaining after purchases.decided or stock.released, once per event (consumer thread)."""

        def work(tx: database.Tx) -> None:
            if outbox.first_time(tx, event_id):
                repository.set_remaining(tx, row)

        self._db.run_sync(work)
