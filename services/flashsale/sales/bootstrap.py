"""Wiring of the sales service process."""

from __future__ import annotations

import asyncio
import uuid

from flashsale.common import grpc_server, metrics, process, runtime, topics, tracing
from flashsale.common.settings import Settings, load_settings
from flashsale.sales import (
    catalog,
    consumers,
    decision_feed,
    grpc_api,
    ingress,
    pipeline_metrics,
    preparation,
    request_topics,
    schema,
    service,
    waiting,
    worker,
)
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc

NAME = "sales"
CONSUMER_GROUP = "flashsale-sales"
SERVICE_NAME = sales_pb2.DESCRIPTOR.services_by_name["SalesService"].full_name


def build(settings: Settings, products: catalog.ProductCatalog | None = None) -> grpc_server.GrpcService:
    """Build the sales server (call inside the running event loop).

    `products` defaults to the gRPC adapter of the product service at settings.product_addr.
    """
    rt = runtime.build_runtime(NAME, settings, settings.sales_addr, [SERVICE_NAME], schema.MIGRATIONS)
    if products is None:
        client_metrics = metrics.GrpcClientMetrics(rt.registry).interceptors() if rt.recording else []
        interceptors = [*client_metrics, *tracing.grpc_client_interceptors()]
        adapter = catalog.GrpcProductCatalog(settings.product_addr, interceptors=interceptors)
        rt.server.on_shutdown(adapter.close)
        products = adapter
    loop = asyncio.get_running_loop()
    telemetry = pipeline_metrics.PipelineMetrics(rt.registry) if rt.recording else None
    pipeline_metrics.sale_figures(rt.registry, rt.db)
    waiters = waiting.Waiters(loop)
    decisions = waiting.Decisions(rt.db, waiters)
    kafka_topics = request_topics.RequestTopics(settings.kafka_bootstrap, rt.kafka_security)
    sales = service.SalesService(
        rt.db,
        rt.relay.notify,
        products,
        ingress.Ingress(rt.db, rt.producer, kafka_topics, decisions, telemetry),
        preparation.Preparation(rt.db, kafka_topics),
        decisions,
        kafka_topics,
        settings.sales_default_partitions,
    )
    servicer = grpc_api.SalesServicer(sales)
    if settings.sales_worker:
        decider = worker.SalesWorker(
            rt.db,
            settings.kafka_bootstrap,
            rt.producer,
            waiters.resolve_from_thread,
            settings.sales_batch_max,
            telemetry=telemetry,
            counted=rt.counted,
            security=rt.kafka_security,
        )

        async def run_worker() -> None:
            decider.start()
            await asyncio.to_thread(decider.wait)
            if not decider.stopping:  # the thread crashed: end the process, so it is restarted
                raise RuntimeError("the sales worker stopped")

        async def stop_worker() -> None:
            await asyncio.to_thread(decider.stop)

        rt.server.add_background(run_worker)
        rt.server.on_shutdown(stop_worker, first=True)

    async def close_topics() -> None:
        kafka_topics.close()

    rt.server.on_shutdown(close_topics)
    rt.server.register(lambda server: sales_pb2_grpc.add_SalesServiceServicer_to_server(servicer, server))

    def notify_from_thread() -> None:
        loop.call_soon_threadsafe(rt.relay.notify)

    rt.consume([topics.ORDERS], consumers.order_events(sales, notify_from_thread), group=CONSUMER_GROUP)
    # every process sees every decision from now on: a call may wait for a partition another process decides
    rt.consume(
        [topics.SALES],
        decision_feed.handler(waiters),
        group=f"{CONSUMER_GROUP}-waiters-{uuid.uuid4().hex}",
        offset_reset="latest",
        batch_wait_ms=0,  # purchases wait on it
    )
    return rt.server


async def serve(settings: Settings) -> None:
    """Run the sales service until SIGTERM or SIGINT."""
    await build(settings).run_until_signalled()


def main() -> None:
    """Run the sales service until SIGTERM or SIGINT (exit 2 naming the variable on a bad setting)."""
    process.main(NAME, load_settings, serve)
