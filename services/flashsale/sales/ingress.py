"""Taking purchase requests into the sales' request topics: routed by user (one record per partition per append),
concurrent single purchases coalesced per event-loop turn, and a purchase's wait for its decision."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence

from flashsale.common import database, errors, kafka, topics, tracing
from flashsale.sales import domain, pipeline_metrics, records, request_topics, sale_store, waiting

Taker = Callable[[Sequence[tuple[domain.Sale, domain.PurchaseRequest]], Sequence[str]], Awaitable[None]]


class Coalescer:
    """Takes the requests of concurrent single purchases together: every call made in one turn of the event
    loop goes out in one append (one record per partition), and each call returns once that append was
    acknowledged or raises what it raised. With traces on, each call's trace context goes with its request."""

    def __init__(self, take: Taker) -> None:
        self._take = take
        self._queued: list[tuple[domain.Sale, domain.PurchaseRequest]] = []
        self._traces: list[str] = []
        self._done: asyncio.Future[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def take(self, sale: domain.Sale, request: domain.PurchaseRequest) -> None:
        """Queue one request for the next append and wait for it."""
        if self._done is None:
            loop = asyncio.get_running_loop()
            self._done = loop.create_future()
            loop.call_soon(self._flush)
        done = self._done
        self._queued.append((sale, request))
        if tracing.active():
            self._traces.append(tracing.traceparent())
        await asyncio.shield(done)  # a caller that gives up does not cancel the others' append

    def _flush(self) -> None:
        queued, traces, done = self._queued, self._traces, self._done
        self._queued, self._traces, self._done = [], [], None
        assert done is not None
        task = asyncio.ensure_future(self._take(queued, traces))
        self._running.add(task)
        task.add_done_callback(functools.partial(self._settle, done))

    def _settle(self, done: asyncio.Future[None], task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if done.done():
            return
        if task.cancelled():
            done.set_exception(errors.TemporaryError("appending the requests was cancelled"))
        elif task.exception() is not None:
            done.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            done.set_result(None)
        if not done.cancelled():
            done.exception()  # retrieved: no "never retrieved" warning when every caller gave up


class Ingress:
    """Appends purchase requests to their sales' request topics."""

    def __init__(
        self,
        db: database.Database,
        producer: kafka.EventProducer,
        request_topics_: request_topics.RequestTopics,
        decisions: waiting.Decisions,
        telemetry: pipeline_metrics.PipelineMetrics | None = None,
    ) -> None:
        self._telemetry = telemetry
        self._db = db
        self._producer = producer
        self._topics = request_topics_
        self._decisions = decisions
        self._sales: dict[str, domain.Sale] = {}  # the sales taken into (their request topic exists)
        self._loading: dict[str, asyncio.Future[domain.Sale]] = {}
        self._coalescer = Coalescer(self.take)

    async def sale(self, sale_id: str) -> domain.Sale:
        """The sale, whose request topic exists (cached: its terms and split do not change once it takes requests),
        or NotFound."""
        sale = self._sales.get(sale_id)
        if sale is not None:
            return sale
        loading = self._loading.get(sale_id)
        if loading is None:  # one lookup per sale however many requests arrive at once
            loading = self._loading[sale_id] = asyncio.ensure_future(self._load(sale_id))
            loading.add_done_callback(lambda _: self._loading.pop(sale_id, None))
        return await asyncio.shield(loading)

    async def _load(self, sale_id: str) -> domain.Sale:
        found = await self._db.run(lambda tx: sale_store.get(tx, sale_id))
        if found is None:
            raise errors.NotFound("no such sale", "sale_id")
        await asyncio.to_thread(self._topics.ensure, topics.request_topic(sale_id), found.partitions)
        self._sales[sale_id] = found
        return found

    def forget(self, sale_id: str) -> None:
        """Read the sale again on its next request (its stock or split changed)."""
        self._sales.pop(sale_id, None)

    async def take(
        self, requests: Sequence[tuple[domain.Sale, domain.PurchaseRequest]], traces: Sequence[str] = ()
    ) -> None:
        """Append requests to their sales' request topics and wait for the broker: one record per partition
        (routed by user), holding that partition's requests in the order given (with their traceparents when
        `traces` holds one per request; the current one for all of them when traces are on and none are given)."""
        if tracing.active():
            await self._take_traced(requests, traces or [tracing.traceparent()] * len(requests))
        else:
            await self._append(requests, ())

    async def _take_traced(
        self, requests: Sequence[tuple[domain.Sale, domain.PurchaseRequest]], traces: Sequence[str]
    ) -> None:
        attributes = {"messaging.system": "kafka", "messaging.batch.message_count": len(requests)}
        links = tracing.links(traces)
        with tracing.span("append purchase requests", kind=tracing.PRODUCER, links=links, attributes=attributes):
            await self._append(requests, traces)

    async def _append(
        self, requests: Sequence[tuple[domain.Sale, domain.PurchaseRequest]], traces: Sequence[str]
    ) -> None:
        by_sale: dict[str, tuple[domain.Sale, list[domain.PurchaseRequest], list[str]]] = {}
        for index, (sale, req) in enumerate(requests):
            _, taken, theirs = by_sale.setdefault(sale.sale_id, (sale, [], []))
            taken.append(req)
            if traces:
                theirs.append(traces[index])
        items: list[tuple[str, int, str, bytes]] = []
        for sale, taken, theirs in by_sale.values():
            topic = topics.request_topic(sale.sale_id)
            grouped = records.group(sale.partitions, taken, theirs)
            items.extend((topic, partition, sale.sale_id, value) for partition, value in grouped)
        await self._producer.send_all(items)
        if self._telemetry is not None:
            self._telemetry.taken((sale_id, len(taken)) for sale_id, (_, taken, _) in by_sale.items())
        self._decisions.waiters.taken([req.request_id for _, req in requests])

    async def purchase(self, sale: domain.Sale, request: domain.PurchaseRequest, wait_ms: int) -> domain.Decision:
        """Take one request; wait up to wait_ms for its decision (PENDING when it is not decided by then).

        No lookup first: a retried request id flows through the log and its writer answers with the first
        decision (a retry describing another purchase is refused once that decision is known)."""
        waiters = self._decisions.waiters
        fut = waiters.wait(request.request_id) if wait_ms > 0 else None
        try:
            await self._coalescer.take(sale, request)
        except BaseException:
            if fut is not None:
                waiters.forget(request.request_id, fut)
            raise
        if fut is None:
            return waiting.pending(request)
        decided = await self._decisions.wait_for(request.request_id, fut, wait_ms / 1000)
        if decided is None:
            return waiting.pending(request)
        domain.check_retry(decided, request)
        return decided
