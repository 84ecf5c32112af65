"""Fixtures of the fault tests: a Kafka broker and a PostgreSQL server of their own (the tests restart them),
a product service process, and per test a fresh database with the sales processes it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from fault_harness import Cluster, Proc, migrate_orders, wait_healthy

from flashsale.common.settings import Settings
from flashsale_api.v1 import product_pb2_grpc
from flashsale_tools.platform import cache, kafka_broker, postgres_server


@pytest.fixture(scope="session")
def fault_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka_broker.KafkaBroker]:
    """A Kafka broker only the fault tests use (they restart it)."""
    broker = kafka_broker.KafkaBroker(tmp_path_factory.mktemp("fault-kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def fault_postgres() -> Iterator[postgres_server.PostgresServer]:
    """A PostgreSQL server only the fault tests use (they restart it)."""
    server = postgres_server.PostgresServer(Path(tempfile.mkdtemp(prefix="flashsale-fault-pg-")))
    server.start()
    yield server
    server.stop()


def _base_env(kafka: kafka_broker.KafkaBroker) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_") or k == "FLASHSALE_LOG_LEVEL"}
    env.update(
        {
            "FLASHSALE_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "FLASHSALE_KAFKA_PARTITIONS": "4",
            "FLASHSALE_LOG_FORMAT": "json",
            "FLASHSALE_JWT_SECRET": "fault-secret-fault-secret-fault-secret",
        }
    )
    return env


@pytest.fixture(scope="session")
def fault_products(fault_kafka: kafka_broker.KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A product service process (on SQLite: out of the way of the PostgreSQL restarts)."""
    folder = tmp_path_factory.mktemp("fault-products")
    port = cache.free_port()
    env = {
        **_base_env(fault_kafka),
        "FLASHSALE_DB_BACKEND": "sqlite",
        "FLASHSALE_SQLITE_DIR": str(folder / "db"),
        "FLASHSALE_PRODUCT_ADDR": f"127.0.0.1:{port}",
    }
    log = folder / "product.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "flashsale_tools.cli", "run", "product"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = Proc("product", popen, port, log)
    yield proc
    proc.terminate()


@pytest.fixture
async def cluster(
    fault_kafka: kafka_broker.KafkaBroker,
    fault_postgres: postgres_server.PostgresServer,
    fault_products: Proc,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    """A fresh PostgreSQL database for the sales service of one test; stops the processes the test started."""
    await wait_healthy(fault_products)
    dsn = fault_postgres.create_database(f"fault_{uuid.uuid4().hex[:12]}")
    env = {
        **_base_env(fault_kafka),
        "FLASHSALE_DB_BACKEND": "postgres",
        "FLASHSALE_POSTGRES_DSN": dsn,
        "FLASHSALE_POSTGRES_POOL_SIZE": "4",
        "FLASHSALE_PRODUCT_ADDR": fault_products.address,
        "FLASHSALE_SALES_BATCH_MAX": "500",
    }
    settings = Settings(
        kafka_bootstrap=fault_kafka.bootstrap_servers,
        db_backend="postgres",
        postgres_dsn=dsn,
        postgres_pool_size=2,
        log_format="text",
    )
    migrate_orders(settings)
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Cluster(env, settings, logs)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def products(fault_products: Proc) -> AsyncIterator[product_pb2_grpc.ProductServiceStub]:
    """A client of the product service."""
    async with grpc.aio.insecure_channel(fault_products.address) as channel:
        yield product_pb2_grpc.ProductServiceStub(channel)
