"""SQL of a sale's stock: its partitions (sale_partitions) and its reserve pool (sale_pools).

`stock` of a partition is what it was given at the split plus what it drew from the pool minus what it gave to
the pool, so stock - remaining is what its reservations hold. A round locks the rows it changes in partition
order, then the pool; every other writer of these rows follows the same order.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from flashsale.common import database
from flashsale.sales import sql


class StockMoved(Exception):
    """A partition or the pool changed under a round (another writer took from it); decide the round again."""


@dataclasses.dataclass(frozen=True)
class PartitionRow:
    """One partition's stock."""

    partition: int
    stock: int
    remaining: int
    decided: int


@dataclasses.dataclass(frozen=True)
class Split:
    """A sale's partitions and pool."""

    sale_id: str
    partitions: tuple[PartitionRow, ...]
    reserve: int
    pool_remaining: int


@dataclasses.dataclass(frozen=True)
class Locked:
    """What a round reads under its locks: each partition's remaining stock and the pool."""

    remaining: Mapping[int, int]  # of the round's partitions (of every partition in a whole-sale round)
    pool: int


class Change(NamedTuple):
    """What a round does to one partition: units drawn from the pool, units reserved, requests decided."""

    partition: int
    drawn: int
    taken: int
    decided: int


def split_of(tx: database.Tx, sale_id: str) -> Split | None:
    """The partitions and pool of a sale, or None when it has none."""
    rows = tx.fetchall(
        "SELECT partition, stock, remaining, decided FROM sale_partitions WHERE sale_id = ? ORDER BY partition",
        (sale_id,),
    )
    if not rows:
        return None
    pool = tx.fetchone("SELECT stock, remaining FROM sale_pools WHERE sale_id = ?", (sale_id,))
    reserve, left = (int(pool[0]), int(pool[1])) if pool else (0, 0)
    return Split(sale_id, tuple(PartitionRow(*(int(v) for v in row)) for row in rows), reserve, left)


def store_split(tx: database.Tx, sale_id: str, shares: Sequence[int], reserve: int) -> None:
    """Replace a sale's partitions and pool (only before any request was decided)."""
    tx.execute("DELETE FROM sale_partitions WHERE sale_id = ?", (sale_id,))
    tx.execute("DELETE FROM sale_pools WHERE sale_id = ?", (sale_id,))
    tx.executemany(
        "INSERT INTO sale_partitions (sale_id, partition, stock, remaining, decided) VALUES (?, ?, ?, ?, 0)",
        [(sale_id, i, share, share) for i, share in enumerate(shares)],
    )
    tx.execute("INSERT INTO sale_pools (sale_id, stock, remaining) VALUES (?, ?, ?)", (sale_id, reserve, reserve))


def resplit_untouched(tx: database.Tx, sale_id: str, shares: Sequence[int]) -> bool:
    """Give each partition a new share while no stock was taken or moved into the pool (False when some was:
    the caller then rolls the transaction back)."""
    pool = tx.fetchone("SELECT remaining, stock FROM sale_pools WHERE sale_id = ?", (sale_id,))
    if pool is not None and int(pool[0]) != int(pool[1]):
        return False
    for partition, share in enumerate(shares):
        changed = tx.execute(
            "UPDATE sale_partitions SET stock = ?, remaining = ? "
            "WHERE sale_id = ? AND partition = ? AND remaining = stock",
            (share, share, sale_id, partition),
        )
        if changed != 1:
            return False
    return True


def total_remaining(tx: database.Tx, sale_id: str) -> int:
    """Units left in every partition plus the pool."""
    row = tx.fetchone(
        "SELECT (SELECT COALESCE(SUM(remaining), 0) FROM sale_partitions WHERE sale_id = ?)"
        " + (SELECT COALESCE(SUM(remaining), 0) FROM sale_pools WHERE sale_id = ?)",
        (sale_id, sale_id),
    )
    return int(row[0]) if row else 0


