"""A prepared Flashsale sale on the bench's PostgreSQL and Kafka: setup, request building, counts and cleanup.

Shared by the pipeline modes (c, e, f). The sale's tables live in the `sales_svc` schema of a fresh database,
exactly where the sales service keeps them, so an in-process worker or a `flashsale run sales` child can use it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

import confluent_kafka
import confluent_kafka.admin as kafka_admin
import psycopg

from flashsale.common import database, kafka, limits, outbox, topics
from flashsale.sales import domain, preparation, records, request_topics, sale_store, schema
from flashsale_api.v1 import sales_pb2
from flashsale_tools.bench import core

SCHEMA = "sales_svc"
PARTITIONS = 8
INGRESS_BATCH = 2_000  # purchases per batch-ingress call, as mode (f) sends them
_HOUR_MS = 3_600_000


@dataclasses.dataclass(frozen=True)
class BenchSale:
    """A prepared sale: where it lives, its request topic and terms, and a tag that makes request ids unique."""

    dsn: str
    bootstrap: str
    sale_id: str
    partitions: int
    stock: int
    per_user_limit: int
    tag: str

    @property
    def topic(self) -> str:
        """The sale's request topic."""
        return topics.request_topic(self.sale_id)

    def request_id(self, index: int) -> str:
        """The request id of purchase number `index` (unique per sale)."""
        return f"{self.tag}-{index:09d}"

    def request(self, workload: core.Workload, index: int, wait_ms: int = 0) -> sales_pb2.PurchaseRequest:
        """Purchase number `index` of the workload as its gRPC / request-topic message."""
        return sales_pb2.PurchaseRequest(
            sale_id=self.sale_id,
            user_id=workload.user_of(index),
            quantity=workload.quantity,
            request_id=self.request_id(index),
            wait_ms=wait_ms,
        )


@dataclasses.dataclass(frozen=True)
class Counts:
    """What the sale's tables say after a run."""

    decided: int
    accepted: int
    accepted_units: int
    remaining: int  # partitions plus the pool
    max_held: int  # most units one user holds

    def oversold(self, sale: BenchSale, workload: core.Workload) -> int:
        """Oversold units; raises BenchError on a lost update, an undersell or a user above the limit."""
        if self.max_held > sale.per_user_limit:
            raise core.BenchError(f"a user holds {self.max_held} units, above the limit {sale.per_user_limit}")
        if self.accepted_units != self.accepted * workload.quantity:
            raise core.BenchError(f"{self.accepted} accepted decisions reserve {self.accepted_units} units")
        return core.check_counts(workload, self.accepted, self.remaining)


def per_user_limit(workload: core.Workload, requests: int) -> int:
    """A per-user limit that never binds on `requests` purchases of the workload (so it sells like the other
    modes), at most 1000."""
    return min(limits.MAX_PER_USER_LIMIT, math.ceil(requests / workload.users) * workload.quantity)


def sized(workload: core.Workload, requests: int) -> core.Workload:
    """The workload with `requests` purchases (for checking a sale that took that many)."""
    return dataclasses.replace(workload, purchases=requests, users=min(workload.users, requests))


