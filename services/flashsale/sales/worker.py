"""The sales worker: the single writer of each request-topic partition it is assigned.

It decides each partition's requests in log order, in batches; the batches of every partition ready at once
are decided in one database transaction (one commit and fsync) that also stores each partition's next offset.
On assignment it seeks to the stored offset, so a crash replays to the same decisions. Decisions are published
after the commit without holding up the next round; a failed publication, or one cut short by a crash, is
published again from the stored published offset.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import confluent_kafka

from flashsale.common import database, errors, kafka, timeutil, topics
from flashsale.sales import (
    domain,
    ledger,
    ledger_repository,
    messages,
    partitioning,
    records,
    repository,
    round_store,
)

log = logging.getLogger(__name__)

GROUP = "flashsale-sales-workers"
Decided = Callable[[list[domain.Decision]], None]
_T = TypeVar("_T")
# A partition's messages wait for more (one transaction and fsync for more requests) while the consumer has more
# buffered, up to batch_max, or until the linger passed once nothing more is buffered; never longer than this past it.
_MAX_HOLD_S = 0.1
# Decisions per purchases.decided event at most: with ids of up to 64 characters an event stays below 400 kB.
_EVENT_DECISIONS = 2000
_ACCEPTED = domain.Outcome.ACCEPTED
# Refills of one partition within one round at most (each moves what other partitions hold into the pool; racing
# writers drawing the pool meanwhile could otherwise keep a round retrying).
_MAX_REFILLS = 20


@dataclasses.dataclass
class _Assigned:
    """A partition held by this worker: its sale, and the offsets decided and published (acknowledged)."""

    sale: domain.Sale
    published: int
    decided: int
    republish: bool = False  # a publication failed: publish [published, decided) again before advancing


class _NeedsRefill(Exception):
    """A batch wants more than its partition and the pool hold while other partitions have stock."""

    def __init__(self, key: tuple[str, int], wanted: int, caps: dict[int, int]) -> None:
        super().__init__(f"{key[0]}[{key[1]}] needs stock from other partitions")
        self.key = key
        self.wanted = wanted
        self.caps = caps  # at most this much from each partition of the same round (what it does not need itself)


class _GapIn(Exception):
    """A partition's records do not continue its stored offset (see ledger.Gap)."""

    def __init__(self, key: tuple[str, int], gap: ledger.Gap) -> None:
        super().__init__(f"{key[0]}[{key[1]}]: {gap}")
        self.key = key
        self.expected = gap.expected


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
    topic: str
    partition: int
    sale: domain.Sale
    made: list[domain.Decision]
    earlier: list[domain.Decision]
    left: int
    start: int  # the request-topic offsets decided: [start, end)
    end: int
    seen: _Seen | None = None  # what the round saw under its locks (None when published again)


