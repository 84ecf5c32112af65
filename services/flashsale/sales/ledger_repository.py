"""SQL of the partitioned pipeline: partitions, pool, offsets, and the one-transaction batch write."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from flashsale.common import database
from flashsale.sales import domain, ledger

_CHUNK = 900


class StockMoved(Exception):
    """The partition or pool changed under the batch (another writer took from it); decide the batch again."""


@dataclasses.dataclass(frozen=True)
class PartitionRow:
    """One partition's stock."""

    partition: int
    stock: int
    remaining: int
    decided: int


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A prepared sale's partitions and pool."""

    sale_id: str
    partitions: list[PartitionRow]
    reserve: int
    pool_remaining: int


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def prepared(tx: database.Tx, sale_id: str) -> Prepared | None:
    """The partitions and pool of a sale, or None when it was not prepared."""
    rows = tx.fetchall(
        "SELECT partition, stock, remaining, decided FROM sale_partitions WHERE sale_id = ? ORDER BY partition",
        (sale_id,),
    )
    if not rows:
        return None
    pool = tx.fetchone("SELECT stock, remaining FROM sale_pools WHERE sale_id = ?", (sale_id,))
    reserve, left = (int(pool[0]), int(pool[1])) if pool else (0, 0)
    return Prepared(sale_id, [PartitionRow(*(int(v) for v in row)) for row in rows], reserve, left)


def any_decided(tx: database.Tx, sale_id: str) -> bool:
    """True once a request of the sale was decided or its topic has a stored offset."""
    row = tx.fetchone("SELECT 1 FROM decisions WHERE sale_id = ? LIMIT 1", (sale_id,))
    return row is not None


def store_preparation(tx: database.Tx, sale_id: str, shares: list[int], reserve: int) -> None:
    """Replace a sale's partitions and pool (only before any request was decided)."""
    tx.execute("DELETE FROM sale_partitions WHERE sale_id = ?", (sale_id,))
    tx.execute("DELETE FROM sale_pools WHERE sale_id = ?", (sale_id,))
    tx.executemany(
        "INSERT INTO sale_partitions (sale_id, partition, stock, remaining, decided) VALUES (?, ?, ?, ?, 0)",
        [(sale_id, i, share, share) for i, share in enumerate(shares)],
    )
    tx.execute("INSERT INTO sale_pools (sale_id, stock, remaining) VALUES (?, ?, ?)", (sale_id, reserve, reserve))
    tx.execute("UPDATE sales SET partitions = ?, reserve = ? WHERE sale_id = ?", (len(shares), reserve, sale_id))


def offsets(tx: database.Tx, topic: str, partition: int) -> tuple[int, int]:
    """(next offset to decide, next offset to publish) of a request-topic partition."""
    row = tx.fetchone(
        "SELECT next_offset, published_offset FROM partition_offsets WHERE topic = ? AND partition = ?",
        (topic, partition),
    )
    return (int(row[0]), int(row[1])) if row else (0, 0)


def all_offsets(tx: database.Tx, topic: str) -> dict[int, int]:
    """Next offset to decide of every partition of a topic that has one."""
    rows = tx.fetchall("SELECT partition, next_offset FROM partition_offsets WHERE topic = ?", (topic,))
    return {int(p): int(o) for p, o in rows}


def lock_partition(tx: database.Tx, dialect: str, sale_id: str, partition: int) -> int:
    """Lock the partition row for this transaction (PostgreSQL) and return its remaining stock."""
    suffix = " FOR UPDATE" if dialect == "postgres" else ""
    row = tx.fetchone(
        f"SELECT remaining FROM sale_partitions WHERE sale_id = ? AND partition = ?{suffix}", (sale_id, partition)
    )
    if row is None:
        raise LookupError(f"sale {sale_id} has no partition {partition}")
    return int(row[0])


def pool_remaining(tx: database.Tx, sale_id: str) -> int:
    """Units in the sale's pool now."""
    row = tx.fetchone("SELECT remaining FROM sale_pools WHERE sale_id = ?", (sale_id,))
    return int(row[0]) if row else 0


