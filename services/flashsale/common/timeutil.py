"""Time as integer epoch milliseconds, and conversions to protobuf timestamps."""

from __future__ import annotations

import time

from google.protobuf import timestamp_pb2


def now_ms() -> int:
    """Current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def to_timestamp(ms: int) -> timestamp_pb2.Timestamp:
    """Epoch milliseconds as a protobuf Timestamp."""
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def from_timestamp(ts: timestamp_pb2.Timestamp) -> int:
    """A protobuf Timestamp as epoch milliseconds."""
    return int(ts.ToMilliseconds())
