"""One load test against running sales and product services: create and prepare a sale, send the schedule,
wait until every request is decided (and, if asked, every reservation has its order), then check the sale."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

import grpc
from rich import console as rich_console
from rich import progress

from flashsale.common import timeutil
from flashsale.common.settings import Settings
from flashsale_api.v1 import product_pb2, product_pb2_grpc, sales_pb2, sales_pb2_grpc
from flashsale_tools.loadtest import cpu, metrics, profile, sender
from flashsale_tools.verify import model, reader, rules

log = logging.getLogger(__name__)

POLL_S = 0.25
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the platform is, and the settings the checker reads its databases and Kafka with."""

    sales_addr: str
    product_addr: str
    settings: Settings
    wait_orders: bool


@dataclasses.dataclass(frozen=True)
class SaleTerms:
    """The sale the load test runs."""

    stock: int
    limit: int
    partitions: int
    reserve: int
    price_cents: int = 9_900
    lead_s: float = 3.0
    open_s: float = 600.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Everything a load test produced: the sale, the schedule, the sends, the figures and the checker's report."""

    sale_id: str
    plan_size: int
    requests: int
    log: sender.SendLog
    summary: metrics.Summary
    check: rules.Report
    orders_settled: bool
    settle_s: float
    cpu: cpu.CpuUse | None = None  # what each process used from the first send until every request was decided


class LoadTestError(Exception):
    """The load test could not run (setup failed or the platform did not settle)."""


def bar(con: rich_console.Console) -> progress.Progress:
    """A progress bar with counts, rate and elapsed time."""
    return progress.Progress(
        progress.TextColumn("{task.description}"),
        progress.BarColumn(),
        progress.MofNCompleteColumn(),
        progress.TaskProgressColumn(),
        progress.TimeElapsedColumn(),
        console=con,
    )


async def create_sale(
    products: product_pb2_grpc.ProductServiceAsyncStub, sales: sales_pb2_grpc.SalesServiceAsyncStub, terms: SaleTerms
) -> sales_pb2.Sale:
    """A product and a prepared sale of it opening `lead_s` from now."""
    product = await products.CreateProduct(
        product_pb2.CreateProductRequest(
            name="Load test item", description="flashsale loadtest", base_price_cents=19_900
        ),
        timeout=30,
    )
    starts = timeutil.now_ms() + round(terms.lead_s * 1000)
    sale = await sales.CreateSale(
        sales_pb2.CreateSaleRequest(
            product_id=product.product_id,
            price_cents=terms.price_cents,
            stock=terms.stock,
            per_user_limit=terms.limit,
            starts_at=timeutil.to_timestamp(starts),
            ends_at=timeutil.to_timestamp(starts + round(terms.open_s * 1000)),
        ),
        timeout=30,
    )
    await sales.PrepareSale(
        sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=terms.partitions, reserve=terms.reserve),
        timeout=60,
    )
    return sale


async def wait_decided(
    sales: sales_pb2_grpc.SalesServiceAsyncStub,
    sale_id: str,
    timeout_s: float,
    on_progress: Callable[[int], None],
) -> sales_pb2.SaleStats:
    """Poll GetSaleStats until no request of the sale waits on its topic; report how many were decided."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale_id), timeout=30)
        on_progress(sum(p.committed_offset for p in stats.partitions))
        if stats.requests_pending == 0:
            return stats
        if time.monotonic() > deadline:
            raise LoadTestError(f"{stats.requests_pending} requests still pending after {timeout_s:.0f}s")
        await asyncio.sleep(POLL_S)


def settled_snapshot(
    settings: Settings, sale_id: str, wait_orders: bool, timeout_s: float
) -> tuple[model.Snapshot, bool]:
    """The sale's snapshot once nothing is pending (and, with wait_orders, every reservation has its order);
    the flag says whether it settled in time."""
    deadline = time.monotonic() + timeout_s
    with reader.Reader(settings) as source:
        while True:
            snapshot = source.snapshot(sale_id)
            if not wait_orders:
                return snapshot, snapshot.pending_requests == 0
            if rules.is_settled(snapshot, now_ms=timeutil.now_ms()):
                return snapshot, True
            if time.monotonic() > deadline:
                log.warning("sale not settled in time", extra={"sale_id": sale_id})
                return snapshot, False
            time.sleep(POLL_S * 2)


def decisions(snapshot: model.Snapshot) -> list[metrics.Decided]:
    """The snapshot's decisions as the metrics need them."""
    return [metrics.Decided(d.request_id, d.outcome, d.decided_at, d.arrived_at) for d in snapshot.decisions]


