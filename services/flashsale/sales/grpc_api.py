"""The SalesService servicer: protobuf ↔ domain, nothing more."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from flashsale.common import errors, timeutil, validation
from flashsale.sales import domain, messages, service
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Unavailable(errors.DomainError):
    """A dependency (database, product service) is temporarily unreachable; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


def _temporary_as_unavailable(
    method: Callable[[Any, Req, Context], Awaitable[Resp]],
) -> Callable[[Any, Req, Context], Awaitable[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: Context) -> Resp:
        try:
            return await method(self, request, context)
        except errors.TemporaryError as exc:
            raise Unavailable(str(exc)) from exc

    return wrapper


class SalesServicer(sales_pb2_grpc.SalesServiceServicer):
    """gRPC face of the sales service."""

    def __init__(self, sales: service.SalesService) -> None:
        self._sales = sales

    @_temporary_as_unavailable
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

    @_temporary_as_unavailable
    async def GetSale(self, request: sales_pb2.GetSaleRequest, context: Context) -> sales_pb2.Sale:
        """One sale."""
        sale_id = validation.identifier(request.sale_id, "sale_id")
        return messages.sale(await self._sales.get_sale(sale_id))

    @_temporary_as_unavailable
    async def ListSales(self, request: sales_pb2.ListSalesRequest, context: Context) -> sales_pb2.ListSalesResponse:
        """Every sale, optionally of one product."""
        product_id = validation.identifier(request.product_id, "product_id") if request.product_id else ""
        found = await self._sales.list_sales(product_id)
        return sales_pb2.ListSalesResponse(sales=[messages.sale(s) for s in found])

    @_temporary_as_unavailable
    async def Purchase(self, request: sales_pb2.PurchaseRequest, context: Context) -> sales_pb2.PurchaseDecision:
        """Decide a purchase request."""
        wanted = domain.validate_purchase(request.sale_id, request.user_id, request.quantity, request.request_id)
        return messages.decision(await self._sales.purchase(wanted))

    @_temporary_as_unavailable
    async def GetPurchase(self, request: sales_pb2.GetPurchaseRequest, context: Context) -> sales_pb2.PurchaseDecision:
        """The decision recorded for a request id."""
        request_id = validation.identifier(request.request_id, "request_id")
        return messages.decision(await self._sales.get_purchase(request_id))

    @_temporary_as_unavailable
    async def GetSaleStats(self, request: sales_pb2.GetSaleStatsRequest, context: Context) -> sales_pb2.SaleStats:
        """Counters of a sale."""
        sale_id = validation.identifier(request.sale_id, "sale_id")
        return messages.stats(await self._sales.stats(sale_id))
