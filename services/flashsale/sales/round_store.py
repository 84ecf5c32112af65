"""SQL of a worker's round: the batches of one sale's partitions decided and stored in one transaction.

Every statement covers all the round's partitions of the sale at once, so a round costs a fixed number of
statements per sale however many partitions it holds. PostgreSQL binds each column as one string split by the
server (string_to_array), and inserts decisions and reservations with COPY.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping, Sequence

from flashsale.common import database
from flashsale.sales import domain, ledger

_SEP = "\x1f"  # the ASCII unit separator: never part of a validated id
_TEXTS = "string_to_array(?, E'\\x1f')"
_INTS = "string_to_array(?, ',')::bigint[]"
_CHUNK = 900  # SQLite: values per IN (…) list

_DECISION_FIELDS = (
    "request_id",
    "sale_id",
    "user_id",
    "quantity",
    "outcome",
    "reservation_id",
    "decided_at",
    "partition",
    "log_offset",
    "arrived_at",
)
_RESERVATION_FIELDS = (
    "reservation_id",
    "request_id",
    "sale_id",
    "user_id",
    "quantity",
    "status",
    "created_at",
    "updated_at",
    "partition",
)


class StockMoved(Exception):
    """A partition or the pool changed under the round (another writer took from it); decide the round again."""


@dataclasses.dataclass(frozen=True)
class Locked:
    """What a round reads under its locks: each partition's remaining stock and next offset, and the pool."""

    remaining: Mapping[int, int]  # of the round's partitions (of every partition of the sale in a whole-sale round)
    next_offset: Mapping[int, int]
    pool: int
    stock: int  # the sale's stock now (it may change until the first decision)


@dataclasses.dataclass(frozen=True)
class PartitionWrite:
    """One partition's decided batch, ready to store."""

    partition: int
    batch: ledger.BatchDecision
    next_offset: int
    published_offset: int


def _texts(values: Sequence[str]) -> str:
    """A text column as one parameter for _TEXTS (ValueError if a value holds the separator)."""
    joined = _SEP.join(values)
    if joined.count(_SEP) != max(len(values) - 1, 0):
        raise ValueError("a value holds the column separator")
    return joined


def _ints(values: Iterable[int]) -> str:
    """An integer column as one parameter for _INTS."""
    return ",".join(map(str, values))


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def lock(
    tx: database.Tx, dialect: str, sale_id: str, topic: str, partitions: Sequence[int], whole_sale: bool = False
) -> Locked:
    """Lock the round's partition rows in partition order (PostgreSQL) and read their stock, offsets and the pool.

    The stored offsets read under these locks cannot be moved by another writer before this round commits. With
    `whole_sale` every partition of the sale is locked and read, and the pool too: nobody else can take or move the
    sale's stock until the round commits (the lock order stays partitions in order, then the pool)."""
    parts = sorted(partitions)
    if dialect == "postgres":
        among = "" if whole_sale else f"AND partition = ANY({_INTS}) "
        rows = tx.fetchall(
            f"SELECT partition, remaining FROM sale_partitions WHERE sale_id = ? {among}ORDER BY partition FOR UPDATE",
            (sale_id,) if whole_sale else (sale_id, _ints(parts)),
        )
        offsets = tx.fetchall(
            f"SELECT partition, next_offset FROM partition_offsets WHERE topic = ? AND partition = ANY({_INTS})",
            (topic, _ints(parts)),
        )
        pool = tx.fetchone(
            f"SELECT remaining FROM sale_pools WHERE sale_id = ?{' FOR UPDATE' if whole_sale else ''}", (sale_id,)
        )
    else:
        among = f"partition IN ({_marks(len(parts))})"
        which = "" if whole_sale else f" AND {among}"
        rows = tx.fetchall(
            f"SELECT partition, remaining FROM sale_partitions WHERE sale_id = ?{which}",
            (sale_id,) if whole_sale else (sale_id, *parts),
        )
        offsets = tx.fetchall(
            f"SELECT partition, next_offset FROM partition_offsets WHERE topic = ? AND {among}", (topic, *parts)
        )
        pool = tx.fetchone("SELECT remaining FROM sale_pools WHERE sale_id = ?", (sale_id,))
    remaining = {int(p): int(r) for p, r in rows}
    missing = set(parts) - set(remaining)
    if missing:
        raise LookupError(f"sale {sale_id} has no partitions {sorted(missing)}")
    stored = {int(p): int(o) for p, o in offsets}
    stock = tx.fetchone("SELECT stock FROM sales WHERE sale_id = ?", (sale_id,))
    return Locked(
        types.MappingProxyType(remaining),
        types.MappingProxyType({p: stored.get(p, 0) for p in parts}),
        int(pool[0]) if pool else 0,
        int(stock[0]) if stock else 0,
    )


