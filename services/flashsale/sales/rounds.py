"""A worker's round: the ready batches of every partition it holds, decided and stored in one transaction.

The worker (consumer, batching) hands a round the batches it read; the round decides them in log order with the
pure `ledger`, stores them with the stores of each table and says what became of it as a value: committed, short
of stock (decide again holding the whole sale), a gap in a partition's log (read it again), stock moved or a
duplicate request id meanwhile (decide again), the database unavailable (retry after a delay). Nothing is stored
unless the round commits, so a crash anywhere replays to the same decisions.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from flashsale.common import backoff, database, errors
from flashsale.sales import (
    decision_store,
    domain,
    ledger,
    offset_store,
    pipeline_metrics,
    reservation_store,
    sale_store,
    stock_store,
)

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (request topic, partition)
_ACCEPTED = domain.Outcome.ACCEPTED
_RESERVED = domain.ReservationStatus.RESERVED.value


@dataclasses.dataclass(frozen=True)
class Ready:
    """A partition's records read and not decided yet, with what the round needs to know of the partition."""

    sale: domain.Sale
    published: int  # the partition's published offset, stored again with the round's offsets
    offsets: tuple[int, ...]  # of the records read, in log order
    requests: tuple[ledger.Request, ...]  # the records' purchases, in order


@dataclasses.dataclass(frozen=True)
class Seen:
    """What a round saw of one partition under its locks: its stock (after the round's refill), the pool left to it,
    the batch's need, and whether the round held the whole sale (logged at DEBUG once committed)."""

    remaining: int
    pool: int
    need: int  # exact when the stock might not cover the batch, else every request's quantity (an upper bound)
    whole_sale: bool
    arrivals: tuple[int, int]  # log-append times of the batch's first and last new request (0, 0 when none)
    refilled: int = 0  # units the round moved into the pool for its sale


@dataclasses.dataclass(frozen=True)
class Decided:
    """A committed batch of one partition, to publish."""

    topic: str
    partition: int
    sale: domain.Sale  # the sale as the round found it (its stock may have changed before the first decision)
    made: tuple[domain.Decision, ...]
    earlier: tuple[domain.Decision, ...]  # the first decisions of request ids seen again
    left: int  # units left in the sale after the round
    start: int  # the request-topic offsets decided: [start, end)
    end: int
    seen: Seen | None = None  # None when published again from the database
    arrivals: tuple[int, ...] = ()  # log-append time of each decision of `made`, in order


@dataclasses.dataclass(frozen=True)
class Committed:
    """The round is stored."""

    batches: tuple[Decided, ...]


@dataclasses.dataclass(frozen=True)
class Short:
    """A sale's batches need more than their partitions and the pool hold: decide again holding the whole sale."""

    sale_id: str


@dataclasses.dataclass(frozen=True)
class Gap:
    """A partition's records do not continue its stored offset (see ledger.Gap): read it again from `expected`."""

    key: Key
    expected: int


@dataclasses.dataclass(frozen=True)
class Moved:
    """Another writer took stock from the pool meanwhile: decide again."""

    reason: str


@dataclasses.dataclass(frozen=True)
class Duplicate:
    """A request id got a row meanwhile (another sale's writer took the same id): insert row by row instead."""

    reason: str


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """The database refused for now: retry after a delay."""

    reason: str


Attempt = Committed | Short | Gap | Moved | Duplicate | Unavailable


class _Abort(Exception):
    """Rolls the round's transaction back with what became of it."""

    def __init__(self, result: Short | Gap) -> None:
        super().__init__(repr(result))
        self.result = result


