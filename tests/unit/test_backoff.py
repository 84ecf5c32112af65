"""Retry delays: doubling up to a cap, reset after a success, nonsense refused."""

import pytest

from flashsale.common import backoff


def test_delays_double_up_to_the_cap_and_reset() -> None:
    delays = backoff.Backoff(0.1, 0.5)
    assert [delays.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert delays.exhausted
    delays.reset()
    assert delays.next() == 0.1 and not delays.exhausted


def test_a_backoff_that_cannot_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="first_s"):
        backoff.Backoff(0, 1)
    with pytest.raises(ValueError, match="cap_s"):
        backoff.Backoff(2, 1)
