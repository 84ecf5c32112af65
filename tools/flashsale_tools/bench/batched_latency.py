"""Request→decision latency through the batch ingress at a fixed offered rate (open loop).

Requests are scheduled uniformly at the offered rate; every TICK_S the ones scheduled in that tick go out in
one PurchaseBatch call (the way a gateway coalesces its shoppers), without waiting for earlier calls. A request
counts as decided when its decision is read back from the purchases.decided events on Kafka, so the latency
covers appending, deciding, committing and publishing; it is measured from the request's scheduled time, so the
wait for its tick's call is included. A request not decided within WAIT_S counts as WAIT_S.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import confluent_kafka
import grpc

from flashsale.common import events, topics
from flashsale_api.v1 import events_pb2, sales_pb2
from flashsale_tools.bench import core, sale_fixture

TICK_S = 0.01
WAIT_S = 10.0
_BATCH_METHOD = "/flashsale.v1.SalesService/PurchaseBatch"


class DecisionWatcher:
    """Reads flashsale.sales from its current end in a thread; records when each decision of a sale arrives."""

    def __init__(self, bootstrap: str, sale_id: str) -> None:
        self._sale_id = sale_id
        self._consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-latency-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        meta = self._consumer.list_topics(topics.SALES, timeout=10).topics[topics.SALES]
        ends = []
        for p in meta.partitions:
            _, high = self._consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topics.SALES, p), timeout=10)
            ends.append(confluent_kafka.TopicPartition(topics.SALES, p, high))
        self._consumer.assign(ends)
        self.seen: dict[str, float] = {}
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-decision-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in self._consumer.consume(num_messages=1000, timeout=0.05):
                    if msg.error() is not None:
                        continue
                    arrived = time.perf_counter()
                    env = events.decode(msg.value())
                    if env.type != topics.PURCHASES_DECIDED or env.key != self._sale_id:
                        continue
                    body = events_pb2.PurchasesDecided()
                    events.unpack(env, body)
                    with self._lock:
                        for rid in body.request_ids:
                            self.seen.setdefault(rid, arrived)
                        self._lock.notify_all()
        finally:
            self._consumer.close()

    def wait_for(self, request_ids: Sequence[str], timeout_s: float) -> None:
        """Block until every one of these request ids was seen decided, or timeout_s passed."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not all(rid in self.seen for rid in request_ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._lock.wait(left)

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join()


@dataclasses.dataclass(frozen=True)
class Latencies:
    """Request→decision latencies (ms) of one open-loop run, how many were not decided in WAIT_S, and how far the
    sender fell behind its schedule at worst."""

    latencies_ms: tuple[float, ...]
    undecided: int
    late_ms: float


async def open_loop(
    channel: grpc.aio.Channel,
    sale: sale_fixture.BenchSale,
    workload: core.Workload,
    first: int,
    count: int,
    rate_per_s: float,
) -> Latencies:
    """Offer purchases first … first+count-1 of the workload at rate_per_s through PurchaseBatch calls."""
    call = channel.unary_unary(
        _BATCH_METHOD, request_serializer=None, response_deserializer=sales_pb2.PurchaseBatchResponse.FromString
    )
    watcher = await asyncio.to_thread(DecisionWatcher, sale.bootstrap, sale.sale_id)
    ids = [sale.request_id(i) for i in range(first, first + count)]
    calls: list[asyncio.Future[Any]] = []
    late = 0.0
    try:
        start = time.perf_counter()
        sent = ticks = 0
        while sent < count:
            ticks += 1
            tick_end = start + ticks * TICK_S
            wait = tick_end - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late = max(late, -wait * 1000.0)
            due = min(count, int(ticks * TICK_S * rate_per_s))
            if due > sent:
                batch = sales_pb2.PurchaseBatchRequest(
                    requests=[sale.request(workload, first + i) for i in range(sent, due)]
                )
                calls.append(asyncio.ensure_future(call(batch.SerializeToString(), timeout=30)))
                sent = due
        await asyncio.gather(*calls)
        await asyncio.to_thread(watcher.wait_for, ids, WAIT_S)
    finally:
        await asyncio.to_thread(watcher.close)
    latencies = []
    undecided = 0
    for index, rid in enumerate(ids):
        scheduled = start + index / rate_per_s
        arrived = watcher.seen.get(rid)
        if arrived is None:
            undecided += 1
            latencies.append(WAIT_S * 1000.0)
        else:
            latencies.append(min(WAIT_S, arrived - scheduled) * 1000.0)
    return Latencies(tuple(latencies), undecided, late)
