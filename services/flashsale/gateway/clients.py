"""The gateway's gRPC stubs, on one channel per backend service."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from flashsale.common.settings import Settings
from flashsale_api.v1 import (
    notification_pb2_grpc,
    order_pb2_grpc,
    product_pb2_grpc,
    sales_pb2_grpc,
    user_pb2_grpc,
)


@dataclasses.dataclass(frozen=True)
class Clients:
    """Async stubs of every backend; `channels` maps each backend's name to its channel."""

    users: user_pb2_grpc.UserServiceAsyncStub
    products: product_pb2_grpc.ProductServiceAsyncStub
    sales: sales_pb2_grpc.SalesServiceAsyncStub
    orders: order_pb2_grpc.OrderServiceAsyncStub
    notifications: notification_pb2_grpc.NotificationServiceAsyncStub
    channels: Mapping[str, grpc.aio.Channel]

    def health(self, backend: str) -> health_pb2_grpc.HealthStub:
        """A health-check stub on one backend's channel."""
        return health_pb2_grpc.HealthStub(self.channels[backend])

    async def close(self) -> None:
        """Close every channel (in-flight calls are cancelled)."""
        await asyncio.gather(*(channel.close(None) for channel in self.channels.values()))


def open_clients(settings: Settings, interceptors: Sequence[Any] = ()) -> Clients:
    """Open a channel per backend from settings.*_addr (with these client interceptors, e.g. metrics); call inside
    the running event loop."""
    addresses = {
        "user": settings.user_addr,
        "product": settings.product_addr,
        "sales": settings.sales_addr,
        "order": settings.order_addr,
        "notification": settings.notification_addr,
    }
    channels = {
        name: grpc.aio.insecure_channel(address, interceptors=list(interceptors)) for name, address in addresses.items()
    }
    return Clients(
        users=user_pb2_grpc.UserServiceStub(channels["user"]),
        products=product_pb2_grpc.ProductServiceStub(channels["product"]),
        sales=sales_pb2_grpc.SalesServiceStub(channels["sales"]),
        orders=order_pb2_grpc.OrderServiceStub(channels["order"]),
        notifications=notification_pb2_grpc.NotificationServiceStub(channels["notification"]),
        channels=channels,
    )
