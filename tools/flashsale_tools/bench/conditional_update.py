"""(b) The conditional hot-row update: UPDATE … SET remaining = remaining - q WHERE remaining >= q per purchase."""

from __future__ import annotations

from typing import Any

import psycopg

from flashsale_tools.bench import core, pgload


def attempt(conn: psycopg.Connection[Any], quantity: int) -> bool:
    """One purchase: a single autocommitted statement, so its own transaction."""
    cur = conn.execute(
        "UPDATE sale_stock SET remaining = remaining - %s WHERE sale_id = 1 AND remaining >= %s",
        (quantity, quantity),
    )
    return cur.rowcount == 1


async def run(workload: core.Workload, env: core.BenchEnv) -> core.ModeResult:
    """Measure the conditional update on PostgreSQL."""
    return await pgload.run(workload, env, "bench_conditional", attempt)
