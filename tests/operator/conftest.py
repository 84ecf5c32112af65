"""Fixtures for operator tests: a real Kubernetes API server (etcd + kube-apiserver) built by scripts/envtest.sh,
real product and sales services on the session's Kafka broker, and the operator as a process with the
least-privilege ServiceAccount of operator/rbac.yaml."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import grpc
import pytest

from flashsale_api.v1 import product_pb2, product_pb2_grpc
from flashsale_tools.platform import cache, envtest, kafka_broker

pytest.register_assert_rewrite("operator_harness")

from operator_harness import (  # noqa: E402  (after the assert rewrite is registered)
    DEPLOYMENT,
    NAMESPACE,
    REPO,
    Kubectl,
    OperatorProcess,
    service_account_kubeconfig,
    spawn,
    stop,
    wait_healthy,
)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[envtest.ControlPlane]:
    """The envtest control plane with the Strimzi, Prometheus Operator and FlashSale CRDs, for the whole session."""
    with envtest.ControlPlane(tmp_path_factory.mktemp("envtest")) as plane:
        yield plane


@pytest.fixture(scope="session")
def sales_services(
    tmp_path_factory: pytest.TempPathFactory, kafka: kafka_broker.KafkaBroker
) -> Iterator[dict[str, str]]:
    """The product and sales services as processes on SQLite and the session's Kafka; their gRPC addresses."""
    folder = tmp_path_factory.mktemp("services")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    addresses = {name: f"127.0.0.1:{cache.free_port()}" for name in ("product", "sales")}
    env.update(
        FLASHSALE_KAFKA_BOOTSTRAP=kafka.bootstrap_servers,
        FLASHSALE_SQLITE_DIR=str(folder / "db"),
        FLASHSALE_PRODUCT_ADDR=addresses["product"],
        FLASHSALE_SALES_ADDR=addresses["sales"],
        FLASHSALE_LOG_FORMAT="text",
    )
    procs = []
    try:
        for name in ("product", "sales"):
            log = folder / f"{name}.log"
            proc = spawn([sys.executable, "-m", "flashsale_tools.cli", "run", name], env, log)
            procs.append(proc)
            wait_healthy(addresses[name], proc, log)
        yield addresses
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture(scope="session")
def kubectl(control_plane: envtest.ControlPlane) -> Kubectl:
    """kubectl as the admin, with the flashsale namespace, the operator's RBAC and a sales Deployment (1 replica)."""
    admin = Kubectl(control_plane)
    admin.run("api-resources")  # kubectl's first call on a new server discovers every API group: not in a test
    admin.run("create", "namespace", NAMESPACE)
    admin.run("apply", "-f", str(REPO / "operator" / "rbac.yaml"))
    admin.run("create", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--image=flashsale/sales:test", "--replicas=1")
    return admin


@pytest.fixture(scope="session")
def operator(
    tmp_path_factory: pytest.TempPathFactory, kubectl: Kubectl, sales_services: dict[str, str]
) -> Iterator[OperatorProcess]:
    """The operator as a process, logged in with its ServiceAccount's token (so the RBAC manifest is tested)."""
    folder = tmp_path_factory.mktemp("operator")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    env.update(
        KUBECONFIG=str(service_account_kubeconfig(kubectl, folder / "kubeconfig")),
        FLASHSALE_SALES_ADDR=sales_services["sales"],
        FLASHSALE_OPERATOR_NAMESPACE=NAMESPACE,
        FLASHSALE_STRIMZI_CLUSTER="flashsale",
        FLASHSALE_OPERATOR_POLL_S="0.3",
        FLASHSALE_OPERATOR_STATS_INTERVAL_S="0.5",
        FLASHSALE_LOG_FORMAT="text",
        FLASHSALE_OPERATOR_HEALTH_PORT=str(cache.free_port()),
    )
    process = OperatorProcess(env, folder / "operator.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def product_id(sales_services: dict[str, str]) -> str:
    """A new product of the real product service."""
    with grpc.insecure_channel(sales_services["product"]) as channel:
        request = product_pb2.CreateProductRequest(name=f"Sneaker {uuid.uuid4().hex[:6]}", base_price_cents=9999)
        return str(product_pb2_grpc.ProductServiceStub(channel).CreateProduct(request, timeout=10).product_id)
