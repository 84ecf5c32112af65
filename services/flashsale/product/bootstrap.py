"""Wiring of the product service process."""

from __future__ import annotations

from flashsale.common import grpc_server, process, runtime, settings, topics
from flashsale.product import consumers, grpc_api, repository, service
from flashsale_api.v1 import product_pb2, product_pb2_grpc

NAME = "product"
SERVICE_NAME = product_pb2.DESCRIPTOR.services_by_name["ProductService"].full_name


def build(config: settings.Settings) -> grpc_server.GrpcService:
    """Build the product service (call inside the running event loop)."""
    rt = runtime.build_runtime(NAME, config, config.product_addr, [SERVICE_NAME], repository.MIGRATIONS)
    products = service.ProductService(rt.db, rt.relay.notify)
    api = grpc_api.ProductServicer(products)
    rt.server.register(lambda server: product_pb2_grpc.add_ProductServiceServicer_to_server(api, server))
    rt.consume([topics.SALES], consumers.handler(products))
    return rt.server


async def serve(config: settings.Settings) -> None:
    """Run the product service until SIGTERM or SIGINT."""
    await build(config).run_until_signalled()


def main() -> None:
    """Run the product service until SIGTERM or SIGINT (exit 2 naming the variable on a bad setting)."""
    process.main(NAME, settings.load_settings, serve)
