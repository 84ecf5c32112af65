"""Prometheus metrics of real processes: a service's gRPC server metrics on its own metrics port, and the
gateway's HTTP and gRPC client metrics on /metrics, labelled by route template and status (never by an id)."""

from __future__ import annotations

import time
import uuid

import grpc
import httpx
import pytest
from prometheus_client import parser
from test_sales_service import buy, sale_request
from waiting import eventually

from flashsale.common.settings import Settings
from flashsale.gateway import bootstrap as gateway_bootstrap
from flashsale.gateway import settings as gateway_settings
from flashsale.product import bootstrap as product_bootstrap
from flashsale.sales import bootstrap as sales_bootstrap
from flashsale_api.v1 import product_pb2, product_pb2_grpc, sales_pb2_grpc
from flashsale_tools.platform import cache

pytestmark = pytest.mark.integration

PRODUCT_SERVICE = "flashsale.v1.ProductService"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition: (name, labels) → value."""
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_service_counts_every_rpc_by_method_and_code_on_its_metrics_port(base_settings: Settings) -> None:
    port = cache.free_port()
    settings = base_settings.model_copy(update={"metrics_port": port})
    server = product_bootstrap.build(settings)
    async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        products = product_pb2_grpc.ProductServiceStub(channel)
        made = await products.CreateProduct(product_pb2.CreateProductRequest(name="Lamp", base_price_cents=1_000))
        await products.GetProduct(product_pb2.GetProductRequest(product_id=made.product_id))
        with pytest.raises(grpc.aio.AioRpcError):
            await products.GetProduct(product_pb2.GetProductRequest(product_id=uuid.uuid4().hex))
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    samples = _samples(text)
    get = {"grpc_service": PRODUCT_SERVICE, "grpc_method": "GetProduct", "grpc_type": "unary"}
    assert _value(samples, "grpc_server_started_total", **get) == 2
    assert _value(samples, "grpc_server_handled_total", **get, grpc_code="OK") == 1
    assert _value(samples, "grpc_server_handled_total", **get, grpc_code="NOT_FOUND") == 1
    assert _value(samples, "grpc_server_handling_seconds_count", **get) == 2
    create = {"grpc_service": PRODUCT_SERVICE, "grpc_method": "CreateProduct", "grpc_type": "unary"}
    assert _value(samples, "grpc_server_handled_total", **create, grpc_code="OK") == 1
    assert "process_cpu_seconds_total" in text


async def test_the_gateway_labels_requests_by_route_template_and_counts_its_grpc_calls(base_settings: Settings) -> None:
    product_server = product_bootstrap.build(base_settings)
    async with product_server:
        settings = base_settings.model_copy(update={"product_addr": f"127.0.0.1:{product_server.port}"})
        gateway = gateway_settings.GatewaySettings(admin_api_key="admin-key-admin-key")  # type: ignore[arg-type]
        async with gateway_bootstrap.build(settings, gateway) as server, httpx.AsyncClient(base_url=server.url) as http:
            missing = uuid.uuid4().hex
            assert (await http.get(f"/v1/products/{missing}")).status_code == 404
            assert (await http.get("/no/such/path")).status_code == 404
            text = (await http.get("/metrics")).text
    samples = _samples(text)
    route = {"method": "GET", "handler": "/v1/products/{product_id}"}
    assert _value(samples, "http_requests_total", **route, status="404") == 1
    assert _value(samples, "http_request_duration_seconds_count", **route) == 1
    assert _value(samples, "http_requests_total", method="GET", handler="unmatched", status="404") == 1
    assert missing not in text, "an id reached a label"
    get = {"grpc_service": PRODUCT_SERVICE, "grpc_method": "GetProduct", "grpc_type": "unary"}
    assert _value(samples, "grpc_client_handled_total", **get, grpc_code="NOT_FOUND") == 1
    assert "flashsale_gateway_rate_limited_total" in text


async def test_the_purchase_path_exports_its_figures_and_the_oversell_gauge_stays_zero(base_settings: Settings) -> None:
    product_server = product_bootstrap.build(base_settings)
    async with product_server:
        port = cache.free_port()
        settings = base_settings.model_copy(
            update={"product_addr": f"127.0.0.1:{product_server.port}", "metrics_port": port}
        )
        sales_server = sales_bootstrap.build(settings)
        async with (
            sales_server,
            grpc.aio.insecure_channel(f"127.0.0.1:{sales_server.port}") as channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{product_server.port}") as product_channel,
        ):
            product = await product_pb2_grpc.ProductServiceStub(product_channel).CreateProduct(
                product_pb2.CreateProductRequest(name="Kettle", base_price_cents=2_000)
            )
            sales = sales_pb2_grpc.SalesServiceStub(channel)
            sale = await sales.CreateSale(sale_request(product.product_id, stock=2, per_user_limit=1))
            for user in ("ann", "bob", "cy"):
                await sales.Purchase(buy(sale.sale_id, user))
            async with httpx.AsyncClient() as http:

                async def scraped() -> str:
                    return (await http.get(f"http://127.0.0.1:{port}/metrics")).text

                # the worker's consumer reports its lag every few seconds
                text = await eventually(scraped, until=lambda t: "flashsale_kafka_consumer_lag{" in t, within_s=20)
    samples = _samples(text)
    sale_id = sale.sale_id
    assert _value(samples, "flashsale_requests_taken_total", sale=sale_id) == 3
    assert _value(samples, "flashsale_decisions_total", sale=sale_id, outcome="accepted") == 2
    assert _value(samples, "flashsale_decisions_total", sale=sale_id, outcome="sold_out") == 1
    assert _value(samples, "flashsale_decision_latency_seconds_count", sale=sale_id) == 3
    assert abs(_value(samples, "flashsale_sale_last_decision_timestamp_seconds", sale=sale_id) - time.time()) < 60
    assert _value(samples, "flashsale_round_duration_seconds_count") >= 1
    assert _value(samples, "flashsale_worker_partitions", sale=sale_id) == sale.stock  # one partition per unit
    assert _value(samples, "flashsale_sale_stock", sale=sale_id) == 2
    assert _value(samples, "flashsale_sale_sold", sale=sale_id) == 2
    assert _value(samples, "flashsale_sale_remaining", sale=sale_id) == 0
    assert (("flashsale_sale_oversold", frozenset({("sale", sale_id)})) in samples) and _value(
        samples, "flashsale_sale_oversold", sale=sale_id
    ) == 0
    assert _value(samples, "flashsale_kafka_records_produced_total", topic="flashsale.sales") >= 2
    assert ("flashsale_outbox_backlog", frozenset()) in samples
    topic = f"flashsale.sale.{sale_id}.requests"
    assert _value(samples, "flashsale_kafka_records_consumed_total", group="flashsale-sales-workers", topic=topic) >= 1
