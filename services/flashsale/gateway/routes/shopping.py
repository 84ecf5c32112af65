"""Buying: purchases (verified users only) and the caller's orders."""

from __future__ import annotations

import uuid
from typing import Annotated

import fastapi
from fastapi import responses

from flashsale.common import tracing
from flashsale.gateway import deps, errors, mappers, schemas
from flashsale_api.v1 import order_pb2, sales_pb2

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": schemas.ErrorBody} for status in (400, 401, 403, 404, 409, 429, 503, 504)
}
_DECISION_STATUS = {"ACCEPTED": 201, "PENDING": 202}

Id = Annotated[str, fastapi.Path(pattern=schemas.ID_PATTERN)]


def router() -> fastapi.APIRouter:
    """Routes of purchases (sales service) and orders (order service)."""
    r = fastapi.APIRouter(tags=["shopping"], responses=_ERRORS)

    @r.post(
        "/v1/sales/{sale_id}/purchases",
        status_code=201,
        response_model=schemas.PurchaseDecision,
        responses={
            202: {"model": schemas.PurchaseDecision, "description": "Queued, not decided yet (outcome PENDING)."},
            409: {"model": schemas.PurchaseDecision, "description": "Rejected: SOLD_OUT, LIMIT_EXCEEDED, ..."},
        },
    )
    async def purchase(
        request: fastapi.Request,
        sale_id: Id,
        token: deps.Bearer,
        ctx: deps.Ctx,
        body: Annotated[schemas.PurchaseIn | None, fastapi.Body()] = None,
    ) -> responses.JSONResponse:
        """Buy: 201 with the decision when accepted, 409 with the decision when rejected."""
        body = body or schemas.PurchaseIn()
        caller = await ctx.authenticate(request, token)
        if not caller.verified:
            raise errors.ApiError(403, "PERMISSION_DENIED", "verify your e-mail before buying")
        rpc = sales_pb2.PurchaseRequest(
            sale_id=sale_id,
            user_id=caller.user_id,
            quantity=body.quantity,
            request_id=body.request_id or uuid.uuid4().hex,
            wait_ms=int(ctx.gateway.purchase_wait_s * 1000),
            traceparent=tracing.traceparent(),
        )
        timeout_s = ctx.gateway.purchase_wait_s + ctx.gateway.purchase_timeout_s
        decision = mappers.decision(await ctx.purchases.purchase(rpc, timeout_s))
        status = _DECISION_STATUS.get(decision.outcome, 409)
        return responses.JSONResponse(decision.model_dump(mode="json"), status_code=status)

    @r.get("/v1/purchases/{request_id}")
    async def get_purchase(
        request: fastapi.Request, request_id: Id, token: deps.Bearer, ctx: deps.Ctx
    ) -> schemas.PurchaseDecision:
        """The decision on one of the caller's purchase requests."""
        caller = await ctx.authenticate(request, token)
        reply = await ctx.clients.sales.GetPurchase(
            sales_pb2.GetPurchaseRequest(request_id=request_id), timeout=ctx.timeout
        )
        if reply.user_id != caller.user_id:
            raise errors.not_found("request_id: no such purchase request", "request_id")
        return mappers.decision(reply)

    @r.get("/v1/orders")
    async def list_orders(
        request: fastapi.Request,
        token: deps.Bearer,
        ctx: deps.Ctx,
        request_id: Annotated[str | None, fastapi.Query(pattern=schemas.ID_PATTERN)] = None,
        page_size: Annotated[int, fastapi.Query(ge=1, le=100)] = 20,
        page_token: Annotated[str, fastapi.Query(max_length=512)] = "",
    ) -> schemas.OrderPage:
        """The caller's orders, newest first as the order service pages them; filter by purchase request."""
        caller = await ctx.authenticate(request, token)
        rpc = order_pb2.ListOrdersRequest(
            user_id=caller.user_id, page_size=page_size, page_token=page_token, request_id=request_id or ""
        )
        return mappers.order_page(await ctx.clients.orders.ListOrders(rpc, timeout=ctx.timeout))

    @r.get("/v1/orders/{order_id}")
    async def get_order(request: fastapi.Request, order_id: Id, token: deps.Bearer, ctx: deps.Ctx) -> schemas.Order:
        """One of the caller's orders."""
        caller = await ctx.authenticate(request, token)
        rpc = order_pb2.GetOrderRequest(order_id=order_id, user_id=caller.user_id)
        return mappers.order(await ctx.clients.orders.GetOrder(rpc, timeout=ctx.timeout))

    @r.post("/v1/orders/{order_id}/pay")
    async def pay_order(
        request: fastapi.Request, order_id: Id, body: schemas.PayIn, token: deps.Bearer, ctx: deps.Ctx
    ) -> schemas.Order:
        """Pay a pending order before its pay_by deadline."""
        caller = await ctx.authenticate(request, token)
        rpc = order_pb2.PayOrderRequest(order_id=order_id, user_id=caller.user_id, payment_token=body.payment_token)
        return mappers.order(await ctx.clients.orders.PayOrder(rpc, timeout=ctx.timeout))

    @r.post("/v1/orders/{order_id}/cancel")
    async def cancel_order(request: fastapi.Request, order_id: Id, token: deps.Bearer, ctx: deps.Ctx) -> schemas.Order:
        """Cancel a pending order; its stock returns to the sale."""
        caller = await ctx.authenticate(request, token)
        rpc = order_pb2.CancelOrderRequest(order_id=order_id, user_id=caller.user_id)
        return mappers.order(await ctx.clients.orders.CancelOrder(rpc, timeout=ctx.timeout))

    return r
