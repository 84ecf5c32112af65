"""SQL of partition_offsets: how far each request-topic partition was decided (next_offset, stored in the round's
transaction, so a crash replays to the same decisions) and published (published_offset)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from flashsale.common import database
from flashsale.sales import sql

_UPSERT = (
    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
    "published_offset = excluded.published_offset"
)


class Offsets(NamedTuple):
    """A partition's offsets after a round."""

    partition: int
    next_offset: int
    published_offset: int


def of(tx: database.Tx, topic: str, partition: int) -> tuple[int, int]:
    """(next offset to decide, next offset to publish) of a request-topic partition."""
    row = tx.fetchone(
        "SELECT next_offset, published_offset FROM partition_offsets WHERE topic = ? AND partition = ?",
        (topic, partition),
    )
    return (int(row[0]), int(row[1])) if row else (0, 0)


def next_offsets(tx: database.Tx, dialect: str, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """The next offset to decide of each of these partitions (0 when none was stored)."""
    if dialect == "postgres":
        rows = tx.fetchall(
            f"SELECT partition, next_offset FROM partition_offsets WHERE topic = ? AND partition = ANY({sql.INTS})",
            (topic, sql.ints(partitions)),
        )
    else:
        rows = tx.fetchall(
            "SELECT partition, next_offset FROM partition_offsets "
            f"WHERE topic = ? AND partition IN ({sql.marks(len(partitions))})",
            (topic, *partitions),
        )
    stored = {int(p): int(o) for p, o in rows}
    return {p: stored.get(p, 0) for p in partitions}


def all_of(tx: database.Tx, topic: str) -> dict[int, int]:
    """Next offset to decide of every partition of a topic that has one."""
    rows = tx.fetchall("SELECT partition, next_offset FROM partition_offsets WHERE topic = ?", (topic,))
    return {int(p): int(o) for p, o in rows}


def store(tx: database.Tx, dialect: str, topic: str, rows: Sequence[Offsets]) -> None:
    """Store the offsets of a round's partitions."""
    if dialect == "postgres":
        tx.execute(
            "INSERT INTO partition_offsets (topic, partition, next_offset, published_offset) "
            f"SELECT ?::text, p, n, pub FROM unnest({sql.INTS}, {sql.INTS}, {sql.INTS}) AS t(p, n, pub) {_UPSERT}",
            (
                topic,
                sql.ints(r.partition for r in rows),
                sql.ints(r.next_offset for r in rows),
                sql.ints(r.published_offset for r in rows),
            ),
        )
        return
    tx.executemany(
        "INSERT INTO partition_offsets (topic, partition, next_offset, published_offset) "
        f"VALUES (?, ?, ?, ?) {_UPSERT}",
        [(topic, *r) for r in rows],
    )


def mark_published(tx: database.Tx, topic: str, partition: int, published_offset: int) -> None:
    """Record that decisions up to an offset were published."""
    tx.execute(
        "UPDATE partition_offsets SET published_offset = ? WHERE topic = ? AND partition = ? AND published_offset < ?",
        (published_offset, topic, partition, published_offset),
    )