def move_to_pool(tx: database.Tx, sale_id: str, moves: dict[int, int]) -> None:
    """Move units from partitions into the pool, under the locks of a whole-sale round (StockMoved if a partition
    no longer holds them, which those locks rule out)."""
    for partition, units in sorted(moves.items()):
        changed = tx.execute(
            "UPDATE sale_partitions SET remaining = remaining - ?, stock = stock - ? "
            "WHERE sale_id = ? AND partition = ? AND remaining >= ?",
            (units, units, sale_id, partition, units),
        )
        if changed != 1:
            raise StockMoved(f"partition {partition} changed")
    if moves:
        tx.execute("UPDATE sale_pools SET remaining = remaining + ? WHERE sale_id = ?", (sum(moves.values()), sale_id))


def held(tx: database.Tx, dialect: str, sale_id: str, users: Sequence[str]) -> dict[str, int]:
    """Units each of these users holds in the sale."""
    if dialect == "postgres":
        rows = tx.fetchall(
            f"SELECT user_id, qty FROM user_counters WHERE sale_id = ? AND user_id = ANY({_TEXTS})",
            (sale_id, _texts(users)),
        )
        return {str(u): int(q) for u, q in rows}
    found: dict[str, int] = {}
    for start in range(0, len(users), _CHUNK):
        chunk = users[start : start + _CHUNK]
        rows = tx.fetchall(
            f"SELECT user_id, qty FROM user_counters WHERE sale_id = ? AND user_id IN ({_marks(len(chunk))})",
            (sale_id, *chunk),
        )
        found.update({str(u): int(q) for u, q in rows})
    return found


def decided_ids(tx: database.Tx, dialect: str, request_ids: Sequence[str]) -> set[str]:
    """Which of these request ids have a decision already (of any sale)."""
    if dialect == "postgres":
        rows = tx.fetchall(f"SELECT request_id FROM decisions WHERE request_id = ANY({_TEXTS})", (_texts(request_ids),))
        return {str(r[0]) for r in rows}
    found: set[str] = set()
    for start in range(0, len(request_ids), _CHUNK):
        chunk = request_ids[start : start + _CHUNK]
        rows = tx.fetchall(f"SELECT request_id FROM decisions WHERE request_id IN ({_marks(len(chunk))})", tuple(chunk))
        found.update(str(r[0]) for r in rows)
    return found


def write(
    tx: database.Tx,
    dialect: str,
    sale_id: str,
    topic: str,
    writes: Sequence[PartitionWrite],
    reservation_ids: dict[str, str],
    now: int,
    bulk: bool = True,
) -> None:
    """Store a round of one sale: pool, partitions, decisions, reservations, counters and offsets.

    `bulk` inserts decisions and reservations with COPY on PostgreSQL, which raises database.Conflict when a request
    id has a row already (another sale's writer took the same id meanwhile); without it such rows are skipped."""
    drawn = sum(w.batch.drawn for w in writes)
    if (
        drawn
        and tx.execute(
            "UPDATE sale_pools SET remaining = remaining - ? WHERE sale_id = ? AND remaining >= ?",
            (drawn, sale_id, drawn),
        )
        != 1
    ):
        raise StockMoved("the pool changed")
    _take_stock(tx, dialect, sale_id, writes)
    decisions = [
        (
            v.request.request_id,
            sale_id,
            v.request.user_id,
            v.request.quantity,
            v.outcome.value,
            reservation_ids.get(v.request.request_id, ""),
            now,
            w.partition,
            v.request.offset,
            v.request.arrived_at,
        )
        for w in writes
        for v in w.batch.verdicts
    ]
    reserved = domain.ReservationStatus.RESERVED.value
    reservations = [
        (
            reservation_ids[v.request.request_id],
            v.request.request_id,
            sale_id,
            v.request.user_id,
            v.request.quantity,
            reserved,
            now,
            now,
            w.partition,
        )
        for w in writes
        for v in w.batch.verdicts
        if v.outcome is domain.Outcome.ACCEPTED
    ]
    if dialect == "postgres" and bulk:
        tx.copy_rows("decisions", _DECISION_FIELDS, decisions)
        tx.copy_rows("reservations", _RESERVATION_FIELDS, reservations)
    else:
        tx.executemany(
            f"INSERT INTO decisions ({', '.join(_DECISION_FIELDS)}) VALUES ({_marks(len(_DECISION_FIELDS))}) "
            "ON CONFLICT (request_id) DO NOTHING",
            decisions,
        )
        tx.executemany(
            f"INSERT INTO reservations ({', '.join(_RESERVATION_FIELDS)}) "
            f"VALUES ({_marks(len(_RESERVATION_FIELDS))}) ON CONFLICT DO NOTHING",
            reservations,
        )
    _add_holdings(tx, dialect, sale_id, writes)
    _store_offsets(tx, dialect, topic, writes)


