"""Helpers of the fault tests: sales processes, a seeded crowd, feeding with retries, and the final checks."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import confluent_kafka
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from waiting import eventually

from flashsale.common import database, decided, outbox, timeutil, topics
from flashsale.common.settings import Settings
from flashsale.order import repository as order_repository
from flashsale_api.v1 import events_pb2, product_pb2, product_pb2_grpc, sales_pb2, sales_pb2_grpc
from flashsale_tools.platform import cache
from flashsale_tools.verify import model, reader, rules

MINUTE = 60_000
HOUR = 60 * MINUTE
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


@dataclasses.dataclass
class Proc:
    """One service process (its own session, so the whole group can be signalled) and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> str:
        """Its gRPC address."""
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process group: no shutdown hook runs, whatever is in hand is cut short."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM the process group (graceful stop); SIGKILL after timeout. The exit code."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.popen.wait()

    def log_records(self) -> list[dict[str, Any]]:
        """Its JSON log lines."""
        records = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    records.append(doc)
        return records

    def tail(self, lines: int = 40) -> str:
        """The end of its log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def assignments(self, topic: str) -> list[set[int]]:
        """The partitions of `topic` in each 'partitions assigned' line of its log, in order."""
        found = []
        for doc in self.log_records():
            if doc.get("msg") == "partitions assigned":
                raw = doc.get("partitions", "[]")
                names = ast.literal_eval(raw) if isinstance(raw, str) else raw
                found.append({int(n[len(topic) + 1 : -1]) for n in names if n.startswith(f"{topic}[")})
        return found


class Cluster:
    """Sales processes of one test against the fault fixtures' Kafka and PostgreSQL database."""

    def __init__(self, env: dict[str, str], settings: Settings, logs: Path) -> None:
        self.env = env
        self.settings = settings
        self.logs = logs
        self.procs: list[Proc] = []

    def start_sales(self, name: str, *, worker: bool = True) -> Proc:
        """Start a sales process (`worker=False`: ingress only, it decides nothing)."""
        port = cache.free_port()
        env = {
            **self.env,
            "FLASHSALE_SALES_ADDR": f"127.0.0.1:{port}",
            "FLASHSALE_SALES_WORKER": "true" if worker else "false",
        }
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "flashsale_tools.cli", "run", "sales"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, port, log)
        self.procs.append(proc)
        return proc

    async def started(self, name: str, *, worker: bool = True) -> Proc:
        """Start a sales process and wait until it serves."""
        proc = self.start_sales(name, worker=worker)
        await wait_healthy(proc)
        return proc

    def stop_all(self) -> None:
        """SIGTERM every process still running (SIGKILL the ones that hang)."""
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in self.procs:
            if proc.popen.poll() is None:
                try:
                    proc.popen.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def wait_healthy(proc: Proc, within_s: float = 60.0) -> None:
    """Poll the gRPC health check until the process serves."""
    async with grpc.aio.insecure_channel(proc.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            assert proc.alive(), f"{proc.name} exited with {proc.popen.returncode}"
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        try:
            await eventually(
                serving, within_s=within_s, every_s=0.1, ignoring=(grpc.RpcError,), what=f"{proc.name} healthy"
            )
        except AssertionError as exc:  # exited or not serving in time: show what it wrote
            raise AssertionError(f"{exc}:\n{proc.tail()}") from None


@dataclasses.dataclass(frozen=True)
class Crowd:
    """A seeded schedule of purchase requests, cut into batches."""

    requests: tuple[sales_pb2.PurchaseRequest, ...]
    batch_size: int

    @property
    def distinct(self) -> set[str]:
        """The request ids."""
        return {r.request_id for r in self.requests}

    def batches(self) -> list[list[sales_pb2.PurchaseRequest]]:
        """The requests in batches, in schedule order."""
        return [list(self.requests[i : i + self.batch_size]) for i in range(0, len(self.requests), self.batch_size)]

    def replayed(self, times: int, seed: int) -> list[list[sales_pb2.PurchaseRequest]]:
        """Every request `times` times, interleaved: each copy comes a random while after the previous one."""
        rng = random.Random(seed)
        slots: list[tuple[float, int, sales_pb2.PurchaseRequest]] = []
        for index, req in enumerate(self.requests):
            at = float(index)
            for copy in range(times):
                slots.append((at, copy, req))
                at += rng.uniform(1, len(self.requests) / 3)
        slots.sort(key=lambda s: (s[0], s[1]))
        flat = [req for _, _, req in slots]
        return [flat[i : i + self.batch_size] for i in range(0, len(flat), self.batch_size)]


def crowd(sale_id: str, *, seed: int, requests: int, users: int, stock: int, limit: int, batch_size: int) -> Crowd:
    """`requests` requests of `users` users (1 or 2 units each), drawn from a seeded generator.

    The crowd wants clearly more than the stock within the per-user limit, so the sale must sell out.
    """
    rng = random.Random(seed)
    names = [f"s{seed}-u{i}" for i in range(users)]
    made = []
    for i in range(requests):
        user = names[i] if i < users else rng.choice(names)
        made.append(
            sales_pb2.PurchaseRequest(
                sale_id=sale_id,
                user_id=user,
                quantity=rng.choice((1, 1, 2)),
                request_id=f"r{seed}-{i}-{uuid.uuid4().hex[:8]}",
            )
        )
    rng.shuffle(made)
    wanted: dict[str, int] = defaultdict(int)
    for r in made:
        if wanted[r.user_id] + r.quantity <= limit:
            wanted[r.user_id] += r.quantity
    assert sum(wanted.values()) > stock * 1.2, "the crowd must want more than the stock"
    return Crowd(tuple(made), batch_size)


async def open_sale(
    products: product_pb2_grpc.ProductServiceStub,
    sales: sales_pb2_grpc.SalesServiceStub,
    *,
    stock: int,
    limit: int,
    partitions: int,
    reserve: int,
) -> str:
    """Create a product and an open sale of it, prepare the sale; its id."""
    product = await products.CreateProduct(
        product_pb2.CreateProductRequest(name=f"Fault {uuid.uuid4().hex[:6]}", base_price_cents=2_000), timeout=10
    )
    now = timeutil.now_ms()
    sale = await sales.CreateSale(
        sales_pb2.CreateSaleRequest(
            product_id=product.product_id,
            price_cents=999,
            stock=stock,
            per_user_limit=limit,
            starts_at=timeutil.to_timestamp(now - MINUTE),
            ends_at=timeutil.to_timestamp(now + HOUR),
        ),
        timeout=10,
    )
    await sales.PrepareSale(
        sales_pb2.PrepareSaleRequest(sale_id=sale.sale_id, partitions=partitions, reserve=reserve), timeout=30
    )
    return str(sale.sale_id)


@dataclasses.dataclass
class FeedLog:
    """What feeding went through: batches sent, calls that failed and were retried."""

    sent: int = 0
    retried: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))


