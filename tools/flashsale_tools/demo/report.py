"""Pure report arithmetic for a sale run: sold, oversold, per-user violations, latency percentiles."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from flashsale_tools.platform.shoppers import Attempt


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def per_user_violations(attempts: Sequence[Attempt], limit: int) -> int:
    """How many users hold more than the per-user limit."""
    held: Counter[str] = Counter()
    for a in attempts:
        if a.outcome == "ACCEPTED":
            held[a.user] += a.quantity
    return sum(1 for qty in held.values() if qty > limit)


def build_report(
    *, stock: int, limit: int, attempts: Sequence[Attempt], paid: int, expired: int, server_stats: dict[str, Any]
) -> dict[str, Any]:
    """The demo report: what shoppers saw, cross-checked with the sale's own counters."""
    sold = sum(a.quantity for a in attempts if a.outcome == "ACCEPTED")
    latencies = [a.latency_ms for a in attempts if a.outcome != "ERROR"]
    return {
        "stock": stock,
        "per_user_limit": limit,
        "shoppers": len({a.user for a in attempts}),
        "attempts": len(attempts),
        "sold": sold,
        "paid": paid,
        "expired": expired,
        "rejected": sum(1 for a in attempts if a.outcome not in ("ACCEPTED", "ERROR")),
        "errors": sum(1 for a in attempts if a.outcome == "ERROR"),
        "oversold": max(0, sold - stock, int(server_stats.get("reserved", 0)) - stock),
        "per_user_violations": per_user_violations(attempts, limit),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "server_stats": server_stats,
    }
