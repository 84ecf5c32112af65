"""The front of the partitioned pipeline: preparing a sale's partitions and topic, taking requests,
waiting for decisions, and the per-partition counters."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import confluent_kafka
import confluent_kafka.admin as kafka_admin

from flashsale.common import database, errors, kafka, outbox, topics
from flashsale.sales import domain, ledger_repository, messages, partitioning, records, repository
from flashsale_api.v1 import sales_pb2

log = logging.getLogger(__name__)

_REMEMBERED = 200_000
_FIRST_POLL_S = 1.0  # a waiting purchase reads the database after this long without its decision,
_POLL_S = 0.5  # then this often


class Waiters:
    """Calls waiting for decisions (resolved from the worker thread) and the request ids taken recently."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: dict[str, list[asyncio.Future[domain.Decision]]] = {}
        self._taken: collections.OrderedDict[str, None] = collections.OrderedDict()

    def taken(self, request_ids: Sequence[str]) -> None:
        """Remember request ids that were appended to a request topic (bounded)."""
        for rid in request_ids:
            self._taken[rid] = None
        while len(self._taken) > _REMEMBERED:
            self._taken.popitem(last=False)

    def was_taken(self, request_id: str) -> bool:
        """True when this process appended the request id recently."""
        return request_id in self._taken

    def wait(self, request_id: str) -> asyncio.Future[domain.Decision]:
        """A future resolved with the request's decision."""
        fut: asyncio.Future[domain.Decision] = self._loop.create_future()
        self._waiting.setdefault(request_id, []).append(fut)
        return fut

    def forget(self, request_id: str, fut: asyncio.Future[domain.Decision]) -> None:
        """Stop waiting (after a timeout)."""
        futs = self._waiting.get(request_id, [])
        if fut in futs:
            futs.remove(fut)
        if not futs:
            self._waiting.pop(request_id, None)

    def anyone_waiting(self) -> bool:
        """True while a call waits for a decision (safe to ask from any thread)."""
        return bool(self._waiting)

    def resolve_from_thread(self, decided: list[domain.Decision]) -> None:
        """Hand decisions over from the worker thread."""
        if self._waiting:
            self._loop.call_soon_threadsafe(self._resolve, decided)

    def _resolve(self, decided: list[domain.Decision]) -> None:
        for decision in decided:
            for fut in self._waiting.pop(decision.request_id, []):
                if not fut.done():
                    fut.set_result(decision)


Taker = Callable[[Sequence[tuple[domain.Sale, domain.PurchaseRequest]]], Awaitable[None]]


class Coalescer:
    """Takes the requests of concurrent single purchases together: every call made in one turn of the event
    loop goes out in one append (one record per partition), and each call returns once that append was
    acknowledged or raises what it raised."""

    def __init__(self, take: Taker) -> None:
        self._take = take
        self._queued: list[tuple[domain.Sale, domain.PurchaseRequest]] = []
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
        await asyncio.shield(done)  # a caller that gives up does not cancel the others' append

    def _flush(self) -> None:
        queued, done = self._queued, self._done
        self._queued, self._done = [], None
        assert done is not None
        task = asyncio.ensure_future(self._take(queued))
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


def pending(request: domain.PurchaseRequest) -> domain.Decision:
    """The answer for a request taken but not decided yet."""
    return domain.Decision(
        request.request_id, request.sale_id, request.user_id, request.quantity, domain.Outcome.PENDING, "", 0
    )


