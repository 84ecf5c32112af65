"""The partitioned pipeline end to end on both backends: prepare, take requests, decide in batches, watch."""

from __future__ import annotations

import uuid
from collections import Counter

import grpc
import pytest
from grpc_errors import refused
from test_sales_service import TopicReader, buy, running, sale_request
from waiting import eventually

from flashsale.common import database, decided, outbox, timeutil, topics
from flashsale.common.settings import Settings
from flashsale.order import repository as order_repository
from flashsale.sales import bootstrap as sales_bootstrap
from flashsale.sales import partitioning
from flashsale_api.v1 import events_pb2, sales_pb2, sales_pb2_grpc
from flashsale_tools.verify import reader, rules

pytestmark = pytest.mark.integration

ACCEPTED = sales_pb2.PURCHASE_OUTCOME_ACCEPTED
SOLD_OUT = sales_pb2.PURCHASE_OUTCOME_SOLD_OUT
PENDING = sales_pb2.PURCHASE_OUTCOME_PENDING


async def _settled(sales: sales_pb2_grpc.SalesServiceAsyncStub, sale_id: str, total: int) -> sales_pb2.SaleStats:
    """Wait until every taken request of the sale is decided."""
    return await eventually(
        lambda: sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale_id)),
        until=lambda stats: stats.accepted_requests + stats.rejected_requests >= total and stats.requests_pending == 0,
        within_s=60,
        every_s=0.2,
        what=f"all {total} requests of sale {sale_id} decided",
    )


def _check(settings: Settings, sale_id: str) -> rules.Report:
    """Every invariant the checker can judge without the order service (no orders are expected here)."""
    orders = database.open_database(settings, "order")
    orders.migrate([outbox.MIGRATION, *order_repository.MIGRATIONS])
    orders.close()
    snapshot = reader.read_snapshot(settings, sale_id)
    return rules.check(snapshot, now_ms=timeutil.now_ms(), sale_finished=True, orders_settled=False)


async def test_prepare_splits_the_stock_and_is_idempotent(backend_settings: Settings) -> None:
    async with running(backend_settings) as p:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=30))
        first = await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=4, reserve=2))
        assert [s.stock for s in first.partitions] == [7, 7, 7, 7]
        assert (first.reserve, first.reserve_remaining, first.topic) == (2, 2, topics.request_topic(sale.sale_id))
        again = await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=4, reserve=2))
        assert again == first
        await refused(
            p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "partitions",
        )
        await refused(
            p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=2, reserve=31)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "reserve",
        )
        await refused(
            p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id="nope", partitions=2)),
            grpc.StatusCode.NOT_FOUND,
            "sale_id",
        )
        unchanged = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
        assert [s.stock for s in unchanged.partitions] == [7, 7, 7, 7]


async def test_a_crowd_in_batches_buys_exactly_the_stock(backend_settings: Settings) -> None:
    async with running(backend_settings) as p:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=40, per_user_limit=2))
        await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=4, reserve=4))
        events = TopicReader(p.settings.kafka_bootstrap, topics.SALES)
        users = [f"u{i}" for i in range(60)]
        requests = [buy(sale.sale_id, u) for u in users]
        requests += [buy(sale.sale_id, u, quantity=2) for u in users[:20]]  # second tries, some above the limit
        requests += [buy(sale.sale_id, r.user_id, request_id=r.request_id) for r in requests[:15]]  # retries
        half = len(requests) // 2
        taken = await p.sales.PurchaseBatch(sales_pb2.PurchaseBatchRequest(requests=requests[:half]))
        streamed = await p.sales.PurchaseStream(
            iter([sales_pb2.PurchaseBatchRequest(requests=requests[half:])])  # type: ignore[arg-type]
        )
        assert taken.submitted + streamed.submitted == len(requests)
        distinct = len({r.request_id for r in requests})
        stats = await _settled(p.sales, sale.sale_id, distinct)
        assert stats.accepted_requests + stats.rejected_requests == distinct
        assert stats.remaining == 0 and stats.reserve_remaining == 0
        assert stats.reserved == 40
        decisions = {
            r.request_id: await p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=r.request_id))
            for r in requests
        }
        held: Counter[str] = Counter()
        for d in decisions.values():
            if d.outcome == ACCEPTED:
                held[d.user_id] += d.quantity
        assert sum(held.values()) == 40
        assert max(held.values()) <= 2
        report = _check(p.settings, sale.sale_id)
        assert report.ok, [v for v in report.violations if v.count]
        published: dict[str, decided.Entry] = {}

        def count_published() -> int:
            """Read the topic to its end; how many of the sale's decisions were published so far."""
            for env in events.drain(timeout=1.0):
                if env.type == topics.PURCHASES_DECIDED:
                    body = events_pb2.PurchasesDecided()
                    env.payload.Unpack(body)
                    if body.sale_id == sale.sale_id:
                        assert env.event_id.startswith("decisions-flashsale.sale."), env.event_id
                        published.update((e.request_id, e) for e in decided.entries(body))
            return len(published)

        await eventually(
            count_published,
            until=lambda n: n >= distinct,
            within_s=30,
            what=f"all {distinct} decisions published (count so far)",
        )
        assert sum(1 for b in published.values() if b.accepted) == stats.accepted_requests


