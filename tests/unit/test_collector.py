"""Every process serves with the garbage collector tuned: start-up's objects frozen, young objects collected
every THRESHOLDS[0] allocations."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from flashsale.common import collector, process


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    """Put the collector back as the test process had it."""
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_a_process_serves_with_the_tuned_collector() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    seen: list[tuple[tuple[int, int, int], int]] = []

    async def serve(config: object) -> None:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))

    process.main("test", object, serve)
    ((thresholds, frozen),) = seen
    assert thresholds == collector.THRESHOLDS
    assert frozen > 0