async def feed(
    sales: sales_pb2_grpc.SalesServiceStub,
    batches: Sequence[Sequence[sales_pb2.PurchaseRequest]],
    journal: FeedLog,
    *,
    pace_s: float = 0.03,
    within_s: float = 90.0,
) -> None:
    """Send batches in order with PurchaseBatch; a batch whose call fails is sent again until it is taken."""
    deadline = time.monotonic() + within_s
    for batch in batches:
        while True:
            try:
                reply = await sales.PurchaseBatch(sales_pb2.PurchaseBatchRequest(requests=batch), timeout=5)
                assert reply.submitted == len(batch)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in RETRYABLE, f"batch refused: {exc.code()} {exc.details()}"
                journal.retried += 1
                journal.errors[exc.code().name] += 1
                assert time.monotonic() < deadline, f"could not feed within {within_s}s: {exc.details()}"
                await asyncio.sleep(0.2)
        journal.sent += 1
        await asyncio.sleep(pace_s)


async def settled(
    sales: sales_pb2_grpc.SalesServiceStub, settings: Settings, sale_id: str, distinct: set[str], within_s: float = 90
) -> model.Snapshot:
    """Wait until nothing is pending on the request topic and every request id has a decision; the snapshot."""

    async def progress() -> model.Snapshot | sales_pb2.SaleStats | str:
        """The snapshot once everything is decided, else how far the sale got."""
        stats = await sales.GetSaleStats(sales_pb2.GetSaleStatsRequest(sale_id=sale_id), timeout=10)
        if stats.requests_pending != 0:
            return stats
        snap = await asyncio.to_thread(reader.read_snapshot, settings, sale_id)
        decided_ids = {d.request_id for d in snap.decisions}
        if decided_ids >= distinct and snap.pending_requests == 0:
            return snap
        return f"{len(decided_ids & distinct)} of {len(distinct)} decided; pending {snap.pending_requests}"

    snap = await eventually(
        progress,
        until=lambda got: isinstance(got, model.Snapshot),
        within_s=within_s,
        every_s=0.2,
        ignoring=(grpc.aio.AioRpcError,),
        what="the sale to settle",
    )
    assert isinstance(snap, model.Snapshot)
    decided_ids = {d.request_id for d in snap.decisions}
    assert decided_ids == distinct, f"decisions of unknown requests: {sorted(decided_ids - distinct)[:5]}"
    return snap


