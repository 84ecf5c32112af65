"""What every service process wires the same way: logging, database, Kafka, outbox relay, consumers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import prometheus_client
import prometheus_client.core

from flashsale.common import (
    database,
    grpc_server,
    kafka,
    kafka_metrics,
    kafka_security,
    logs,
    metrics,
    outbox,
    topics,
    tracing,
)
from flashsale.common.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ServiceRuntime:
    """The shared parts of one service process, built by `build_runtime` and closed at shutdown."""

    name: str
    settings: Settings
    db: database.Database
    producer: kafka.EventProducer
    relay: outbox.OutboxRelay
    server: grpc_server.GrpcService
    counted: kafka_metrics.KafkaMetrics | None  # Kafka records produced, consumed, dead-lettered; consumer lag
    kafka_security: kafka_security.Security  # how every Kafka client of the process logs in

    @property
    def recording(self) -> bool:
        """Whether the hot paths record metrics (they do when the process serves them: FLASHSALE_METRICS_PORT)."""
        return self.counted is not None

    @property
    def registry(self) -> metrics.Registry:
        """The process's metrics registry (what records a metric registers it here)."""
        return self.server.registry

    def consume(
        self,
        subscriptions: Sequence[str],
        handler: kafka.Handler,
        group: str | None = None,
        offset_reset: str = "earliest",
        batch_wait_ms: int | None = None,
    ) -> None:
        """Consume topics with a handler (run in a consumer thread) for the life of the process.

        The group defaults to one per service; a per-instance group with offset_reset="latest"
        suits live fan-out (every replica sees every event from now on). Events travel in batches, each waiting
        up to `batch_wait_ms` at the broker (default: the kafka_event_batch_wait_ms setting); 0 for a consumer someone
        waits on (every record fetched at once).
        """
        consumer = kafka.EventConsumer(
            self.settings.kafka_bootstrap,
            group or f"flashsale-{self.name}",
            subscriptions,
            handler,
            self.producer,
            offset_reset=offset_reset,
            counted=self.counted,
            security=self.kafka_security,
            batch_wait_ms=self.settings.kafka_event_batch_wait_ms if batch_wait_ms is None else batch_wait_ms,
        )

        async def stop() -> None:
            await asyncio.to_thread(consumer.stop)

        self.server.add_background(_started(consumer))
        self.server.on_shutdown(stop, first=True)  # consumers stop before the database and producer close


def _started(consumer: kafka.EventConsumer) -> Callable[[], Coroutine[Any, Any, None]]:
    async def run() -> None:
        consumer.start()
        await asyncio.Event().wait()

    return run


def build_runtime(
    name: str, settings: Settings, address: str, service_names: Sequence[str], migrations: Sequence[database.Migration]
) -> ServiceRuntime:
    """Configure logging and traces, open and migrate the database, connect Kafka and create the gRPC server."""
    logs.configure_logging(name, settings.log_level, settings.log_format)
    security = kafka_security.client_settings(settings)  # a bad Kafka login is refused before anything opens
    stop_tracing = tracing.configure(name)
    registry = metrics.registry()
    recording = bool(settings.metrics_port)  # no endpoint: nothing is recorded on the hot paths either
    counted = kafka_metrics.KafkaMetrics(registry) if recording else None
    db = database.open_database(settings, name)
    db.migrate([outbox.MIGRATION, *migrations])
    kafka.ensure_topics(settings.kafka_bootstrap, topics.ALL, settings.kafka_partitions, security=security)
    producer = kafka.EventProducer(settings.kafka_bootstrap, f"flashsale-{name}", counted, security)
    relay = outbox.OutboxRelay(db, producer)
    listen = settings.grpc_listen or address  # in a pod: every interface, while the others dial the Service name
    server = grpc_server.GrpcService(name, listen, service_names, registry, record=recording)
    server.add_background(relay.run)
    metrics.Callback(registry, lambda: _database_figures(db))
    if settings.metrics_port:
        endpoint = metrics.serve(registry, settings.metrics_host, settings.metrics_port)
        log.info("metrics served", extra={"port": endpoint.port})

        async def close_metrics() -> None:
            await asyncio.to_thread(endpoint.close)

        server.on_shutdown(close_metrics)

    async def close() -> None:
        await relay.relay_once()
        await asyncio.to_thread(producer.close)
        await asyncio.to_thread(db.close)
        await asyncio.to_thread(stop_tracing)

    server.on_shutdown(close)
    return ServiceRuntime(name, settings, db, producer, relay, server, counted, security)


def _database_figures(db: database.Database) -> list[prometheus_client.Metric]:
    """The outbox backlog, and the connection pool's figures on PostgreSQL (read at scrape time)."""
    backlog = prometheus_client.core.GaugeMetricFamily(
        "flashsale_outbox_backlog", "Events stored in the outbox and not yet published."
    )
    backlog.add_metric([], db.run_sync(outbox.backlog))
    families: list[prometheus_client.Metric] = [backlog]
    stats = db.pool_stats()
    if stats:
        connections = prometheus_client.core.GaugeMetricFamily(
            "flashsale_db_pool_connections", "Connections of the database pool, in use or idle.", labels=["state"]
        )
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        waiting = prometheus_client.core.GaugeMetricFamily(
            "flashsale_db_pool_requests_waiting", "Requests waiting for a connection of the pool now."
        )
        waiting.add_metric([], stats.get("requests_waiting", 0))
        requests = prometheus_client.core.CounterMetricFamily(
            "flashsale_db_pool_requests", "Connections asked of the pool."
        )
        requests.add_metric([], stats.get("requests_num", 0))
        wait = prometheus_client.core.CounterMetricFamily(
            "flashsale_db_pool_wait_seconds", "Time requests waited for a connection of the pool."
        )
        wait.add_metric([], stats.get("requests_wait_ms", 0) / 1000)
        families += [connections, waiting, requests, wait]
    return families
