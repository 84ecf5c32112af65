"""The gateway's token buckets, driven by a fake clock."""

from __future__ import annotations

import pytest

from flashsale.gateway import ratelimit


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_burst_then_refused_with_the_wait() -> None:
    clock = FakeClock()
    limiter = ratelimit.TokenBucketLimiter(rate_per_s=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.advance(0.25)
    assert limiter.acquire("a") == pytest.approx(0.25)


def test_refill_at_the_rate_and_capped_at_the_burst() -> None:
    clock = FakeClock()
    limiter = ratelimit.TokenBucketLimiter(rate_per_s=10.0, burst=2, clock=clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    clock.advance(0.1)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    clock.advance(3600)
    assert [limiter.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("a") > 0


def test_refused_requests_take_no_tokens() -> None:
    clock = FakeClock()
    limiter = ratelimit.TokenBucketLimiter(rate_per_s=1.0, burst=1, clock=clock)
    assert limiter.acquire("a") == 0.0
    for _ in range(5):
        assert limiter.acquire("a") > 0
    clock.advance(1.0)
    assert limiter.acquire("a") == 0.0


def test_keys_are_independent() -> None:
    clock = FakeClock()
    limiter = ratelimit.TokenBucketLimiter(rate_per_s=1.0, burst=1, clock=clock)
    assert limiter.acquire("user:1") == 0.0
    assert limiter.acquire("user:1") > 0
    assert limiter.acquire("user:2") == 0.0
    assert limiter.acquire("ip:127.0.0.1") == 0.0


def test_idle_full_buckets_are_evicted() -> None:
    clock = FakeClock()
    limiter = ratelimit.TokenBucketLimiter(rate_per_s=1.0, burst=2, clock=clock)
    for key in ("a", "b", "c"):
        limiter.acquire(key)
    assert len(limiter) == 3
    clock.advance(1.0)
    limiter.acquire("c")
    assert len(limiter) == 3
    clock.advance(1.5)  # a and b idle for 2.5 s >= burst / rate = 2 s: full again, dropped
    limiter.acquire("d")
    assert len(limiter) == 2


def test_table_is_bounded_dropping_the_least_recently_used() -> None:
    clock = FakeClock()
    limiter = ratelimit.TokenBucketLimiter(rate_per_s=1.0, burst=1, max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.acquire(key) == 0.0
    assert limiter.acquire("a") > 0  # a is now the most recently used
    assert limiter.acquire("d") == 0.0
    assert len(limiter) == 3
    assert limiter.acquire("a") > 0  # still tracked, still empty
    assert limiter.acquire("b") == 0.0  # b was dropped, so it starts full again


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        ratelimit.TokenBucketLimiter(rate_per_s=0, burst=1)
    with pytest.raises(ValueError):
        ratelimit.TokenBucketLimiter(rate_per_s=1, burst=0)


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (30.0, "30")])
def test_retry_after_is_whole_seconds_at_least_one(wait: float, header: str) -> None:
    assert ratelimit.retry_after_header(wait) == header