def held(tx: database.Tx, sale_id: str, users: Sequence[str], dialect: str = "sqlite") -> dict[str, int]:
    """Units each of these users holds in the sale."""
    if dialect == "postgres":
        rows = tx.fetchall(
            f"SELECT user_id, qty FROM user_counters WHERE sale_id = ? AND user_id = ANY({_TEXTS})",
            (sale_id, _texts(users)),
        )
        return {str(u): int(q) for u, q in rows}
    found: dict[str, int] = {}
    for chunk in _chunks(users):
        marks = ", ".join("?" * len(chunk))
        rows = tx.fetchall(
            f"SELECT user_id, qty FROM user_counters WHERE sale_id = ? AND user_id IN ({marks})", (sale_id, *chunk)
        )
        found.update({str(u): int(q) for u, q in rows})
    return found


def decided_ids(tx: database.Tx, request_ids: Sequence[str], dialect: str = "sqlite") -> set[str]:
    """Which of these request ids have a decision already."""
    if dialect == "postgres":
        rows = tx.fetchall(f"SELECT request_id FROM decisions WHERE request_id = ANY({_TEXTS})", (_texts(request_ids),))
        return {str(r[0]) for r in rows}
    found: set[str] = set()
    for chunk in _chunks(request_ids):
        marks = ", ".join("?" * len(chunk))
        rows = tx.fetchall(f"SELECT request_id FROM decisions WHERE request_id IN ({marks})", tuple(chunk))
        found.update(str(r[0]) for r in rows)
    return found


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
_DECISION_COLUMNS = ", ".join(_DECISION_FIELDS)
_RESERVATION_COLUMNS = ", ".join(_RESERVATION_FIELDS)
# PostgreSQL: one statement per table, each column bound as one string that the server splits (string_to_array),
# which costs the client one join per column instead of dumping every element of a list parameter.
_SEP = "\x1f"  # the ASCII unit separator: never part of a validated id
_TEXTS = "string_to_array(?, E'\\x1f')"
_INTS = "string_to_array(?, ',')::bigint[]"
_PG_DECISIONS = (
    f"INSERT INTO decisions ({_DECISION_COLUMNS}) "
    "SELECT r, ?::text, u, q, o, COALESCE(res, ''), ?::bigint, ?::int, off, arr "
    f"FROM unnest({_TEXTS}, {_TEXTS}, {_INTS}, {_TEXTS}, {_TEXTS}, {_INTS}, {_INTS}) "
    "AS t(r, u, q, o, res, off, arr) ON CONFLICT (request_id) DO NOTHING"
)
_PG_RESERVATIONS = (
    f"INSERT INTO reservations ({_RESERVATION_COLUMNS}) "
    "SELECT res, r, ?::text, u, q, ?::text, ?::bigint, ?::bigint, ?::int "
    f"FROM unnest({_TEXTS}, {_TEXTS}, {_TEXTS}, {_INTS}) "
    "AS t(res, r, u, q) ON CONFLICT DO NOTHING"
)
_PG_COUNTERS = (
    "INSERT INTO user_counters (sale_id, user_id, qty) "
    f"SELECT ?::text, u, q FROM unnest({_TEXTS}, {_INTS}) AS t(u, q) "
    "ON CONFLICT (sale_id, user_id) DO UPDATE SET qty = user_counters.qty + excluded.qty"
)


def _texts(values: Sequence[str]) -> str:
    """A text column as one parameter for _TEXTS (ValueError if a value holds the separator)."""
    joined = _SEP.join(values)
    if joined.count(_SEP) != max(len(values) - 1, 0):
        raise ValueError("a value holds the column separator")
    return joined


def _ints(values: Iterable[int]) -> str:
    """An integer column as one parameter for _INTS."""
    return ",".join(map(str, values))