class Pipeline:
    """Prepares sales and feeds their request topics."""

    def __init__(self, db: database.Database, producer: kafka.EventProducer, bootstrap: str, waiters: Waiters) -> None:
        self._db = db
        self._producer = producer
        self._bootstrap = bootstrap
        self.waiters = waiters
        self._sales: dict[str, domain.Sale] = {}
        self._coalescer = Coalescer(self.take)
        self._watermarks: confluent_kafka.Consumer | None = None

    async def prepared_sale(self, sale_id: str) -> domain.Sale | None:
        """The sale when it is prepared (cached: a prepared sale's terms do not change), else None."""
        sale = self._sales.get(sale_id)
        if sale is not None:
            return sale
        found = await self._db.run(lambda tx: repository.get_sale(tx, sale_id))
        if found is None:
            raise errors.NotFound("no such sale", "sale_id")
        if found.partitions == 0:
            return None
        self._sales[sale_id] = found
        return found

    async def prepare(self, sale_id: str, partitions: int, reserve: int) -> ledger_repository.Prepared:
        """Split the stock and create the request topic (idempotent; the split may change until a decision)."""

        def work(tx: database.Tx) -> ledger_repository.Prepared:
            sale = repository.get_sale(tx, sale_id)
            if sale is None:
                raise errors.NotFound("no such sale", "sale_id")
            shares = partitioning.split(sale.stock, partitions, reserve)
            found = ledger_repository.prepared(tx, sale_id)
            if found is not None and len(found.partitions) == partitions and found.reserve == reserve:
                return found
            if found is not None and ledger_repository.any_decided(tx, sale_id):
                raise errors.FailedPrecondition("requests were decided already; the split cannot change", "partitions")
            if repository.get_decision_count(tx, sale_id):
                raise errors.FailedPrecondition("the sale took purchases before it was prepared", "sale_id")
            ledger_repository.store_preparation(tx, sale_id, shares, reserve)
            stored = ledger_repository.prepared(tx, sale_id)
            assert stored is not None
            return stored

        result = await self._db.run(work)
        await asyncio.to_thread(self._ensure_topic, topics.request_topic(sale_id), partitions)
        self._sales.pop(sale_id, None)
        log.info("sale prepared", extra={"sale_id": sale_id, "partitions": partitions, "reserve": reserve})
        return result

    async def restock(self, sale_id: str, stock: int) -> domain.Sale:
        """Set a sale's stock while none of it was taken, splitting it again when it is prepared; emits
        sale.updated in the same transaction. Requests refused so far (e.g. before the start) do not matter."""

        def work(tx: database.Tx) -> domain.Sale:
            sale = repository.get_sale(tx, sale_id)
            if sale is None:
                raise errors.NotFound("no such sale", "sale_id")
            sold = errors.FailedPrecondition("purchases were accepted already; the stock cannot change", "stock")
            found = ledger_repository.prepared(tx, sale_id)
            if found is not None:
                if found.reserve > stock:
                    raise errors.FailedPrecondition(f"must be at least the reserve ({found.reserve})", "stock")
                shares = partitioning.split(stock, len(found.partitions), found.reserve)
                if not ledger_repository.resplit_untouched(tx, sale_id, shares):
                    raise sold
            if not repository.set_untouched_stock(tx, sale_id, stock):
                raise sold
            changed = dataclasses.replace(sale, stock=stock, remaining=stock)
            outbox.add(tx, topics.SALES, messages.sale_updated(changed))
            return changed

        changed = await self._db.run(work)
        self._sales.pop(sale_id, None)
        return changed

    def _ensure_topic(self, topic: str, partitions: int) -> None:
        client = kafka_admin.AdminClient({"bootstrap.servers": self._bootstrap})
        meta = client.list_topics(timeout=30).topics.get(topic)
        if meta is None:
            new_topic = kafka_admin.NewTopic(  # type: ignore[attr-defined]
                topic,
                num_partitions=partitions,
                replication_factor=1,
                config={"message.timestamp.type": "LogAppendTime"},
            )
            for future in client.create_topics([new_topic], operation_timeout=30).values():
                try:
                    future.result()
                except confluent_kafka.KafkaException as exc:
                    if exc.args[0].code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                        raise errors.TemporaryError(f"cannot create {topic}: {exc}") from exc
            _wait_for_leaders(client, topic, partitions)
            return
        have = len(meta.partitions)
        if have < partitions:
            grow = kafka_admin.NewPartitions(topic, partitions)  # type: ignore[attr-defined]
            for future in client.create_partitions([grow], operation_timeout=30).values():
                future.result()
        elif have > partitions:
            raise errors.FailedPrecondition(f"the request topic has {have} partitions already", "partitions")

    async def take(self, requests: Sequence[tuple[domain.Sale, domain.PurchaseRequest]]) -> None:
        """Append requests to their sales' request topics and wait for the broker: one record per partition
        (routed by user), holding that partition's requests in the order given."""
        by_sale: dict[str, tuple[domain.Sale, list[domain.PurchaseRequest]]] = {}
        for sale, req in requests:
            by_sale.setdefault(sale.sale_id, (sale, []))[1].append(req)
        items: list[tuple[str, int, str, bytes]] = []
        for sale, taken in by_sale.values():
            topic = topics.request_topic(sale.sale_id)
            items.extend(
                (topic, partition, sale.sale_id, value) for partition, value in records.group(sale.partitions, taken)
            )
        await self._producer.send_all(items)
        self.waiters.taken([req.request_id for _, req in requests])

    async def purchase(self, sale: domain.Sale, request: domain.PurchaseRequest, wait_ms: int) -> domain.Decision:
        """Take one request; wait up to wait_ms for its decision (PENDING when it is not decided by then).

        No lookup first: a retried request id flows through the log and its writer answers with the first
        decision (a retry describing another purchase is refused once that decision is known)."""
        fut = self.waiters.wait(request.request_id) if wait_ms > 0 else None
        try:
            await self._coalescer.take(sale, request)
        except BaseException:
            if fut is not None:
                self.waiters.forget(request.request_id, fut)
            raise
        if fut is None:
            return pending(request)
        decided = await self._wait_for_decision(request.request_id, fut, wait_ms / 1000)
        if decided is None:
            return pending(request)
        domain.check_retry(decided, request)
        return decided

    async def _wait_for_decision(
        self, request_id: str, fut: asyncio.Future[domain.Decision], within_s: float
    ) -> domain.Decision | None:
        """The decision once handed over (by this process's worker or the decision feed), else, after a second,
        read from the database every half second in case its event was missed (e.g. while this process's feed
        joined its group); None when not decided within `within_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        step = min(_FIRST_POLL_S, within_s)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(fut), step)
                found = await self._db.run(lambda tx: repository.get_decision(tx, request_id))
                if found is not None:
                    return found
                left = deadline - loop.time()
                if left <= 0:
                    return None
                step = min(_POLL_S, left)
        finally:
            self.waiters.forget(request_id, fut)

    async def watch(
        self, request_id: str, found: domain.Decision | None, within_s: float
    ) -> AsyncIterator[domain.Decision]:
        """PENDING (when undecided), then the decision once it is made; polls as a fallback for other writers."""
        if found is not None:
            yield found
            return
        yield domain.Decision(request_id, "", "", 0, domain.Outcome.PENDING, "", 0)
        deadline = asyncio.get_running_loop().time() + within_s
        while asyncio.get_running_loop().time() < deadline:
            fut = self.waiters.wait(request_id)
            with contextlib.suppress(TimeoutError):
                yield await asyncio.wait_for(asyncio.shield(fut), 0.25)
                return
            self.waiters.forget(request_id, fut)
            decided = await self._db.run(lambda tx: repository.get_decision(tx, request_id))
            if decided is not None:
                yield decided
                return

    async def stats(self, sale: domain.Sale, base: domain.SaleStats) -> domain.SaleStats:
        """A prepared sale's counters with each partition's stock and the requests not decided yet."""
        topic = topics.request_topic(sale.sale_id)

        def work(tx: database.Tx) -> tuple[ledger_repository.Prepared | None, dict[int, int]]:
            return ledger_repository.prepared(tx, sale.sale_id), ledger_repository.all_offsets(tx, topic)

        found, committed = await self._db.run(work)
        if found is None:
            return base
        ends = await asyncio.to_thread(self._end_offsets, topic, [p.partition for p in found.partitions])
        parts = tuple(
            domain.PartitionStats(
                p.partition, p.stock, p.remaining, p.decided, committed.get(p.partition, 0), ends.get(p.partition, 0)
            )
            for p in found.partitions
        )
        return domain.SaleStats(
            sale_id=base.sale_id,
            stock=base.stock,
            reserved=base.reserved,
            released=base.released,
            remaining=sum(p.remaining for p in found.partitions) + found.pool_remaining,
            accepted_requests=base.accepted_requests,
            rejected_requests=base.rejected_requests,
            requests_pending=sum(max(0, p.end_offset - p.committed_offset) for p in parts),
            reserve_remaining=found.pool_remaining,
            partitions=parts,
        )

    def _end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        if self._watermarks is None:
            self._watermarks = confluent_kafka.Consumer(
                {"bootstrap.servers": self._bootstrap, "group.id": "flashsale-sales-stats", "enable.auto.commit": False}
            )
        ends = {}
        for p in partitions:
            for attempt in range(20):
                try:
                    _, high = self._watermarks.get_watermark_offsets(
                        confluent_kafka.TopicPartition(topic, p), timeout=10
                    )
                    ends[p] = int(high)
                    break
                except confluent_kafka.KafkaException as exc:  # e.g. a leader being elected
                    if attempt == 19:
                        raise errors.TemporaryError(f"cannot read the end of {topic}[{p}]: {exc}") from exc
                    time.sleep(0.1)
        return ends

    def close(self) -> None:
        """Release the Kafka client used for watermarks."""
        if self._watermarks is not None:
            self._watermarks.close()


def _wait_for_leaders(client: kafka_admin.AdminClient, topic: str, partitions: int, within_s: float = 30.0) -> None:
    """Wait until every partition of a new topic has a leader (its offsets can be read and written)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        meta = client.list_topics(topic, timeout=10).topics.get(topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) >= partitions
            and all(p.leader >= 0 and p.error is None for p in meta.partitions.values())
        ):
            return
        time.sleep(0.05)
    raise errors.TemporaryError(f"{topic} has no leader for every partition after {within_s}s")


def partitions_message(sale_id: str, found: ledger_repository.Prepared) -> sales_pb2.SalePartitions:
    """A prepared split as its gRPC message."""
    return sales_pb2.SalePartitions(
        sale_id=sale_id,
        topic=topics.request_topic(sale_id),
        partitions=[
            sales_pb2.PartitionStock(partition=p.partition, stock=p.stock, remaining=p.remaining)
            for p in found.partitions
        ],
        reserve=found.reserve,
        reserve_remaining=found.pool_remaining,
    )
