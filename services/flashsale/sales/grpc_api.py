"""The SalesService servicer: protobuf ↔ domain, nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from flashsale.common import errors, limits, timeutil, validation
from flashsale.sales import domain, messages, purchase_stream, service
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


MAX_WAIT_MS = 30_000
MAX_BATCH = 10_000
WATCH_S = 60.0


def _batch(request: sales_pb2.PurchaseBatchRequest) -> list[domain.PurchaseRequest]:
    """Validate a batch; the field of a bad request is named with its index (requests[3].quantity)."""
    if not 1 <= len(request.requests) <= MAX_BATCH:
        raise errors.InvalidArgument(f"must hold 1 to {MAX_BATCH} requests", "requests")
    checked = []
    for index, item in enumerate(request.requests):
        try:
            checked.append(domain.validate_purchase(item.sale_id, item.user_id, item.quantity, item.request_id))
        except errors.InvalidArgument as exc:
            raise errors.InvalidArgument(exc.message, f"requests[{index}].{exc.field}") from None
    return checked


class SalesServicer(sales_pb2_grpc.SalesServiceServicer):
    """gRPC face of the sales service."""

    def __init__(self, sales: service.SalesService) -> None:
        self._sales = sales

    async def CreateSale(self, request: sales_pb2.CreateSaleRequest, context: Context) -> sales_pb2.Sale:
        """Create a sale of an existing product."""
        spec = domain.validate_sale(
            product_id=request.product_id,
            price_cents=request.price_cents,
            stock=request.stock,
            per_user_limit=request.per_user_limit,
            starts_at=timeutil.from_timestamp(request.starts_at) if request.HasField("starts_at") else None,
            ends_at=timeutil.from_timestamp(request.ends_at) if request.HasField("ends_at") else None,
        )
        return messages.sale(await self._sales.create_sale(spec))

    async def UpdateSale(self, request: sales_pb2.UpdateSaleRequest, context: Context) -> sales_pb2.Sale:
        """Change a sale's stock before its first decision."""
        sale_id = validation.identifier(request.sale_id, "sale_id")
        stock = validation.integer(request.stock, "stock", low=1, high=limits.MAX_STOCK)
        return messages.sale(await self._sales.update_stock(sale_id, stock))

    async def GetSale(self, request: sales_pb2.GetSaleRequest, context: Context) -> sales_pb2.Sale:
        """One sale."""
        sale_id = validation.identifier(request.sale_id, "sale_id")
        return messages.sale(await self._sales.get_sale(sale_id))

    async def ListSales(self, request: sales_pb2.ListSalesRequest, context: Context) -> sales_pb2.ListSalesResponse:
        """Every sale, optionally of one product."""
        product_id = validation.identifier(request.product_id, "product_id") if request.product_id else ""
        found = await self._sales.list_sales(product_id)
        return sales_pb2.ListSalesResponse(sales=[messages.sale(s) for s in found])

    async def PrepareSale(self, request: sales_pb2.PrepareSaleRequest, context: Context) -> sales_pb2.SalePartitions:
        """Split a sale's stock into partitions and create its request topic (idempotent)."""
        sale_id = validation.identifier(request.sale_id, "sale_id")
        validation.integer(request.partitions, "partitions", low=1, high=limits.MAX_PARTITIONS)
        if request.reserve < 0:
            raise errors.InvalidArgument("must not be negative", "reserve")
        found = await self._sales.prepare_sale(sale_id, request.partitions, request.reserve)
        return messages.partitions(sale_id, found)

    async def Purchase(self, request: sales_pb2.PurchaseRequest, context: Context) -> sales_pb2.PurchaseDecision:
        """Submit a purchase request; wait up to wait_ms for its decision."""
        return await self._decide(request)

    async def PurchaseBatch(
        self, request: sales_pb2.PurchaseBatchRequest, context: Context
    ) -> sales_pb2.PurchaseBatchResponse:
        """Submit many purchase requests in one call."""
        taken = await self._sales.purchase_batch(_batch(request))
        return sales_pb2.PurchaseBatchResponse(submitted=taken)

    async def PurchaseStream(
        self, request_iterator: AsyncIterator[sales_pb2.PurchaseBatchRequest], context: Context
    ) -> sales_pb2.PurchaseBatchResponse:
        """Submit batches over one client stream."""
        taken = 0
        async for batch in request_iterator:
            taken += await self._sales.purchase_batch(_batch(batch))
        return sales_pb2.PurchaseBatchResponse(submitted=taken)

    def DecidePurchases(
        self, request_iterator: AsyncIterator[sales_pb2.PurchaseBatchRequest], context: Context
    ) -> AsyncIterator[sales_pb2.PurchaseAnswers]:
        """Decide a stream of purchase batches, answering each request as its decision is made."""
        return purchase_stream.answers(request_iterator, self._decide)

    async def _decide(self, request: sales_pb2.PurchaseRequest) -> sales_pb2.PurchaseDecision:
        wanted = domain.validate_purchase(request.sale_id, request.user_id, request.quantity, request.request_id)
        wait_ms = validation.integer(request.wait_ms, "wait_ms", low=0, high=MAX_WAIT_MS)
        return messages.decision(await self._sales.purchase(wanted, wait_ms))

    async def GetPurchase(self, request: sales_pb2.GetPurchaseRequest, context: Context) -> sales_pb2.PurchaseDecision:
        """The decision recorded for a request id (PENDING while undecided)."""
        request_id = validation.identifier(request.request_id, "request_id")
        return messages.decision(await self._sales.get_purchase(request_id))

    async def WatchPurchase(
        self, request: sales_pb2.GetPurchaseRequest, context: Context
    ) -> AsyncIterator[sales_pb2.PurchaseDecision]:
        """Stream a request's state until it is decided."""
        request_id = validation.identifier(request.request_id, "request_id")
        async for decision in self._sales.watch_purchase(request_id, WATCH_S):
            yield messages.decision(decision)

    async def GetSaleStats(self, request: sales_pb2.GetSaleStatsRequest, context: Context) -> sales_pb2.SaleStats:
        """Counters of a sale."""
        sale_id = validation.identifier(request.sale_id, "sale_id")
        return messages.stats(await self._sales.stats(sale_id))
