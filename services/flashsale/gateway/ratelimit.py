"""Token buckets per client key, with an injectable clock and a bounded table. Pure logic, no I/O."""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable


@dataclasses.dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """Allows `rate_per_s` requests per second per key on average, with bursts of up to `burst`.

    A bucket idle long enough to be full again is the same as no bucket, so it is dropped; beyond
    `max_keys` tracked keys the least recently used one is dropped too (that client starts full).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and max_keys >= 1 are required")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._refill_s = burst / rate_per_s
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens for key: 0.0 when allowed, else the seconds to wait before a retry succeeds."""
        now = self._clock()
        self._evict_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.updated = now
            self._buckets.move_to_end(key)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate_per_s

    def _evict_idle(self, now: float) -> None:
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if now - oldest.updated < self._refill_s:
                return
            del self._buckets[key]


def retry_after_header(wait_s: float) -> str:
    """The Retry-After value (whole seconds, at least 1) for a wait."""
    return str(max(1, math.ceil(wait_s)))