@dataclasses.dataclass(frozen=True)
class _Seen:
    """What a round saw of one partition under its locks: its stock, the pool left to it, the batch's exact need and
    the refills made for it (logged at DEBUG once committed, so a decision can be traced to its round)."""

    remaining: int
    pool: int
    need: int
    refills: int
    arrivals: tuple[int, int]  # log-append times of the batch's first and last new request (0, 0 when none)


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
        self._rounds = 0  # rounds committed (numbers the DEBUG lines of a round)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sales-worker", daemon=True)

    def start(self) -> None:
        """Subscribe to every request topic and start deciding in the background."""
        self._consumer.subscribe([partitioning.TOPIC_PATTERN], on_assign=self._on_assign, on_revoke=self._on_revoke)
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
        backoff = 0.05
        bulk = True
        refilled: collections.Counter[tuple[str, int]] = collections.Counter()
        self._refill_short(ready, refilled)
        while ready and not self._stop.is_set():
            try:
                batches = self._db.run_sync(functools.partial(self._decide_all, ready, bulk, refilled))
                break
            except _NeedsRefill as need:  # stock moved meanwhile: refill that partition, decide the round again
                log.debug("round needs a refill", extra={"partition": need.key[1], "wanted": need.wanted})
                state = self._assigned.get(need.key)
                try:
                    if state is not None:
                        self._refill(state.sale.sale_id, need.key[1], need.wanted, need.caps)
                    refilled[need.key] += 1
                    continue
                except errors.TemporaryError as exc:
                    log.warning("refill failed; retrying", extra={"reason": str(exc)})
            except round_store.StockMoved as moved:
                log.debug("round saw stock move", extra={"reason": str(moved)})
                continue
            except database.Conflict as exc:  # a request id taken meanwhile elsewhere: insert row by row instead
                log.warning("bulk insert conflict; deciding again", extra={"reason": str(exc)})
                bulk = False
                continue
            except _GapIn as gap:  # read that partition again from its stored offset; decide the others
                topic, partition = gap.key
                log.warning("re-reading a partition", extra={"topic": topic, "partition": partition, "gap": str(gap)})
                del ready[gap.key]
                self._pending.pop(gap.key, None)
                self._consumer.seek(confluent_kafka.TopicPartition(topic, partition, gap.expected))
                continue
            except errors.TemporaryError as exc:
                log.warning("round failed; retrying", extra={"reason": str(exc)})
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)
        else:
            return  # stopping undecided (nothing was stored: the next owner starts from the stored offsets)
        if log.isEnabledFor(logging.DEBUG):
            self._log_round(batches)
        self._publish_round(batches)

    def _decide_all(
        self,
        ready: dict[tuple[str, int], _Pending],
        bulk: bool,
        refilled: collections.Counter[tuple[str, int]],
        tx: database.Tx,
    ) -> list[_Batch]:
        """Decide every ready batch in this transaction, sale by sale in topic order (the lock order)."""
        by_topic: dict[str, dict[int, _Pending]] = {}
        for (topic, partition), batch in ready.items():
            if (topic, partition) in self._assigned:  # else revoked meanwhile: its next owner decides it
                by_topic.setdefault(topic, {})[partition] = batch
        decided: list[_Batch] = []
        for topic in sorted(by_topic):
            decided.extend(self._decide_sale(tx, topic, by_topic[topic], bulk, refilled))
        return decided

    def _decide_sale(
        self,
        tx: database.Tx,
        topic: str,
        parts: dict[int, _Pending],
        bulk: bool,
        refilled: collections.Counter[tuple[str, int]],
    ) -> list[_Batch]:
        """Decide the ready partitions of one sale with a fixed number of statements."""
        states = {p: self._assigned[(topic, p)] for p in parts}
        sale = next(iter(states.values())).sale
        terms = _terms(sale)
        dialect = self._db.dialect
        locked = round_store.lock(tx, dialect, sale.sale_id, topic, list(parts))
        if locked.stock != sale.stock:  # restocked before its first decision: events carry the stock it has now
            sale = dataclasses.replace(sale, stock=locked.stock, remaining=locked.stock)
            for state in states.values():
                state.sale = sale
        fresh: dict[int, list[ledger.Request]] = {}
        for partition, batch in parts.items():
            try:
                fresh[partition] = ledger.undecided(batch.offsets, batch.requests, locked.next_offset[partition])
            except ledger.Gap as gap:
                raise _GapIn((topic, partition), gap) from None
        everyone = [r for reqs in fresh.values() for r in reqs]
        held = round_store.held(tx, dialect, sale.sale_id, sorted({r.user_id for r in everyone}))
        before = round_store.decided_ids(tx, dialect, [r.request_id for r in everyone])
        needs = {p: ledger.need(terms, fresh[p], held, before) for p in parts}

        def outside() -> int:  # stock of the sale's partitions outside this round
            return ledger_repository.total_remaining(tx, sale.sale_id) - locked.pool - sum(locked.remaining.values())

        pool = locked.pool
        seen: dict[int, _Seen] = {}
        writes: list[round_store.PartitionWrite] = []
        for partition in sorted(parts):
            remaining = locked.remaining[partition]
            # Never refuse for want of stock while stock no other batch of this round needs is left elsewhere
            # (another writer may have drawn the pool since this one was refilled): refill from it and decide the
            # round again, a bounded number of times.
            if refilled[(topic, partition)] < _MAX_REFILLS:
                caps = ledger.refill_caps(partition, needs, locked.remaining, pool, outside)
                if caps is not None:
                    raise _NeedsRefill((topic, partition), needs[partition], caps)
            decision = ledger.decide_batch(terms, fresh[partition], remaining, pool, held, before)
            reqs = fresh[partition]
            arrivals = (reqs[0].arrived_at, reqs[-1].arrived_at) if reqs else (0, 0)
            seen[partition] = _Seen(remaining, pool, needs[partition], refilled[(topic, partition)], arrivals)
            pool -= decision.drawn
            end = max(parts[partition].offsets[-1] + 1, locked.next_offset[partition])
            writes.append(round_store.PartitionWrite(partition, decision, end, states[partition].published))
        accepted = [v.request.request_id for w in writes for v in w.batch.verdicts if v.outcome is _ACCEPTED]
        reservations = dict(zip(accepted, _reservation_ids(len(accepted)), strict=True))
        now = self._clock()  # decided_at: when the round is written, just before its commit
        round_store.write(tx, dialect, sale.sale_id, topic, writes, reservations, now, bulk)
        duplicates = [r for w in writes for r in w.batch.duplicates]
        earlier = {d.request_id: d for d in (repository.get_decision(tx, r.request_id) for r in duplicates) if d}
        left = ledger_repository.total_remaining(tx, sale.sale_id)
        out = []
        for w in writes:
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
                for v in w.batch.verdicts
            ]
            again = [earlier[r.request_id] for r in w.batch.duplicates if r.request_id in earlier]
            start = locked.next_offset[w.partition]
            out.append(
                _Batch(
                    states[w.partition],
                    topic,
                    w.partition,
                    sale,
                    made,
                    again,
                    left,
                    start,
                    w.next_offset,
                    seen[w.partition],
                )
            )
        return out

    def _log_round(self, batches: list[_Batch]) -> None:
        """One DEBUG line per committed batch: offsets, what the round saw, and what it decided."""
        self._rounds += 1
        for batch in batches:
            outcomes = collections.Counter(d.outcome.value for d in batch.made)
            log.debug(
                "batch decided",
                extra={
                    "round": self._rounds,
                    "topic": batch.topic,
                    "partition": batch.partition,
                    "start": batch.start,
                    "end": batch.end,
                    "seen": dataclasses.asdict(batch.seen) if batch.seen else None,
                    "outcomes": dict(outcomes),
                    "units": sum(d.quantity for d in batch.made if d.outcome is _ACCEPTED),
                    "left": batch.left,
                },
            )

    def _refill_short(
        self, ready: dict[tuple[str, int], _Pending], refilled: collections.Counter[tuple[str, int]]
    ) -> None:
        """Before a round, refill the partitions whose batch may want more than the partition and the pool hold
        (one read per sale when none does)."""
        by_sale: dict[str, list[tuple[str, int]]] = {}
        for key in ready:
            state = self._assigned.get(key)
            if state is not None:
                by_sale.setdefault(state.sale.sale_id, []).append(key)
        try:
            for sale_id, keys in by_sale.items():
                found = self._db.run_sync(functools.partial(ledger_repository.prepared, sale_id=sale_id))
                if found is None:
                    continue
                left = {p.partition: p.remaining for p in found.partitions}
                demands = {key: ledger.demand(_terms(self._assigned[key].sale), ready[key].requests) for key in keys}
                for key in keys:
                    if demands[key] > left.get(key[1], 0) + found.pool_remaining:
                        caps = {k[1]: max(0, left.get(k[1], 0) - d) for k, d in demands.items() if k != key}
                        self._refill(sale_id, key[1], demands[key], caps)
                        refilled[key] += 1
        except errors.TemporaryError as exc:  # the round's own check asks again once the database answers
            log.warning("refill before a round failed", extra={"reason": str(exc)})

    def _refill(self, sale_id: str, partition: int, wanted: int, caps: dict[int, int] | None = None) -> None:
        """Before a batch that may need more than its partition and the pool hold, move other partitions' stock
        into the pool (one short transaction per donor, so a sale never reports sold out with stock elsewhere).
        `caps` bounds what partitions of the same round may give (what they do not need themselves)."""
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
            units = min(short, caps.get(donor.partition, short)) if caps is not None else short
            if units <= 0:
                continue
            moved = self._db.run_sync(
                functools.partial(
                    ledger_repository.move_to_pool, sale_id=sale_id, partition=donor.partition, units=units
                )
            )
            log.debug(
                "refilled",
                extra={
                    "sale_id": sale_id,
                    "partition": partition,
                    "donor": donor.partition,
                    "asked": units,
                    "moved": moved,
                    "short": short,
                    "pool_seen": found.pool_remaining,
                },
            )
            short -= moved

    def _events(self, batch: _Batch) -> list[tuple[str, str, bytes]]:
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

    def _publish_round(self, batches: list[_Batch]) -> None:
        """Send a committed round's events without waiting; once Kafka acknowledged them all, the partitions'
        published offsets advance and the decisions are handed over (a failure marks them for re-publishing)."""
        for batch in batches:
            batch.state.decided = max(batch.state.decided, batch.end)
        items = [item for batch in batches for item in self._events(batch)]
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
                for batch in batches:
                    batch.state.republish = True
            else:
                self._acknowledged(batches)

        for topic, key, value in items:
            self._producer.produce(topic, key, value, on_done)

    def _acknowledged(self, batches: list[_Batch]) -> None:
        for batch in batches:
            if not batch.state.republish:  # published only advances over what was acknowledged, in order
                batch.state.published = max(batch.state.published, batch.end)
        self._on_decided([d for batch in batches for d in (*batch.made, *batch.earlier)])

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
        batch = _Batch(state, topic, partition, sale, made, [], left, start, end)
        self._producer.produce_all(self._events(batch))
        self._db.run_sync(lambda tx: ledger_repository.mark_published(tx, topic, partition, end))
        state.republish = False
        state.published = max(state.published, end)
        self._on_decided(made)
        log.info("re-published decisions", extra={"topic": topic, "partition": partition, "count": len(made)})


def _reservation_ids(count: int) -> list[str]:
    """`count` new random reservation ids (32 hex digits, like a UUID's), from one read of the OS's randomness."""
    drawn = os.urandom(16 * count).hex()
    return [drawn[i : i + 32] for i in range(0, 32 * count, 32)]


def _terms(sale: domain.Sale) -> ledger.Terms:
    return ledger.Terms(sale.sale_id, sale.starts_at, sale.ends_at, sale.per_user_limit)


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
