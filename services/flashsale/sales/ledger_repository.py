"""SQL of the partitioned pipeline outside a round: preparation, partitions and pool, offsets, re-publishing."""

from __future__ import annotations

import dataclasses

from flashsale.common import database


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
    partitions: tuple[PartitionRow, ...]
    reserve: int
    pool_remaining: int


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
    return Prepared(sale_id, tuple(PartitionRow(*(int(v) for v in row)) for row in rows), reserve, left)


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


def resplit_untouched(tx: database.Tx, sale_id: str, shares: list[int]) -> bool:
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


def pool_remaining(tx: database.Tx, sale_id: str) -> int:
    """Units in the sale's pool now."""
    row = tx.fetchone("SELECT remaining FROM sale_pools WHERE sale_id = ?", (sale_id,))
    return int(row[0]) if row else 0


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
