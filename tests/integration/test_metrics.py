"""Prometheus metrics of real processes: a service's gRPC server metrics on its own metrics port, and the
gateway's HTTP and gRPC client metrics on /metrics, labelled by route template and status (never by an id)."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from prometheus_client import parser

from flashsale.common.settings import Settings
from flashsale.gateway import bootstrap as gateway_bootstrap
from flashsale.gateway import settings as gateway_settings
from flashsale.product import bootstrap as product_bootstrap
from flashsale_api.v1 import product_pb2, product_pb2_grpc
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
