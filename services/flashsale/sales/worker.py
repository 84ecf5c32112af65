"""The sales worker: the single writer of each request-topic partition it is assigned.

It reads every sale's request topic in one consumer group, gathers each partition's records into batches and
hands the batches ready at once to a round (`rounds`), which decides and stores them in one transaction with each
partition's next offset. On assignment it seeks to the stored offset, so a crash replays to the same decisions.
Committed rounds go to the `publisher`; a failed publication, or one cut short by a crash, is published again
from the stored published offset.

Who owns what: everything here (the assignment, the batches, each partition's offsets) belongs to the worker's
thread; Kafka calls the rebalance callbacks in that same thread, inside poll/consume. The publisher's callbacks
only queue acknowledgements, which this thread applies at the top of each loop.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import confluent_kafka

from flashsale.common import backoff, database, errors, kafka, kafka_metrics, kafka_security, topics, tracing
from flashsale.sales import domain, ledger, offset_store, pipeline_metrics, publisher, records, rounds, sale_store

log = logging.getLogger(__name__)

GROUP = "flashsale-sales-workers"
_T = TypeVar("_T")
# A partition's messages wait for more (one transaction and fsync for more requests) while the consumer has more
# buffered, up to batch_max, or until the linger passed once nothing more is buffered; never longer than this past it.
_MAX_HOLD_S = 0.1
_SETTLE_S = 5.0  # at most this long a revocation waits for Kafka's answers about decisions in flight
# Requests a round decides at most, after the worker was idle: the first decisions of a sale (or after a lull) come
# out of a small transaction; each committed round may hold four times as many while work waits, up to batch_max
# for each partition held.
FIRST_ROUND = 256


@dataclasses.dataclass
class _Assigned:
    """A partition held by this worker: its sale, and the offsets decided and published (acknowledged)."""

    sale: domain.Sale
    published: int
    decided: int
    republish: bool = False  # a publication failed: publish [published, decided) again before advancing


@dataclasses.dataclass
class Pending:
    """A partition's messages read but not decided yet (gathered across consume calls into one transaction)."""

    due: float  # monotonic time by which they are decided even if the batch is not full
    offsets: list[int] = dataclasses.field(default_factory=list)  # of the records read, in log order
    requests: list[ledger.Request] = dataclasses.field(default_factory=list)  # the records' purchases, in order
    traces: list[str] = dataclasses.field(default_factory=list)  # their traceparents (when traces are on)


