"""A flash sale survives faults: a sales worker SIGKILLed, the Kafka broker and PostgreSQL restarted, every
request replayed three times. After recovery the sale sells exactly its stock and the checker finds nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest
from fault_harness import (
    Cluster,
    FeedLog,
    check_invariants,
    check_published,
    crowd,
    feed,
    open_sale,
    sales_client,
    settled,
)
from waiting import eventually

from flashsale_api.v1 import product_pb2_grpc, sales_pb2, sales_pb2_grpc
from flashsale_tools.platform import kafka_broker, postgres_server
from flashsale_tools.verify import model

pytestmark = pytest.mark.faults

STOCK = 1_500
LIMIT = 2
PARTITIONS = 8
RESERVE = 40
REQUESTS = 3_000
USERS = 1_500
BATCH = 50

Fault = Callable[[], Awaitable[None]]


async def _mid_sale(sales: sales_pb2_grpc.SalesServiceStub, sale_id: str) -> None:
    """The sale is under way: some units sold, some left."""
    stats = await sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale_id), timeout=10)
    assert 0 < stats.reserved < STOCK, f"the fault must strike in the middle of the sale: {stats}"


async def _sale_through(
    cluster: Cluster,
    products: product_pb2_grpc.ProductServiceStub,
    sales: sales_pb2_grpc.SalesServiceStub,
    *,
    seed: int,
    fault: Fault,
    recover: Callable[[], None] = lambda: None,
    at: float = 0.2,
    times: int = 1,
) -> tuple[model.Snapshot, FeedLog, int]:
    """Run a sale whose crowd is fed in batches while `fault` strikes after the fraction `at` of them, then
    `recover` runs and feeding goes on; check every invariant once it settled. The snapshot, the feeding
    journal and the duplicate events."""
    sale_id = await open_sale(products, sales, stock=STOCK, limit=LIMIT, partitions=PARTITIONS, reserve=RESERVE)
    people = crowd(sale_id, seed=seed, requests=REQUESTS, users=USERS, stock=STOCK, limit=LIMIT, batch_size=BATCH)
    batches: Sequence[Sequence[sales_pb2.PurchaseRequest]] = (
        people.batches() if times == 1 else people.replayed(times, seed)
    )
    journal = FeedLog()
    cut = int(len(batches) * at)
    await feed(sales, batches[:cut], journal)
    await _wait_reserved(sales, sale_id)
    await _mid_sale(sales, sale_id)
    during = cut + (len(batches) - cut) // 2
    striking = asyncio.create_task(fault())
    await feed(sales, batches[cut:during], journal)  # while the fault strikes
    await striking
    recover()  # in the loop's thread with no call in flight (see test_postgres_restarted_mid_sale)
    await feed(sales, batches[during:], journal)  # after recovery
    snap = await settled(sales, cluster.settings, sale_id, people.distinct)
    check_invariants(snap, STOCK)
    duplicates = await asyncio.to_thread(check_published, cluster.settings.kafka_bootstrap, snap)
    return snap, journal, duplicates


async def _wait_reserved(sales: sales_pb2_grpc.SalesServiceStub, sale_id: str, within_s: float = 30) -> None:
    """Wait until the workers decided something (so the fault meets a sale being decided)."""
    await eventually(
        lambda: sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale_id), timeout=10),
        until=lambda stats: stats.reserved > 0,
        within_s=within_s,
        every_s=0.1,
        what="something decided",
    )


async def test_a_worker_killed_mid_sale_is_replaced_without_a_trace(
    cluster: Cluster, products: product_pb2_grpc.ProductServiceStub
) -> None:
    ingress = await cluster.started("ingress", worker=False)
    victim = await cluster.started("worker-1")
    await cluster.started("worker-2")

    async def crash() -> None:
        victim.kill()
        assert victim.popen.returncode == -9
        await cluster.started("worker-1-again")

    async with sales_client(ingress) as sales:
        snap, _, _ = await _sale_through(cluster, products, sales, seed=11, fault=crash)
    assert len(snap.decisions) == REQUESTS


async def test_the_kafka_broker_restarted_mid_sale(
    cluster: Cluster, products: product_pb2_grpc.ProductServiceStub, fault_kafka: kafka_broker.KafkaBroker
) -> None:
    ingress = await cluster.started("ingress", worker=False)
    await cluster.started("worker-1")
    await cluster.started("worker-2")

    async def restart() -> None:
        await asyncio.to_thread(fault_kafka.restart)

    async with sales_client(ingress) as sales:
        await _sale_through(cluster, products, sales, seed=12, fault=restart)


async def test_postgres_restarted_mid_sale(
    cluster: Cluster, products: product_pb2_grpc.ProductServiceStub, fault_postgres: postgres_server.PostgresServer
) -> None:
    ingress = await cluster.started("ingress", worker=False)
    await cluster.started("worker-1")
    await cluster.started("worker-2")

    async def stop() -> None:
        await asyncio.to_thread(fault_postgres.stop)

    # PostgresServer starts postgres as another OS user, which forks (no vfork) this process: done while a gRPC
    # call is in flight, gRPC's fork handlers crashed the child (SIGSEGV). So the start waits for a quiet moment.
    async with sales_client(ingress) as sales:
        await _sale_through(cluster, products, sales, seed=13, fault=stop, recover=fault_postgres.start)


async def test_every_request_sent_three_times_is_decided_once(
    cluster: Cluster, products: product_pb2_grpc.ProductServiceStub
) -> None:
    ingress = await cluster.started("ingress", worker=False)
    await cluster.started("worker-1")
    await cluster.started("worker-2")

    async def nothing() -> None:
        return None

    async with sales_client(ingress) as sales:
        snap, journal, _ = await _sale_through(cluster, products, sales, seed=14, fault=nothing, times=3)
    assert journal.sent == -(-REQUESTS * 3 // BATCH)
    assert len(snap.decisions) == REQUESTS
