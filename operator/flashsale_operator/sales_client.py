"""The sales service as the operator sees it: sales, their stats, CreateSale, UpdateSale and PrepareSale over gRPC."""

from __future__ import annotations

import grpc

from flashsale.common import errors, timeutil
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc
from flashsale_operator import observed, plan, spec

# Codes that say the request itself is refused for good: retrying the same request cannot succeed.
_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
}


class Refused(Exception):
    """The platform refused an action for good; decisions turn it into the Failed phase."""

    def __init__(self, action: str, code: str, message: str) -> None:
        super().__init__(f"{action} refused ({code}): {message}")
        self.failure = observed.Failure(action, code, message)


def _translate(action: str, exc: grpc.aio.AioRpcError) -> Exception:
    if exc.code() in _REFUSED:
        return Refused(action, exc.code().name, exc.details() or "")
    return errors.TemporaryError(f"sales service {action}: {exc.code().name}: {exc.details()}")


def _view(sale: sales_pb2.Sale) -> observed.SaleView:
    terms = spec.Terms(
        product_id=sale.product_id,
        price_cents=sale.price_cents,
        stock=sale.stock,
        per_user_limit=sale.per_user_limit,
        starts_at_ms=timeutil.from_timestamp(sale.starts_at),
        ends_at_ms=timeutil.from_timestamp(sale.ends_at),
    )
    return observed.SaleView(sale.sale_id, terms)


class SalesClient:
    """gRPC client of the sales service; refusals raise Refused, everything else errors.TemporaryError."""

    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = sales_pb2_grpc.SalesServiceStub(self._channel)
        self._timeout = timeout_s

    async def get_sale(self, sale_id: str) -> observed.SaleView | None:
        """The sale, or None when the sales service does not know it."""
        try:
            sale = await self._stub.GetSale(sales_pb2.GetSaleRequest(sale_id=sale_id), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _translate("GetSale", exc) from exc
        return _view(sale)

    async def list_sales(self, product_id: str) -> tuple[observed.SaleView, ...]:
        """Every sale of a product."""
        try:
            found = await self._stub.ListSales(sales_pb2.ListSalesRequest(product_id=product_id), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("ListSales", exc) from exc
        return tuple(_view(s) for s in found.sales)

    async def stats(self, sale_id: str) -> observed.StatsView | None:
        """Prepared partitions, sold (reserved) and remaining units; None when the sale is unknown."""
        try:
            stats = await self._stub.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale_id), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _translate("GetSaleStats", exc) from exc
        return observed.StatsView(len(stats.partitions), stats.reserved, stats.remaining)

    async def create_sale(self, terms: spec.Terms) -> str:
        """Create a sale with these terms; its id."""
        request = sales_pb2.CreateSaleRequest(
            product_id=terms.product_id,
            price_cents=terms.price_cents,
            stock=terms.stock,
            per_user_limit=terms.per_user_limit,
            starts_at=timeutil.to_timestamp(terms.starts_at_ms),
            ends_at=timeutil.to_timestamp(terms.ends_at_ms),
        )
        try:
            sale = await self._stub.CreateSale(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("CreateSale", exc) from exc
        return str(sale.sale_id)

    async def update_stock(self, sale_id: str, stock: int) -> None:
        """Change the sale's stock (refused once some of it was sold)."""
        request = sales_pb2.UpdateSaleRequest(sale_id=sale_id, stock=stock)
        try:
            await self._stub.UpdateSale(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(plan.UPDATE_SALE, exc) from exc

    async def prepare_sale(self, sale_id: str, partitions: int, reserve: int) -> None:
        """Split the sale's stock (idempotent for the same figures)."""
        request = sales_pb2.PrepareSaleRequest(sale_id=sale_id, partitions=partitions, reserve=reserve)
        try:
            await self._stub.PrepareSale(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("PrepareSale", exc) from exc

    async def carry_out(self, action: plan.Action) -> bool:
        """Carry out a sales-service action (CreateSale, UpdateSale, PrepareSale); False for any other action."""
        match action:
            case plan.CreateSale(terms=terms):
                await self.create_sale(terms)
            case plan.UpdateSale(sale_id=sale_id, stock=stock):
                await self.update_stock(sale_id, stock)
            case plan.PrepareSale(sale_id=sale_id, partitions=partitions, reserve=reserve):
                await self.prepare_sale(sale_id, partitions, reserve)
            case _:
                return False
        return True

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)
