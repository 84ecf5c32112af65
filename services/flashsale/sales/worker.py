"""The sales worker: the single writer of each request-topic partition it is assigned.

It decides a partition's requests in log order, in batches, one database transaction per batch that
also stores the next offset; on assignment it seeks to the stored offset, so a crash replays to the
same decisions. Decisions are published after commit and re-published on takeover if that was cut short.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import confluent_kafka

from flashsale.common import database, errors, kafka, timeutil, topics
from flashsale.sales import domain, ledger, ledger_repository, messages, partitioning, records, repository

log = logging.getLogger(__name__)

GROUP = "flashsale-sales-workers"
Decided = Callable[[list[domain.Decision]], None]
_T = TypeVar("_T")
# A partition's messages wait for more (one transaction and fsync for more requests) while the consumer has more
# buffered, up to batch_max, or until the linger passed once nothing more is buffered; never longer than this past it.
_MAX_HOLD_S = 0.1
# Decisions per purchases.decided event at most: with ids of up to 64 characters an event stays below 400 kB.
_EVENT_DECISIONS = 2000


@dataclasses.dataclass
class _Assigned:
    sale: domain.Sale
    published: int


@dataclasses.dataclass
class _Pending:
    """A partition's messages read but not decided yet (gathered across consume calls into one transaction)."""

    due: float  # monotonic time by which they are decided even if the batch is not full
    offsets: list[int] = dataclasses.field(default_factory=list)  # of the records read, in log order
    requests: list[ledger.Request] = dataclasses.field(default_factory=list)  # the records' purchases, in order


@dataclasses.dataclass(frozen=True)
class _Batch:
    """A committed batch, to publish."""

    state: _Assigned
    sale: domain.Sale
    made: list[domain.Decision]
    earlier: list[domain.Decision]
    left: int
    start: int  # the request-topic offsets decided: [start, end)
    end: int


