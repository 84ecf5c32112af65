"""Wiring of the order service process."""

from __future__ import annotations

import asyncio

import prometheus_client
import prometheus_client.core

from flashsale.common import grpc_server, metrics, process, runtime, settings, topics
from flashsale.order import consumers, domain, grpc_api, payment, repository, service
from flashsale_api.v1 import order_pb2, order_pb2_grpc

NAME = "order"
SERVICE_NAME = order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name


def build(config: settings.Settings, provider: payment.PaymentProvider | None = None) -> grpc_server.GrpcService:
    """Build the order service (call inside the running event loop); the payment provider defaults to the simulator."""
    rt = runtime.build_runtime(NAME, config, config.order_addr, [SERVICE_NAME], repository.MIGRATIONS)
    orders = service.OrderService(rt.db, provider or payment.SimulatedProvider(), rt.relay.notify)
    api = grpc_api.OrderServicer(orders)
    rt.server.register(lambda server: order_pb2_grpc.add_OrderServiceServicer_to_server(api, server))
    loop = asyncio.get_running_loop()

    def notify_from_thread() -> None:
        loop.call_soon_threadsafe(rt.relay.notify)

    rt.consume([topics.SALES], consumers.handler(orders, config.payment_window_s, notify_from_thread))
    rt.server.add_background(lambda: orders.run_expiry(config.expiry_scan_s))
    metrics.Callback(rt.registry, lambda: [_orders_by_status(rt.db.run_sync(repository.count_by_status))])
    return rt.server


def _orders_by_status(counts: dict[str, int]) -> prometheus_client.Metric:
    family = prometheus_client.core.GaugeMetricFamily("flashsale_orders", "Orders in each status.", labels=["status"])
    for status in domain.Status:
        family.add_metric([status.value], counts.get(status.value, 0))
    return family


async def serve(config: settings.Settings) -> None:
    """Run the order service until SIGTERM or SIGINT."""
    await build(config).run_until_signalled()


def main() -> None:
    """Run the order service until SIGTERM or SIGINT (exit 2 naming the variable on a bad setting)."""
    process.main(NAME, settings.load_settings, serve)
