"""The tests' waiting helper: the first satisfying value, exceptions ignored on request, a timeout that says why."""

from __future__ import annotations

import itertools

import pytest
from waiting import eventually, eventually_sync


async def test_eventually_returns_the_first_value_that_satisfies_the_condition() -> None:
    counter = itertools.count()

    async def probe() -> int:
        return next(counter)

    assert await eventually(probe, until=lambda n: n >= 3, every_s=0) == 3
    assert await eventually(lambda: next(counter) > 5 and "done", every_s=0) == "done"


async def test_eventually_fails_naming_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"the sale settled: not within 0.05s; last: 7"):
        await eventually(lambda: 7, until=lambda n: n > 7, within_s=0.05, every_s=0.01, what="the sale settled")


def test_eventually_sync_ignores_the_exceptions_it_is_told_to() -> None:
    attempts = iter([ConnectionError("down"), ConnectionError("down"), "up"])

    def probe() -> str:
        item = next(attempts)
        if isinstance(item, Exception):
            raise item
        return item

    assert eventually_sync(probe, ignoring=(ConnectionError,), every_s=0) == "up"
    with pytest.raises(ZeroDivisionError):
        eventually_sync(lambda: 1 // 0, ignoring=(ConnectionError,))