def _take_stock(tx: database.Tx, dialect: str, sale_id: str, writes: Sequence[PartitionWrite]) -> None:
    """Each partition: plus drawn from the pool, minus taken, plus decided; StockMoved if one would go below zero."""
    rows = [(w.batch.drawn, w.batch.taken, len(w.batch.verdicts), w.partition) for w in writes]
    if dialect == "postgres":
        changed = tx.execute(
            "UPDATE sale_partitions AS s SET remaining = s.remaining + t.d - t.k, stock = s.stock + t.d, "
            "decided = s.decided + t.n "
            f"FROM unnest({_INTS}, {_INTS}, {_INTS}, {_INTS}) AS t(d, k, n, p) "
            "WHERE s.sale_id = ? AND s.partition = t.p AND s.remaining + t.d - t.k >= 0",
            (
                _ints(r[0] for r in rows),
                _ints(r[1] for r in rows),
                _ints(r[2] for r in rows),
                _ints(r[3] for r in rows),
                sale_id,
            ),
        )
        if changed != len(rows):
            raise StockMoved("a partition changed")
        return
    for drawn, taken, count, partition in rows:
        changed = tx.execute(
            "UPDATE sale_partitions SET remaining = remaining + ? - ?, stock = stock + ?, decided = decided + ? "
            "WHERE sale_id = ? AND partition = ? AND remaining + ? - ? >= 0",
            (drawn, taken, drawn, count, sale_id, partition, drawn, taken),
        )
        if changed != 1:
            raise StockMoved("a partition changed")


_UPSERT_COUNTER = "ON CONFLICT (sale_id, user_id) DO UPDATE SET qty = user_counters.qty + excluded.qty"
_UPSERT_OFFSET = (
    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
    "published_offset = excluded.published_offset"
)


def _add_holdings(tx: database.Tx, dialect: str, sale_id: str, writes: Sequence[PartitionWrite]) -> None:
    newly: dict[str, int] = {}
    for w in writes:
        for user, qty in w.batch.held.items():
            newly[user] = newly.get(user, 0) + qty
    if not newly:
        return
    users = list(newly)
    if dialect == "postgres":
        tx.execute(
            f"INSERT INTO user_counters (sale_id, user_id, qty) SELECT ?::text, u, q FROM unnest({_TEXTS}, {_INTS}) "
            f"AS t(u, q) {_UPSERT_COUNTER}",
            (sale_id, _texts(users), _ints(newly[u] for u in users)),
        )
        return
    tx.executemany(
        f"INSERT INTO user_counters (sale_id, user_id, qty) VALUES (?, ?, ?) {_UPSERT_COUNTER}",
        [(sale_id, user, newly[user]) for user in users],
    )


def _store_offsets(tx: database.Tx, dialect: str, topic: str, writes: Sequence[PartitionWrite]) -> None:
    if dialect == "postgres":
        tx.execute(
            "INSERT INTO partition_offsets (topic, partition, next_offset, published_offset) "
            f"SELECT ?::text, p, n, pub FROM unnest({_INTS}, {_INTS}, {_INTS}) AS t(p, n, pub) {_UPSERT_OFFSET}",
            (
                topic,
                _ints(w.partition for w in writes),
                _ints(w.next_offset for w in writes),
                _ints(w.published_offset for w in writes),
            ),
        )
        return
    tx.executemany(
        f"INSERT INTO partition_offsets (topic, partition, next_offset, published_offset) VALUES (?, ?, ?, ?) "
        f"{_UPSERT_OFFSET}",
        [(topic, w.partition, w.next_offset, w.published_offset) for w in writes],
    )
