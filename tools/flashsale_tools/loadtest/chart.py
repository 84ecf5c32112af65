"""The load test's chart: decisions and accepted requests per second, and latency, over time (PNG, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.backends import backend_agg
from matplotlib.figure import Figure


def _gap(value: float | None) -> float:
    """A latency of the series; NaN (no line) where no decision was made."""
    return math.nan if value is None else value


def draw(result: dict[str, Any], path: Path) -> None:
    """Write the two-panel chart of one report's per-second series to path."""
    series = result["series"]
    seconds = [s["start_s"] for s in series]
    fig = Figure(figsize=(10, 7), dpi=100)
    backend_agg.FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    steps: dict[str, Any] = {"where": "post"}
    top.step(seconds, [s["sent_per_s"] for s in series], label="offered (sent) / s", color="tab:gray", **steps)
    top.step(seconds, [s["decided_per_s"] for s in series], label="decided / s", color="tab:blue", **steps)
    top.step(seconds, [s["accepted_per_s"] for s in series], label="accepted / s", color="tab:green", **steps)
    top.set_ylabel(f"requests per second ({result['bucket_ms']} ms buckets)")
    top.set_title(
        f"{result['config'].get('users', '?')} shoppers, stock {result['stock']}, "
        f"{result['config'].get('partitions', '?')} partitions — sold {result['sold']}, "
        f"violations {result['violations']}"
    )
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    bottom.step(seconds, [_gap(s["p50_ms"]) for s in series], label="p50", color="tab:blue", **steps)
    bottom.step(seconds, [_gap(s["p99_ms"]) for s in series], label="p99", color="tab:red", **steps)
    bottom.set_ylabel("request → decision (ms)")
    bottom.set_xlabel("seconds since the first request (decisions counted when they were made)")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
