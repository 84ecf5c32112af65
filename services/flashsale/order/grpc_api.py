"""OrderService servicer: protobuf ↔ domain."""

from __future__ import annotations

from typing import Any

import grpc

from flashsale.common import validation
from flashsale.order import domain, messages, service
from flashsale_api.v1 import order_pb2, order_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class OrderServicer(order_pb2_grpc.OrderServiceServicer):
    """The gRPC face of the order service."""

    def __init__(self, orders: service.OrderService) -> None:
        self._orders = orders

    async def GetOrder(self, request: order_pb2.GetOrderRequest, context: Context) -> order_pb2.Order:
        """The caller's order."""
        order_id = validation.identifier(request.order_id, "order_id")
        user_id = validation.identifier(request.user_id, "user_id")
        return messages.order(await self._orders.get(order_id, user_id))

    async def ListOrders(self, request: order_pb2.ListOrdersRequest, context: Context) -> order_pb2.ListOrdersResponse:
        """A page of the caller's orders, newest first."""
        user_id = validation.identifier(request.user_id, "user_id")
        request_id = validation.identifier(request.request_id, "request_id") if request.request_id else ""
        size = domain.page_size(request.page_size)
        cursor = domain.decode_cursor(request.page_token)
        page = await self._orders.list(user_id, request_id, size, cursor)
        return order_pb2.ListOrdersResponse(
            orders=[messages.order(o) for o in page.items], next_page_token=page.next_token
        )

    async def PayOrder(self, request: order_pb2.PayOrderRequest, context: Context) -> order_pb2.Order:
        """Pay a pending order before its deadline."""
        order_id = validation.identifier(request.order_id, "order_id")
        user_id = validation.identifier(request.user_id, "user_id")
        token = domain.payment_token(request.payment_token)
        return messages.order(await self._orders.pay(order_id, user_id, token))

    async def CancelOrder(self, request: order_pb2.CancelOrderRequest, context: Context) -> order_pb2.Order:
        """Cancel a pending order."""
        order_id = validation.identifier(request.order_id, "order_id")
        user_id = validation.identifier(request.user_id, "user_id")
        return messages.order(await self._orders.cancel(order_id, user_id))
