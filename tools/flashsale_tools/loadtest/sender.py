"""The open-loop sender: follows the schedule in ticks, sends each tick's requests as one PurchaseBatch (and the
unary sample as Purchase calls that wait for their decision), and records when each request id was first sent."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence

import grpc

from flashsale.common import timeutil
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc
from flashsale_tools.loadtest import profile

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
ATTEMPTS = 4


@dataclasses.dataclass(frozen=True)
class Unary:
    """One unary Purchase of the sample: the client-measured time to its answer and the outcome answered."""

    request_id: str
    sent_at: int
    latency_ms: float
    outcome: str


@dataclasses.dataclass
class SendLog:
    """What the sender did: every send time, each request id's first send, failures and the unary sample."""

    send_times: list[int] = dataclasses.field(default_factory=list)
    first_sent: dict[str, int] = dataclasses.field(default_factory=dict)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    unary: list[Unary] = dataclasses.field(default_factory=list)
    taken_sends: int = 0
    max_lag_ms: float = 0.0

    def record(self, request_id: str, at: int) -> None:
        """Note one send of a request id."""
        self.send_times.append(at)
        self.first_sent.setdefault(request_id, at)


def _message(sale_id: str, item: profile.Planned, wait_ms: int = 0) -> sales_pb2.PurchaseRequest:
    return sales_pb2.PurchaseRequest(
        sale_id=sale_id, user_id=item.user_id, quantity=item.quantity, request_id=item.request_id, wait_ms=wait_ms
    )


class Sender:
    """Sends a schedule to the sales service over one channel."""

    def __init__(
        self,
        stub: sales_pb2_grpc.SalesServiceAsyncStub,
        sale_id: str,
        *,
        tick_ms: int = 10,
        wait_ms: int = 10_000,
        max_in_flight: int = 64,
        on_sent: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._stub = stub
        self._sale_id = sale_id
        self._tick_s = tick_ms / 1000.0
        self._wait_ms = wait_ms
        self._gate = asyncio.Semaphore(max_in_flight)
        self._on_sent = on_sent
        self.log = SendLog()

    async def _batch(self, items: Sequence[profile.Planned]) -> None:
        request = sales_pb2.PurchaseBatchRequest(requests=[_message(self._sale_id, i) for i in items])
        try:
            for attempt in range(ATTEMPTS):
                try:
                    await self._stub.PurchaseBatch(request, timeout=60.0)
                    self.log.taken_sends += len(items)
                    return
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in RETRIED or attempt == ATTEMPTS - 1:
                        for item in items:
                            self.log.failed[item.request_id] = f"{exc.code().name}: {exc.details()}"
                        log.warning("batch failed", extra={"code": exc.code().name, "details": exc.details()})
                        return
                    await asyncio.sleep(0.1 * 2**attempt)
        finally:
            self._gate.release()

    async def _unary(self, item: profile.Planned, sent_at: int) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            reply = await self._stub.Purchase(
                _message(self._sale_id, item, self._wait_ms), timeout=self._wait_ms / 1000 + 30.0
            )
        except grpc.aio.AioRpcError as exc:
            self.log.failed[item.request_id] = f"{exc.code().name}: {exc.details()}"
            return
        self.log.taken_sends += 1
        outcome = sales_pb2.PurchaseOutcome.Name(reply.outcome).removeprefix("PURCHASE_OUTCOME_").lower()
        self.log.unary.append(Unary(item.request_id, sent_at, (loop.time() - began) * 1000.0, outcome))

    async def _dispatch(self, due: Sequence[profile.Planned]) -> list[asyncio.Task[None]]:
        started = []
        bulk = [item for item in due if not item.unary]
        for first in range(0, len(bulk), MAX_BATCH):
            chunk = bulk[first : first + MAX_BATCH]
            await self._gate.acquire()
            now = timeutil.now_ms()
            for item in chunk:
                self.log.record(item.request_id, now)
            started.append(asyncio.create_task(self._batch(chunk)))
        for item in due:
            if item.unary:
                now = timeutil.now_ms()
                self.log.record(item.request_id, now)
                started.append(asyncio.create_task(self._unary(item, now)))
        self._on_sent(len(due))
        return started

    async def run(self, plan: Sequence[profile.Planned]) -> SendLog:
        """Send the schedule (its times counted from now); return once every call has been answered."""
        await follow(plan, self._tick_s, self.log, self._dispatch)
        return self.log


async def follow(
    plan: Sequence[profile.Planned],
    tick_s: float,
    log: SendLog,
    dispatch: Callable[[Sequence[profile.Planned]], Awaitable[list[asyncio.Task[None]]]],
) -> None:
    """Follow a schedule open loop (its times counted from now): each tick, hand the requests now due to
    `dispatch`, which starts their calls; note the sender's lag; return once every call started has ended."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: set[asyncio.Task[None]] = set()
    index = 0
    while index < len(plan):
        elapsed_ms = (loop.time() - start) * 1000.0
        end = index
        while end < len(plan) and plan[end].at_ms <= elapsed_ms:
            end += 1
        due, index = plan[index:end], end
        if due:
            log.max_lag_ms = max(log.max_lag_ms, elapsed_ms - due[0].at_ms)
            tasks.update(await dispatch(due))
            tasks = {t for t in tasks if not t.done()}
        if index < len(plan):
            ahead_s = plan[index].at_ms / 1000.0 - (loop.time() - start)
            await asyncio.sleep(max(tick_s, ahead_s))
    if tasks:
        await asyncio.gather(*tasks)
