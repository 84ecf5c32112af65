"""The sales worker: the single writer of each request-topic partition it is assigned.

It decides each partition's requests in log order, in batches; the batches of every partition ready at once
are decided in one database transaction (one commit and fsync) that also stores each partition's next offset.
On assignment it seeks to the stored offset, so a crash replays to the same decisions. Decisions are published
after the commit without holding up the next round; a failed publication, or one cut short by a crash, is
published again from the stored published offset.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import confluent_kafka

from flashsale.common import backoff, database, errors, kafka, timeutil, topics
from flashsale.sales import domain, ledger, ledger_repository, messages, records, repository, rounds

log = logging.getLogger(__name__)

GROUP = "flashsale-sales-workers"
Decided = Callable[[list[domain.Decision]], None]
_T = TypeVar("_T")
# A partition's messages wait for more (one transaction and fsync for more requests) while the consumer has more
# buffered, up to batch_max, or until the linger passed once nothing more is buffered; never longer than this past it.
_MAX_HOLD_S = 0.1
# Decisions per purchases.decided event at most: with ids of up to 64 characters an event stays below 400 kB.
_EVENT_DECISIONS = 2000
# A committed batch and the state of its partition, whose offsets advance as it is published.
_Publishing = tuple["_Assigned", rounds.Decided]


@dataclasses.dataclass
class _Assigned:
    """A partition held by this worker: its sale, and the offsets decided and published (acknowledged)."""

    sale: domain.Sale
    published: int
    decided: int
    republish: bool = False  # a publication failed: publish [published, decided) again before advancing


@dataclasses.dataclass
class _Pending:
    """A partition's messages read but not decided yet (gathered across consume calls into one transaction)."""

    due: float  # monotonic time by which they are decided even if the batch is not full
    offsets: list[int] = dataclasses.field(default_factory=list)  # of the records read, in log order
    requests: list[ledger.Request] = dataclasses.field(default_factory=list)  # the records' purchases, in order


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
        linger_s: float = 0.003,
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
        self._rounds = rounds.Rounds(db, clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sales-worker", daemon=True)

    def start(self) -> None:
        """Subscribe to every request topic and start deciding in the background."""
        self._consumer.subscribe([topics.REQUEST_PATTERN], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._thread.start()

    def wait(self) -> None:
        """Block until the worker's thread ended (after stop(), or when it crashed)."""
        self._thread.join()

    @property
    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Finish the batch in hand and leave the group."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _on_assign(self, consumer: confluent_kafka.Consumer, parts: list[confluent_kafka.TopicPartition]) -> None:
        for tp in parts:
            self._pending.pop((tp.topic, tp.partition), None)  # read again from the stored offset
            sale_id = topics.sale_of_topic(tp.topic)
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
            state = self._assigned[(tp.topic, tp.partition)] = _Assigned(sale, published, decided)
            if published < decided:
                self._until_done(functools.partial(self._republish, state, tp.topic, tp.partition))
        consumer.assign(parts)
        if parts:
            self.assigned.set()
        log.info("partitions assigned", extra={"partitions": [f"{p.topic}[{p.partition}]" for p in parts]})

    def _until_done(self, step: Callable[[], _T]) -> _T:
        """Run a step of a rebalance until the database and Kafka let it through (a crash of the consumer thread
        here would leave the process alive and deciding nothing)."""
        delays = backoff.Backoff()
        while True:
            try:
                return step()
            except (errors.TemporaryError, confluent_kafka.KafkaException) as exc:
                log.warning("rebalance step failed; retrying", extra={"reason": str(exc)})
            time.sleep(delays.next())

    def _on_revoke(self, consumer: confluent_kafka.Consumer, parts: list[confluent_kafka.TopicPartition]) -> None:
        for tp in parts:
            self._assigned.pop((tp.topic, tp.partition), None)
            self._pending.pop((tp.topic, tp.partition), None)  # undecided: the next owner reads them again
        consumer.unassign()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._republish_failed()
                wait = 0.05 if not self._pending else max(0.0, self._next_due() - time.monotonic())
                msgs = self._fetch(min(wait, 0.05))
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
                ready = {
                    key: held
                    for key, held in self._pending.items()
                    if len(held.requests) >= self._batch_max
                    or (drained and now >= held.due)
                    or now >= held.due + _MAX_HOLD_S
                }
                for key in ready:
                    del self._pending[key]
                if ready:
                    self._decide_round(ready)
        except Exception:
            log.exception("sales worker crashed")
            raise
        finally:
            self._consumer.close()

    def _fetch(self, timeout: float) -> list[confluent_kafka.Message]:
        """Up to batch_max records: waits at most `timeout` for the first one, then takes what is buffered
        (consume() alone would wait the whole timeout for a full batch)."""
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        return [first, *self._consumer.consume(num_messages=self._batch_max - 1, timeout=0)]

    def _next_due(self) -> float:
        return min(held.due for held in self._pending.values())

    def _decide_round(self, ready: dict[tuple[str, int], _Pending]) -> None:
        """Decide the ready batches of every partition in one transaction, then publish them."""
        batches = {
            key: rounds.Ready(state.sale, state.published, tuple(held.offsets), tuple(held.requests))
            for key, held in ready.items()
            if (state := self._assigned.get(key)) is not None
        }
        while batches:
            try:
                decided = self._rounds.decide(batches, self._stop)
                break
            except rounds.Gap as gap:  # read that partition again from its stored offset; decide the others
                topic, partition = gap.key
                log.warning("re-reading a partition", extra={"topic": topic, "partition": partition, "gap": str(gap)})
                del batches[gap.key]
                self._pending.pop(gap.key, None)
                self._consumer.seek(confluent_kafka.TopicPartition(topic, partition, gap.expected))
        else:
            return
        if decided is None:
            return  # stopping undecided (nothing was stored: the next owner starts from the stored offsets)
        published = []
        for batch in decided:
            state = self._assigned[(batch.topic, batch.partition)]
            state.sale = batch.sale
            published.append((state, batch))
        self._publish_round(published)

    def _events(self, batch: rounds.Decided) -> list[tuple[str, str, bytes]]:
        """purchases.decided events of a batch (one per _EVENT_DECISIONS decisions, so an event stays well below
        Kafka's message size limit)."""
        occurred = timeutil.to_timestamp(self._clock())
        items = []
        made = batch.made
        for part, first in enumerate(range(0, len(made), _EVENT_DECISIONS)):
            event_id = messages.batch_event_id(batch.topic, batch.partition, batch.start, batch.end, part)
            env = messages.purchases_decided(
                batch.sale, made[first : first + _EVENT_DECISIONS], batch.left, event_id, occurred
            )
            items.append((topics.SALES, env.key, env.SerializeToString()))
        return items

    def _publish_round(self, batches: list[_Publishing]) -> None:
        """Send a committed round's events without waiting; once Kafka acknowledged them all, the partitions'
        published offsets advance and the decisions are handed over (a failure marks them for re-publishing)."""
        for state, batch in batches:
            state.decided = max(state.decided, batch.end)
        items = [item for _, batch in batches for item in self._events(batch)]
        if not items:
            self._acknowledged(batches)
            return
        left = [len(items)]
        failed: list[confluent_kafka.KafkaError] = []
        lock = threading.Lock()

        def on_done(err: confluent_kafka.KafkaError | None) -> None:  # in the producer's thread
            with lock:
                if err is not None:
                    failed.append(err)
                left[0] -= 1
                if left[0]:
                    return
            if failed:
                log.warning("publishing decisions failed; publishing again", extra={"reason": str(failed[0])})
                for state, _ in batches:
                    state.republish = True
            else:
                self._acknowledged(batches)

        for topic, key, value in items:
            self._producer.produce(topic, key, value, on_done)

    def _acknowledged(self, batches: list[_Publishing]) -> None:
        for state, batch in batches:
            if not state.republish:  # published only advances over what was acknowledged, in order
                state.published = max(state.published, batch.end)
        self._on_decided([d for _, batch in batches for d in (*batch.made, *batch.earlier)])

    def _republish_failed(self) -> None:
        for (topic, partition), state in list(self._assigned.items()):
            if state.republish:
                try:
                    self._republish(state, topic, partition)
                except (errors.TemporaryError, confluent_kafka.KafkaException) as exc:
                    log.warning("re-publishing failed; retrying", extra={"reason": str(exc), "topic": topic})
                    self._stop.wait(0.5)

    def _republish(self, state: _Assigned, topic: str, partition: int) -> None:
        """Publish the decisions of [published, decided) again and wait for Kafka; record the published offset."""
        sale, start, end = state.sale, state.published, state.decided
        rows = self._db.run_sync(
            lambda tx: ledger_repository.decisions_between(tx, sale.sale_id, partition, start, end)
        )
        left = self._db.run_sync(lambda tx: ledger_repository.total_remaining(tx, sale.sale_id))
        made = [
            domain.Decision(rid, sale.sale_id, user, qty, domain.Outcome(outcome), res, self._clock())
            for rid, user, qty, outcome, res in rows
        ]
        self._producer.produce_all(
            self._events(rounds.Decided(topic, partition, sale, tuple(made), (), left, start, end))
        )
        self._db.run_sync(lambda tx: ledger_repository.mark_published(tx, topic, partition, end))
        state.republish = False
        state.published = max(state.published, end)
        self._on_decided(made)
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
