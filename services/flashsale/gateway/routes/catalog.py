"""Products and sales: public reads, admin writes (X-Admin-Key)."""

from __future__ import annotations

from typing import Annotated

import fastapi

from flashsale.gateway import deps, mappers, schemas
from flashsale_api.v1 import product_pb2, sales_pb2

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": schemas.ErrorBody} for status in (400, 401, 403, 404, 409, 429, 503, 504)
}
_ADMIN = [fastapi.Depends(deps.require_admin)]
_PUBLIC = [fastapi.Depends(deps.limit_by_ip)]

ProductId = Annotated[str, fastapi.Path(pattern=schemas.ID_PATTERN)]
SaleId = Annotated[str, fastapi.Path(pattern=schemas.ID_PATTERN)]


def router() -> fastapi.APIRouter:
    """Routes of the product and sales services (purchases excepted)."""
    r = fastapi.APIRouter(tags=["catalog"], responses=_ERRORS)

    @r.post("/v1/products", status_code=201, dependencies=_ADMIN)
    async def create_product(body: schemas.ProductIn, ctx: deps.Ctx) -> schemas.Product:
        """Add a product (admin)."""
        request = product_pb2.CreateProductRequest(
            name=body.name, description=body.description, base_price_cents=body.base_price_cents, currency=body.currency
        )
        return mappers.product(await ctx.clients.products.CreateProduct(request, timeout=ctx.timeout))

    @r.patch("/v1/products/{product_id}", dependencies=_ADMIN)
    async def update_product(product_id: ProductId, body: schemas.ProductPatch, ctx: deps.Ctx) -> schemas.Product:
        """Change the given fields of a product (admin)."""
        request = product_pb2.UpdateProductRequest(product_id=product_id)
        if body.name is not None:
            request.name = body.name
        if body.description is not None:
            request.description = body.description
        if body.base_price_cents is not None:
            request.base_price_cents = body.base_price_cents
        return mappers.product(await ctx.clients.products.UpdateProduct(request, timeout=ctx.timeout))

    @r.get("/v1/products", dependencies=_PUBLIC)
    async def list_products(
        ctx: deps.Ctx,
        page_size: Annotated[int, fastapi.Query(ge=1, le=100)] = 20,
        page_token: Annotated[str, fastapi.Query(max_length=512)] = "",
    ) -> schemas.ProductPage:
        """A page of the catalogue; pass next_page_token back as page_token for the next one."""
        request = product_pb2.ListProductsRequest(page_size=page_size, page_token=page_token)
        return mappers.product_page(await ctx.clients.products.ListProducts(request, timeout=ctx.timeout))

    @r.get("/v1/products/{product_id}", dependencies=_PUBLIC)
    async def get_product(product_id: ProductId, ctx: deps.Ctx) -> schemas.Product:
        """A product with the live stock of its sales."""
        request = product_pb2.GetProductRequest(product_id=product_id)
        return mappers.product(await ctx.clients.products.GetProduct(request, timeout=ctx.timeout))

    @r.get("/v1/products/{product_id}/price", dependencies=_PUBLIC)
    async def get_price(
        product_id: ProductId,
        ctx: deps.Ctx,
        sale_id: Annotated[str | None, fastapi.Query(pattern=schemas.ID_PATTERN)] = None,
    ) -> schemas.Price:
        """The price a shopper pays now (the sale price during the given sale)."""
        request = product_pb2.GetPriceRequest(product_id=product_id, sale_id=sale_id or "")
        return mappers.price(await ctx.clients.products.GetPrice(request, timeout=ctx.timeout))

    @r.post("/v1/sales", status_code=201, dependencies=_ADMIN)
    async def create_sale(body: schemas.SaleIn, ctx: deps.Ctx) -> schemas.Sale:
        """Create a flash sale of a product (admin)."""
        request = sales_pb2.CreateSaleRequest(
            product_id=body.product_id,
            price_cents=body.price_cents,
            stock=body.stock,
            per_user_limit=body.per_user_limit,
            starts_at=mappers.to_timestamp(body.starts_at),
            ends_at=mappers.to_timestamp(body.ends_at),
        )
        sale = await ctx.clients.sales.CreateSale(request, timeout=ctx.timeout)
        prepare = sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=body.partitions, reserve=body.reserve)
        await ctx.clients.sales.PrepareSale(prepare, timeout=ctx.timeout)
        return mappers.sale(sale)

    @r.get("/v1/sales", dependencies=_PUBLIC)
    async def list_sales(
        ctx: deps.Ctx,
        product_id: Annotated[str | None, fastapi.Query(pattern=schemas.ID_PATTERN)] = None,
    ) -> schemas.SaleList:
        """Every sale, or the sales of one product."""
        request = sales_pb2.ListSalesRequest(product_id=product_id or "")
        reply = await ctx.clients.sales.ListSales(request, timeout=ctx.timeout)
        return schemas.SaleList(sales=[mappers.sale(s) for s in reply.sales])

    @r.get("/v1/sales/{sale_id}", dependencies=_PUBLIC)
    async def get_sale(sale_id: SaleId, ctx: deps.Ctx) -> schemas.Sale:
        """A sale."""
        request = sales_pb2.GetSaleRequest(sale_id=sale_id)
        return mappers.sale(await ctx.clients.sales.GetSale(request, timeout=ctx.timeout))

    @r.get("/v1/sales/{sale_id}/stats", dependencies=_PUBLIC)
    async def get_sale_stats(sale_id: SaleId, ctx: deps.Ctx) -> schemas.SaleStats:
        """Stock and decision counters of a sale."""
        request = sales_pb2.GetSaleStatsRequest(sale_id=sale_id)
        return mappers.sale_stats(await ctx.clients.sales.GetSaleStats(request, timeout=ctx.timeout))

    return r
