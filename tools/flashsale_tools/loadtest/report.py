"""The load test's report: JSON-ready figures (pure) and the text table."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich import console as rich_console
from rich import table

from flashsale_tools.loadtest import cpu, metrics, sender
from flashsale_tools.verify import rules

HEADLINE = (
    "offered_per_s",
    "accepted_per_s",
    "decided_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_stall_ms",
    "sold",
    "stock",
    "oversold",
    "per_user_violations",
    "undersell",
    "fairness_inversions",
)


def _round(value: float) -> float:
    return round(value, 1)


def build(
    config: dict[str, Any],
    summary: metrics.Summary,
    check: rules.Report,
    log: sender.SendLog,
    *,
    orders_settled: bool,
    cpu: cpu.CpuUse | None = None,
) -> dict[str, Any]:
    """The report as plain data: headline figures first, then counts, the unary sample, the CPU each process
    used (own platform; None otherwise), the series and every row of the checker. `ok` is the checker's verdict."""
    unary = [u.latency_ms for u in log.unary if u.outcome != "pending"]
    undecided_taken = sum(1 for rid in log.first_sent if rid not in log.failed) - summary.decided
    return {
        "ok": check.ok,
        "sale_id": check.sale_id,
        "offered_per_s": _round(summary.offered_per_s),
        "accepted_per_s": _round(summary.accepted_per_s),
        "decided_per_s": _round(summary.decided_per_s),
        "p50_ms": _round(summary.p50_ms),
        "p95_ms": _round(summary.p95_ms),
        "p99_ms": _round(summary.p99_ms),
        "max_ms": _round(summary.max_ms),
        "max_stall_ms": _round(summary.max_stall_ms),
        "sold": check.held,
        "stock": check.stock,
        "remaining": check.remaining,
        "oversold": check.count("oversold"),
        "per_user_violations": check.count("per_user_limit"),
        "undersell": check.count("undersell"),
        "fairness_inversions": check.count("fairness_inversions"),
        "violations": sum(v.count for v in check.violations),
        "config": config,
        "sends": summary.sends,
        "requests": summary.requests,
        "decided": summary.decided,
        "undecided": summary.undecided,
        "undecided_taken": max(0, undecided_taken),
        "send_errors": len(log.failed),
        "accepted": summary.accepted,
        "outcomes": dict(summary.outcomes),
        "queue_p50_ms": _round(summary.queue_p50_ms),
        "queue_p99_ms": _round(summary.queue_p99_ms),
        "sender_max_lag_ms": _round(log.max_lag_ms),
        "unary": {
            "calls": len(log.unary),
            "answered_decided": len(unary),
            "p50_ms": _round(metrics.percentile(unary, 50)),
            "p99_ms": _round(metrics.percentile(unary, 99)),
        },
        "orders_settled": orders_settled,
        "cpu": cpu.to_dict() if cpu is not None else None,
        "invariants": {v.name: v.count for v in check.violations},
        "checker": check.to_dict(),
        "bucket_ms": summary.bucket_ms,
        "series": [dataclasses.asdict(s) for s in summary.series],
    }


def passed(result: dict[str, Any]) -> bool:
    """True when the checker found no violation and no request that the platform took went undecided."""
    return bool(result["ok"]) and int(result["undecided_taken"]) == 0


def render(con: rich_console.Console, result: dict[str, Any]) -> None:
    """Print the headline figures and the checker's rows."""
    grid = table.Table(title=f"Flashsale load test — sale {result['sale_id']}")
    grid.add_column("metric")
    grid.add_column("value", justify="right")
    for key in HEADLINE:
        value = result[key]
        shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
        grid.add_row(key, shown)
    for key in ("sends", "requests", "decided", "undecided", "send_errors", "accepted", "queue_p99_ms"):
        grid.add_row(key, f"{result[key]:,}")
    grid.add_row("outcomes", ", ".join(f"{k} {v:,}" for k, v in result["outcomes"].items()))
    grid.add_row("unary p50/p99 ms", f"{result['unary']['p50_ms']:,.1f} / {result['unary']['p99_ms']:,.1f}")
    used = result.get("cpu")
    if used:
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in used["seconds"].items())
        grid.add_row(f"cpu s in {used['window_s']:.1f} s on {used['cores']} cores", parts)
    con.print(grid)
    checks = table.Table(title="Checker")
    checks.add_column("invariant")
    checks.add_column("count", justify="right")
    checks.add_column("examples")
    for row in result["checker"]["violations"]:
        if not row["applied"]:
            count = "[dim]n/a[/dim]"
        elif row["count"]:
            count = f"[bold red]{row['count']}[/bold red]"
        else:
            count = "[green]0[/green]"
        checks.add_row(row["name"], count, ", ".join(row["examples"]))
    con.print(checks)
    if passed(result):
        con.print("[green]OK: no violation[/green]")
    else:
        con.print("[bold red]FAILED: violations or requests never decided[/bold red]")
