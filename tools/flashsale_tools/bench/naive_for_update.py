"""(a) The naive design: one stock row per sale; BEGIN; SELECT … FOR UPDATE; UPDATE; COMMIT per purchase."""

from __future__ import annotations

from typing import Any

import psycopg

from flashsale_tools.bench import core, pgload


def attempt(conn: psycopg.Connection[Any], quantity: int) -> bool:
    """One purchase in its own transaction, holding the row lock from the read to the commit."""
    with conn.transaction():
        row = conn.execute("SELECT remaining FROM sale_stock WHERE sale_id = 1 FOR UPDATE").fetchone()
        if row is None or row[0] < quantity:
            return False
        conn.execute("UPDATE sale_stock SET remaining = remaining - %s WHERE sale_id = 1", (quantity,))
        return True


async def run(workload: core.Workload, env: core.BenchEnv) -> core.ModeResult:
    """Measure the naive design on PostgreSQL."""
    return await pgload.run(workload, env, "bench_naive", attempt)