def write_batch(
    tx: database.Tx,
    terms: ledger.Terms,
    partition: int,
    topic: str,
    batch: ledger.BatchDecision,
    reservation_ids: dict[str, str],
    now: int,
    next_offset: int,
    published_offset: int,
    dialect: str = "sqlite",
    bulk: bool = True,
) -> None:
    """Store a decided batch: stock, pool, decisions, reservations, counters and the offset, all at once.

    `bulk` inserts decisions and reservations with COPY on PostgreSQL, which raises database.Conflict when a request
    id has a row already (another sale's writer took the same id meanwhile); without it, such rows are skipped."""
    sale_id = terms.sale_id
    if batch.drawn:
        drawn = tx.execute(
            "UPDATE sale_pools SET remaining = remaining - ? WHERE sale_id = ? AND remaining >= ?",
            (batch.drawn, sale_id, batch.drawn),
        )
        if drawn != 1:
            raise StockMoved("the pool changed")
    changed = tx.execute(
        "UPDATE sale_partitions SET remaining = remaining + ? - ?, stock = stock + ?, decided = decided + ? "
        "WHERE sale_id = ? AND partition = ? AND remaining + ? - ? >= 0",
        (batch.drawn, batch.taken, batch.drawn, len(batch.verdicts), sale_id, partition, batch.drawn, batch.taken),
    )
    if changed != 1:
        raise StockMoved("the partition changed")
    accepted = [v for v in batch.verdicts if v.outcome.accepted]
    if dialect == "postgres":
        _write_rows_postgres(tx, sale_id, partition, batch, accepted, reservation_ids, now, bulk)
    else:
        _write_rows_portable(tx, sale_id, partition, batch, accepted, reservation_ids, now)
    tx.execute(
        "INSERT INTO partition_offsets (topic, partition, next_offset, published_offset) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
        "published_offset = excluded.published_offset",
        (topic, partition, next_offset, published_offset),
    )


def _write_rows_postgres(
    tx: database.Tx,
    sale_id: str,
    partition: int,
    batch: ledger.BatchDecision,
    accepted: list[ledger.Verdict],
    reservation_ids: dict[str, str],
    now: int,
    bulk: bool,
) -> None:
    verdicts = batch.verdicts
    if bulk:  # COPY: the fastest way in, but it fails whole on a duplicate key (database.Conflict)
        tx.copy_rows(
            "decisions",
            _DECISION_FIELDS,
            (
                (
                    v.request.request_id,
                    sale_id,
                    v.request.user_id,
                    v.request.quantity,
                    v.outcome.value,
                    reservation_ids.get(v.request.request_id, ""),
                    now,
                    partition,
                    v.request.offset,
                    v.request.arrived_at,
                )
                for v in verdicts
            ),
        )
        reserved = domain.ReservationStatus.RESERVED.value
        tx.copy_rows(
            "reservations",
            _RESERVATION_FIELDS,
            (
                (
                    reservation_ids[v.request.request_id],
                    v.request.request_id,
                    sale_id,
                    v.request.user_id,
                    v.request.quantity,
                    reserved,
                    now,
                    now,
                    partition,
                )
                for v in accepted
            ),
        )
    else:
        if verdicts:
            asked = [v.request for v in verdicts]
            tx.execute(
                _PG_DECISIONS,
                (
                    sale_id,
                    now,
                    partition,
                    _texts([r.request_id for r in asked]),
                    _texts([r.user_id for r in asked]),
                    _ints(r.quantity for r in asked),
                    _texts([v.outcome.value for v in verdicts]),
                    _texts([reservation_ids.get(r.request_id, "") for r in asked]),
                    _ints(r.offset for r in asked),
                    _ints(r.arrived_at for r in asked),
                ),
            )
        if accepted:
            tx.execute(
                _PG_RESERVATIONS,
                (
                    sale_id,
                    domain.ReservationStatus.RESERVED.value,
                    now,
                    now,
                    partition,
                    _texts([reservation_ids[v.request.request_id] for v in accepted]),
                    _texts([v.request.request_id for v in accepted]),
                    _texts([v.request.user_id for v in accepted]),
                    _ints(v.request.quantity for v in accepted),
                ),
            )
    if accepted:
        users = list(batch.held)
        tx.execute(_PG_COUNTERS, (sale_id, _texts(users), _ints(batch.held[u] for u in users)))