async def test_no_partition_sells_out_while_stock_is_left_elsewhere(backend_settings: Settings) -> None:
    async with running(backend_settings) as p:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=8, per_user_limit=1))
        await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=4))
        crowd = [u for u in (f"user-{i}" for i in range(500)) if partitioning.partition_of(u, 4) == 0][:12]
        await p.sales.PurchaseBatch(sales_pb2.PurchaseBatchRequest(requests=[buy(sale.sale_id, u) for u in crowd]))
        stats = await _settled(p.sales, sale.sale_id, len(crowd))
        assert (stats.accepted_requests, stats.rejected_requests, stats.remaining) == (8, 4, 0)
        report = _check(p.settings, sale.sale_id)
        assert report.ok, [v for v in report.violations if v.count]
        assert report.count("undersell") == 0


async def test_purchase_waits_for_its_decision_and_can_be_watched(backend_settings: Settings) -> None:
    async with running(backend_settings) as p:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=1, per_user_limit=1))
        await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=2))
        first = buy(sale.sale_id, "ann")
        first.wait_ms = 20_000
        decided = await p.sales.Purchase(first)
        assert decided.outcome == ACCEPTED and decided.reservation_id
        again = await p.sales.Purchase(first)
        assert again.reservation_id == decided.reservation_id
        late = buy(sale.sale_id, "bob")
        quick = await p.sales.Purchase(late)
        assert quick.outcome in (PENDING, SOLD_OUT)
        seen = [
            d.outcome async for d in p.sales.WatchPurchase(sales_pb2.GetPurchaseRequest(request_id=late.request_id))
        ]
        assert seen[-1] == SOLD_OUT
        got = await p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=late.request_id))
        assert got.outcome == SOLD_OUT


async def test_a_process_without_the_partition_answers_a_waiting_purchase(backend_settings: Settings) -> None:
    async with running(backend_settings) as p:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=5, per_user_limit=1))
        await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=2))
        warm = buy(sale.sale_id, "warm-up")
        warm.wait_ms = 20_000
        assert (await p.sales.Purchase(warm)).outcome == ACCEPTED  # the worker holds the partitions
        front_only = sales_bootstrap.build(
            p.settings.model_copy(update={"sales_addr": "127.0.0.1:0", "sales_worker": False})
        )
        async with front_only, grpc.aio.insecure_channel(f"127.0.0.1:{front_only.port}") as channel:
            front = sales_pb2_grpc.SalesServiceStub(channel)
            for user in ("ann", "bob", "cy"):  # every one is decided by the other process's worker
                request = buy(sale.sale_id, user)
                request.wait_ms = 20_000
                answer = await front.Purchase(request)
                assert answer.outcome == ACCEPTED and answer.reservation_id, answer
                stored = await p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=request.request_id))
                assert stored.reservation_id == answer.reservation_id


