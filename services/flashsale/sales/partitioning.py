"""Pure rules of stock partitions: how stock is split, which partition a user's requests go to."""

from __future__ import annotations

import zlib

from flashsale.common import errors, limits, validation


def partition_of(user_id: str, partitions: int) -> int:
    """The partition of every request of a user (stable across processes and restarts)."""
    return zlib.crc32(user_id.encode()) % partitions


def validate_split(stock: int, partitions: int, reserve: int) -> None:
    """Check the figures of PrepareSale; raise InvalidArgument naming the bad field."""
    validation.integer(partitions, "partitions", low=1, high=limits.MAX_PARTITIONS)
    if not 0 <= reserve <= stock:
        raise errors.InvalidArgument(f"must be between 0 and the stock ({stock})", "reserve")


def split(stock: int, partitions: int, reserve: int) -> list[int]:
    """Stock of each partition: stock minus reserve spread evenly, the first ones taking the remainder."""
    validate_split(stock, partitions, reserve)
    share, extra = divmod(stock - reserve, partitions)
    return [share + (1 if i < extra else 0) for i in range(partitions)]