class Rounds:
    """Decides rounds on one database (a worker's; its clock stamps decided_at).

    A round locks only its own partitions while they hold what their batches need (with the pool). Once a round of a
    sale runs short, that sale's rounds lock every partition of it and the pool, take the stock they lack from the
    other partitions in the same transaction, and refuse only what the whole sale does not hold: a refusal for want
    of stock is then final until stock is released, so no later request of the partition gets what an earlier one
    was refused (first come, first served), whatever other writers do meanwhile.
    """

    def __init__(
        self,
        db: database.Database,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        telemetry: pipeline_metrics.PipelineMetrics | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._telemetry = telemetry
        self._count = 0  # rounds committed (numbers the DEBUG lines of a round)
        self._whole: set[str] = set()  # sales whose rounds hold the whole sale (one of them ran short)

    def decide(self, ready: Mapping[Key, Ready], stop: threading.Event) -> Committed | Gap | None:
        """Decide the ready batches in one transaction, deciding again or retrying until it commits; a Gap for a
        partition to read again (nothing stored); None when `stop` was set first (nothing stored)."""
        delays = backoff.Backoff()
        bulk = True
        began = time.perf_counter()
        while not stop.is_set():
            result = self.attempt(ready, bulk)
            match result:
                case Committed():
                    if self._telemetry is not None:
                        done = [
                            (b.sale.sale_id, b.made, b.arrivals, b.seen.refilled if b.seen else 0)
                            for b in result.batches
                        ]
                        self._telemetry.round_committed(done, time.perf_counter() - began)
                    if log.isEnabledFor(logging.DEBUG):
                        self._log(result.batches)
                    return result
                case Gap():
                    return result
                case Short(sale_id):
                    log.debug("round short of stock; holding the whole sale from now on", extra={"sale_id": sale_id})
                    self._whole.add(sale_id)
                case Moved(reason):
                    log.debug("round saw stock move", extra={"reason": reason})
                case Duplicate(reason):
                    log.warning("bulk insert conflict; deciding again", extra={"reason": reason})
                    bulk = False
                case Unavailable(reason):
                    log.warning("round failed; retrying", extra={"reason": reason})
                    stop.wait(delays.next())
        return None

    def attempt(self, ready: Mapping[Key, Ready], bulk: bool = True) -> Attempt:
        """One try at the round: its transaction, and what became of it."""
        try:
            return Committed(tuple(self._db.run_sync(functools.partial(self._decide_all, ready, bulk))))
        except _Abort as abort:
            return abort.result
        except stock_store.StockMoved as exc:
            return Moved(str(exc))
        except database.Conflict as exc:
            return Duplicate(str(exc))
        except errors.TemporaryError as exc:
            return Unavailable(str(exc))

    def _decide_all(self, ready: Mapping[Key, Ready], bulk: bool, tx: database.Tx) -> list[Decided]:
        """Decide every ready batch in this transaction, sale by sale in topic order (the lock order)."""
        by_topic: dict[str, dict[int, Ready]] = {}
        for (topic, partition), batch in ready.items():
            by_topic.setdefault(topic, {})[partition] = batch
        decided: list[Decided] = []
        for topic in sorted(by_topic):
            decided.extend(self._decide_sale(tx, topic, by_topic[topic], bulk))
        return decided

    def _decide_sale(self, tx: database.Tx, topic: str, parts: dict[int, Ready], bulk: bool) -> list[Decided]:
        """Decide the ready partitions of one sale with a fixed number of statements (a few more for a refill)."""
        sale = next(iter(parts.values())).sale
        dialect = self._db.dialect
        whole = sale.sale_id in self._whole
        locked = stock_store.lock(tx, dialect, sale.sale_id, list(parts), whole_sale=whole)
        stock = sale_store.stock_of(tx, sale.sale_id)
        if stock != sale.stock:  # restocked before its first decision: events carry the stock it has now
            sale = dataclasses.replace(sale, stock=stock, remaining=stock)
        starts = offset_store.next_offsets(tx, dialect, topic, sorted(parts))
        fresh: dict[int, tuple[ledger.Request, ...]] = {}
        for partition, batch in parts.items():
            try:
                fresh[partition] = tuple(ledger.undecided(batch.offsets, batch.requests, starts[partition]))
            except ledger.Gap as gap:
                raise _Abort(Gap((topic, partition), gap.expected)) from None
        everyone = [r for reqs in fresh.values() for r in reqs]
        held = reservation_store.held(tx, dialect, sale.sale_id, sorted({r.user_id for r in everyone}))
        before = decision_store.decided_ids(tx, dialect, [r.request_id for r in everyone])
        terms = _terms(sale)
        remaining, pool = dict(locked.remaining), locked.pool
        needs = {p: ledger.bound(fresh[p]) for p in parts}  # exact only where the stock may not cover it
        if whole or ledger.shortfall(needs, remaining, pool) > 0:
            needs = {p: ledger.need(terms, fresh[p], held, before) for p in parts}
        if not whole and ledger.shortfall(needs, remaining, pool) > 0:
            raise _Abort(Short(sale.sale_id))
        moves = ledger.refill(needs, remaining, pool) if whole else {}
        if moves:  # every partition of the sale is locked: the stock the round lacks comes from the others now
            stock_store.move_to_pool(tx, sale.sale_id, moves)
            for donor, units in moves.items():
                remaining[donor] -= units
            pool += sum(moves.values())
            log.debug("refilled in the round", extra={"sale_id": sale.sale_id, "moves": moves, "pool": pool})
        seen: dict[int, Seen] = {}
        batches: dict[int, ledger.BatchDecision] = {}
        for partition in sorted(parts):
            decision = batches[partition] = ledger.decide_batch(
                terms, fresh[partition], remaining[partition], pool, held, before
            )
            reqs = fresh[partition]
            arrivals = (reqs[0].arrived_at, reqs[-1].arrived_at) if reqs else (0, 0)
            moved = sum(moves.values())
            seen[partition] = Seen(remaining[partition], pool, needs[partition], whole, arrivals, moved)
            pool -= decision.drawn
        ends = {p: max(parts[p].offsets[-1] + 1, starts[p]) for p in parts}
        now = self._clock()  # decided_at: when the round is written, just before its commit
        made = self._store(tx, sale, topic, parts, batches, starts, ends, now, bulk)
        duplicates = [r for b in batches.values() for r in b.duplicates]
        earlier = {d.request_id: d for d in (decision_store.get(tx, r.request_id) for r in duplicates) if d}
        left = stock_store.total_remaining(tx, sale.sale_id)
        return [
            Decided(
                topic,
                p,
                sale,
                made[p][0],
                tuple(earlier[r.request_id] for r in batches[p].duplicates if r.request_id in earlier),
                left,
                starts[p],
                ends[p],
                seen[p],
                made[p][1],
            )
            for p in sorted(parts)
        ]

    def _store(
        self,
        tx: database.Tx,
        sale: domain.Sale,
        topic: str,
        parts: Mapping[int, Ready],
        batches: Mapping[int, ledger.BatchDecision],
        starts: Mapping[int, int],
        ends: Mapping[int, int],
        now: int,
        bulk: bool,
    ) -> dict[int, tuple[tuple[domain.Decision, ...], tuple[int, ...]]]:
        """Write a sale's decided batches: stock, decisions, reservations and offsets; each partition's
        decisions and their requests' log-append times."""
        dialect = self._db.dialect
        accepted = [v.request.request_id for b in batches.values() for v in b.verdicts if v.outcome is _ACCEPTED]
        ids = dict(zip(accepted, _reservation_ids(now, len(accepted)), strict=True))
        changes = [stock_store.Change(p, b.drawn, b.taken, len(b.verdicts)) for p, b in batches.items()]
        stock_store.take(tx, dialect, sale.sale_id, changes)
        rows: list[decision_store.Row] = []
        reserved: list[reservation_store.Row] = []
        made: dict[int, tuple[tuple[domain.Decision, ...], tuple[int, ...]]] = {}
        sale_id = sale.sale_id
        for p, b in batches.items():
            if not b.verdicts:
                made[p] = (), ()
                continue
            # column by column (zip and map run in C): a round builds its rows by the thousand
            requests, outcomes = zip(*b.verdicts, strict=True)
            request_ids, users, quantities, arrivals, logged = zip(*requests, strict=True)
            rids = [ids.get(r, "") for r in request_ids] if ids else [""] * len(request_ids)
            values = [o.value for o in outcomes]
            fixed = itertools.repeat
            sold = (request_ids, fixed(sale_id), users, quantities)
            rows.extend(zip(*sold, values, rids, fixed(now), fixed(p), logged, arrivals, strict=False))
            reserved.extend(
                (ids[r.request_id], r.request_id, sale_id, r.user_id, r.quantity, _RESERVED, now, now, p)
                for r, o in b.verdicts
                if o is _ACCEPTED
            )
            decided = zip(*sold, outcomes, rids, fixed(now), strict=False)
            made[p] = tuple(map(tuple.__new__, fixed(domain.Decision), decided)), arrivals
        stored = [decision_store.Batch(p, starts[p], ends[p], now) for p in sorted(batches) if batches[p].verdicts]
        decision_store.insert(tx, dialect, sale.sale_id, stored, rows, bulk)
        reservation_store.insert(tx, dialect, reserved, bulk)
        offsets = [offset_store.Offsets(p, ends[p], parts[p].published) for p in sorted(batches)]
        offset_store.store(tx, dialect, topic, offsets)
        return made

    def _log(self, decided: Sequence[Decided]) -> None:
        """One DEBUG line per committed batch: offsets, what the round saw, and what it decided."""
        self._count += 1
        for batch in decided:
            log.debug(
                "batch decided",
                extra={
                    "round": self._count,
                    "topic": batch.topic,
                    "partition": batch.partition,
                    "start": batch.start,
                    "end": batch.end,
                    "seen": dataclasses.asdict(batch.seen) if batch.seen else None,
                    "outcomes": dict(collections.Counter(d.outcome.value for d in batch.made)),
                    "units": sum(d.quantity for d in batch.made if d.outcome is _ACCEPTED),
                    "left": batch.left,
                },
            )


def _reservation_ids(now: int, count: int) -> list[str]:
    """`count` new reservation ids of 32 hex digits, time-ordered as a UUIDv7 is (no version bits): the round's
    millisecond time (48 bits), the id's place in the round (32), 64 random bits from one read of the OS's
    randomness. Ids made later sort later, so the reservations' primary key grows at its right edge instead of
    touching a random page per reservation."""
    drawn = os.urandom(8 * count).hex()
    head = f"{now & 0xFFFF_FFFF_FFFF:012x}"
    return [f"{head}{i & 0xFFFF_FFFF:08x}{drawn[16 * i : 16 * i + 16]}" for i in range(count)]


def _terms(sale: domain.Sale) -> ledger.Terms:
    return ledger.Terms(sale.sale_id, sale.starts_at, sale.ends_at, sale.per_user_limit)
