"""Waiting in tests for something that happens asynchronously: one helper instead of hand-rolled loops.

    decided = await eventually(lambda: stats_of(sale_id), until=lambda s: s.requests_pending == 0, within_s=60)

`probe` is called (and awaited when it returns an awaitable) every `every_s` seconds until `until(value)` holds
(by default: the value is truthy); that value is returned. Exceptions of the types in `ignoring` count as "not
yet". After `within_s` it fails with an AssertionError naming `what` and the last value or exception seen, so a
timeout says what was waited for and how far it got.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _truthy(value: object) -> bool:
    return bool(value)


def _timed_out(probe: object, what: str, within_s: float, last: object) -> str:
    return f"{what or getattr(probe, '__name__', 'probe')}: not within {within_s}s; last: {last!r}"


async def eventually(
    probe: Callable[[], Awaitable[T] | T],
    *,
    until: Callable[[T], bool] = _truthy,
    within_s: float = 30.0,
    every_s: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str = "",
) -> T:
    """The first value of `probe` that satisfies `until`, polled every `every_s` for at most `within_s`."""
    deadline = time.monotonic() + within_s
    last: object = "nothing yet"
    while True:
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
            if until(value):  # type: ignore[arg-type]
                return value  # type: ignore[return-value]
            last = value
        except ignoring as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(probe, what, within_s, last))
        await asyncio.sleep(every_s)


def eventually_sync(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool] = _truthy,
    within_s: float = 30.0,
    every_s: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str = "",
) -> T:
    """eventually() for code that is not in an event loop (threads, synchronous fixtures)."""
    deadline = time.monotonic() + within_s
    last: object = "nothing yet"
    while True:
        try:
            value = probe()
            if until(value):
                return value
            last = value
        except ignoring as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(probe, what, within_s, last))
        time.sleep(every_s)
