"""Publication of committed rounds as purchases.decided events, without holding up the next round.

Who owns what: `publish` and `republish` run in the worker thread. Kafka's delivery callbacks run in the producer's
thread: they only count the acknowledgements of a round (under the round's own lock), queue one `Ack` per batch
and hand the decisions to `on_decided` (which must be thread-safe: it resolves waiting calls on the event loop).
The worker thread takes the acks with `acknowledged()` and alone applies them to its partitions' offsets.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import confluent_kafka

from flashsale.common import database, kafka, timeutil, topics
from flashsale.sales import decision_store, domain, messages, offset_store, rounds, stock_store

log = logging.getLogger(__name__)

Decided = Callable[[list[domain.Decision]], None]
T = TypeVar("T")
# Decisions per purchases.decided event at most: with ids of up to 64 characters an event stays below 400 kB.
EVENT_DECISIONS = 2000


@dataclasses.dataclass(frozen=True)
class Ack(Generic[T]):
    """Kafka's answer for one published batch: `ok` when all its events were acknowledged. `owner` is what the
    worker published it for (its partition's state)."""

    owner: T
    end: int  # the request-topic offset the batch's decisions reach
    ok: bool


class Publisher(Generic[T]):
    """Publishes committed batches and reports back, for the worker thread, what Kafka acknowledged."""

    def __init__(
        self, db: database.Database, producer: kafka.EventProducer, on_decided: Decided, clock: Callable[[], int]
    ) -> None:
        self._db = db
        self._producer = producer
        self._on_decided = on_decided
        self._clock = clock
        self._acks: queue.SimpleQueue[Ack[T]] = queue.SimpleQueue()

    def events(self, batch: rounds.Decided, first_part: int = 0) -> list[tuple[str, str, bytes]]:
        """purchases.decided events of a batch (one per EVENT_DECISIONS decisions, so an event stays well below
        Kafka's message size limit), numbered from `first_part` in their event ids."""
        made = batch.made
        # the decisions' time (one round made them all): the decision feed hands them over with it
        occurred = timeutil.to_timestamp(made[0].decided_at if made else self._clock())
        items = []
        for part, first in enumerate(range(0, len(made), EVENT_DECISIONS), start=first_part):
            event_id = messages.batch_event_id(batch.topic, batch.partition, batch.start, batch.end, part)
            env = messages.purchases_decided(
                batch.sale, made[first : first + EVENT_DECISIONS], batch.left, event_id, occurred
            )
            items.append((topics.SALES, env.key, env.SerializeToString()))
        return items

    def publish(self, batches: Sequence[tuple[T, rounds.Decided]]) -> None:
        """Send a committed round's events without waiting; once Kafka answered for all of them, one Ack per batch
        is queued (not ok when any event failed) and, when all went through, the decisions are handed over."""
        items = [item for _, batch in batches for item in self.events(batch)]
        decisions = [d for _, batch in batches for d in (*batch.made, *batch.earlier)]
        if not items:
            self._answered(batches, decisions, None)
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
            self._answered(batches, decisions, failed[0] if failed else None)

        for topic, key, value in items:
            self._producer.produce(topic, key, value, on_done)

    def _answered(
        self,
        batches: Sequence[tuple[T, rounds.Decided]],
        decisions: list[domain.Decision],
        failure: confluent_kafka.KafkaError | None,
    ) -> None:
        if failure is not None:
            log.warning("publishing decisions failed; publishing again", extra={"reason": str(failure)})
        for owner, batch in batches:
            self._acks.put(Ack(owner, batch.end, failure is None))
        if failure is None:
            self._on_decided(decisions)

    def settle(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until Kafka answered for everything published, so the acks are queued."""
        self._producer.flush(timeout_s)

    def acknowledged(self) -> list[Ack[T]]:
        """The acks queued since the last call (call from the worker thread)."""
        found = []
        while True:
            try:
                found.append(self._acks.get_nowait())
            except queue.Empty:
                return found

    def republish(self, sale: domain.Sale, topic: str, partition: int, start: int, end: int) -> None:
        """Publish the decisions of offsets [start, end) of a partition again from the database, wait for Kafka and
        record the published offset (call from the worker thread)."""
        rows = self._db.run_sync(lambda tx: decision_store.between(tx, sale.sale_id, partition, start, end))
        left = self._db.run_sync(lambda tx: stock_store.total_remaining(tx, sale.sale_id))
        made = tuple(
            domain.Decision(rid, sale.sale_id, user, qty, domain.Outcome(outcome), res, decided_at)
            for rid, user, qty, outcome, res, decided_at in rows
        )
        by_round: dict[int, list[domain.Decision]] = {}  # one event (part) per round: each carries its time
        for decision in made:
            by_round.setdefault(decision.decided_at, []).append(decision)
        items: list[tuple[str, str, bytes]] = []
        for decisions in by_round.values():
            batch = rounds.Decided(topic, partition, sale, tuple(decisions), (), left, start, end)
            items.extend(self.events(batch, first_part=len(items)))  # the parts of one range, numbered on
        self._producer.produce_all(items)
        self._db.run_sync(lambda tx: offset_store.mark_published(tx, topic, partition, end))
        self._on_decided(list(made))
        log.info("re-published decisions", extra={"topic": topic, "partition": partition, "count": len(made)})
