"""The worker group's committed offsets (what lag tools and the stall alert read) reach the end of every decided
partition, with sales sold out one after another (each new request topic rebalancing the group) and nothing
bought afterwards to carry a late commit."""

from __future__ import annotations

import asyncio

import pytest
from test_sales_service import behind, buy, running, sale_request
from waiting import eventually

from flashsale.common import topics
from flashsale.common.settings import Settings
from flashsale.sales import worker
from flashsale_api.v1 import sales_pb2

pytestmark = pytest.mark.integration

SALES = 6


async def test_committed_offsets_catch_up_though_new_sales_rebalance_the_group(base_settings: Settings) -> None:
    async with running(base_settings) as p:
        sold: list[str] = []
        for n in range(SALES):  # each sale sold out, then at once the next sale's topic rebalances the group
            sale = await p.sales.CreateSale(sale_request(p.product_id, stock=4, per_user_limit=1))
            await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=4))
            answers = await asyncio.gather(*(p.sales.Purchase(buy(sale.sale_id, f"u{n}-{i}")) for i in range(6)))
            assert sum(a.outcome == sales_pb2.PURCHASE_OUTCOME_ACCEPTED for a in answers) == 4
            sold.append(sale.sale_id)
        for sale_id in sold:  # nothing more is bought: only a retried commit can close a gap
            topic = topics.request_topic(sale_id)
            await eventually(
                lambda topic=topic: asyncio.to_thread(behind, p.settings.kafka_bootstrap, worker.GROUP, topic),
                until=lambda lagging: not lagging,
                within_s=30,
                every_s=0.5,
                what=f"the worker group's committed offsets at the end of {topic}",
            )