def give_back(tx: database.Tx, sale_id: str, partition: int, quantity: int) -> None:
    """Return released stock to the partition it was reserved from."""
    tx.execute(
        "UPDATE sale_partitions SET remaining = remaining + ? WHERE sale_id = ? AND partition = ?",
        (quantity, sale_id, partition),
    )


def lock(tx: database.Tx, dialect: str, sale_id: str, partitions: Sequence[int], whole_sale: bool = False) -> Locked:
    """Lock the round's partition rows in partition order (PostgreSQL) and read their stock and the pool.

    With `whole_sale` every partition of the sale is locked and read, and the pool too: nobody else can take or
    move the sale's stock until the round commits (the lock order stays partitions in order, then the pool)."""
    parts = sorted(partitions)
    if dialect == "postgres":
        among = "" if whole_sale else f"AND partition = ANY({sql.INTS}) "
        rows = tx.fetchall(
            f"SELECT partition, remaining FROM sale_partitions WHERE sale_id = ? {among}ORDER BY partition FOR UPDATE",
            (sale_id,) if whole_sale else (sale_id, sql.ints(parts)),
        )
        pool = tx.fetchone(
            f"SELECT remaining FROM sale_pools WHERE sale_id = ?{' FOR UPDATE' if whole_sale else ''}", (sale_id,)
        )
    else:
        which = "" if whole_sale else f" AND partition IN ({sql.marks(len(parts))})"
        rows = tx.fetchall(
            f"SELECT partition, remaining FROM sale_partitions WHERE sale_id = ?{which}",
            (sale_id,) if whole_sale else (sale_id, *parts),
        )
        pool = tx.fetchone("SELECT remaining FROM sale_pools WHERE sale_id = ?", (sale_id,))
    remaining = {int(p): int(r) for p, r in rows}
    missing = set(parts) - set(remaining)
    if missing:
        raise LookupError(f"sale {sale_id} has no partitions {sorted(missing)}")
    return Locked(types.MappingProxyType(remaining), int(pool[0]) if pool else 0)


def move_to_pool(tx: database.Tx, sale_id: str, moves: Mapping[int, int]) -> None:
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


def take(tx: database.Tx, dialect: str, sale_id: str, changes: Sequence[Change]) -> None:
    """Apply a round: the pool gives what the partitions drew, each partition gains what it drew and loses what it
    reserved; StockMoved when the pool or a partition would go below zero (another writer took from it)."""
    drawn = sum(c.drawn for c in changes)
    if drawn and (
        tx.execute(
            "UPDATE sale_pools SET remaining = remaining - ? WHERE sale_id = ? AND remaining >= ?",
            (drawn, sale_id, drawn),
        )
        != 1
    ):
        raise StockMoved("the pool changed")
    if dialect == "postgres":
        changed = tx.execute(
            "UPDATE sale_partitions AS s SET remaining = s.remaining + t.d - t.k, stock = s.stock + t.d, "
            "decided = s.decided + t.n "
            f"FROM unnest({sql.INTS}, {sql.INTS}, {sql.INTS}, {sql.INTS}) AS t(d, k, n, p) "
            "WHERE s.sale_id = ? AND s.partition = t.p AND s.remaining + t.d - t.k >= 0",
            (
                sql.ints(c.drawn for c in changes),
                sql.ints(c.taken for c in changes),
                sql.ints(c.decided for c in changes),
                sql.ints(c.partition for c in changes),
                sale_id,
            ),
        )
        if changed != len(changes):
            raise StockMoved("a partition changed")
        return
    for c in changes:
        changed = tx.execute(
            "UPDATE sale_partitions SET remaining = remaining + ? - ?, stock = stock + ?, decided = decided + ? "
            "WHERE sale_id = ? AND partition = ? AND remaining + ? - ? >= 0",
            (c.drawn, c.taken, c.drawn, c.decided, sale_id, c.partition, c.drawn, c.taken),
        )
        if changed != 1:
            raise StockMoved("a partition changed")