async def prepare(
    workload: core.Workload,
    env: core.BenchEnv,
    prefix: str,
    requests: Sequence[int] = (),
    partitions: int = PARTITIONS,
) -> list[BenchSale]:
    """A fresh database with the sales tables and one sale of the workload's stock per entry of `requests`
    (the purchases it will take; default one sale of workload.purchases), each prepared over `partitions`."""
    broker = await asyncio.to_thread(env.kafka)
    dsn = await asyncio.to_thread(env.fresh_database, prefix)
    db = await asyncio.to_thread(database.PostgresDatabase, dsn, SCHEMA, 2)
    producer = kafka.EventProducer(broker.bootstrap_servers, f"bench-{prefix}")
    kafka_topics = request_topics.RequestTopics(broker.bootstrap_servers)
    front = preparation.Preparation(db, kafka_topics)
    made: list[BenchSale] = []
    try:
        await asyncio.to_thread(db.migrate, [outbox.MIGRATION, *schema.MIGRATIONS])
        await asyncio.to_thread(kafka.ensure_topics, broker.bootstrap_servers, topics.ALL, partitions)
        for count in requests or (workload.purchases,):
            now = time.time_ns() // 1_000_000
            sale = domain.Sale(
                sale_id=uuid.uuid4().hex,
                product_id=uuid.uuid4().hex,
                price_cents=1_000,
                stock=workload.stock,
                per_user_limit=per_user_limit(workload, count),
                starts_at=now - _HOUR_MS,
                ends_at=now + 24 * _HOUR_MS,
                remaining=workload.stock,
                created_at=now,
                partitions=partitions,
            )

            def create(tx: database.Tx, sale: domain.Sale = sale) -> None:
                sale_store.insert(tx, sale)
                preparation.split_new(tx, sale)

            await db.run(create)
            await front.prepare(sale.sale_id, partitions, 0)
            made.append(
                BenchSale(
                    dsn,
                    broker.bootstrap_servers,
                    sale.sale_id,
                    partitions,
                    workload.stock,
                    sale.per_user_limit,
                    uuid.uuid4().hex[:8],
                )
            )
    finally:
        kafka_topics.close()
        await asyncio.to_thread(producer.close)
        await asyncio.to_thread(db.close)
    return made


def preload(sale: BenchSale, workload: core.Workload) -> None:
    """Append every purchase of the workload to the request topic as the batch ingress does (INGRESS_BATCH
    purchases per call, so one record per partition per call) and wait for the acks."""
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": sale.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )
    failures: list[Any] = []

    def done(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    for start in range(0, workload.purchases, INGRESS_BATCH):
        taken = [
            domain.PurchaseRequest(sale.sale_id, workload.user_of(i), workload.quantity, sale.request_id(i))
            for i in range(start, min(start + INGRESS_BATCH, workload.purchases))
        ]
        for partition, value in records.group(sale.partitions, taken):
            while True:
                try:
                    producer.produce(
                        sale.topic, key=sale.sale_id.encode(), value=value, partition=partition, on_delivery=done
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
    left = producer.flush(60)
    if left or failures:
        raise core.BenchError(f"pre-loading the request topic: {left} unacknowledged, failures {failures[:1]}")


def counts(sale: BenchSale) -> Counts:
    """Decisions, accepted units, stock left (partitions + pool) and the largest holding of the sale."""
    with psycopg.connect(sale.dsn, autocommit=True, options=f"-c search_path={SCHEMA}") as conn:
        decided, accepted = conn.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE outcome = 'accepted') FROM decisions WHERE sale_id = %s",
            (sale.sale_id,),
        ).fetchone() or (0, 0)
        row = conn.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM reservations WHERE sale_id = %s AND status <> 'released'",
            (sale.sale_id,),
        ).fetchone()
        units = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT (SELECT COALESCE(SUM(remaining), 0) FROM sale_partitions WHERE sale_id = %s)"
            " + (SELECT COALESCE(SUM(remaining), 0) FROM sale_pools WHERE sale_id = %s)",
            (sale.sale_id, sale.sale_id),
        ).fetchone()
        remaining = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT COALESCE(MAX(held), 0) FROM (SELECT SUM(quantity) AS held FROM reservations"
            " WHERE sale_id = %s AND status <> 'released' GROUP BY user_id) AS per_user",
            (sale.sale_id,),
        ).fetchone()
        max_held = int(row[0]) if row else 0
    return Counts(int(decided), int(accepted), units, remaining, max_held)


async def wait_decided(sale: BenchSale, total: int, timeout_s: float, poll_s: float = 0.2) -> Counts:
    """Poll the tables until `total` requests are decided; BenchError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await asyncio.to_thread(counts, sale)
        if found.decided >= total:
            return found
        if time.monotonic() > deadline:
            raise core.BenchError(f"only {found.decided} of {total} requests decided after {timeout_s:.0f}s")
        await asyncio.sleep(poll_s)


def delete_topic(sale: BenchSale) -> None:
    """Delete the sale's request topic, so later workers of the run do not read it."""
    client = kafka_admin.AdminClient({"bootstrap.servers": sale.bootstrap})
    for future in client.delete_topics([sale.topic], operation_timeout=30).values():
        future.result()
