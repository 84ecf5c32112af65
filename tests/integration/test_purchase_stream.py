"""DecidePurchases through the gateway's PurchaseStream, on the real sales service and Kafka: many purchases over one
stream decided in the order they were queued, a bad one refused alone with its field named, and a broken stream
failing what it carried (503) while the next purchase opens a new one."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from test_sales_service import buy, running, sale_request
from waiting import eventually

from flashsale.common.settings import Settings
from flashsale.gateway import errors, purchase_stream
from flashsale.sales import bootstrap as sales_bootstrap
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc
from flashsale_tools.platform import cache

pytestmark = pytest.mark.integration

ACCEPTED, SOLD_OUT = sales_pb2.PURCHASE_OUTCOME_ACCEPTED, sales_pb2.PURCHASE_OUTCOME_SOLD_OUT


async def test_one_stream_decides_many_purchases_in_the_order_they_were_queued(base_settings: Settings) -> None:
    async with running(base_settings) as shop:
        sale = await shop.sales.CreateSale(sale_request(shop.product_id, stock=30, per_user_limit=2))
        await shop.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=1, reserve=0))
        stream = purchase_stream.PurchaseStream(shop.sales)
        try:
            wanted = [buy(sale.sale_id, f"user-{n:03d}") for n in range(50)]
            too_many = buy(sale.sale_id, "user-x", quantity=3)
            nowhere = buy("no-such-sale", "user-y")
            answers = await asyncio.gather(
                *(stream.purchase(w, 30) for w in wanted[:25]),
                stream.purchase(too_many, 30),
                stream.purchase(nowhere, 30),
                *(stream.purchase(w, 30) for w in wanted[25:]),
                return_exceptions=True,
            )
            decisions = [a for a in answers if isinstance(a, sales_pb2.PurchaseDecision)]
            refused = [a for a in answers if isinstance(a, errors.ApiError)]
            assert len(decisions) == 50 and len(refused) == 2, answers
            assert [d.request_id for d in decisions] == [w.request_id for w in wanted]
            # one partition: the first 30 queued are accepted, then the stock is gone
            assert [d.outcome for d in decisions] == [ACCEPTED] * 30 + [SOLD_OUT] * 20
            assert sorted((e.status, e.code, e.field) for e in refused) == [
                (400, "INVALID_ARGUMENT", "quantity"),
                (404, "NOT_FOUND", "sale_id"),
            ]
            again = await stream.purchase(wanted[3], 30)  # a retry with the same id meets the first decision
            assert (again.outcome, again.reservation_id) == (ACCEPTED, decisions[3].reservation_id)
        finally:
            await stream.close()


async def test_a_broken_stream_fails_its_purchases_and_the_next_purchase_opens_another(
    base_settings: Settings,
) -> None:
    async with running(base_settings) as shop:
        sale = await shop.sales.CreateSale(sale_request(shop.product_id, stock=10, per_user_limit=2))
        own = shop.settings.model_copy(update={"sales_addr": f"127.0.0.1:{cache.free_port()}"})
        server = sales_bootstrap.build(own)  # a sales process of the stream's own, stopped and started again
        await server.start_all()
        async with grpc.aio.insecure_channel(own.sales_addr) as channel:
            stream = purchase_stream.PurchaseStream(sales_pb2_grpc.SalesServiceStub(channel))
            try:
                assert (await stream.purchase(buy(sale.sale_id, "ann"), 30)).outcome == ACCEPTED
                await server.stop_all()
                with pytest.raises(errors.ApiError) as caught:
                    await stream.purchase(buy(sale.sale_id, "bo"), 30)
                assert (caught.value.status, caught.value.code) == (503, "UNAVAILABLE")
                server = sales_bootstrap.build(own)
                await server.start_all()

                async def decided() -> sales_pb2.PurchaseDecision | None:
                    try:
                        return await stream.purchase(buy(sale.sale_id, "cy", request_id="cy-1"), 30)
                    except errors.ApiError:
                        return None  # the channel is still reconnecting

                again = await eventually(decided, until=lambda d: d is not None, within_s=30, what="a new stream")
                assert again is not None and again.outcome == ACCEPTED
            finally:
                await stream.close()
                await server.stop_all()
