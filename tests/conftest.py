"""Shared fixtures: a real Kafka broker and a real PostgreSQL server, started once per test session."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flashsale.common.settings import Settings
from flashsale_tools.platform import kafka_broker, postgres_server

pytest.register_assert_rewrite("grpc_errors")  # the shared assertion helper of tests/integration


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka_broker.KafkaBroker]:
    """A real Apache Kafka broker (KRaft) for the whole session."""
    broker = kafka_broker.KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[postgres_server.PostgresServer]:
    """A real PostgreSQL server for the whole session."""
    server = postgres_server.PostgresServer(Path(tempfile.mkdtemp(prefix="flashsale-pg-")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_dsn(postgres: postgres_server.PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def base_settings(tmp_path: Path, kafka: kafka_broker.KafkaBroker) -> Settings:
    """Settings on SQLite in a temporary folder, real Kafka, every gRPC address on a free port."""
    return Settings(
        kafka_bootstrap=kafka.bootstrap_servers,
        kafka_partitions=4,
        sqlite_dir=tmp_path / "db",
        user_addr="127.0.0.1:0",
        product_addr="127.0.0.1:0",
        sales_addr="127.0.0.1:0",
        order_addr="127.0.0.1:0",
        notification_addr="127.0.0.1:0",
        jwt_secret="test-secret-test-secret-test-secret",  # type: ignore[arg-type]
        log_format="text",
    )


@pytest.fixture(params=["sqlite", "postgres"])
def backend_settings(request: pytest.FixtureRequest, base_settings: Settings) -> Settings:
    """base_settings on each storage backend in turn: SQLite, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return base_settings
    dsn = request.getfixturevalue("postgres_dsn")
    return base_settings.model_copy(update={"db_backend": "postgres", "postgres_dsn": dsn})
