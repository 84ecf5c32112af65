"""A worker's round: the ready batches of every partition it holds, decided and stored in one transaction.

The worker (consumer, batching, publication) hands a round the batches it read; the round decides them in log
order with the pure `ledger`, stores them with `round_store` and returns what it committed. A crash anywhere
before the commit leaves nothing behind, so the next owner replays to the same decisions.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from flashsale.common import backoff, database, errors
from flashsale.sales import domain, ledger, ledger_repository, repository, round_store

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (request topic, partition)
_ACCEPTED = domain.Outcome.ACCEPTED


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
    the batch's exact need, and whether the round held the whole sale (logged at DEBUG once committed, so a decision
    can be traced to its round)."""

    remaining: int
    pool: int
    need: int
    whole_sale: bool
    arrivals: tuple[int, int]  # log-append times of the batch's first and last new request (0, 0 when none)


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


class Gap(Exception):
    """A partition's records do not continue its stored offset (see ledger.Gap): read it again from `expected`."""

    def __init__(self, key: Key, gap: ledger.Gap) -> None:
        super().__init__(f"{key[0]}[{key[1]}]: {gap}")
        self.key = key
        self.expected = gap.expected


class _Short(Exception):
    """The batches of a round need more of a sale than their partitions and the pool hold: decide it again holding
    the whole sale."""

    def __init__(self, sale_id: str) -> None:
        super().__init__(f"sale {sale_id} is short in this round")
        self.sale_id = sale_id


class Rounds:
    """Decides rounds on one database (a worker's; its clock stamps decided_at).

    A round locks only its own partitions while they hold what their batches need (with the pool). Once a round of a
    sale runs short, that sale's rounds lock every partition of it and the pool, take the stock they lack from the
    other partitions in the same transaction, and refuse only what the whole sale does not hold: a refusal for want
    of stock is then final until stock is released, so no later request of the partition gets what an earlier one
    was refused (first come, first served), whatever other writers do meanwhile.
    """

    def __init__(self, db: database.Database, clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._db = db
        self._clock = clock
        self._count = 0  # rounds committed (numbers the DEBUG lines of a round)
        self._whole: set[str] = set()  # sales whose rounds hold the whole sale (one of them ran short)

    def decide(self, ready: Mapping[Key, Ready], stop: threading.Event) -> list[Decided] | None:
        """Decide the ready batches in one transaction, retrying what the database or a moving stock refused;
        None when `stop` was set first (nothing stored). Raises Gap for a partition to read again."""
        delays = backoff.Backoff()
        bulk = True
        while not stop.is_set():
            try:
                decided = self._db.run_sync(functools.partial(self._decide_all, ready, bulk))
                if log.isEnabledFor(logging.DEBUG):
                    self._log(decided)
                return decided
            except _Short as short:
                log.debug("round short of stock; holding the whole sale from now on", extra={"sale_id": short.sale_id})
                self._whole.add(short.sale_id)
                continue
            except round_store.StockMoved as moved:  # another writer drew the pool meanwhile
                log.debug("round saw stock move", extra={"reason": str(moved)})
                continue
            except database.Conflict as exc:  # a request id taken meanwhile elsewhere: insert row by row instead
                log.warning("bulk insert conflict; deciding again", extra={"reason": str(exc)})
                bulk = False
                continue
            except errors.TemporaryError as exc:
                log.warning("round failed; retrying", extra={"reason": str(exc)})
            stop.wait(delays.next())
        return None

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
        terms = _terms(sale)
        dialect = self._db.dialect
        whole = sale.sale_id in self._whole
        locked = round_store.lock(tx, dialect, sale.sale_id, topic, list(parts), whole_sale=whole)
        if locked.stock != sale.stock:  # restocked before its first decision: events carry the stock it has now
            sale = dataclasses.replace(sale, stock=locked.stock, remaining=locked.stock)
        fresh: dict[int, list[ledger.Request]] = {}
        for partition, batch in parts.items():
            try:
                fresh[partition] = ledger.undecided(batch.offsets, batch.requests, locked.next_offset[partition])
            except ledger.Gap as gap:
                raise Gap((topic, partition), gap) from None
        everyone = [r for reqs in fresh.values() for r in reqs]
        held = round_store.held(tx, dialect, sale.sale_id, sorted({r.user_id for r in everyone}))
        before = round_store.decided_ids(tx, dialect, [r.request_id for r in everyone])
        needs = {p: ledger.need(terms, fresh[p], held, before) for p in parts}
        remaining, pool = dict(locked.remaining), locked.pool
        if not whole and ledger.shortfall(needs, remaining, pool) > 0:
            raise _Short(sale.sale_id)
        moves = ledger.refill(needs, remaining, pool) if whole else {}
        if moves:  # every partition of the sale is locked: the stock the round lacks comes from the others now
            round_store.move_to_pool(tx, sale.sale_id, moves)
            for donor, units in moves.items():
                remaining[donor] -= units
            pool += sum(moves.values())
            log.debug("refilled in the round", extra={"sale_id": sale.sale_id, "moves": moves, "pool": pool})
        seen: dict[int, Seen] = {}
        writes: list[round_store.PartitionWrite] = []
        for partition in sorted(parts):
            decision = ledger.decide_batch(terms, fresh[partition], remaining[partition], pool, held, before)
            reqs = fresh[partition]
            arrivals = (reqs[0].arrived_at, reqs[-1].arrived_at) if reqs else (0, 0)
            seen[partition] = Seen(remaining[partition], pool, needs[partition], whole, arrivals)
            pool -= decision.drawn
            end = max(parts[partition].offsets[-1] + 1, locked.next_offset[partition])
            writes.append(round_store.PartitionWrite(partition, decision, end, parts[partition].published))
        accepted = [v.request.request_id for w in writes for v in w.batch.verdicts if v.outcome is _ACCEPTED]
        reservations = dict(zip(accepted, _reservation_ids(len(accepted)), strict=True))
        now = self._clock()  # decided_at: when the round is written, just before its commit
        round_store.write(tx, dialect, sale.sale_id, topic, writes, reservations, now, bulk)
        duplicates = [r for w in writes for r in w.batch.duplicates]
        earlier = {d.request_id: d for d in (repository.get_decision(tx, r.request_id) for r in duplicates) if d}
        left = ledger_repository.total_remaining(tx, sale.sale_id)
        out = []
        for w in writes:
            made = tuple(
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
            )
            again = tuple(earlier[r.request_id] for r in w.batch.duplicates if r.request_id in earlier)
            start = locked.next_offset[w.partition]
            out.append(Decided(topic, w.partition, sale, made, again, left, start, w.next_offset, seen[w.partition]))
        return out

    def _log(self, decided: list[Decided]) -> None:
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


def _reservation_ids(count: int) -> list[str]:
    """`count` new random reservation ids (32 hex digits, like a UUID's), from one read of the OS's randomness."""
    drawn = os.urandom(16 * count).hex()
    return [drawn[i : i + 32] for i in range(0, 32 * count, 32)]


def _terms(sale: domain.Sale) -> ledger.Terms:
    return ledger.Terms(sale.sale_id, sale.starts_at, sale.ends_at, sale.per_user_limit)