def migrate_orders(settings: Settings) -> None:
    """Create the order tables the checker reads (no order service runs in these tests: no orders)."""
    orders = database.open_database(settings, "order")
    try:
        orders.migrate([outbox.MIGRATION, *order_repository.MIGRATIONS])
    finally:
        orders.close()


def check_invariants(snap: model.Snapshot, stock: int) -> rules.Report:
    """The checker finds nothing and the sale sold exactly its stock."""
    report = rules.check(snap, now_ms=timeutil.now_ms(), sale_finished=True, orders_settled=False)
    assert report.ok, [v for v in report.violations if v.count]
    accepted = sum(d.quantity for d in snap.decisions if d.outcome == model.ACCEPTED)
    assert accepted == stock, f"accepted {accepted} units of {stock}"
    assert report.held == stock and report.remaining == 0
    # the same checker on the snapshot with one accepted request reserved twice must see the oversell
    twice = next(r for r in snap.reservations if r.held)
    tampered = dataclasses.replace(
        snap, reservations=(*snap.reservations, dataclasses.replace(twice, reservation_id=uuid.uuid4().hex))
    )
    caught = rules.check(tampered, now_ms=timeutil.now_ms(), sale_finished=True, orders_settled=False)
    assert caught.count("oversold") == twice.quantity and caught.count("duplicate_reservations") == 1
    return report


def published_decisions(bootstrap: str, sale_id: str, want: set[str], within_s: float = 60.0) -> dict[str, list[Any]]:
    """Every decision of the sale published on flashsale.sales: request id → [(event id, outcome), ...]."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"faults-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    found: dict[str, list[Any]] = defaultdict(list)
    try:
        meta = consumer.list_topics(topics.SALES, timeout=10).topics[topics.SALES]
        consumer.assign(
            [confluent_kafka.TopicPartition(topics.SALES, p, confluent_kafka.OFFSET_BEGINNING) for p in meta.partitions]
        )
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=5000, timeout=0.5)
            for msg in msgs:
                if msg.error() is not None:
                    continue
                env = events_pb2.EventEnvelope()
                env.ParseFromString(msg.value() or b"")
                if env.type != topics.PURCHASES_DECIDED:
                    continue
                body = events_pb2.PurchasesDecided()
                env.payload.Unpack(body)
                if body.sale_id == sale_id:
                    for entry in decided.entries(body):
                        found[entry.request_id].append(
                            (env.event_id, (entry.accepted, entry.reason, entry.reservation_id))
                        )
            if not msgs and set(found) >= want:
                break
    finally:
        consumer.close()
    return found


def check_published(bootstrap: str, snap: model.Snapshot) -> int:
    """Each decided request was published, in an event of its partition's batches, every copy with the decision
    stored; returns how many copies beyond the first were seen (a takeover re-publishes what it cannot confirm)."""
    decisions = {d.request_id: d for d in snap.decisions}
    found = published_decisions(bootstrap, snap.sale.sale_id, set(decisions))
    missing = set(decisions) - set(found)
    assert not missing, f"{len(missing)} decisions never published, e.g. {sorted(missing)[:3]}"
    assert set(found) == set(decisions), "events of requests that were not decided"
    copies = 0
    for rid, events in found.items():
        assert all(event_id.startswith("decisions-flashsale.sale.") for event_id, _ in events), events
        d = decisions[rid]
        stored = (d.outcome == model.ACCEPTED, "" if d.outcome == model.ACCEPTED else d.outcome, d.reservation_id)
        assert {outcome for _, outcome in events} == {stored}, (rid, events, stored)
        copies += len(events) - 1
    return copies


def request_topic(sale_id: str) -> str:
    """The request topic of a sale."""
    return topics.request_topic(sale_id)


@contextlib.asynccontextmanager
async def sales_client(proc: Proc) -> AsyncIterator[sales_pb2_grpc.SalesServiceStub]:
    """A client of one sales process."""
    async with grpc.aio.insecure_channel(proc.address) as channel:
        yield sales_pb2_grpc.SalesServiceStub(channel)