async def test_stock_can_change_until_the_first_decision(backend_settings: Settings) -> None:
    async with running(backend_settings) as p:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=10, per_user_limit=1))
        await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=4, reserve=2))
        more = await p.sales.UpdateSale(sales_pb2.UpdateSaleRequest(sale_id=sale.sale_id, stock=26))
        assert (more.stock, more.remaining) == (26, 26)
        stats = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
        assert [q.stock for q in stats.partitions] == [6, 6, 6, 6] and stats.reserve_remaining == 2
        assert (stats.stock, stats.remaining) == (26, 26)
        for request, code, field in (
            (sales_pb2.UpdateSaleRequest(sale_id=sale.sale_id, stock=0), grpc.StatusCode.INVALID_ARGUMENT, "stock"),
            (sales_pb2.UpdateSaleRequest(sale_id=sale.sale_id, stock=1), grpc.StatusCode.FAILED_PRECONDITION, "stock"),
            (sales_pb2.UpdateSaleRequest(sale_id="nope", stock=5), grpc.StatusCode.NOT_FOUND, "sale_id"),
            (sales_pb2.UpdateSaleRequest(sale_id="", stock=5), grpc.StatusCode.INVALID_ARGUMENT, "sale_id"),
        ):
            await refused(p.sales.UpdateSale(request), code, field)
        first = buy(sale.sale_id, "ann")
        first.wait_ms = 20_000
        assert (await p.sales.Purchase(first)).outcome == ACCEPTED
        await refused(
            p.sales.UpdateSale(sales_pb2.UpdateSaleRequest(sale_id=sale.sale_id, stock=30)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "stock",
        )
        after = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale.sale_id))
        assert (after.stock, after.remaining) == (26, 25)

        now = timeutil.now_ms()  # a request refused before the start takes nothing: the stock may still change
        later = await p.sales.CreateSale(
            sale_request(
                p.product_id,
                stock=4,
                starts_at=timeutil.to_timestamp(now + 3_600_000),
                ends_at=timeutil.to_timestamp(now + 7_200_000),
            )
        )
        await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=later.sale_id, partitions=2))
        early = buy(later.sale_id, "ann")
        early.wait_ms = 20_000
        assert (await p.sales.Purchase(early)).outcome == sales_pb2.PURCHASE_OUTCOME_NOT_STARTED
        assert (await p.sales.UpdateSale(sales_pb2.UpdateSaleRequest(sale_id=later.sale_id, stock=9))).stock == 9


async def test_bad_batches_are_refused_whole(backend_settings: Settings) -> None:
    async with running(backend_settings) as p:
        prepared = await p.sales.CreateSale(sale_request(p.product_id, stock=5, per_user_limit=1))
        await p.sales.PrepareSale(sales_pb2.PrepareSaleRequest(sale_id=prepared.sale_id, partitions=2))
        good = buy(prepared.sale_id, "ann")
        await refused(
            p.sales.PurchaseBatch(sales_pb2.PurchaseBatchRequest(requests=[good, buy(prepared.sale_id, "bob", 0)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "requests[1].quantity",
        )
        await refused(
            p.sales.PurchaseBatch(sales_pb2.PurchaseBatchRequest(requests=[good, buy(prepared.sale_id, "bob", 2)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "requests[1].quantity",
        )
        await refused(
            p.sales.PurchaseBatch(sales_pb2.PurchaseBatchRequest(requests=[good, buy(uuid.uuid4().hex, "cid")])),
            grpc.StatusCode.NOT_FOUND,
            "requests[1].sale_id",
        )
        await refused(
            p.sales.PurchaseBatch(sales_pb2.PurchaseBatchRequest()), grpc.StatusCode.INVALID_ARGUMENT, "requests"
        )
        streamed = [sales_pb2.PurchaseBatchRequest(requests=[good, buy(prepared.sale_id, "bob", 0)])]
        await refused(
            p.sales.PurchaseStream(iter(streamed)),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
            "requests[1].quantity",
        )
        await refused(
            p.sales.GetPurchase(sales_pb2.GetPurchaseRequest(request_id=good.request_id)),
            grpc.StatusCode.NOT_FOUND,
            "request_id",
        )
        stats = await p.sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=prepared.sale_id))
        assert stats.requests_pending == 0 and stats.remaining == 5
