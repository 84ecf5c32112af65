"""ProductService servicer: protobuf ↔ domain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from flashsale.common import errors, validation
from flashsale.product import domain, messages, service
from flashsale_api.v1 import product_pb2, product_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def _product(view: service.ProductView) -> product_pb2.Product:
    return messages.product(view.product, view.availability)


class ProductServicer(product_pb2_grpc.ProductServiceServicer):
    """The gRPC face of the product service."""

    def __init__(self, products: service.ProductService, poll_s: float = 0.2) -> None:
        self._products = products
        self._poll_s = poll_s

    async def CreateProduct(self, request: product_pb2.CreateProductRequest, context: Context) -> product_pb2.Product:
        """Create a product."""
        draft = domain.validate_draft(request.name, request.description, request.base_price_cents, request.currency)
        return _product(await self._products.create(draft))

    async def GetProduct(self, request: product_pb2.GetProductRequest, context: Context) -> product_pb2.Product:
        """One product with its availability."""
        product_id = validation.identifier(request.product_id, "product_id")
        return _product(await self._products.get(product_id))

    async def ListProducts(
        self, request: product_pb2.ListProductsRequest, context: Context
    ) -> product_pb2.ListProductsResponse:
        """A page of products, oldest first."""
        size = domain.page_size(request.page_size)
        cursor = domain.decode_cursor(request.page_token)
        page = await self._products.list(size, cursor)
        return product_pb2.ListProductsResponse(
            products=[_product(v) for v in page.items], next_page_token=page.next_token
        )

    async def UpdateProduct(self, request: product_pb2.UpdateProductRequest, context: Context) -> product_pb2.Product:
        """Change the set fields of a product."""
        product_id = validation.identifier(request.product_id, "product_id")
        patch = domain.validate_patch(
            request.name if request.HasField("name") else None,
            request.description if request.HasField("description") else None,
            request.base_price_cents if request.HasField("base_price_cents") else None,
        )
        return _product(await self._products.update(product_id, patch))

    async def GetPrice(self, request: product_pb2.GetPriceRequest, context: Context) -> product_pb2.Price:
        """The price a shopper pays now."""
        product_id = validation.identifier(request.product_id, "product_id")
        sale_id = validation.identifier(request.sale_id, "sale_id") if request.sale_id else ""
        product, quote = await self._products.price(product_id, sale_id)
        return product_pb2.Price(
            product_id=product.product_id,
            price_cents=quote.price_cents,
            currency=product.currency,
            sale_id=quote.sale_id,
        )

    async def WatchAvailability(
        self, request: product_pb2.WatchAvailabilityRequest, context: Context
    ) -> AsyncIterator[product_pb2.Availability]:
        """The sale's availability now, then each change, until the client cancels."""
        sale_id = validation.identifier(request.sale_id, "sale_id")
        last = await self._products.availability(sale_id)
        if last is None:
            raise errors.NotFound("no such sale", "sale_id")
        yield messages.availability(last)
        while True:
            await asyncio.sleep(self._poll_s)
            current = await self._products.availability(sale_id)
            if current is None or _same(current, last):
                continue
            last = current
            yield messages.availability(current)


def _same(a: domain.Availability, b: domain.Availability) -> bool:
    return (a.stock, a.remaining, a.sale_price_cents) == (b.stock, b.remaining, b.sale_price_cents)
