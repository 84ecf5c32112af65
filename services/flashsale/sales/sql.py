"""Binding many values in one statement (the round's SQL: a fixed number of statements per sale, however many
requests it decides). PostgreSQL binds each column as one string split by the server (string_to_array); SQLite
gets IN lists of at most CHUNK values."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SEP = "\x1f"  # the ASCII unit separator: never part of a validated id
TEXTS = "string_to_array(?, E'\\x1f')"
INTS = "string_to_array(?, ',')::bigint[]"
CHUNK = 900  # SQLite: values per IN (…) list


def texts(values: Sequence[str]) -> str:
    """A text column as one parameter for TEXTS (ValueError if a value holds the separator)."""
    joined = SEP.join(values)
    if joined.count(SEP) != max(len(values) - 1, 0):
        raise ValueError("a value holds the column separator")
    return joined


def ints(values: Iterable[int]) -> str:
    """An integer column as one parameter for INTS."""
    return ",".join(map(str, values))


def marks(count: int) -> str:
    """`count` placeholders, comma-separated."""
    return ", ".join("?" * count)


def chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    """Values in slices of at most CHUNK (one IN list each)."""
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