class SalesWorker:
    """Consumes every sale's request topic in one consumer group and decides its partitions' batches."""

    def __init__(
        self,
        db: database.Database,
        bootstrap: str,
        producer: kafka.EventProducer,
        on_decided: publisher.Decided,
        batch_max: int = 5000,
        group: str = GROUP,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        linger_s: float = 0.003,
        telemetry: pipeline_metrics.PipelineMetrics | None = None,
        counted: kafka_metrics.KafkaMetrics | None = None,
        security: kafka_security.Security | None = None,
    ) -> None:
        self._telemetry = telemetry
        self._counted = counted
        self._db = db
        self._batch_max = batch_max
        self._linger = linger_s
        self._pending: dict[rounds.Key, Pending] = {}
        self._budget = FIRST_ROUND  # requests the next round may take (see FIRST_ROUND)
        self._unread: collections.deque[confluent_kafka.Message] = collections.deque()  # fetched, not batched yet
        self._more = False  # the last fetch was full: the consumer may have more buffered
        self._assigned: dict[rounds.Key, _Assigned] = {}
        self.assigned = threading.Event()  # set once the worker holds partitions (it is warm)
        # when it read its first record and committed its first round (time.perf_counter(); None until then)
        self.first_read: float | None = None
        self.first_decided: float | None = None
        self._rounds = rounds.Rounds(db, clock, telemetry)
        self._publisher: publisher.Publisher[_Assigned] = publisher.Publisher(db, producer, on_decided, clock)
        stats = {} if counted is None else {
            "statistics.interval.ms": kafka_metrics.STATS_INTERVAL_MS,
            "stats_cb": lambda raw: counted.statistics(group, raw),
        }  # fmt: skip
        self._group = group
        self._consumer = confluent_kafka.Consumer(
            {
                **stats,
                **(security or {}),
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
            self._forget((tp.topic, tp.partition))  # read again from the stored offset
            sale_id = topics.sale_of_topic(tp.topic)
            decided, published = self._until_done(
                functools.partial(
                    self._db.run_sync, functools.partial(offset_store.of, topic=tp.topic, partition=tp.partition)
                )
            )
            sale = self._until_done(
                functools.partial(self._db.run_sync, functools.partial(sale_store.get, sale_id=sale_id))
            )
            tp.offset = decided
            if sale is None:
                log.warning("request topic of an unknown sale", extra={"topic": tp.topic})
                continue
            state = self._assigned[(tp.topic, tp.partition)] = _Assigned(sale, published, decided)
            if published < decided:
                self._until_done(functools.partial(self._republish, state, tp.topic, tp.partition))
        consumer.assign(parts)
        self._report_holding()
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
        # what Kafka acknowledged is stored as published, so the next owner does not publish it again
        self._publisher.settle(_SETTLE_S)
        self._apply_acks()
        published = []
        for tp in parts:
            state = self._assigned.pop((tp.topic, tp.partition), None)
            self._forget((tp.topic, tp.partition))  # undecided: the next owner reads them again
            if state is not None and not state.republish:
                published.append((tp.topic, tp.partition, state.published))
        try:
            self._db.run_sync(functools.partial(_mark_published, published))
        except errors.TemporaryError as exc:  # the next owner publishes those decisions again: no harm
            log.warning("published offsets not stored at revocation", extra={"reason": str(exc)})
        consumer.unassign()
        self._report_holding()

    def _report_holding(self) -> None:
        if self._telemetry is not None:
            per_sale = collections.Counter(state.sale.sale_id for state in self._assigned.values())
            self._telemetry.holding(dict(per_sale))

    def _run(self) -> None:
        traced = tracing.active()
        try:
            while not self._stop.is_set():
                self._apply_acks()
                self._republish_failed()
                queued = sum(len(held.requests) for held in self._pending.values())
                if not self._unread and queued < self._most():  # read ahead of the rounds by one round at most
                    wait = 0.05 if not self._pending else max(0.0, self._next_due() - time.monotonic())
                    self._read(self._fetch(min(wait, 0.05)))
                now = time.monotonic()
                queued += self._take_unread(now, self._budget - queued, traced)
                if not self._unread and not self._pending and not self._more:
                    self._budget = FIRST_ROUND  # idle: the next round's first decisions come out quickly
                ready = self._take_ready(now, queued)
                if ready:
                    self._budget = min(self._most(), self._budget * 4)
                if ready and traced:
                    self._decide_traced(ready)
                elif ready:
                    self._decide_round(ready)
        except Exception:
            log.exception("sales worker crashed")
            raise
        finally:
            self._consumer.close()

    def _read(self, msgs: list[confluent_kafka.Message]) -> None:
        """Queue fetched records to be taken into batches (counted as consumed)."""
        self._more = len(msgs) >= self._batch_max  # the consumer may have more buffered
        if msgs and self.first_read is None:
            self.first_read = time.perf_counter()
        if msgs and self._counted is not None:
            read = (m.topic() or "" for m in msgs if m.error() is None)  # not an error event's
            for topic, count in collections.Counter(read).items():
                self._counted.consumed(self._group, topic, count)
        self._unread.extend(msgs)

    def _take_unread(self, now: float, room: int, traced: bool) -> int:
        """Decode queued records into their partitions' batches until they hold `room` more requests (at least
        one record); the number of requests taken."""
        taken = 0
        while self._unread and (taken < room or taken == 0):
            msg = self._unread.popleft()
            if msg.error() is not None:
                continue
            key = (msg.topic() or "", msg.partition() or 0)
            held = self._pending.get(key)
            if held is None:
                held = self._pending[key] = Pending(now + self._linger)
            requests = _requests(msg)
            held.offsets.append(msg.offset() or 0)
            held.requests.extend(requests)
            taken += len(requests)
            if traced:
                held.traces.extend(records.traceparents(msg.value() or b""))
        return taken

    def _forget(self, key: rounds.Key) -> None:
        """Drop what was read of a partition and not decided (it is read again from its stored offset)."""
        self._pending.pop(key, None)
        if any((m.topic(), m.partition()) == key for m in self._unread):
            self._unread = collections.deque(m for m in self._unread if (m.topic(), m.partition()) != key)

    def _fetch(self, timeout: float) -> list[confluent_kafka.Message]:
        """Up to batch_max records: waits at most `timeout` for the first one, then takes what is buffered
        (consume() alone would wait the whole timeout for a full batch)."""
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        return [first, *self._consumer.consume(num_messages=self._batch_max - 1, timeout=0)]

    def _most(self) -> int:
        """Requests a round may hold at most: batch_max for each partition held."""
        return self._batch_max * max(1, len(self._assigned))

    def _take_ready(self, now: float, queued: int) -> dict[rounds.Key, Pending]:
        """The partitions' batches of the next round, taken out of the pending ones: all of them once they fill
        the round's budget, else those full or due (due ones wait while more is buffered, up to _MAX_HOLD_S), the
        longest waiting first, up to the budget of requests (whole records; at least one)."""
        full = queued >= self._budget
        drained = not self._unread and not self._more  # nothing more is buffered locally right now
        due = sorted(
            (held.due, key)
            for key, held in self._pending.items()
            if full
            or len(held.requests) >= self._batch_max
            or (drained and now >= held.due)
            or now >= held.due + _MAX_HOLD_S
        )
        ready: dict[rounds.Key, Pending] = {}
        room = self._budget
        for _, key in due:
            if room <= 0:
                break
            held = self._pending.pop(key)
            ready[key], rest = split(held, room)
            room -= len(ready[key].requests)
            if rest is not None:
                self._pending[key] = rest
        return ready

    def _next_due(self) -> float:
        return min(held.due for held in self._pending.values())

    def _decide_traced(self, ready: dict[rounds.Key, Pending]) -> None:
        """A round in a span linked to every request it decides (up to the SDK's link limit); the decisions'
        events carry the round's context."""
        links = tracing.links(t for held in ready.values() for t in held.traces)
        attributes = {
            "flashsale.round.requests": sum(len(held.requests) for held in ready.values()),
            "flashsale.round.partitions": len(ready),
            "messaging.system": "kafka",
            "messaging.consumer.group.name": self._group,
        }
        with tracing.span("sales round", kind=tracing.CONSUMER, links=links, attributes=attributes):
            self._decide_round(ready)

    def _decide_round(self, ready: dict[rounds.Key, Pending]) -> None:
        """Decide the ready batches of every partition in one transaction, then publish them."""
        batches = {
            key: rounds.Ready(state.sale, state.published, tuple(held.offsets), tuple(held.requests))
            for key, held in ready.items()
            if (state := self._assigned.get(key)) is not None
        }
        while batches:
            result = self._rounds.decide(batches, self._stop)
            if not isinstance(result, rounds.Gap):
                break
            topic, partition = result.key  # read that partition again from its stored offset; decide the others
            log.warning("re-reading a partition", extra={"topic": topic, "partition": partition, "at": result.expected})
            del batches[result.key]
            self._forget(result.key)
            self._consumer.seek(confluent_kafka.TopicPartition(topic, partition, result.expected))
        else:
            return
        if result is None:
            return  # stopping undecided (nothing was stored: the next owner starts from the stored offsets)
        if self.first_decided is None:
            self.first_decided = time.perf_counter()
        committed = []
        for batch in result.batches:
            state = self._assigned[(batch.topic, batch.partition)]
            state.sale = batch.sale
            state.decided = max(state.decided, batch.end)
            committed.append((state, batch))
        self._publisher.publish(committed)
        self._commit_to_kafka(result.batches)

    def _commit_to_kafka(self, batches: Sequence[rounds.Decided]) -> None:
        """Tell Kafka how far the partitions are decided, so the group's lag is right for every tool (the
        worker's own metrics, kafka-consumer-groups, an exporter). Only informative: an owner starts from the
        offsets stored with the decisions, never from these."""
        offsets = [confluent_kafka.TopicPartition(b.topic, b.partition, b.end) for b in batches]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except confluent_kafka.KafkaException as exc:  # e.g. revoked meanwhile: the next round commits again
            log.debug("decided offsets not committed to Kafka", extra={"reason": str(exc)})

    def _apply_acks(self) -> None:
        """What Kafka acknowledged advances each partition's published offset, in order; a failure marks the
        partition for publishing again from there."""
        for ack in self._publisher.acknowledged():
            state = ack.owner
            if not ack.ok:
                state.republish = True
            elif not state.republish:  # published only advances over what was acknowledged, in order
                state.published = max(state.published, ack.end)

    def _republish_failed(self) -> None:
        for (topic, partition), state in list(self._assigned.items()):
            if state.republish:
                try:
                    self._republish(state, topic, partition)
                except (errors.TemporaryError, confluent_kafka.KafkaException) as exc:
                    log.warning("re-publishing failed; retrying", extra={"reason": str(exc), "topic": topic})
                    self._stop.wait(0.5)

    def _republish(self, state: _Assigned, topic: str, partition: int) -> None:
        """Publish the decisions of [published, decided) again; the partition's published offset reaches decided."""
        end = state.decided
        self._publisher.republish(state.sale, topic, partition, state.published, end)
        state.republish = False
        state.published = max(state.published, end)


def split(held: Pending, limit: int) -> tuple[Pending, Pending | None]:
    """The whole records of a pending batch that hold at most `limit` requests (at least its first record), and
    the records after them (None when nothing is left), both in log order."""
    if len(held.requests) <= limit:
        return held, None
    cut = bisect.bisect_right(held.requests, held.requests[limit].offset - 1, key=_offset_of)
    if cut == 0:  # the first record alone holds more than `limit`
        cut = bisect.bisect_right(held.requests, held.requests[0].offset, key=_offset_of)
    if cut == len(held.requests):
        return held, None
    last = held.requests[cut - 1].offset
    records = bisect.bisect_right(held.offsets, last)
    traces = held.traces[:cut], held.traces[cut:]
    first = Pending(held.due, held.offsets[:records], held.requests[:cut], traces[0])
    return first, Pending(held.due, held.offsets[records:], held.requests[cut:], traces[1])


def _offset_of(request: ledger.Request) -> int:
    return request.offset


def _mark_published(published: list[tuple[str, int, int]], tx: database.Tx) -> None:
    for topic, partition, offset in published:
        offset_store.mark_published(tx, topic, partition, offset)


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