async def drive(
    target: Target,
    terms: SaleTerms,
    spec: profile.LoadSpec,
    con: rich_console.Console,
    *,
    tick_ms: int,
    wait_ms: int,
    settle_timeout_s: float,
    meter: cpu.Meter | None = None,
) -> tuple[str, tuple[profile.Planned, ...], sender.SendLog, cpu.CpuUse | None]:
    """Create the sale, send the load with a progress bar, and wait until every request is decided (metering
    the processes' CPU from the first send until then, when given a meter)."""
    async with (
        grpc.aio.insecure_channel(target.sales_addr, options=CHANNEL_OPTIONS) as sales_channel,
        grpc.aio.insecure_channel(target.product_addr, options=CHANNEL_OPTIONS) as product_channel,
    ):
        sales = sales_pb2_grpc.SalesServiceStub(sales_channel)
        products = product_pb2_grpc.ProductServiceStub(product_channel)
        try:
            sale = await create_sale(products, sales, terms)
        except grpc.aio.AioRpcError as exc:
            raise LoadTestError(f"cannot create the sale: {exc.code().name}: {exc.details()}") from exc
        plan = profile.build(dataclasses.replace(spec, tag=f"lt{sale.sale_id[:10]}"))
        con.print(
            f"sale {sale.sale_id}: stock {terms.stock}, limit {terms.limit}, {terms.partitions} partitions, "
            f"reserve {terms.reserve}; {spec.users} shoppers send {len(plan)} requests ({spec.profile})"
        )
        opens = timeutil.from_timestamp(sale.starts_at)
        await asyncio.sleep(max(0.0, (opens - timeutil.now_ms()) / 1000 + 0.2))
        if meter is not None:
            meter.start()
        with bar(con) as shown:
            task = shown.add_task("sending", total=len(plan))
            send = sender.Sender(
                sales, sale.sale_id, tick_ms=tick_ms, wait_ms=wait_ms, on_sent=lambda n: shown.advance(task, n)
            )
            sent = await send.run(plan)
        with bar(con) as shown:
            task = shown.add_task("deciding", total=sent.taken_sends)
            try:
                await wait_decided(
                    sales,
                    sale.sale_id,
                    settle_timeout_s,
                    lambda n: shown.update(task, completed=min(n, sent.taken_sends)),
                )
            except grpc.aio.AioRpcError as exc:
                raise LoadTestError(f"cannot read the sale's stats: {exc.code().name}: {exc.details()}") from exc
        return sale.sale_id, plan, sent, meter.stop() if meter is not None else None


def run(
    target: Target,
    terms: SaleTerms,
    spec: profile.LoadSpec,
    con: rich_console.Console,
    *,
    tick_ms: int = 10,
    wait_ms: int = 10_000,
    settle_timeout_s: float = 300.0,
    fairness_tolerance_ms: int = rules.DEFAULT_FAIRNESS_TOLERANCE_MS,
    meter: cpu.Meter | None = None,
) -> Outcome:
    """The whole load test against a running platform."""
    sale_id, plan, sent, used = asyncio.run(
        drive(
            target, terms, spec, con, tick_ms=tick_ms, wait_ms=wait_ms, settle_timeout_s=settle_timeout_s, meter=meter
        )
    )
    outcome = judge(
        target.settings, target.wait_orders, sale_id, plan, sent, con, settle_timeout_s, fairness_tolerance_ms
    )
    return dataclasses.replace(outcome, cpu=used)


def judge(
    settings: Settings,
    wait_orders: bool,
    sale_id: str,
    plan: tuple[profile.Planned, ...],
    sent: sender.SendLog,
    con: rich_console.Console,
    settle_timeout_s: float,
    fairness_tolerance_ms: int,
) -> Outcome:
    """Once the requests are decided: wait for the orders (when asked), check the sale, sum the figures up."""
    began = time.monotonic()
    if wait_orders:
        con.print("waiting until every reservation has its order…")
    snapshot, settled = settled_snapshot(settings, sale_id, wait_orders, settle_timeout_s)
    settle_s = time.monotonic() - began
    check = rules.check(
        snapshot,
        now_ms=timeutil.now_ms(),
        sale_finished=True,
        orders_settled=wait_orders,
        fairness_tolerance_ms=fairness_tolerance_ms,
    )
    summary = metrics.summarize(sent.send_times, sent.first_sent, decisions(snapshot))
    return Outcome(sale_id, len(plan), profile.distinct_requests(plan), sent, summary, check, settled, settle_s)