def _write_rows_portable(
    tx: database.Tx,
    sale_id: str,
    partition: int,
    batch: ledger.BatchDecision,
    accepted: list[ledger.Verdict],
    reservation_ids: dict[str, str],
    now: int,
) -> None:
    tx.executemany(
        f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (request_id) DO NOTHING",
        [
            (
                v.request.request_id,
                sale_id,
                v.request.user_id,
                v.request.quantity,
                v.outcome.value,
                reservation_ids.get(v.request.request_id, ""),
                now,
                partition,
                v.request.offset,
                v.request.arrived_at,
            )
            for v in batch.verdicts
        ],
    )
    if not accepted:
        return
    tx.executemany(
        f"INSERT INTO reservations ({_RESERVATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (
                reservation_ids[v.request.request_id],
                v.request.request_id,
                sale_id,
                v.request.user_id,
                v.request.quantity,
                domain.ReservationStatus.RESERVED.value,
                now,
                now,
                partition,
            )
            for v in accepted
        ],
    )
    tx.executemany(
        "INSERT INTO user_counters (sale_id, user_id, qty) VALUES (?, ?, ?) "
        "ON CONFLICT (sale_id, user_id) DO UPDATE SET qty = user_counters.qty + excluded.qty",
        [(sale_id, user, qty) for user, qty in batch.held.items()],
    )


def mark_published(tx: database.Tx, topic: str, partition: int, published_offset: int) -> None:
    """Record that decisions up to an offset were published."""
    tx.execute(
        "UPDATE partition_offsets SET published_offset = ? WHERE topic = ? AND partition = ? AND published_offset < ?",
        (published_offset, topic, partition, published_offset),
    )


def decisions_between(
    tx: database.Tx, sale_id: str, partition: int, start: int, end: int
) -> list[tuple[str, str, int, str, str]]:
    """(request_id, user_id, quantity, outcome, reservation_id) decided from log offsets [start, end)."""
    rows = tx.fetchall(
        "SELECT request_id, user_id, quantity, outcome, reservation_id FROM decisions "
        "WHERE sale_id = ? AND partition = ? AND log_offset >= ? AND log_offset < ? ORDER BY log_offset",
        (sale_id, partition, start, end),
    )
    return [(str(a), str(b), int(c), str(d), str(e)) for a, b, c, d, e in rows]


def move_to_pool(tx: database.Tx, sale_id: str, partition: int, units: int) -> int:
    """Move up to `units` from a partition into the pool; how many moved (locks one partition, then the pool)."""
    row = tx.fetchone("SELECT remaining FROM sale_partitions WHERE sale_id = ? AND partition = ?", (sale_id, partition))
    if row is None:
        return 0
    moving = min(units, int(row[0]))
    if moving <= 0:
        return 0
    changed = tx.execute(
        "UPDATE sale_partitions SET remaining = remaining - ?, stock = stock - ? "
        "WHERE sale_id = ? AND partition = ? AND remaining >= ?",
        (moving, moving, sale_id, partition, moving),
    )
    if changed != 1:
        return 0
    tx.execute("UPDATE sale_pools SET remaining = remaining + ? WHERE sale_id = ?", (moving, sale_id))
    return moving


def total_remaining(tx: database.Tx, sale_id: str) -> int:
    """Units left in every partition plus the pool."""
    parts = tx.fetchone("SELECT COALESCE(SUM(remaining), 0) FROM sale_partitions WHERE sale_id = ?", (sale_id,))
    return (int(parts[0]) if parts else 0) + pool_remaining(tx, sale_id)


def give_back(tx: database.Tx, sale_id: str, partition: int, quantity: int) -> None:
    """Return released stock to the partition it was reserved from."""
    tx.execute(
        "UPDATE sale_partitions SET remaining = remaining + ? WHERE sale_id = ? AND partition = ?",
        (quantity, sale_id, partition),
    )