class SalesWorker:
    """Consumes every sale's request topic in one consumer group and decides its partitions' batches."""

    def __init__(
        self,
        db: database.Database,
        bootstrap: str,
        producer: kafka.EventProducer,
        on_decided: Decided,
        batch_max: int = 5000,
        group: str = GROUP,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        linger_s: float = 0.008,
    ) -> None:
        self._db = db
        self._producer = producer
        self._on_decided = on_decided
        self._batch_max = batch_max
        self._linger = linger_s
        self._pending: dict[tuple[str, int], _Pending] = {}
        self.assigned = threading.Event()  # set once the worker holds partitions (it is warm)
        self._clock = clock
        self._consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "topic.metadata.refresh.interval.ms": 1000,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
                "fetch.wait.max.ms": 20,
            }
        )
        self._assigned: dict[tuple[str, int], _Assigned] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sales-worker", daemon=True)

    def start(self) -> None:
        """Subscribe to every request topic and start deciding in the background."""
        self._consumer.subscribe([partitioning.TOPIC_PATTERN], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in hand and leave the group."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _on_assign(self, consumer: confluent_kafka.Consumer, parts: list[confluent_kafka.TopicPartition]) -> None:
        for tp in parts:
            self._pending.pop((tp.topic, tp.partition), None)  # read again from the stored offset
            sale_id = partitioning.sale_of_topic(tp.topic)
            decided, published = self._until_done(
                functools.partial(
                    self._db.run_sync,
                    functools.partial(ledger_repository.offsets, topic=tp.topic, partition=tp.partition),
                )
            )
            sale = self._until_done(
                functools.partial(self._db.run_sync, functools.partial(repository.get_sale, sale_id=sale_id))
            )
            tp.offset = decided
            if sale is None:
                log.warning("request topic of an unknown sale", extra={"topic": tp.topic})
                continue
            self._assigned[(tp.topic, tp.partition)] = _Assigned(sale, published)
            if published < decided:
                self._until_done(functools.partial(self._republish, sale, tp.topic, tp.partition, published, decided))
        consumer.assign(parts)
        if parts:
            self.assigned.set()
        log.info("partitions assigned", extra={"partitions": [f"{p.topic}[{p.partition}]" for p in parts]})

    def _until_done(self, step: Callable[[], _T]) -> _T:
        """Run a step of a rebalance until the database and Kafka let it through (a crash of the consumer thread
        here would leave the process alive and deciding nothing)."""
        backoff = 0.05
        while True:
            try:
                return step()
            except (errors.TemporaryError, confluent_kafka.KafkaException) as exc:
                log.warning("rebalance step failed; retrying", extra={"reason": str(exc)})
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _on_revoke(self, consumer: confluent_kafka.Consumer, parts: list[confluent_kafka.TopicPartition]) -> None:
        for tp in parts:
            self._assigned.pop((tp.topic, tp.partition), None)
            self._pending.pop((tp.topic, tp.partition), None)  # undecided: the next owner reads them again
        consumer.unassign()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                wait = 0.05 if not self._pending else max(0.0, self._next_due() - time.monotonic())
                msgs = self._consumer.consume(num_messages=self._batch_max, timeout=min(wait, 0.05))
                now = time.monotonic()
                for msg in msgs:
                    if msg.error() is not None:
                        continue
                    key = (msg.topic() or "", msg.partition() or 0)
                    held = self._pending.get(key)
                    if held is None:
                        held = self._pending[key] = _Pending(now + self._linger)
                    held.offsets.append(msg.offset() or 0)
                    held.requests.extend(_requests(msg))
                drained = len(msgs) < self._batch_max  # nothing more is buffered locally right now
                for key, held in list(self._pending.items()):
                    if (
                        len(held.requests) >= self._batch_max
                        or (drained and now >= held.due)
                        or now >= held.due + _MAX_HOLD_S
                    ):
                        del self._pending[key]
                        self._decide_with_retry(key[0], key[1], held)
        except Exception:
            log.exception("sales worker crashed")
            raise
        finally:
            self._consumer.close()

    def _next_due(self) -> float:
        return min(held.due for held in self._pending.values())

    def _decide_with_retry(self, topic: str, partition: int, batch: _Pending) -> None:
        backoff = 0.05
        decided: _Batch | None = None
        bulk = True
        while not self._stop.is_set():
            try:
                decided = self._decide(topic, partition, batch, bulk)
                break
            except ledger_repository.StockMoved:
                continue
            except database.Conflict as exc:  # a request id taken meanwhile elsewhere: insert row by row instead
                log.warning("bulk insert conflict; deciding again", extra={"topic": topic, "reason": str(exc)})
                bulk = False
                continue
            except ledger.Gap as gap:  # nothing stored: read the partition again from its stored offset
                log.warning("re-reading a partition", extra={"topic": topic, "partition": partition, "gap": str(gap)})
                self._pending.pop((topic, partition), None)
                self._consumer.seek(confluent_kafka.TopicPartition(topic, partition, gap.expected))
                return
            except errors.TemporaryError as exc:
                log.warning("batch failed; retrying", extra={"reason": str(exc), "topic": topic})
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)
        if decided is None:
            return  # stopping undecided: nothing was stored, the next owner starts from the stored offset
        # The batch is committed: from here on only publishing is retried (deciding it again would find nothing new
        # and its decisions would never be published).
        backoff = 0.05
        while not self._stop.is_set():
            try:
                self._publish(decided.sale, topic, partition, decided.start, decided.end, decided.made, decided.left)
                break
            except (errors.TemporaryError, confluent_kafka.KafkaException) as exc:
                log.warning("publishing decisions failed; retrying", extra={"reason": str(exc), "topic": topic})
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)
        else:
            return  # stopping unpublished: published_offset lags, the next owner re-publishes from there
        decided.state.published = decided.end
        self._on_decided(decided.made + decided.earlier)

    def _decide(self, topic: str, partition: int, batch: _Pending, bulk: bool) -> _Batch | None:
        state = self._assigned.get((topic, partition))
        if state is None:
            return None
        sale = state.sale
        terms = ledger.Terms(sale.sale_id, sale.starts_at, sale.ends_at, sale.per_user_limit)
        requests = batch.requests
        wanted = ledger.demand(terms, requests)
        self._refill(sale.sale_id, partition, wanted)
        end = batch.offsets[-1] + 1
        dialect = self._db.dialect

        def work(
            tx: database.Tx,
        ) -> tuple[ledger.BatchDecision, dict[str, str], list[domain.Decision], int, int, int]:
            # the partition row lock first: the stored offset read under it cannot be moved by another writer
            remaining = ledger_repository.lock_partition(tx, dialect, sale.sale_id, partition)
            start, _ = ledger_repository.offsets(tx, topic, partition)
            fresh = ledger.undecided(batch.offsets, requests, start)
            pool = ledger_repository.pool_remaining(tx, sale.sale_id)
            users = sorted({r.user_id for r in fresh})
            ids = [r.request_id for r in fresh]
            held = ledger_repository.held(tx, sale.sale_id, users, dialect)
            before = ledger_repository.decided_ids(tx, ids, dialect)
            decided = ledger.decide_batch(terms, fresh, remaining, pool, held, before)
            reservations = {v.request.request_id: uuid.uuid4().hex for v in decided.verdicts if v.outcome.accepted}
            now = self._clock()  # decided_at: when the batch is written, just before its commit
            ledger_repository.write_batch(
                tx,
                terms,
                partition,
                topic,
                decided,
                reservations,
                now,
                max(end, start),
                state.published,
                dialect,
                bulk,
            )
            earlier = [d for d in (repository.get_decision(tx, r.request_id) for r in decided.duplicates) if d]
            return decided, reservations, earlier, ledger_repository.total_remaining(tx, sale.sale_id), now, start

        decided, reservations, earlier, left, now, start = self._db.run_sync(work)
        made = [
            domain.Decision(
                request_id=v.request.request_id,
                sale_id=sale.sale_id,
                user_id=v.request.user_id,
                quantity=v.request.quantity,
                outcome=v.outcome,
                reservation_id=reservations.get(v.request.request_id, ""),
                decided_at=now,
            )
            for v in decided.verdicts
        ]
        return _Batch(state, sale, made, earlier, left, start, max(end, start))

    def _refill(self, sale_id: str, partition: int, wanted: int) -> None:
        """Before a batch that may need more than its partition and the pool hold, move other partitions' stock
        into the pool (one short transaction per donor, so a sale never reports sold out with stock elsewhere)."""
        if wanted <= 0:
            return
        found = self._db.run_sync(lambda tx: ledger_repository.prepared(tx, sale_id))
        if found is None:
            return
        mine = next((p.remaining for p in found.partitions if p.partition == partition), 0)
        short = wanted - mine - found.pool_remaining
        donors = sorted(
            (p for p in found.partitions if p.partition != partition and p.remaining > 0), key=lambda p: -p.remaining
        )
        for donor in donors:
            if short <= 0:
                return
            moved = self._db.run_sync(
                functools.partial(
                    ledger_repository.move_to_pool, sale_id=sale_id, partition=donor.partition, units=short
                )
            )
            short -= moved

    def _publish(
        self,
        sale: domain.Sale,
        topic: str,
        partition: int,
        start: int,
        end: int,
        made: Sequence[domain.Decision],
        left: int,
    ) -> None:
        """purchases.decided events for the decisions of offsets [start, end) of a partition (one per
        _EVENT_DECISIONS decisions, so an event stays well below Kafka's message size limit)."""
        occurred = timeutil.to_timestamp(self._clock())
        items = []
        for part, first in enumerate(range(0, len(made), _EVENT_DECISIONS)):
            event_id = messages.batch_event_id(topic, partition, start, end, part)
            env = messages.purchases_decided(sale, made[first : first + _EVENT_DECISIONS], left, event_id, occurred)
            items.append((topics.SALES, env.key, env.SerializeToString()))
        self._producer.produce_all(items)

    def _republish(self, sale: domain.Sale, topic: str, partition: int, start: int, end: int) -> None:
        rows = self._db.run_sync(
            lambda tx: ledger_repository.decisions_between(tx, sale.sale_id, partition, start, end)
        )
        left = self._db.run_sync(lambda tx: ledger_repository.total_remaining(tx, sale.sale_id))
        made = [
            domain.Decision(rid, sale.sale_id, user, qty, domain.Outcome(outcome), res, self._clock())
            for rid, user, qty, outcome, res in rows
        ]
        self._publish(sale, topic, partition, start, end, made, left)
        self._db.run_sync(lambda tx: ledger_repository.mark_published(tx, topic, partition, end))
        log.info("re-published decisions", extra={"topic": topic, "partition": partition, "count": len(made)})


def _requests(msg: confluent_kafka.Message) -> list[ledger.Request]:
    """The purchases of a request-topic record; none for a malformed record (logged; its offset is still passed)."""
    _, stamp = msg.timestamp()
    try:
        return records.decode(msg.value() or b"", msg.offset() or 0, int(stamp))
    except records.MalformedRecord as exc:
        log.error(
            "malformed request record skipped",
            extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(), "reason": str(exc)},
        )
        return []
