"""Sales workers in separate processes share a sale's partitions (one consumer group); workers joining and
leaving during the sale (rebalances) keep every invariant."""

from __future__ import annotations

import pytest
from fault_harness import (
    Cluster,
    FeedLog,
    check_invariants,
    check_published,
    crowd,
    feed,
    open_sale,
    request_topic,
    sales_client,
    settled,
)

from flashsale_api.v1 import product_pb2_grpc, sales_pb2, sales_pb2_grpc

pytestmark = pytest.mark.faults

STOCK = 1_500
LIMIT = 2
PARTITIONS = 8
BATCH = 50


async def _in_progress(sales: sales_pb2_grpc.SalesServiceStub, sale_id: str) -> sales_pb2.SaleStats:
    stats = await sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale_id), timeout=10)
    assert stats.reserved < STOCK, f"the sale must still be selling: {stats}"
    return stats


async def test_workers_joining_and_leaving_mid_sale_share_the_partitions(
    cluster: Cluster, products: product_pb2_grpc.ProductServiceStub
) -> None:
    ingress = await cluster.started("ingress", worker=False)
    first = await cluster.started("worker-1")
    async with sales_client(ingress) as sales:
        sale_id = await open_sale(products, sales, stock=STOCK, limit=LIMIT, partitions=PARTITIONS, reserve=40)
        people = crowd(sale_id, seed=21, requests=3_000, users=1_500, stock=STOCK, limit=LIMIT, batch_size=BATCH)
        batches = people.batches()
        journal = FeedLog()
        await feed(sales, batches[:5], journal)
        await _in_progress(sales, sale_id)
        second = await cluster.started("worker-2")
        await feed(sales, batches[5:10], journal)
        await _in_progress(sales, sale_id)
        third = await cluster.started("worker-3")
        await feed(sales, batches[10:15], journal)
        before = await _in_progress(sales, sale_id)
        assert first.terminate() == 0, first.tail()
        await feed(sales, batches[15:], journal)
        snap = await settled(sales, cluster.settings, sale_id, people.distinct)
        after = await sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale_id), timeout=10)

    check_invariants(snap, STOCK)
    check_published(cluster.settings.kafka_bootstrap, snap)

    topic = request_topic(sale_id)
    everything = set(range(PARTITIONS))
    owned = {proc.name: proc.assignments(topic) for proc in (first, second, third)}
    # worker-1 had every partition alone (once the new topic was seen), then gave some up to the workers that joined
    alone = [a for a in owned["worker-1"] if a]
    assert alone[0] == everything, owned
    assert any(a != everything for a in alone[1:]), owned
    # worker-2 and worker-3 each decided partitions of the sale; after worker-1 left they split all of them
    assert any(owned["worker-2"]) and any(owned["worker-3"]), owned
    last_2, last_3 = owned["worker-2"][-1], owned["worker-3"][-1]
    assert last_2 and last_3 and not last_2 & last_3 and last_2 | last_3 == everything, owned
    # requests taken after worker-1 left were decided in every partition, so by the two others
    done = {p.partition: p.committed_offset for p in after.partitions}
    assert all(done[p.partition] > p.committed_offset for p in before.partitions), (before, after)
